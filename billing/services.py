"""Billing writes: subscriptions, grants, charges, debt, period processing (SPEC §3).

Every function here that changes a balance:

- locks the user's Account row first (``select_for_update``, evaluated), so two
  writers for one user serialise and none loses an update;
- changes a grant's ``remaining_micro`` only together with a LedgerEntry;
- gives every ledger entry a unique idempotency key, so an event applied twice
  inserts nothing the second time (DESIGN rules 5 and 6).

Invariant (checked by the property tests): the sum of a user's ledger equals
the sum of their grants' remaining compute minus their debt.

How the SPEC §3.2 table maps onto rows: when a period ends, the unused part of
each of its grants that may carry moves (two ledger entries) into a new grant
of class ``carry_over`` in state ``carried``; a subscription reactivates
carried grants (state ``active``, ``may_carry`` False), which is exactly the
"activated carry-over" class that is spent first and never carries again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max, Min, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin.lib.units import format_micro

from .choices import (
    GRANT_CLASS_RANK,
    GrantClass,
    GrantState,
    LedgerKind,
    PlanKind,
    SubscriptionState,
)
from .models import Account, ArrearsReview, Grant, LedgerEntry, Plan, Subscription

DCU = 1_000_000
CARRY_DAYS = 30
# SPEC §3.5: the user never bears more than 10 DCU of arrears.
ARREARS_CAP_MICRO = 10 * DCU

CHARGE_KINDS = {"gpu", "cpu", "storage", "test"}

# Test-only switch for the property tests' canary: when True, plan compute is
# spent before carry-over and packs, which breaks SPEC §3.4 on purpose so the
# state machine can prove that it notices. Never set outside tests.
_SPEND_ORDER_SWAPPED = False


class BillingError(ValidationError):
    """A billing rule refused the request; the message tells the user what to do."""


@dataclass(frozen=True)
class ChargeResult:
    """What a charge did. ``exhausted``: no active compute is left afterwards."""

    charged_micro: int
    debt_micro: int
    exhausted: bool
    replayed: bool = False


# --- locking and derived state ------------------------------------------------


def _lock_account(user) -> Account:
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
    return _lock_account(user)


def _chunks(items: list, size: int = 500):
    # SQLite allows ~32k bound variables per statement; stay far below.
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _next_event_at(user_id: int) -> datetime | None:
    candidates = [
        Grant.objects.filter(user_id=user_id, state=GrantState.ACTIVE).aggregate(
            t=Min("active_until")
        )["t"],
        Grant.objects.filter(user_id=user_id, state=GrantState.CARRIED).aggregate(
            t=Min("carry_until")
        )["t"],
        Subscription.objects.filter(user_id=user_id, state=SubscriptionState.QUEUED).aggregate(
            t=Min("starts_at")
        )["t"],
        Subscription.objects.filter(user_id=user_id, state=SubscriptionState.ACTIVE).aggregate(
            t=Min("ends_at")
        )["t"],
    ]
    times = [t for t in candidates if t is not None]
    return min(times) if times else None


def _refresh_next_event(account: Account) -> None:
    account.next_event_at = _next_event_at(account.user_id)
    Account.objects.filter(pk=account.pk).update(next_event_at=account.next_event_at)


def _entry(
    *, user_id: int, grant: Grant | None, delta: int, kind: str, reason: str, key: str, at
) -> LedgerEntry:
    return LedgerEntry(
        user_id=user_id,
        grant=grant,
        delta_micro=delta,
        kind=kind,
        reason=reason,
        idempotency_key=key,
        created_at=at,
    )


def _debt_paid_by(
    grant: Grant, amount: int, *, user_id: int, reason: str, keys: tuple[str, str], at
) -> list[LedgerEntry]:
    """The two entries of ``grant`` paying ``amount`` of debt: out of the grant, off the debt.

    Debt entries have no grant, so the ledger sum stays Σ remaining − debt.
    """
    return [
        _entry(
            user_id=user_id,
            grant=grant,
            delta=-amount,
            kind=LedgerKind.DEBT_SETTLE,
            reason=reason,
            key=keys[0],
            at=at,
        ),
        _entry(
            user_id=user_id,
            grant=None,
            delta=amount,
            kind=LedgerKind.DEBT_SETTLE,
            reason=reason,
            key=keys[1],
            at=at,
        ),
    ]


def _new_grant(
    *,
    account: Account,
    grant_class: str,
    amount: int,
    active_until: datetime,
    key: str,
    reason: str,
    at: datetime,
    tier: int | None = None,
    subscription: Subscription | None = None,
    may_carry: bool = True,
    kind: str = LedgerKind.GRANT,
) -> Grant:
    """Create a grant and its ledger entry; the new compute pays debt first."""
    grant = Grant.objects.create(
        user_id=account.user_id,
        subscription=subscription,
        grant_class=grant_class,
        tier=tier,
        granted_micro=amount,
        remaining_micro=amount,
        state=GrantState.ACTIVE,
        active_until=active_until,
        may_carry=may_carry,
    )
    entries = [
        _entry(
            user_id=account.user_id,
            grant=grant,
            delta=amount,
            kind=kind,
            reason=reason,
            key=key,
            at=at,
        )
    ]
    settle = min(account.debt_micro, amount)
    if settle > 0:
        # SPEC §3.2: "the next grant pays it first".
        grant.remaining_micro -= settle
        Grant.objects.filter(pk=grant.pk).update(remaining_micro=grant.remaining_micro)
        account.debt_micro -= settle
        Account.objects.filter(pk=account.pk).update(debt_micro=account.debt_micro)
        text = _("%(amount)s DCU of arrears paid") % {"amount": format_micro(settle)}
        entries += _debt_paid_by(
            grant,
            settle,
            user_id=account.user_id,
            reason=text,
            keys=(f"{key}#settle", f"{key}#settle-debt"),
            at=at,
        )
    LedgerEntry.objects.bulk_create(entries)
    return grant


# --- period processing ------------------------------------------------------------


def _lapse_grant(grant: Grant, *, at: datetime) -> None:
    """A grant's active life ended at ``at``: carry its rest for 30 days, or expire it."""
    user_id = grant.user_id
    rest = grant.remaining_micro
    entries = []
    if rest > 0 and grant.may_carry:
        carried = Grant.objects.create(
            user_id=user_id,
            subscription=grant.subscription,
            grant_class=GrantClass.CARRY_OVER,
            tier=grant.tier,
            granted_micro=rest,
            remaining_micro=rest,
            state=GrantState.CARRIED,
            active_until=at,
            carry_until=at + timedelta(days=CARRY_DAYS),
            # Once a carry-over is activated it may not carry again (SPEC §3.3).
            may_carry=False,
            parent=grant,
        )
        text = _("%(amount)s DCU unused at the end of the period, carried over until %(date)s") % {
            "amount": format_micro(rest),
            "date": timezone.localtime(carried.carry_until).date().isoformat(),
        }
        entries += [
            _entry(
                user_id=user_id,
                grant=grant,
                delta=-rest,
                kind=LedgerKind.CARRY,
                reason=text,
                key=f"carry:{grant.pk}",
                at=at,
            ),
            _entry(
                user_id=user_id,
                grant=carried,
                delta=rest,
                kind=LedgerKind.CARRY,
                reason=text,
                key=f"carry:{grant.pk}#to",
                at=at,
            ),
        ]
    elif rest > 0:
        entries.append(
            _entry(
                user_id=user_id,
                grant=grant,
                delta=-rest,
                kind=LedgerKind.EXPIRE,
                reason=_("%(amount)s DCU expired") % {"amount": format_micro(rest)},
                key=f"expire:{grant.pk}",
                at=at,
            )
        )
    LedgerEntry.objects.bulk_create(entries)
    Grant.objects.filter(pk=grant.pk).update(state=GrantState.EXPIRED, remaining_micro=0)


