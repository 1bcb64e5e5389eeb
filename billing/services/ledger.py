"""The ledger: the only code that changes a grant's remaining compute or a user's debt.

Invariant (checked by the property tests): for every user, the sum of their
ledger equals the sum of their grants' ``remaining_micro`` minus their
``debt_micro``. It holds by construction, because every change goes through
:func:`write`: it appends the entries and moves each grant's remainder by
exactly the sum of that grant's entries, and the user's debt by minus the sum
of their entries without a grant (a debt entry has no grant). The moves are
relative (``remaining_micro = remaining_micro + Δ``), so a caller holding a
stale copy of a row cannot overwrite what another statement wrote.

Rules every caller follows (DESIGN rules 5 and 6):

- lock the user's Account row first (:func:`lock_account`, or
  :func:`lock_accounts` for many users, in user order), so two writers for one
  user serialise and none decides on a balance the other is changing;
- give every entry a unique idempotency key, so an event applied twice
  inserts nothing the second time (the unique index refuses the second row);
- spend in the SPEC §3.4 order, which is :func:`spend_rank` and nowhere else.

Grant rows are created here too (:func:`open_grant`): a new grant starts at
0 and its first entry brings it to its amount, so even the first remainder
is written by :func:`write`.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import translation

from aladdin.lib.said import Reason, Said, render

from .. import reasons as _reasons  # noqa: F401 - the ledger.* messages
from ..choices import GRANT_CLASS_RANK, GrantClass, GrantState, LedgerKind
from ..models import Account, ArrearsReview, Grant, LedgerEntry

DCU = 1_000_000
# SPEC §3.5: the user never bears more than 10 DCU of arrears.
ARREARS_CAP_MICRO = 10 * DCU

# Ids per ORM ``__in`` list where one is still used (rare paths): SQLite
# binds ~32k variables per statement at most.
CHUNK = 2000


class BillingError(ValidationError):
    """A billing rule refused the request; the message tells the user what to do."""


class Entry(NamedTuple):
    """One ledger row to write. ``grant_id`` None: the entry moves the user's debt."""

    user_id: int
    grant_id: int | None
    delta_micro: int
    kind: str
    reason: Reason  # a message (shown in the reader's language) or text
    key: str
    at: datetime


class GrantBalance:
    """The columns of a spendable grant that spending reads (a Grant quacks the same)."""

    __slots__ = ("pk", "user_id", "grant_class", "tier", "active_until", "remaining_micro")

    def __init__(self, pk, user_id, grant_class, tier, active_until, remaining_micro):
        self.pk = pk
        self.user_id = user_id
        self.grant_class = grant_class
        self.tier = tier
        self.active_until = active_until
        self.remaining_micro = remaining_micro


class AccountBalance:
    """A locked account as a batch sees it (an Account quacks the same for ``spend``).

    ``due``: a period event is due, so the account needs period processing first.
    """

    __slots__ = ("user_id", "debt_micro", "due")

    def __init__(self, user_id, debt_micro, due):
        self.user_id = user_id
        self.debt_micro = debt_micro
        self.due = due


