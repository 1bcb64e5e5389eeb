"""Reads of the billing core. Writes live in billing/services.py."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Case, F, IntegerField, QuerySet, Sum, Value, When

from .choices import GRANT_CLASS_RANK, GrantClass, GrantState
from .models import Account, Grant


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


def spending_order(user, at: datetime) -> QuerySet[Grant]:
    """Active grants in the order compute is spent (SPEC §3.4).

    Activated carry-over, then extension packs (and vouchers), then plan
    compute by tier ascending; within a class the earliest ``active_until``
    first, then pk so the order is total and repeatable.
    """
    class_rank = Case(
        *(When(grant_class=value, then=Value(rank)) for value, rank in GRANT_CLASS_RANK.items()),
        output_field=IntegerField(),
    )
    # Tier orders plan compute only; other classes ignore it even if set.
    plan_tier = Case(
        When(grant_class=GrantClass.PLAN, then=F("tier")),
        default=Value(0),
        output_field=IntegerField(),
    )
    return (
        _spendable(user, at)
        .annotate(class_rank=class_rank, plan_tier=plan_tier)
        .order_by("class_rank", "plan_tier", "active_until", "pk")
    )