def _expire_carried(grant: Grant, *, at: datetime) -> None:
    if grant.remaining_micro > 0:
        LedgerEntry.objects.create(
            user_id=grant.user_id,
            grant=grant,
            delta_micro=-grant.remaining_micro,
            kind=LedgerKind.EXPIRE,
            reason=_("%(amount)s DCU of carried-over compute expired after 30 days")
            % {"amount": format_micro(grant.remaining_micro)},
            idempotency_key=f"expire:{grant.pk}",
            created_at=at,
        )
    Grant.objects.filter(pk=grant.pk).update(state=GrantState.EXPIRED, remaining_micro=0)


def _reactivate_carried(account: Account, *, until: datetime, at: datetime, key: str) -> None:
    """A subscription activates carried compute until its period ends (SPEC §3.3)."""
    carried = list(
        Grant.objects.filter(
            user_id=account.user_id, state=GrantState.CARRIED, carry_until__gt=at
        ).order_by("pk")
    )
    if not carried:
        return
    Grant.objects.filter(pk__in=[g.pk for g in carried]).update(
        state=GrantState.ACTIVE, active_until=until, may_carry=False
    )
    # The amounts do not change, but the user's active balance does: the
    # ledger says so with zero-amount entries.
    LedgerEntry.objects.bulk_create(
        _entry(
            user_id=account.user_id,
            grant=g,
            delta=0,
            kind=LedgerKind.REACTIVATE,
            reason=_("%(amount)s DCU of carried-over compute active again until %(date)s")
            % {
                "amount": format_micro(g.remaining_micro),
                "date": timezone.localtime(until).date().isoformat(),
            },
            key=f"reactivate:{g.pk}:{key}",
            at=at,
        )
        for g in carried
    )


