"""Period processing: periods ending and starting, compute carrying over and expiring (SPEC §3.2–3.3).

How the SPEC §3.2 table maps onto rows: when a period ends, the unused part of
each of its grants that may carry moves (two ledger entries) into a new grant
of class ``carry_over`` in state ``carried``; a subscription reactivates
carried grants (state ``active``, ``may_carry`` False), which is exactly the
"activated carry-over" class that is spent first and never carries again.

Every balance change here goes through the ledger (``ledger.write``,
``ledger.open_grant``); this module changes only the grants' and
subscriptions' states and times.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from aladdin.lib.said import Said

from ..choices import GrantClass, GrantState, LedgerKind, SubscriptionState
from ..models import Account, Grant, Subscription
from . import ledger

CARRY_DAYS = 30


def next_event_at(user_id: int) -> datetime | None:
    """The earliest time a period of the user starts or ends or a grant lapses."""
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


def refresh_next_event(account: Account) -> None:
    """Store the account's next period event after its periods or grants changed."""
    account.next_event_at = next_event_at(account.user_id)
    Account.objects.filter(pk=account.pk).update(next_event_at=account.next_event_at)


def _lapse_grant(grant: Grant, *, at: datetime) -> None:
    """A grant's active life ended at ``at``: carry its rest for 30 days, or expire it."""
    rest = grant.remaining_micro
    if rest > 0 and grant.may_carry:
        carry_until = at + timedelta(days=CARRY_DAYS)
        text = Said(
            "ledger.carry",
            {"amount": rest, "date": timezone.localtime(carry_until).date().isoformat()},
        )
        entries: list[ledger.Entry] = [
            ledger.Entry(
                grant.user_id, grant.pk, -rest, LedgerKind.CARRY, text, f"carry:{grant.pk}", at
            )
        ]
        ledger.open_grant(
            user_id=grant.user_id,
            amount=rest,
            kind=LedgerKind.CARRY,
            reason=text,
            key=f"carry:{grant.pk}#to",
            at=at,
            entries=entries,
            subscription_id=grant.subscription_id,
            grant_class=GrantClass.CARRY_OVER,
            tier=grant.tier,
            state=GrantState.CARRIED,
            active_until=at,
            carry_until=carry_until,
            # Once a carry-over is activated it may not carry again (SPEC §3.3).
            may_carry=False,
            parent=grant,
        )
        ledger.write(entries)
    else:
        ledger.take_all(
            [grant],
            kind=LedgerKind.EXPIRE,
            reason=lambda g: Said("ledger.expired", {"amount": g.remaining_micro}),
            key=lambda g: f"expire:{g.pk}",
            at=at,
        )
    Grant.objects.filter(pk=grant.pk).update(state=GrantState.EXPIRED)


def _expire_carried(grant: Grant, *, at: datetime) -> None:
    ledger.take_all(
        [grant],
        kind=LedgerKind.EXPIRE,
        reason=lambda g: Said("ledger.carry_expired", {"amount": g.remaining_micro}),
        key=lambda g: f"expire:{g.pk}",
        at=at,
    )
    Grant.objects.filter(pk=grant.pk).update(state=GrantState.EXPIRED)


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
    ledger.write(
        [
            ledger.Entry(
                account.user_id,
                g.pk,
                0,
                LedgerKind.REACTIVATE,
                Said(
                    "ledger.reactivated",
                    {
                        "amount": g.remaining_micro,
                        "date": timezone.localtime(until).date().isoformat(),
                    },
                ),
                f"reactivate:{g.pk}:{key}",
                at,
            )
            for g in carried
        ]
    )


def start_subscription(account: Account, sub: Subscription, *, at: datetime) -> None:
    """Make ``sub`` the current period at ``at``: grant its compute, activate carry-over."""
    Subscription.objects.filter(pk=sub.pk).update(state=SubscriptionState.ACTIVE)
    sub.state = SubscriptionState.ACTIVE
    _reactivate_carried(account, until=sub.ends_at, at=at, key=f"sub{sub.pk}")
    if sub.plan.dcu_micro > 0:
        ledger.open_grant(
            user_id=account.user_id,
            amount=sub.plan.dcu_micro,
            kind=LedgerKind.GRANT,
            reason=Said(
                "ledger.plan_grant",
                {
                    "plan": sub.plan.name,
                    "amount": sub.plan.dcu_micro,
                    "date": timezone.localtime(sub.ends_at).date().isoformat(),
                },
            ),
            key=f"sub:{sub.pk}:grant",
            at=at,
            pays_debt_of=account,
            grant_class=GrantClass.PLAN,
            tier=sub.plan.tier,
            active_until=sub.ends_at,
            subscription=sub,
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
        assert grant.carry_until is not None  # the filter's carry_until__lte
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
        start_subscription(account, sub, at=sub.starts_at)


def process_due(account: Account, *, as_of: datetime) -> None:
    """Apply, in time order, every period event of the user up to ``as_of``.

    Level-triggered and idempotent: events are read from the rows' own times,
    so running it late (after days of downtime) or twice gives the same result.
    The account must be locked by the caller.
    """
    if account.next_event_at is None or account.next_event_at > as_of:
        return
    while True:
        t = next_event_at(account.user_id)
        if t is None or t > as_of:
            break
        _apply_events_at(account, t)
    refresh_next_event(account)


def bring_up_to_date(account: Account, *, as_of: datetime) -> None:
    """:func:`process_due`, deriving ``next_event_at`` first where rows predate it."""
    if account.next_event_at is None:
        # Rows may predate next_event_at (or be written by a data fix): derive it.
        refresh_next_event(account)
    process_due(account, as_of=as_of)


@transaction.atomic
def billing_process_user(*, user, as_of: datetime | None = None) -> None:
    """Bring one user's periods and grants up to ``as_of`` (default now)."""
    as_of = as_of or timezone.now()
    bring_up_to_date(ledger.lock_account(user), as_of=as_of)


def billing_process_due(*, as_of: datetime | None = None) -> int:
    """Process every user with an event due by ``as_of``; returns how many users."""
    as_of = as_of or timezone.now()
    user_ids = list(
        Account.objects.filter(next_event_at__lte=as_of)
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )
    User = get_user_model()
    for user_id in user_ids:
        billing_process_user(user=User(pk=user_id), as_of=as_of)
    return len(user_ids)
