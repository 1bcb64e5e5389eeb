"""Reads of the billing core. Writes live in billing/services.py."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max, Q, QuerySet, Sum
from django.utils import timezone

from aladdin.lib.timeutil import month_bounds

from .choices import (
    GrantState,
    LedgerKind,
    PlanKind,
    SubscriptionState,
)
from .models import (
    Account,
    Budget,
    Grant,
    LedgerEntry,
    Order,
    Plan,
    Refund,
    Subscription,
)


def account_for(user) -> Account:
    """The user's billing account, created on first use."""
    account, _created = Account.objects.get_or_create(user=user)
    return account


def _spendable(user, at: datetime) -> QuerySet[Grant]:
    return Grant.objects.filter(user=user, state=GrantState.ACTIVE, active_until__gt=at)


def active_balance_micro(user, at: datetime) -> int:
    """Spendable compute at ``at``, in µDCU: active grants not yet past ``active_until``.

    Carried (inactive) and expired grants are excluded (SPEC §3.5). Summing a
    BigIntegerField is exact on SQLite, unlike a decimal column.
    """
    total = _spendable(user, at).aggregate(total=Sum("remaining_micro"))["total"]
    return int(total or 0)


def carried_grants(user) -> QuerySet[Grant]:
    """Carried-over (inactive) grants, the one that lapses first first (SPEC §3.3)."""
    return Grant.objects.filter(user=user, state=GrantState.CARRIED).order_by("carry_until", "pk")


def spending_order(user, at: datetime) -> list[Grant]:
    """Active grants in the order compute is spent (SPEC §3.4).

    The order is the ledger's ``spend_rank``, the one definition of it.
    """
    from .services.ledger import spend_rank

    return sorted(_spendable(user, at), key=spend_rank)


class _Unread:
    """The type of :data:`UNREAD`."""


# A selector's ``current=`` default: "read the current subscription yourself".
# None is an answer (no plan in force), so it cannot mean "not read yet". A
# page that shows the balance, the offers and the plan reads it once and
# passes it on (each read is a join and a sort, a tenth of a page's time).
UNREAD = _Unread()


def current_subscription(user, at: datetime | None = None) -> Subscription | None:
    """The period in force at ``at``: the highest tier among active ones."""
    at = at or timezone.now()
    return (
        Subscription.objects.filter(
            user=user, state=SubscriptionState.ACTIVE, starts_at__lte=at, ends_at__gt=at
        )
        .select_related("plan")
        .order_by("-plan__tier", "-ends_at")
        .first()
    )


def order_invoiceable(order: Order) -> bool:
    """Whether an invoice can be asked for ``order``: paid, and not refunded in full (SPEC §5).

    The one statement of the rule: the orders page, the invoice page and
    ``payments.invoice_request`` all ask here. One invoice per order is
    checked apart (the page shows the request made).
    """
    return order.state in {Order.State.PAID, Order.State.PARTLY_REFUNDED}


def free_plan() -> Plan:
    # The free tier is seeded as data (not for sale, hence no is_active filter).
    return Plan.objects.get(code="free")


def current_plan(user, at: datetime | None = None) -> Plan:
    """The plan whose allowances apply now; the free tier when none is active."""
    return plan_of(current_subscription(user, at))


def plan_of(subscription: Subscription | None) -> Plan:
    """The plan of a subscription already read (``current_subscription``); the free tier for None."""
    return subscription.plan if subscription is not None else free_plan()


def gpu_parallelism(user, at: datetime | None = None) -> int:
    """GPU parallelism of the highest tier active now (SPEC §3.2)."""
    return current_plan(user, at).gpu_parallelism


def storage_free_gib(user, at: datetime | None = None) -> int:
    """Storage included free of charge by the current plan, in GiB."""
    return current_plan(user, at).free_storage_gib


def storage_max_gib(user, at: datetime | None = None) -> int:
    """The largest storage allowance the current plan allows, in GiB."""
    return current_plan(user, at).max_storage_gib


def queued_subscriptions(user) -> QuerySet[Subscription]:
    return Subscription.objects.filter(user=user, state=SubscriptionState.QUEUED).select_related(
        "plan"
    )


@dataclass(frozen=True)
class Balance:
    """What the balance widget and the API show (SPEC §3.5)."""

    active_micro: int
    carried: list[Grant]
    debt_micro: int
    subscription: Subscription | None
    plan: Plan

    @property
    def carried_micro(self) -> int:
        return sum(g.remaining_micro for g in self.carried)


def balance_for(
    user, at: datetime | None = None, *, current: Subscription | None | _Unread = UNREAD
) -> Balance:
    """The balance at ``at``; ``current``: the subscription in force then, if already read."""
    at = at or timezone.now()
    account = Account.objects.filter(user=user).first()
    sub = current_subscription(user, at) if isinstance(current, _Unread) else current
    return Balance(
        active_micro=active_balance_micro(user, at),
        carried=list(carried_grants(user).filter(carry_until__gt=at)),
        debt_micro=account.debt_micro if account else 0,
        subscription=sub,
        plan=plan_of(sub),
    )


def ledger_entries(user, *, kind: str | None = None, since=None, until=None) -> QuerySet:
    """The user's ledger, newest first, optionally filtered by kind and time."""
    qs = (
        LedgerEntry.objects.filter(user=user).select_related("grant").order_by("-created_at", "-pk")
    )
    if kind:
        qs = qs.filter(kind=kind)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return qs