def _start_subscription(account: Account, sub: Subscription, *, at: datetime) -> None:
    """Make ``sub`` the current period at ``at``: grant its compute, activate carry-over."""
    Subscription.objects.filter(pk=sub.pk).update(state=SubscriptionState.ACTIVE)
    sub.state = SubscriptionState.ACTIVE
    _reactivate_carried(account, until=sub.ends_at, at=at, key=f"sub{sub.pk}")
    if sub.plan.dcu_micro > 0:
        _new_grant(
            account=account,
            grant_class=GrantClass.PLAN,
            tier=sub.plan.tier,
            amount=sub.plan.dcu_micro,
            active_until=sub.ends_at,
            subscription=sub,
            key=f"sub:{sub.pk}:grant",
            reason=_("%(plan)s: %(amount)s DCU until %(date)s")
            % {
                "plan": sub.plan.name,
                "amount": format_micro(sub.plan.dcu_micro),
                "date": timezone.localtime(sub.ends_at).date().isoformat(),
            },
            at=at,
        )


def _apply_events_at(account: Account, t: datetime) -> None:
    user_id = account.user_id
    # 1. Periods that end.
    Subscription.objects.filter(
        user_id=user_id, state=SubscriptionState.ACTIVE, ends_at__lte=t
    ).update(state=SubscriptionState.ENDED)
    # 2. Grants whose active life ends: carry or expire.
    for grant in Grant.objects.filter(
        user_id=user_id, state=GrantState.ACTIVE, active_until__lte=t
    ).order_by("pk"):
        _lapse_grant(grant, at=grant.active_until)
    # 3. Carry-over not reactivated within 30 days.
    for grant in Grant.objects.filter(
        user_id=user_id, state=GrantState.CARRIED, carry_until__lte=t
    ).order_by("pk"):
        _expire_carried(grant, at=grant.carry_until)
    # 4. Queued periods that start now (after 2: the leftover just carried is
    #    reactivated at once and may not carry again — SPEC §3.2).
    for sub in (
        Subscription.objects.filter(
            user_id=user_id, state=SubscriptionState.QUEUED, starts_at__lte=t
        )
        .select_related("plan")
        .order_by("starts_at", "pk")
    ):
        _start_subscription(account, sub, at=sub.starts_at)


def _process_due(account: Account, *, as_of: datetime) -> None:
    """Apply, in time order, every period event of the user up to ``as_of``.

    Level-triggered and idempotent: events are read from the rows' own times,
    so running it late (after days of downtime) or twice gives the same result.
    """
    if account.next_event_at is None or account.next_event_at > as_of:
        return
    while True:
        t = _next_event_at(account.user_id)
        if t is None or t > as_of:
            break
        _apply_events_at(account, t)
    _refresh_next_event(account)