@contextmanager
def no_cyclic_gc():
    """Pause Python's cyclic garbage collector for a batch's work in memory.

    A tick of 100,000 charges makes ~500,000 small container objects
    (entries, grants, results) that all live until it ends; the collections
    they trigger walk the whole heap again and again, which doubled the
    tick's time (docs/benchmarks.md). They form no reference cycles, so
    reference counting frees them as before. Restores the previous state.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def chunks(items: Sequence, size: int = CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- the spending order (SPEC §3.4) -------------------------------------------------


def spend_rank(grant) -> tuple:
    """Where ``grant`` comes in the SPEC §3.4 spending order, as a sort key.

    Activated carry-over, then extension packs (vouchers count as packs), then
    plan compute by tier ascending; within a class the grant that stops being
    active first, then pk, so the order is total and repeatable. The one
    definition: charges, batches and ``selectors.spending_order`` sort by it.
    """
    tier = (grant.tier or 0) if grant.grant_class == GrantClass.PLAN else 0
    return (GRANT_CLASS_RANK[grant.grant_class], tier, grant.active_until, grant.pk)


_LEDGER = LedgerEntry._meta.db_table
_GRANT = Grant._meta.db_table
_ACCOUNT = Account._meta.db_table


def _in(column: str, values: list) -> tuple[str, list]:
    """``column`` in ``values`` as one parameter, however many values (one statement).

    PostgreSQL takes an array; SQLite, which binds ~32k variables at most, a
    JSON list. Chunked ``IN (%s, …)`` lists cost one statement per chunk and,
    through the ORM, most of a 100,000-user tick in compiling them.
    """
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [values]
    return f"{column} IN (SELECT value FROM json_each(%s))", [json.dumps(values)]


def _aware(text: str) -> datetime:
    # Datetimes are read as text (CAST … AS TEXT) and parsed here: SQLite
    # stores naive UTC text, PostgreSQL answers in the session's zone, UTC
    # (Django sets it). Django's PostgreSQL converters cost ~15 µs a value,
    # which at 100,000 grants was a large part of a tick.
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def spendable(user_ids: Sequence[int], at: datetime) -> dict[int, list[GrantBalance]]:
    """The grants each user can spend at ``at``, each list in the spending order.

    Read as tuples into ``GrantBalance``, not model instances: building the
    Grant objects was most of a metering tick (docs/benchmarks.md).
    """
    where, params = _in("user_id", sorted(set(user_ids)))
    sql = (
        "SELECT id, user_id, grant_class, tier, CAST(active_until AS TEXT), remaining_micro "  # noqa: S608
        f"FROM {_GRANT} WHERE {where} AND state = %s AND active_until > %s"
    )
    grants: dict[int, list[GrantBalance]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [*params, GrantState.ACTIVE, connection.ops.adapt_datetimefield_value(at)]
        )
        for pk, user_id, grant_class, tier, active_until, remaining in cursor.fetchall():
            grant = GrantBalance(pk, user_id, grant_class, tier, _aware(active_until), remaining)
            grants.setdefault(user_id, []).append(grant)
    for user_grants in grants.values():
        # Looked up at call time, so a test can inject a wrong order (the canary).
        user_grants.sort(key=spend_rank)
    return grants


def known_keys(keys: Sequence[str]) -> set[str]:
    """Those of ``keys`` that the ledger already holds (events applied before)."""
    where, params = _in("idempotency_key", list(keys))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT idempotency_key FROM {_LEDGER} WHERE {where}", params)  # noqa: S608
        return {key for (key,) in cursor.fetchall()}


# --- locking ----------------------------------------------------------------------


def lock_account(user) -> Account:
    """The user's Account row, locked for this transaction (created if missing)."""
    account = Account.objects.select_for_update().filter(user=user).first()
    if account is None:
        Account.objects.get_or_create(user=user)
        account = Account.objects.select_for_update().get(user=user)
    return account


def account_lock(*, user) -> Account:
    """Lock the user's account row for the current transaction (created if missing).

    For services of higher apps (GPU job admission) that must decide on the
    balance and write their effect before another request of the same user
    can decide on the same balance.
    """
    return lock_account(user)


