"""Reads of the storage app. Writes live in storage/services.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from aladdin.lib.timeutil import SHANGHAI
from billing import selectors as billing_selectors
from billing.choices import SubscriptionState
from billing.models import Plan, Subscription

from .choices import FEE_PER_GIB_DAY_MICRO, GIB, RETENTION_DAYS, WARNING_DAYS
from .models import DailyPeak, RetentionWarning, StorageAllowance, StorageCharge

if TYPE_CHECKING:
    from aladdin.accounts.models import User


def shanghai_day(at: datetime) -> date:
    """The Asia/Shanghai calendar day of ``at`` (SPEC §2)."""
    return at.astimezone(SHANGHAI).date()


def gib_ceil(n_bytes: int) -> int:
    """Whole GiB needed for ``n_bytes``: a partial GiB counts as a whole one."""
    return -(-max(n_bytes, 0) // GIB)


def fee_micro(*, peak_bytes: int, free_gib: int) -> tuple[int, int]:
    """(GiB charged, fee in µDCU) of one day: ceil(peak − free) GiB × 0.0015 DCU (SPEC §4.2)."""
    over = gib_ceil(peak_bytes - free_gib * GIB)
    return over, over * FEE_PER_GIB_DAY_MICRO


def allowance_row(user: User) -> StorageAllowance | None:
    return StorageAllowance.objects.filter(user=user).first()


def allowance_gib(user: User, at: datetime | None = None) -> int:
    """The user's allowance (the volume's size) in GiB.

    Staff's value when set (it may exceed the plan's maximum); otherwise the
    plan's free storage raised to what the user chose, capped at the plan's
    maximum. When a plan lapses the cap falls back to the free tier's 30 GiB.
    """
    return allowance_of(billing_selectors.current_plan(user, at), allowance_row(user))


def allowance_of(plan: Plan, row: StorageAllowance | None) -> int:
    """``allowance_gib`` from the plan and the row already read (a page reads each once)."""
    if row is not None and row.staff_gib is not None:
        return row.staff_gib
    chosen = row.chosen_gib if row is not None else 0
    return min(max(plan.free_storage_gib, chosen), max(plan.max_storage_gib, plan.free_storage_gib))


def used_bytes(user: User) -> int:
    row = allowance_row(user)
    return row.last_bytes if row is not None else 0


@dataclass(frozen=True)
class OverAllowance:
    """The last measured use of a volume over its allowance."""

    used_bytes: int
    allowance_gib: int

    @property
    def used_gib(self) -> float:
        return round(self.used_bytes / GIB, 2)


def over_allowance(user: User, *, plan: Plan | None = None) -> OverAllowance | None:
    """The numbers when the user's last measured use is over the allowance; None otherwise.

    The one rule behind the refusal of new workloads, the warnings on the
    pages, and who the disk guard may stop (aladdin/workloads/disk.py).
    ``plan``: the user's current plan where the caller has read it already.
    """
    row = allowance_row(user)
    plan = plan if plan is not None else billing_selectors.current_plan(user)
    return over_allowance_of(row, allowance_of(plan, row))


def over_allowance_of(row: StorageAllowance | None, allowance: int) -> OverAllowance | None:
    """``over_allowance`` from the row and the allowance already read."""
    used = row.last_bytes if row is not None else 0
    return OverAllowance(used, allowance) if used > allowance * GIB else None


def workloads_allowed(user: User) -> tuple[bool, str]:
    """Whether the user may start a new workload as far as storage goes, and why not.

    A local directory cannot enforce a quota (SPEC §4.2): while the last
    sampled use is over the allowance, new workshops and jobs are refused.
    """
    from django.utils.translation import gettext as _

    over = over_allowance(user)
    if over is not None:
        used, limit = over.used_bytes, over.allowance_gib
        return False, _(
            "Your storage use (%(used)s GiB) is over your allowance (%(limit)s GiB). "
            "Delete files or expand your storage before starting a new workload."
        ) % {"used": f"{used / GIB:.1f}", "limit": limit}
    return True, ""


def plan_at(user_ids: list[int], at: datetime) -> dict[int, int]:
    """Free GiB of the plan in force at ``at`` for each user (highest tier wins).

    Looks at active and ended periods, so a day charged late still uses the
    plan the user had then. Users without a period get the free tier's.
    """
    free = billing_selectors.free_plan().free_storage_gib
    result = dict.fromkeys(user_ids, free)
    best: dict[int, int] = {}
    for i in range(0, len(user_ids), 500):
        chunk = user_ids[i : i + 500]
        rows = Subscription.objects.filter(
            user_id__in=chunk,
            state__in=(SubscriptionState.ACTIVE, SubscriptionState.ENDED),
            starts_at__lte=at,
            ends_at__gt=at,
        ).values_list("user_id", "plan__tier", "plan__free_storage_gib")
        for user_id, tier, gib in rows:
            # Plan.tier is empty only for extension packs, which never make a
            # Subscription (subscription_create refuses them): `or 0` types it.
            rank = tier or 0
            if user_id not in best or rank > best[user_id]:
                best[user_id] = rank
                result[user_id] = gib
    return result


def last_plan_end(user: User, at: datetime) -> datetime | None:
    """End of the user's last period that started by ``at`` (None: never subscribed)."""
    return Subscription.objects.filter(
        user=user,
        state__in=(SubscriptionState.ACTIVE, SubscriptionState.ENDED),
        starts_at__lte=at,
    ).aggregate(t=Max("ends_at"))["t"]