@transaction.atomic
def billing_process_user(*, user, as_of: datetime | None = None) -> None:
    """Bring one user's periods and grants up to ``as_of`` (default now)."""
    as_of = as_of or timezone.now()
    account = _lock_account(user)
    if account.next_event_at is None:
        # Rows may predate next_event_at (or be written by a data fix): derive it.
        _refresh_next_event(account)
    _process_due(account, as_of=as_of)


def billing_process_due(*, as_of: datetime | None = None) -> int:
    """Process every user with an event due by ``as_of``; returns how many users."""
    as_of = as_of or timezone.now()
    user_ids = list(
        Account.objects.filter(next_event_at__lte=as_of)
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )
    from django.contrib.auth import get_user_model

    User = get_user_model()
    for user_id in user_ids:
        billing_process_user(user=User(pk=user_id), as_of=as_of)
    return len(user_ids)


# --- subscriptions and purchases ---------------------------------------------------


def _current_subscription(user_id: int, at: datetime) -> Subscription | None:
    return (
        Subscription.objects.filter(
            user_id=user_id, state=SubscriptionState.ACTIVE, starts_at__lte=at, ends_at__gt=at
        )
        .select_related("plan")
        .order_by("-plan__tier", "-ends_at")
        .first()
    )


@transaction.atomic
def subscription_create(
    *, user, plan: Plan, source: str = "", at: datetime | None = None
) -> Subscription:
    """Subscribe ``user`` to ``plan`` exactly as SPEC §3.2's table says.

    No plan active: starts now. A higher tier: upgrade now (earlier compute
    refreshed to the new end, queued periods shifted after it). Same or lower
    tier: queued after the last period. Returns the new Subscription.
    """
    at = at or timezone.now()
    if plan.kind != PlanKind.PLAN or not plan.tier:
        raise BillingError(_("%(plan)s is not a subscription plan.") % {"plan": plan.name})
    account = _lock_account(user)
    if account.next_event_at is None:
        _refresh_next_event(account)
    _process_due(account, as_of=at)
    period = timedelta(days=plan.period_days)
    current = _current_subscription(user.pk, at)

    if current is None:
        sub = Subscription.objects.create(
            user_id=user.pk,
            plan=plan,
            starts_at=at,
            ends_at=at + period,
            state=SubscriptionState.QUEUED,
            source=source,
        )
        _start_subscription(account, sub, at=at)
    elif plan.tier > current.plan.tier:
        new_end = at + period
        Subscription.objects.filter(pk=current.pk).update(state=SubscriptionState.ENDED, ends_at=at)
        sub = Subscription.objects.create(
            user_id=user.pk,
            plan=plan,
            starts_at=at,
            ends_at=new_end,
            state=SubscriptionState.QUEUED,
            source=source,
        )
        # Earlier compute stays active to the new period's end; may_carry is
        # kept as it was (old plan compute may still carry, activated
        # carry-over may not).
        Grant.objects.filter(user_id=user.pk, state=GrantState.ACTIVE, active_until__gt=at).update(
            active_until=new_end
        )
        _start_subscription(account, sub, at=at)
        # Queued periods move behind the new one, keeping their order.
        start = new_end
        for queued in Subscription.objects.filter(
            user_id=user.pk, state=SubscriptionState.QUEUED
        ).order_by("starts_at", "pk"):
            length = queued.ends_at - queued.starts_at
            Subscription.objects.filter(pk=queued.pk).update(
                starts_at=start, ends_at=start + length
            )
            start += length
    else:
        last_end = Subscription.objects.filter(
            user_id=user.pk, state__in=[SubscriptionState.ACTIVE, SubscriptionState.QUEUED]
        ).aggregate(last=Max("ends_at"))["last"]
        sub = Subscription.objects.create(
            user_id=user.pk,
            plan=plan,
            starts_at=last_end,
            ends_at=last_end + period,
            state=SubscriptionState.QUEUED,
            source=source,
        )
    _refresh_next_event(account)
    return sub


