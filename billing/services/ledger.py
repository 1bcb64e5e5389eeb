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

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils.translation import gettext as _

from ..choices import GRANT_CLASS_RANK, GrantClass, GrantState, LedgerKind
from ..models import Account, ArrearsReview, Grant, LedgerEntry
from ..units import format_micro

DCU = 1_000_000
# SPEC §3.5: the user never bears more than 10 DCU of arrears.
ARREARS_CAP_MICRO = 10 * DCU

# SQLite allows ~32k bound variables per statement (PostgreSQL 65k): a
# statement with one variable per id stays far below with chunks of this size.
CHUNK = 2000


class BillingError(ValidationError):
    """A billing rule refused the request; the message tells the user what to do."""


class Entry(NamedTuple):
    """One ledger row to write. ``grant_id`` None: the entry moves the user's debt."""

    user_id: int
    grant_id: int | None
    delta_micro: int
    kind: str
    reason: str
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
    """A locked account as a batch sees it: the user and their debt (an Account quacks the same)."""

    __slots__ = ("user_id", "debt_micro", "next_event_at")

    def __init__(self, user_id, debt_micro, next_event_at):
        self.user_id = user_id
        self.debt_micro = debt_micro
        self.next_event_at = next_event_at


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


def spendable(user_ids: Sequence[int], at: datetime) -> dict[int, list[GrantBalance]]:
    """The grants each user can spend at ``at``, each list in the spending order.

    Read as tuples, not model instances: at 100,000 users building the Grant
    objects was most of a metering tick (docs/benchmarks.md).
    """
    grants: dict[int, list[GrantBalance]] = {}
    for chunk in chunks(sorted(set(user_ids))):
        for row in Grant.objects.filter(
            user_id__in=chunk, state=GrantState.ACTIVE, active_until__gt=at
        ).values_list("pk", "user_id", "grant_class", "tier", "active_until", "remaining_micro"):
            grant = GrantBalance(*row)
            grants.setdefault(grant.user_id, []).append(grant)
    for user_grants in grants.values():
        # Looked up at call time, so a test can inject a wrong order (the canary).
        user_grants.sort(key=spend_rank)
    return grants


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


def _lock_rows(user_ids: Sequence[int]) -> dict[int, AccountBalance]:
    found: dict[int, AccountBalance] = {}
    for chunk in chunks(user_ids):
        for row in (
            Account.objects.select_for_update()
            .filter(user_id__in=chunk)
            .order_by("user_id")
            .values_list("user_id", "debt_micro", "next_event_at")
        ):
            found[row[0]] = AccountBalance(*row)
    return found


def lock_accounts(user_ids: Iterable[int]) -> dict[int, AccountBalance]:
    """Lock the accounts of ``user_ids`` in user order (so concurrent batches cannot
    deadlock) and return each user's debt and next period event; missing
    accounts are created, then locked like the others.
    """
    ids = sorted(set(user_ids))
    found = _lock_rows(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        Account.objects.bulk_create([Account(user_id=i) for i in missing], ignore_conflicts=True)
        # Locked after the insert: a concurrent transaction may have made the row.
        found.update(_lock_rows(missing))
    return found


# --- the one write ---------------------------------------------------------------

_LEDGER = LedgerEntry._meta.db_table
_GRANT = Grant._meta.db_table
_ACCOUNT = Account._meta.db_table
_INSERT = (
    f"INSERT INTO {_LEDGER} "  # noqa: S608
    "(user_id, grant_id, delta_micro, kind, reason, idempotency_key, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_MOVE_GRANT = f"UPDATE {_GRANT} SET remaining_micro = remaining_micro + %s WHERE id = %s"  # noqa: S608
_MOVE_DEBT = f"UPDATE {_ACCOUNT} SET debt_micro = debt_micro + %s WHERE user_id = %s"  # noqa: S608


def write(entries: Sequence[Entry]) -> None:
    """Append ``entries`` to the ledger and move the balances they describe, together.

    Each grant's ``remaining_micro`` moves by the sum of its entries and each
    user's ``debt_micro`` by minus the sum of their entries without a grant,
    one relative UPDATE per grant and per account, in id order. The database
    checks what a bug could break: a repeated key (unique index), a remainder
    below 0 or above what was granted, a negative debt (check constraints).

    One prepared statement each, run with ``executemany``: the ORM's
    per-object work cost several times the database's own (docs/benchmarks.md).
    Must run inside the transaction that holds the users' account locks.
    """
    if not entries:
        return
    if not connection.in_atomic_block:
        raise RuntimeError("ledger writes run inside the transaction that locked the accounts")
    adapt = connection.ops.adapt_datetimefield_value
    times: dict[datetime, object] = {}
    rows = []
    grant_moves: dict[int, int] = {}
    debt_moves: dict[int, int] = {}
    for user_id, grant_id, delta, kind, reason, key, at in entries:
        when = times.get(at)
        if when is None:
            when = times[at] = adapt(at)
        rows.append((user_id, grant_id, delta, kind, reason, key, when))
        if grant_id is None:
            debt_moves[user_id] = debt_moves.get(user_id, 0) - delta
        else:
            grant_moves[grant_id] = grant_moves.get(grant_id, 0) + delta
    with connection.cursor() as cursor:
        cursor.executemany(_INSERT, rows)
        moves = [(d, pk) for pk, d in sorted(grant_moves.items()) if d]
        if moves:
            cursor.executemany(_MOVE_GRANT, moves)
        moves = [(d, user_id) for user_id, d in sorted(debt_moves.items()) if d]
        if moves:
            cursor.executemany(_MOVE_DEBT, moves)


# --- debits and credits ------------------------------------------------------------


def spend(
    account,
    grants: list,
    amount: int,
    *,
    reason: str,
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
    _cap_arrears(account, key=key, at=at, entries=entries)
    return left


def open_grant(
    *,
    user_id: int,
    amount: int,
    kind: str,
    reason: str,
    key: str,
    at: datetime,
    pays_debt_of=None,
    settle_reason: str | None = None,
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
        text = settle_reason or _("%(amount)s DCU of arrears paid") % {
            "amount": format_micro(settle)
        }
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
    text = _("Platform voucher: %(amount)s DCU of arrears beyond 10 DCU covered") % {
        "amount": format_micro(excess)
    }
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