def _lock_rows(user_ids: list[int], at: datetime) -> dict[int, AccountBalance]:
    where, params = _in("user_id", user_ids)
    # FOR UPDATE where the database has row locks (PostgreSQL); SQLite's
    # BEGIN IMMEDIATE gave this transaction the whole database already.
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (
        "SELECT user_id, debt_micro, "  # noqa: S608
        "CASE WHEN next_event_at <= %s THEN 1 ELSE 0 END "
        f"FROM {_ACCOUNT} WHERE {where} ORDER BY user_id{lock}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(at), *params])
        return {
            user_id: AccountBalance(user_id, debt, bool(due))
            for user_id, debt, due in cursor.fetchall()
        }


def lock_accounts(user_ids: Iterable[int], *, at: datetime) -> dict[int, AccountBalance]:
    """Lock the accounts of ``user_ids``, in one statement and in user order (so
    concurrent batches cannot deadlock); return each user's debt and whether
    a period event is due by ``at``. Missing accounts are created, then
    locked like the others.
    """
    ids = sorted(set(user_ids))
    found = _lock_rows(ids, at)
    missing = [i for i in ids if i not in found]
    if missing:
        Account.objects.bulk_create([Account(user_id=i) for i in missing], ignore_conflicts=True)
        # Locked after the insert: a concurrent transaction may have made the row.
        found.update(_lock_rows(missing, at))
    return found


# --- the one write ---------------------------------------------------------------

_COLUMNS = (
    "user_id, grant_id, delta_micro, kind, reason, reason_id, reason_params, idempotency_key, "
    "created_at"
)
_INSERT = f"INSERT INTO {_LEDGER} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
_MOVE_GRANT = f"UPDATE {_GRANT} SET remaining_micro = remaining_micro + %s WHERE id = %s"  # noqa: S608
_MOVE_DEBT = f"UPDATE {_ACCOUNT} SET debt_micro = debt_micro + %s WHERE user_id = %s"  # noqa: S608
# PostgreSQL: each write is one statement over arrays (unnest), whatever the
# number of rows. psycopg's executemany sends one statement per row (~100 µs
# each here, pipelined), so a tick of 100,000 charges took tens of seconds.
_PG_INSERT = (
    f"INSERT INTO {_LEDGER} ({_COLUMNS}) "  # noqa: S608
    "SELECT u, g, d, k, r, rid, rp::jsonb, key, at FROM unnest(%s::bigint[], %s::bigint[], "
    "%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::timestamptz[]) AS t(u, g, d, k, r, rid, rp, key, at)"
)
_PG_MOVE_GRANT = (
    f"UPDATE {_GRANT} AS g SET remaining_micro = g.remaining_micro + m.delta "  # noqa: S608
    "FROM unnest(%s::bigint[], %s::bigint[]) AS m(id, delta) WHERE g.id = m.id"
)
_PG_MOVE_DEBT = (
    f"UPDATE {_ACCOUNT} AS a SET debt_micro = a.debt_micro + m.delta "  # noqa: S608
    "FROM unnest(%s::bigint[], %s::bigint[]) AS m(user_id, delta) WHERE a.user_id = m.user_id"
)


def write(entries: Sequence[Entry]) -> None:
    """Append ``entries`` to the ledger and move the balances they describe, together.

    Each grant's ``remaining_micro`` moves by the sum of its entries and each
    user's ``debt_micro`` by minus the sum of their entries without a grant:
    one relative UPDATE per grant and per account. The database checks what
    a bug could break: a repeated key (unique index), a remainder below 0 or
    above what was granted, a negative debt (check constraints).

    Raw SQL, not the ORM, whose per-object work cost several times the
    database's own (docs/benchmarks.md): on SQLite one prepared statement
    each, run with ``executemany``; on PostgreSQL one statement each over
    arrays. Must run inside the transaction that holds the users' account
    locks (so no other writer touches these rows, and the order of the
    UPDATEs cannot deadlock).
    """
    if not entries:
        return
    if not connection.in_atomic_block:
        raise RuntimeError("ledger writes run inside the transaction that locked the accounts")
    adapt = connection.ops.adapt_datetimefield_value
    times: dict[datetime, object] = {}
    rows: list[tuple[Any, ...]] = []
    grant_moves: dict[int, int] = {}
    debt_moves: dict[int, int] = {}
    # One tick repeats a job's reason per grant: render it once (keyed by the
    # object, alive for the whole loop; a Said's params are a dict, unhashable).
    said: dict[int, tuple[str, str]] = {}
    # The text column is English whoever writes (aladdin.lib.said); one
    # override for the batch, not one per row (a night's storage charges).
    with translation.override("en"):
        for user_id, grant_id, delta, kind, reason, key, at in entries:
            when = times.get(at)
            if when is None:
                when = times[at] = adapt(at)
            if isinstance(reason, Said):
                columns = said.get(id(reason))
                if columns is None:
                    columns = (render(reason.id, reason.params), json.dumps(dict(reason.params)))
                    said[id(reason)] = columns
                text, reason_id, params = columns[0], reason.id, columns[1]
            else:
                text, reason_id, params = reason, "", "{}"
            rows.append((user_id, grant_id, delta, kind, text, reason_id, params, key, when))
            if grant_id is None:
                debt_moves[user_id] = debt_moves.get(user_id, 0) - delta
            else:
                grant_moves[grant_id] = grant_moves.get(grant_id, 0) + delta
    grant_moves = {pk: d for pk, d in sorted(grant_moves.items()) if d}
    debt_moves = {user_id: d for user_id, d in sorted(debt_moves.items()) if d}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_PG_INSERT, [list(column) for column in zip(*rows, strict=True)])
            if grant_moves:
                cursor.execute(_PG_MOVE_GRANT, [list(grant_moves), list(grant_moves.values())])
            if debt_moves:
                cursor.execute(_PG_MOVE_DEBT, [list(debt_moves), list(debt_moves.values())])
            return
        cursor.executemany(_INSERT, rows)
        if grant_moves:
            cursor.executemany(_MOVE_GRANT, [(d, pk) for pk, d in grant_moves.items()])
        if debt_moves:
            cursor.executemany(_MOVE_DEBT, [(d, u) for u, d in debt_moves.items()])


# --- debits and credits ------------------------------------------------------------