@transaction.atomic
def extension_pack_buy(*, user, plan: Plan, source: str = "", at: datetime | None = None) -> Grant:
    """Grant an extension pack; it lives and carries like the current period's compute."""
    at = at or timezone.now()
    if plan.kind != PlanKind.EXTENSION:
        raise BillingError(_("%(plan)s is not an extension pack.") % {"plan": plan.name})
    account = _lock_account(user)
    if account.next_event_at is None:
        _refresh_next_event(account)
    _process_due(account, as_of=at)
    current = _current_subscription(user.pk, at)
    if current is None:
        raise BillingError(
            _("An extension pack needs an active plan. Subscribe to a plan first, then add packs.")
        )
    grant = _new_grant(
        account=account,
        grant_class=GrantClass.EXTENSION,
        amount=plan.dcu_micro,
        active_until=current.ends_at,
        subscription=current,
        key=f"pack:{source}" if source else f"pack:{user.pk}:{at.isoformat()}",
        reason=_("%(plan)s: %(amount)s DCU until %(date)s")
        % {
            "plan": plan.name,
            "amount": format_micro(plan.dcu_micro),
            "date": timezone.localtime(current.ends_at).date().isoformat(),
        },
        at=at,
    )
    _refresh_next_event(account)
    return grant


@transaction.atomic
def voucher_grant(
    *, user, amount_micro: int, reason: str, key: str, actor=None, at: datetime | None = None
) -> Grant:
    """Staff give compute; it counts as an extension pack (SPEC §3.4 decision).

    With an active plan it lives and carries like that period's packs; without
    one it is active for 30 days and does not carry.
    """
    at = at or timezone.now()
    if amount_micro <= 0:
        raise BillingError(_("A voucher must be worth more than 0 DCU."))
    if not reason.strip():
        raise BillingError(_("A reason is required for a voucher."))
    account = _lock_account(user)
    if account.next_event_at is None:
        _refresh_next_event(account)
    _process_due(account, as_of=at)
    existing = LedgerEntry.objects.filter(idempotency_key=f"voucher:{key}").first()
    if existing is not None:
        return existing.grant
    current = _current_subscription(user.pk, at)
    grant = _new_grant(
        account=account,
        grant_class=GrantClass.EXTENSION,
        amount=amount_micro,
        active_until=current.ends_at if current else at + timedelta(days=CARRY_DAYS),
        subscription=current,
        may_carry=current is not None,
        key=f"voucher:{key}",
        reason=reason,
        at=at,
        kind=LedgerKind.VOUCHER,
    )
    if actor is not None:
        from aladdin.accounts.models import StaffAction

        StaffAction.objects.create(
            actor=actor,
            target_user_id=user.pk,
            action="voucher",
            reason=reason,
            details={"amount_micro": amount_micro, "grant": grant.pk},
        )
    _refresh_next_event(account)
    return grant


# --- charges -------------------------------------------------------------------------


def _replayed_result(user_id: int, key: str) -> ChargeResult:
    entries = LedgerEntry.objects.filter(user_id=user_id).filter(
        Q(idempotency_key=key) | Q(idempotency_key__startswith=f"{key}#")
    )
    charged = debt = 0
    for e in entries:
        if e.kind == LedgerKind.CHARGE:
            charged -= e.delta_micro
        elif e.kind == LedgerKind.DEBT:
            debt -= e.delta_micro
    return ChargeResult(charged_micro=charged, debt_micro=debt, exhausted=debt > 0, replayed=True)


def _spending_order(user_id: int, at: datetime) -> list[Grant]:
    from .selectors import spending_order

    grants = list(spending_order(user_id, at))
    if _SPEND_ORDER_SWAPPED:
        grants.reverse()
    return grants


