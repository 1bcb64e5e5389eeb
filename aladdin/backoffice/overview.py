"""The platform overview for staff: money, compute, workloads, storage, arrears (reads only).

Every number is one aggregate query (grouped by Asia/Shanghai day where it
is a series), never a Python loop over orders, ledger entries or jobs.

Definitions:

- **revenue** of a day: the price of the orders paid that day (fen), refunded
  or not; **refunds**: refunds that succeeded at Alipay that day (fen).
- **DCU sold**: the compute of the plans and packs of the orders paid that day
  (their plan's ``dcu_micro``); **vouchers**: ledger ``voucher`` entries (staff
  and the automatic arrears cover); **DCU used**: what charges took that day,
  paid by grants (``charge``) or run into arrears (``debt``).
- **running workloads**: jobs starting or running (not deleted) and workshops
  being created or running, now; **GPU cards in use**: cards per worker ×
  workers of those jobs, by card.
- **storage**: volumes that exist, their last sampled use, held volumes, and
  the storage fees charged per day.
- **arrears**: the sum of accounts' unpaid debt now, the accounts with debt,
  and the arrears reviews pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from aladdin.lib.timeutil import SHANGHAI, day_start
from billing.choices import LedgerKind
from billing.models import Account, ArrearsReview, LedgerEntry, Order, Refund
from gpu_jobs.choices import ACTIVE_STATES as JOB_ACTIVE_STATES
from gpu_jobs.models import Job
from storage.models import StorageAllowance, StorageCharge
from workshops.choices import ACTIVE_STATES as WORKSHOP_ACTIVE_STATES
from workshops.models import Workshop

DAYS = 30

PAID_STATES = (Order.State.PAID, Order.State.PARTLY_REFUNDED, Order.State.REFUNDED)


@dataclass(frozen=True)
class Day:
    day: date
    revenue_fen: int = 0
    refunds_fen: int = 0
    orders_paid: int = 0
    sold_micro: int = 0
    vouchers_micro: int = 0
    used_micro: int = 0
    storage_fees_micro: int = 0


@dataclass(frozen=True)
class CardsInUse:
    code: str
    name: str
    jobs: int
    cards: int


@dataclass(frozen=True)
class Overview:
    start: date
    end: date
    days: list[Day]
    running_jobs: int
    running_workshops: int
    cards: list[CardsInUse]
    volumes: int
    volumes_held: int
    storage_used_bytes: int
    debt_micro: int
    accounts_in_debt: int
    arrears_pending: int
    totals: Day = field(default_factory=lambda: Day(day=date.min))

    @property
    def cards_in_use(self) -> int:
        return sum(c.cards for c in self.cards)


def _per_day(queryset, time_field: str, **sums) -> dict[date, dict]:
    """{day: {name: total}} for the rows of ``queryset``, grouped by Shanghai day."""
    rows = (
        queryset.annotate(d=TruncDate(time_field, tzinfo=SHANGHAI))
        .values("d")
        .annotate(**sums)
        .order_by("d")
    )
    return {row.pop("d"): row for row in rows}


def platform_overview(at: datetime | None = None, days: int = DAYS) -> Overview:
    """The last ``days`` Shanghai days up to and including the day of ``at``, and now's state."""
    at = at or timezone.now()
    end = timezone.localtime(at, SHANGHAI).date()
    start = end - timedelta(days=days - 1)
    lo, hi = day_start(start), day_start(end + timedelta(days=1))

    paid = _per_day(
        Order.objects.filter(state__in=PAID_STATES, paid_at__gte=lo, paid_at__lt=hi),
        "paid_at",
        revenue_fen=Sum("price_fen"),
        sold_micro=Sum("plan__dcu_micro"),
        orders_paid=Count("pk"),
    )
    refunds = _per_day(
        Refund.objects.filter(
            state=Refund.State.SUCCEEDED, completed_at__gte=lo, completed_at__lt=hi
        ),
        "completed_at",
        refunds_fen=Sum("amount_fen"),
    )
    ledger = _per_day(
        LedgerEntry.objects.filter(
            created_at__gte=lo,
            created_at__lt=hi,
            kind__in=(LedgerKind.VOUCHER, LedgerKind.CHARGE, LedgerKind.DEBT),
        ),
        "created_at",
        vouchers_micro=Coalesce(Sum("delta_micro", filter=Q(kind=LedgerKind.VOUCHER)), 0),
        # Charges and new debt are negative entries: what was used is their opposite.
        used_negative=Coalesce(
            Sum("delta_micro", filter=Q(kind__in=(LedgerKind.CHARGE, LedgerKind.DEBT))), 0
        ),
    )
    # Storage fees belong to the day charged (``day``), not to when the night run wrote them.
    fees = {
        row["day"]: {"storage_fees_micro": row["s"]}
        for row in StorageCharge.objects.filter(day__gte=start, day__lte=end)
        .values("day")
        .annotate(s=Sum("amount_micro"))
        .order_by("day")
    }

    series = []
    for i in range(days):
        d = start + timedelta(days=i)
        p, r, le, f = paid.get(d, {}), refunds.get(d, {}), ledger.get(d, {}), fees.get(d, {})
        series.append(
            Day(
                day=d,
                revenue_fen=p.get("revenue_fen") or 0,
                orders_paid=p.get("orders_paid") or 0,
                sold_micro=p.get("sold_micro") or 0,
                refunds_fen=r.get("refunds_fen") or 0,
                vouchers_micro=le.get("vouchers_micro") or 0,
                used_micro=-(le.get("used_negative") or 0),
                storage_fees_micro=f.get("storage_fees_micro") or 0,
            )
        )
    totals = Day(
        day=end,
        revenue_fen=sum(d.revenue_fen for d in series),
        refunds_fen=sum(d.refunds_fen for d in series),
        orders_paid=sum(d.orders_paid for d in series),
        sold_micro=sum(d.sold_micro for d in series),
        vouchers_micro=sum(d.vouchers_micro for d in series),
        used_micro=sum(d.used_micro for d in series),
        storage_fees_micro=sum(d.storage_fees_micro for d in series),
    )

    running = Job.objects.filter(state__in=JOB_ACTIVE_STATES, deleted_at__isnull=True)
    cards = [
        CardsInUse(code=row["gpu_type__code"], name=row["gpu_type__name"], **_ints(row))
        for row in running.values("gpu_type__code", "gpu_type__name")
        .annotate(n_jobs=Count("pk"), n_cards=Sum(F("cards_per_worker") * F("workers")))
        .order_by("gpu_type__code")
    ]
    volumes = StorageAllowance.objects.filter(has_volume=True).aggregate(
        n=Count("pk"),
        held=Count("pk", filter=Q(hold=True)),
        used=Coalesce(Sum("last_bytes"), 0),
    )
    debt = Account.objects.filter(debt_micro__gt=0).aggregate(
        total=Coalesce(Sum("debt_micro"), 0), n=Count("pk")
    )
    return Overview(
        start=start,
        end=end,
        days=series,
        totals=totals,
        running_jobs=running.count(),
        running_workshops=Workshop.objects.filter(state__in=WORKSHOP_ACTIVE_STATES).count(),
        cards=cards,
        volumes=volumes["n"],
        volumes_held=volumes["held"],
        storage_used_bytes=volumes["used"],
        debt_micro=debt["total"],
        accounts_in_debt=debt["n"],
        arrears_pending=ArrearsReview.objects.filter(
            decision=ArrearsReview.Decision.PENDING
        ).count(),
    )


def _ints(row: dict) -> dict:
    return {"jobs": int(row["n_jobs"] or 0), "cards": int(row["n_cards"] or 0)}