def daily_usage_micro(user, *, days: int = 30, at: datetime | None = None) -> list[tuple]:
    """Compute charged per Asia/Shanghai day over the last ``days`` days: [(date, µDCU)]."""
    at = at or timezone.now()
    today = timezone.localdate(at)
    start_day = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(start_day, datetime.min.time()))
    totals = {start_day + timedelta(days=i): 0 for i in range(days)}
    rows = LedgerEntry.objects.filter(
        user=user, kind__in=[LedgerKind.CHARGE, LedgerKind.DEBT], created_at__gte=start
    ).values_list("created_at", "delta_micro")
    for created_at, delta in rows:
        day = timezone.localdate(created_at)
        if day in totals:
            totals[day] += -delta
    return sorted(totals.items())


def subscription_preview(*, user, plan: Plan, at: datetime | None = None) -> dict:
    """What buying ``plan`` would do now: ``{"effect": "now"|"queued"|"pack", "starts_at"}``."""
    at = at or timezone.now()
    return _preview(
        plan, at=at, current=current_subscription(user, at), last_end=lambda: _last_end(user)
    )


def _last_end(user) -> datetime | None:
    """When the user's last active or queued period ends (a new one would start then)."""
    return Subscription.objects.filter(
        user_id=user.pk, state__in=[SubscriptionState.ACTIVE, SubscriptionState.QUEUED]
    ).aggregate(last=Max("ends_at"))["last"]


def _preview(plan: Plan, *, at: datetime, current: Subscription | None, last_end) -> dict:
    # ``last_end`` is called only for a queued effect, so a preview of one plan
    # reads it only when needed and a list of offers (plan_offers) reads it once.
    if plan.kind == PlanKind.EXTENSION:
        return {"effect": "pack", "starts_at": at, "allowed": current is not None}
    # Plans other than extension packs have a tier (the pack returned above).
    if current is None or (plan.tier or 0) > (current.plan.tier or 0):
        return {"effect": "now", "starts_at": at, "allowed": True}
    return {"effect": "queued", "starts_at": last_end(), "allowed": True}


def plans_for_sale() -> QuerySet[Plan]:
    """Plans a user can buy: subscription plans (not the free tier) and extension packs."""
    not_for_sale = Q(kind=PlanKind.PLAN) & (Q(tier__isnull=True) | Q(tier=0))
    return Plan.objects.filter(is_active=True).exclude(not_for_sale).order_by("sort_order", "pk")


def price_for(user, plan: Plan) -> int:
    """What ``user`` pays for ``plan``, in fen: the education price for education users."""
    return plan.education_price_fen if user.is_education else plan.price_fen


@dataclass(frozen=True)
class PlanOffer:
    """A plan as one user sees it: their price and what buying it now would do."""

    plan: Plan
    your_price_fen: int
    # subscription_preview: {"effect": "now"|"queued"|"pack", "starts_at", "allowed"}
    effect: dict
    is_current: bool


def plan_offers(
    user, *, at: datetime | None = None, current: Subscription | None | _Unread = UNREAD
) -> list[PlanOffer]:
    """Every plan for sale as ``user`` sees it at ``at`` (``current``: as in :func:`balance_for`)."""
    at = at or timezone.now()
    # The user's periods are read once for all plans, not once per plan.
    if isinstance(current, _Unread):
        current = current_subscription(user, at)
    last_end = functools.cache(lambda: _last_end(user))
    return [
        PlanOffer(
            plan=plan,
            your_price_fen=price_for(user, plan),
            effect=_preview(plan, at=at, current=current, last_end=last_end),
            is_current=current is not None and current.plan_id == plan.pk,
        )
        for plan in plans_for_sale()
    ]


# --- support queues (the back office's home page and list filters) ----------------------


def orders_flagged(queryset: QuerySet[Order] | None = None) -> QuerySet[Order]:
    """Payments flagged for support: ``needs_support`` set by payments.order_fulfil (money
    for a closed order, or a paid order that could not be fulfilled), until fully refunded."""
    queryset = Order.objects.all() if queryset is None else queryset
    return queryset.filter(needs_support=True).exclude(state=Order.State.REFUNDED)


def refunds_failed(queryset: QuerySet[Refund] | None = None) -> QuerySet[Refund]:
    """Refunds Alipay refused or did not answer: still requested, with the error recorded."""
    queryset = Refund.objects.all() if queryset is None else queryset
    return queryset.filter(state=Refund.State.REQUESTED).exclude(error="")


# --- budgets (issue 20) -------------------------------------------------------------------
SPEND_KINDS = (LedgerKind.CHARGE, LedgerKind.DEBT)


def spend_micro(user, start: datetime, end: datetime) -> int:
    """µDCU the ledger charged ``user`` in [start, end): GPU time and storage, paid or owed."""
    total = LedgerEntry.objects.filter(
        user=user, kind__in=SPEND_KINDS, created_at__gte=start, created_at__lt=end
    ).aggregate(total=Sum("delta_micro"))["total"]
    return -(total or 0)


def month_spend_micro(user, at: datetime | None = None) -> int:
    """What the ledger charged ``user`` this calendar month (Asia/Shanghai) up to now."""
    start, end = month_bounds(at or timezone.now())
    return spend_micro(user, start, end)


def budget_for(user) -> Budget | None:
    return Budget.objects.filter(user=user).first()


@dataclass(frozen=True)
class BudgetSpent:
    """A hard-stop budget that this month's spend has reached."""

    spent_micro: int
    budget_micro: int
    month_start: datetime


def budget_exhausted(user, at: datetime | None = None) -> BudgetSpent | None:
    """The numbers when ``user`` has a hard-stop budget and this month's spend reached it."""
    budget = budget_for(user)
    if budget is None or not budget.hard_stop:
        return None
    at = at or timezone.now()
    spent = month_spend_micro(user, at)
    if spent < budget.monthly_micro:
        return None
    return BudgetSpent(spent, budget.monthly_micro, month_bounds(at)[0])