def _charge_locked(
    account: Account, *, key: str, amount_micro: int, reason: str, at: datetime
) -> ChargeResult:
    user_id = account.user_id
    if LedgerEntry.objects.filter(idempotency_key=key).exists():
        return _replayed_result(user_id, key)
    _process_due(account, as_of=at)
    left = amount_micro
    entries: list[LedgerEntry] = []
    updated: list[Grant] = []
    grants = _spending_order(user_id, at)
    for grant in grants:
        if left == 0:
            break
        take = min(grant.remaining_micro, left)
        if take == 0:
            continue
        grant.remaining_micro -= take
        left -= take
        updated.append(grant)
        entries.append(
            _entry(
                user_id=user_id,
                grant=grant,
                delta=-take,
                kind=LedgerKind.CHARGE,
                reason=reason,
                key=key if not entries else f"{key}#{len(entries) + 1}",
                at=at,
            )
        )
    if left > 0:
        # What the active balance cannot pay becomes arrears (SPEC §3.2).
        entries.append(
            _entry(
                user_id=user_id,
                grant=None,
                delta=-left,
                kind=LedgerKind.DEBT,
                reason=reason,
                key=key if not entries else f"{key}#debt",
                at=at,
            )
        )
    if updated:
        Grant.objects.bulk_update(updated, ["remaining_micro"])
    LedgerEntry.objects.bulk_create(entries)
    if left > 0:
        account.debt_micro += left
        Account.objects.filter(pk=account.pk).update(debt_micro=account.debt_micro)
        _cap_arrears(account, at=at, key=key)
    exhausted = left > 0 or all(g.remaining_micro == 0 for g in grants)
    return ChargeResult(charged_micro=amount_micro - left, debt_micro=left, exhausted=exhausted)


def _full_key(kind: str, key: str) -> str:
    if kind not in CHARGE_KINDS:
        raise ValueError(f"unknown charge kind {kind!r}")
    return f"{kind}:{key}"


@transaction.atomic
def charge(
    *, user, kind: str, key: str, amount_micro: int, reason: str, at: datetime | None = None
) -> ChargeResult:
    """Spend ``amount_micro`` of the user's active compute (SPEC §3.4 order).

    ``kind`` prefixes the idempotency key ("gpu", "storage", …): the same
    (kind, key) charged twice is applied once and the second call returns the
    first result with ``replayed=True``. What the balance cannot pay becomes
    debt; arrears beyond 10 DCU are covered by an automatic voucher.
    """
    if amount_micro < 0:
        raise ValueError("a charge cannot be negative")
    at = at or timezone.now()
    full_key = _full_key(kind, key)
    account = _lock_account(user)
    if amount_micro == 0:
        # Nothing to spend, but a key seen before still answers as a replay.
        if LedgerEntry.objects.filter(idempotency_key=full_key).exists():
            return _replayed_result(user.pk, full_key)
        return ChargeResult(0, 0, exhausted=False)
    return _charge_locked(account, key=full_key, amount_micro=amount_micro, reason=reason, at=at)


@dataclass(frozen=True)
class ChargeRequest:
    user_id: int
    kind: str
    key: str
    amount_micro: int
    reason: str


def _spend_rank(grant: Grant) -> tuple:
    """SPEC §3.4 order as a sort key; the same order as selectors.spending_order."""
    tier = (grant.tier or 0) if grant.grant_class == GrantClass.PLAN else 0
    return (GRANT_CLASS_RANK[grant.grant_class], tier, grant.active_until, grant.pk)


