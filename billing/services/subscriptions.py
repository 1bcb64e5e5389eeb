"""Subscribing, upgrading, renewing and extension packs, exactly as SPEC §3.2's table says."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin.lib.said import Said

from .. import selectors
from ..choices import GrantClass, GrantState, LedgerKind, PlanKind, SubscriptionState
from ..models import Grant, Plan, Subscription
from . import ledger, periods
from .ledger import BillingError


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
    account = ledger.lock_account(user)
    periods.bring_up_to_date(account, as_of=at)
    period = timedelta(days=plan.period_days)
    current = selectors.current_subscription(user, at)

    if current is None:
        sub = Subscription.objects.create(
            user_id=user.pk,
            plan=plan,
            starts_at=at,
            ends_at=at + period,
            state=SubscriptionState.QUEUED,
            source=source,
        )
        periods.start_subscription(account, sub, at=at)
    elif (plan.tier or 0) > (current.plan.tier or 0):  # packs never get here
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
        periods.start_subscription(account, sub, at=at)
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
    periods.refresh_next_event(account)
    return sub


@transaction.atomic
def extension_pack_buy(*, user, plan: Plan, source: str = "", at: datetime | None = None) -> Grant:
    """Grant an extension pack; it lives and carries like the current period's compute."""
    at = at or timezone.now()
    if plan.kind != PlanKind.EXTENSION:
        raise BillingError(_("%(plan)s is not an extension pack.") % {"plan": plan.name})
    account = ledger.lock_account(user)
    periods.bring_up_to_date(account, as_of=at)
    current = selectors.current_subscription(user, at)
    if current is None:
        raise BillingError(
            _("An extension pack needs an active plan. Subscribe to a plan first, then add packs.")
        )
    grant = ledger.open_grant(
        user_id=account.user_id,
        amount=plan.dcu_micro,
        kind=LedgerKind.GRANT,
        reason=Said(
            "ledger.plan_grant",
            {
                "plan": plan.name,
                "amount": plan.dcu_micro,
                "date": timezone.localtime(current.ends_at).date().isoformat(),
            },
        ),
        key=f"pack:{source}" if source else f"pack:{user.pk}:{at.isoformat()}",
        at=at,
        pays_debt_of=account,
        grant_class=GrantClass.EXTENSION,
        active_until=current.ends_at,
        subscription=current,
    )
    periods.refresh_next_event(account)
    return grant