@dataclass(frozen=True)
class Retention:
    """Where a user's volume stands with SPEC §4.2 retention at ``at``."""

    has_plan: bool
    basis_at: datetime
    reclaim_at: datetime | None
    warn_at: datetime | None
    hold: bool


def retention_for(user: User, at: datetime | None = None) -> Retention:
    """reclaim_at = max(end of the last plan or sign-up, last activity) + 15 days, if no plan."""
    at = at or timezone.now()
    has_plan = billing_selectors.current_subscription(user, at) is not None
    return retention_of(user, at, row=allowance_row(user), has_plan=has_plan)


def retention_of(
    user: User, at: datetime, *, row: StorageAllowance | None, has_plan: bool
) -> Retention:
    """``retention_for`` from the allowance row and the plan already read."""
    hold = bool(row and row.hold)
    if has_plan:
        return Retention(True, at, None, None, hold)
    end = last_plan_end(user, at) or user.date_joined
    basis = max(end, user.last_activity_at or end)
    reclaim_at = basis + timedelta(days=RETENTION_DAYS)
    return Retention(False, basis, reclaim_at, reclaim_at - timedelta(days=WARNING_DAYS), hold)


def daily_history(user: User, *, days: int = 30, at: datetime | None = None) -> list[dict]:
    """Peak GiB and fee (µDCU) for each of the last ``days`` Asia/Shanghai days, oldest first."""
    today = shanghai_day(at or timezone.now())
    first = today - timedelta(days=days - 1)
    peaks = dict(
        DailyPeak.objects.filter(user=user, day__gte=first).values_list("day", "peak_bytes")
    )
    fees = dict(
        StorageCharge.objects.filter(user=user, day__gte=first).values_list("day", "amount_micro")
    )
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        out.append(
            {
                "day": d,
                "peak_gib": round(peaks.get(d, 0) / GIB, 2),
                "fee_micro": fees.get(d, 0),
            }
        )
    return out


def retention_warnings_open(
    queryset: QuerySet[RetentionWarning] | None = None, at: datetime | None = None
) -> QuerySet[RetentionWarning]:
    """Retention warnings still in force (the back office's queue).

    Warned users whose reclaim is still ahead, whose volume exists and is not
    on hold, who have no active plan and have not been active since the
    warning (activity moves the reclaim date and makes the warning moot).
    """
    at = at or timezone.now()
    queryset = RetentionWarning.objects.all() if queryset is None else queryset
    volume_at_risk = StorageAllowance.objects.filter(
        user=OuterRef("user"), has_volume=True, hold=False
    )
    active_plan = Subscription.objects.filter(
        user=OuterRef("user"),
        state=SubscriptionState.ACTIVE,
        starts_at__lte=at,
        ends_at__gt=at,
    )
    return (
        queryset.filter(reclaim_at__gt=at)
        .filter(Exists(volume_at_risk))
        .exclude(Exists(active_plan))
        .filter(
            Q(user__last_activity_at__isnull=True) | Q(user__last_activity_at__lte=F("sent_at"))
        )
    )