@transaction.atomic
def charge_batch(
    *, requests: list[ChargeRequest], at: datetime | None = None
) -> dict[str, ChargeResult]:
    """Apply many charges in one transaction (a metering tick): same rules as charge().

    Built for thousands of users per tick: accounts are locked in user order
    (concurrent batches cannot deadlock), then known keys, spendable grants
    and the writes each take one statement per chunk instead of one per
    charge. Charges that go into debt take the single-charge path (rare).
    Returns results by full idempotency key.
    """
    at = at or timezone.now()
    due = _lock_account_ids([r.user_id for r in requests], at=at)
    for account in due:
        _process_due(account, as_of=at)

    keyed = [(_full_key(r.kind, r.key), r) for r in requests]
    known: set[str] = set()
    for chunk in _chunks([k for k, _r in keyed]):
        known.update(
            LedgerEntry.objects.filter(idempotency_key__in=chunk).values_list(
                "idempotency_key", flat=True
            )
        )
    # Plain tuples, not model instances: at 10,000 users building ~30,000
    # Grant objects was most of the time (see docs/benchmarks.md).
    grants: dict[int, list[_BatchGrant]] = {}
    user_ids = sorted({r.user_id for r in requests})
    for chunk in _chunks(user_ids):
        for row in Grant.objects.filter(
            user_id__in=chunk, state=GrantState.ACTIVE, active_until__gt=at
        ).values_list("pk", "user_id", "grant_class", "tier", "active_until", "remaining_micro"):
            grant = _BatchGrant(*row)
            grants.setdefault(grant.user_id, []).append(grant)
    for user_grants in grants.values():
        user_grants.sort(key=_spend_rank, reverse=_SPEND_ORDER_SWAPPED)

    results: dict[str, ChargeResult] = {}
    entries: list[LedgerEntry] = []
    touched: dict[int, _BatchGrant] = {}
    for full_key, request in sorted(keyed, key=lambda kr: kr[1].user_id):
        if full_key in results:
            continue  # the same key twice in one batch: applied once
        if full_key in known:
            results[full_key] = _replayed_result(request.user_id, full_key)
            continue
        if request.amount_micro <= 0:
            results[full_key] = ChargeResult(0, 0, exhausted=False)
            continue
        user_grants = grants.get(request.user_id, [])
        if sum(g.remaining_micro for g in user_grants) < request.amount_micro:
            # Into debt: write what is pending first, then the full path.
            _flush_batch(entries, touched)
            account = Account.objects.get(user_id=request.user_id)  # locked above
            results[full_key] = _charge_locked(
                account,
                key=full_key,
                amount_micro=request.amount_micro,
                reason=request.reason,
                at=at,
            )
            remaining = dict(
                Grant.objects.filter(pk__in=[g.pk for g in user_grants]).values_list(
                    "pk", "remaining_micro"
                )
            )
            for g in user_grants:
                g.remaining_micro = remaining[g.pk]
            continue
        left = request.amount_micro
        n = 0
        for grant in user_grants:
            take = min(grant.remaining_micro, left)
            if take == 0:
                continue
            grant.remaining_micro -= take
            left -= take
            touched[grant.pk] = grant
            entries.append(
                LedgerEntry(
                    user_id=request.user_id,
                    grant_id=grant.pk,
                    delta_micro=-take,
                    kind=LedgerKind.CHARGE,
                    reason=request.reason,
                    idempotency_key=full_key if n == 0 else f"{full_key}#{n + 1}",
                    created_at=at,
                )
            )
            n += 1
            if left == 0:
                break
        results[full_key] = ChargeResult(
            charged_micro=request.amount_micro,
            debt_micro=0,
            exhausted=all(g.remaining_micro == 0 for g in user_grants),
        )
    _flush_batch(entries, touched)
    return results


class _BatchGrant:
    """The columns of a grant that a batch charge reads and writes."""

    __slots__ = ("pk", "user_id", "grant_class", "tier", "active_until", "remaining_micro")

    def __init__(self, pk, user_id, grant_class, tier, active_until, remaining_micro):
        self.pk = pk
        self.user_id = user_id
        self.grant_class = grant_class
        self.tier = tier
        self.active_until = active_until
        self.remaining_micro = remaining_micro


def _lock_account_ids(user_ids: Iterable[int], *, at: datetime) -> list[Account]:
    """Lock the batch's accounts in user order; return those with a period event due.

    Only due accounts become model instances (period processing needs them).
    """
    ids = sorted(set(user_ids))
    existing: set[int] = set()
    due_ids: list[int] = []
    for chunk in _chunks(ids):
        for user_id, next_event_at in (
            Account.objects.select_for_update()
            .filter(user_id__in=chunk)
            .order_by("user_id")
            .values_list("user_id", "next_event_at")
        ):
            existing.add(user_id)
            if next_event_at is not None and next_event_at <= at:
                due_ids.append(user_id)
    missing = [Account(user_id=i) for i in ids if i not in existing]
    if missing:
        Account.objects.bulk_create(missing, ignore_conflicts=True)
    due = []
    for chunk in _chunks(due_ids):
        due.extend(
            Account.objects.select_for_update().filter(user_id__in=chunk).order_by("user_id")
        )
    return due