def spend(
    account,
    grants: list,
    amount: int,
    *,
    reason: Reason,
    key: str,
    at: datetime,
    entries: list[Entry],
) -> int:
    """Debit ``amount`` from ``grants`` (as :func:`spendable` orders them); returns the debt part.

    What the grants cannot pay becomes debt (SPEC §3.2), and arrears beyond
    10 DCU are covered at once by a platform voucher (SPEC §3.5). The entries
    are appended to ``entries`` for one :func:`write`; the in-memory grants
    and ``account.debt_micro`` are updated, so the next debit of a batch sees
    what this one left.
    """
    user_id = account.user_id
    left = amount
    n = 0
    for grant in grants:
        take = grant.remaining_micro if grant.remaining_micro < left else left
        if take == 0:
            continue
        grant.remaining_micro -= take
        left -= take
        entries.append(
            Entry(
                user_id,
                grant.pk,
                -take,
                LedgerKind.CHARGE,
                reason,
                key if n == 0 else f"{key}#{n + 1}",
                at,
            )
        )
        n += 1
        if left == 0:
            return 0
    entries.append(
        Entry(user_id, None, -left, LedgerKind.DEBT, reason, key if n == 0 else f"{key}#debt", at)
    )
    account.debt_micro += left
    if _is_banned(user_id):
        # A banned account's compute was forfeited with the ban; the final
        # charges of its stopped jobs land after that (exactly to each
        # release), find no grant and would leave the banned user in arrears
        # (and in the arrears queue). The platform writes them off at once.
        entries.append(
            Entry(
                user_id,
                None,
                left,
                LedgerKind.DEBT_SETTLE,
                Said("ledger.arrears_banned"),
                f"{key}#written-off",
                at,
            )
        )
        account.debt_micro -= left
        return left
    _cap_arrears(account, key=key, at=at, entries=entries)
    return left


def _is_banned(user_id: int) -> bool:
    # Only asked when a charge goes into debt (rare), so no cost on the hot path.
    from aladdin.accounts.models import User

    return User.objects.filter(pk=user_id, banned_at__isnull=False).exists()


def open_grant(
    *,
    user_id: int,
    amount: int,
    kind: str,
    reason: Reason,
    key: str,
    at: datetime,
    pays_debt_of=None,
    settle_reason: Reason | None = None,
    settle_keys: tuple[str, str] | None = None,
    entries: list[Entry] | None = None,
    **fields,
) -> Grant:
    """Create a grant of ``amount`` (``fields``: class, state, expiry…) with its entry.

    With ``pays_debt_of`` (the locked account) the new compute pays that
    account's debt first (SPEC §3.2): two more entries, out of the grant and
    off the debt. The entries are written now, or appended to ``entries``
    for the caller's :func:`write`.
    """
    grant = Grant.objects.create(user_id=user_id, granted_micro=amount, remaining_micro=0, **fields)
    new = [Entry(user_id, grant.pk, amount, kind, reason, key, at)]
    settle = min(pays_debt_of.debt_micro, amount) if pays_debt_of is not None else 0
    if settle > 0:
        text = settle_reason or Said("ledger.arrears_paid", {"amount": settle})
        out_key, off_key = settle_keys or (f"{key}#settle", f"{key}#settle-debt")
        new += [
            Entry(user_id, grant.pk, -settle, LedgerKind.DEBT_SETTLE, text, out_key, at),
            Entry(user_id, None, settle, LedgerKind.DEBT_SETTLE, text, off_key, at),
        ]
        pays_debt_of.debt_micro -= settle
    if entries is None:
        write(new)
    else:
        entries.extend(new)
    grant.remaining_micro = amount - settle
    return grant


def take_all(grants: Iterable, *, kind: str, reason, key, at: datetime) -> int:
    """Take what is left of each grant (expiry, forfeit); returns µDCU taken.

    ``reason`` and ``key`` are functions of the grant. The grants' states are
    the caller's to change.
    """
    entries = [
        Entry(g.user_id, g.pk, -g.remaining_micro, kind, reason(g), key(g), at)
        for g in grants
        if g.remaining_micro > 0
    ]
    write(entries)
    for g in grants:
        g.remaining_micro = 0
    return -sum(e.delta_micro for e in entries)


def _cap_arrears(account, *, key: str, at: datetime, entries: list[Entry]) -> None:
    """Keep the user's arrears at 10 DCU at most, and queue the account for review."""
    if account.debt_micro >= ARREARS_CAP_MICRO:
        ArrearsReview.objects.get_or_create(
            user_id=account.user_id,
            decision=ArrearsReview.Decision.PENDING,
            defaults={"debt_micro_at_open": account.debt_micro, "opened_at": at},
        )
    excess = account.debt_micro - ARREARS_CAP_MICRO
    if excess <= 0:
        return
    # SPEC §3.5 decision: the platform covers arrears beyond 10 DCU with an
    # extension-pack voucher, at once; it pays that excess and nothing else,
    # so the voucher is spent (expired, 0 left) the moment it is made.
    text = Said("ledger.arrears_voucher", {"amount": excess})
    open_grant(
        user_id=account.user_id,
        amount=excess,
        kind=LedgerKind.VOUCHER,
        reason=text,
        key=f"{key}#voucher",
        at=at,
        pays_debt_of=account,
        settle_reason=text,
        settle_keys=(f"{key}#voucher-settle", f"{key}#voucher-debt"),
        entries=entries,
        grant_class=GrantClass.EXTENSION,
        state=GrantState.EXPIRED,
        active_until=at,
        may_carry=False,
    )