def _flush_batch(entries: list[LedgerEntry], touched: dict) -> None:
    """Write a batch's ledger entries and grant remainders (under the account locks)."""
    if touched:
        # One prepared UPDATE run for every grant; bulk_update's CASE WHEN
        # costs several times more for thousands of rows.
        with connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE billing_grant SET remaining_micro = %s WHERE id = %s",
                [(g.remaining_micro, g.pk) for g in touched.values()],
            )
    if entries:
        LedgerEntry.objects.bulk_create(entries, batch_size=500)
    entries.clear()
    touched.clear()


def storage_fee_charge(*, user, day, amount_micro: int, reason: str) -> ChargeResult:
    """The storage fee of one Asia/Shanghai day; charged even into arrears (SPEC §3.5)."""
    return charge(
        user=user,
        kind="storage",
        key=f"{user.pk}:{day.isoformat()}",
        amount_micro=amount_micro,
        reason=reason,
    )


def _cap_arrears(account: Account, *, at: datetime, key: str) -> None:
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
    # extension-pack voucher, at once; it pays that excess and nothing else.
    voucher = Grant.objects.create(
        user_id=account.user_id,
        grant_class=GrantClass.EXTENSION,
        granted_micro=excess,
        remaining_micro=0,
        state=GrantState.EXPIRED,
        active_until=at,
        may_carry=False,
    )
    text = _("Platform voucher: %(amount)s DCU of arrears beyond 10 DCU covered") % {
        "amount": format_micro(excess)
    }
    LedgerEntry.objects.bulk_create(
        [
            _entry(
                user_id=account.user_id,
                grant=voucher,
                delta=excess,
                kind=LedgerKind.VOUCHER,
                reason=text,
                key=f"{key}#voucher",
                at=at,
            ),
            *_debt_paid_by(
                voucher,
                excess,
                user_id=account.user_id,
                reason=text,
                keys=(f"{key}#voucher-settle", f"{key}#voucher-debt"),
                at=at,
            ),
        ]
    )
    account.debt_micro = ARREARS_CAP_MICRO
    Account.objects.filter(pk=account.pk).update(debt_micro=account.debt_micro)


@transaction.atomic
def billing_forfeit_all(*, user, reason: str, at: datetime | None = None) -> int:
    """Clear every grant, active or carried, and end every period (a ban). Returns µDCU cleared."""
    at = at or timezone.now()
    account = _lock_account(user)
    cleared = 0
    entries = []
    grants = list(
        Grant.objects.filter(
            user_id=user.pk, state__in=[GrantState.ACTIVE, GrantState.CARRIED]
        ).order_by("pk")
    )
    for grant in grants:
        if grant.remaining_micro > 0:
            cleared += grant.remaining_micro
            entries.append(
                _entry(
                    user_id=user.pk,
                    grant=grant,
                    delta=-grant.remaining_micro,
                    kind=LedgerKind.FORFEIT,
                    reason=reason,
                    key=f"forfeit:{grant.pk}",
                    at=at,
                )
            )
    LedgerEntry.objects.bulk_create(entries)
    Grant.objects.filter(pk__in=[g.pk for g in grants]).update(
        state=GrantState.EXPIRED, remaining_micro=0
    )
    Subscription.objects.filter(user_id=user.pk, state=SubscriptionState.QUEUED).update(
        state=SubscriptionState.ENDED
    )
    Subscription.objects.filter(user_id=user.pk, state=SubscriptionState.ACTIVE).update(
        state=SubscriptionState.ENDED, ends_at=at
    )
    _refresh_next_event(account)
    return cleared


@transaction.atomic
def arrears_review_decide(
    *, review: ArrearsReview, actor, decision: str, note: str
) -> ArrearsReview:
    """Record a staff decision on an arrears review (who, when, what, why)."""
    if decision not in {c for c, _l in ArrearsReview.Decision.choices} - {"pending"}:
        raise BillingError(_("Choose clean, hold or contact."))
    review = ArrearsReview.objects.select_for_update().get(pk=review.pk)
    review.decision = decision
    review.decided_by = actor
    review.decided_at = timezone.now()
    review.note = note
    review.save(update_fields=["decision", "decided_by", "decided_at", "note"])
    from aladdin.accounts.models import StaffAction

    StaffAction.objects.create(
        actor=actor,
        target_user_id=review.user_id,
        action=f"arrears_{decision}",
        reason=note,
        details={"review": review.pk},
    )
    return review
