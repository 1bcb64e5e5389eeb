"""Cost reports (issue 20): where a month's compute went, per job, per day, by kind and card.

Read from the ledger, so the report adds up to it to the µDCU: every charge
(and the arrears a charge left) of the month is in exactly one bucket. A GPU
job's entries carry its id in their idempotency key (``gpu:job-<id>:w<n>:…``,
gpu_jobs.metering); storage's are ``storage:<user>:<day>``; anything else
(none today) is counted as "other" rather than dropped.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin.lib.timeutil import SHANGHAI, day_start, month_bounds
from aladdin.lib.units import format_micro
from billing import selectors as billing_selectors
from billing.models import LedgerEntry

from .choices import JobKind
from .models import Job

_JOB_KEY = re.compile(r"gpu:job-(\d+):")
STORAGE = "storage"
OTHER = "other"


@dataclass
class JobCost:
    job_id: int
    name: str
    kind: str
    kind_label: str
    card: str
    micro: int = 0
    deleted: bool = False


@dataclass
class DayCost:
    day: date
    gpu_micro: int = 0
    storage_micro: int = 0
    other_micro: int = 0

    @property
    def total_micro(self) -> int:
        return self.gpu_micro + self.storage_micro + self.other_micro


@dataclass
class CostReport:
    month: date  # its first day
    start: datetime
    end: datetime
    jobs: list[JobCost] = field(default_factory=list)
    days: list[DayCost] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)  # kind label -> µDCU
    by_card: dict[str, int] = field(default_factory=dict)  # card name -> µDCU
    storage_micro: int = 0
    other_micro: int = 0
    total_micro: int = 0
    budget_micro: int | None = None

    @property
    def budget_percent(self) -> int | None:
        if not self.budget_micro:
            return None
        return self.total_micro * 100 // self.budget_micro


def parse_month(text: str | None, at: datetime | None = None) -> date:
    """``"2026-12"`` as its first day; the current month (Asia/Shanghai) when empty or malformed."""
    if text:
        try:
            year, month = (int(part) for part in text.split("-", 1))
            return date(year, month, 1)
        except ValueError:
            pass
    return timezone.localtime(at or timezone.now(), SHANGHAI).date().replace(day=1)


def cost_report(user, month: date) -> CostReport:
    """``user``'s charges in the calendar month starting ``month``, in buckets that sum to the ledger."""
    start, end = month_bounds(day_start(month))
    report = CostReport(month=month, start=start, end=end)
    rows = LedgerEntry.objects.filter(
        user=user,
        kind__in=billing_selectors.SPEND_KINDS,
        created_at__gte=start,
        created_at__lt=end,
    ).values_list("idempotency_key", "delta_micro", "created_at")
    days: dict[date, DayCost] = {}
    per_job: dict[int, int] = defaultdict(int)
    for key, delta, created_at in rows.iterator():
        micro = -delta
        day = timezone.localtime(created_at, SHANGHAI).date()
        bucket = days.setdefault(day, DayCost(day))
        if match := _JOB_KEY.match(key):
            per_job[int(match.group(1))] += micro
            bucket.gpu_micro += micro
        elif key.startswith(f"{STORAGE}:"):
            bucket.storage_micro += micro
            report.storage_micro += micro
        else:
            bucket.other_micro += micro
            report.other_micro += micro
        report.total_micro += micro
    jobs = Job.objects.filter(user=user, pk__in=list(per_job)).select_related("gpu_type")
    labels = dict(JobKind.choices)
    by_kind: dict[str, int] = defaultdict(int)
    by_card: dict[str, int] = defaultdict(int)
    for job in jobs:
        cost = JobCost(
            job_id=job.pk,
            name=job.display_name,
            kind=job.kind,
            kind_label=str(labels.get(job.kind, job.kind)),
            card=job.gpu_type.name,
            micro=per_job[job.pk],
            deleted=job.deleted_at is not None,
        )
        report.jobs.append(cost)
        by_kind[cost.kind_label] += cost.micro
        by_card[cost.card] += cost.micro
    report.jobs.sort(key=lambda c: (-c.micro, c.job_id))
    report.by_kind = dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))
    report.by_card = dict(sorted(by_card.items(), key=lambda kv: -kv[1]))
    report.days = [days[d] for d in sorted(days)]
    budget = billing_selectors.budget_for(user)
    report.budget_micro = budget.monthly_micro if budget else None
    return report


def report_csv(report: CostReport) -> str:
    """The report as CSV: one row per job, then storage and the total (DCU exact, and µDCU)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_("item"), _("kind"), _("card"), "DCU", "µDCU"])
    for job in report.jobs:
        writer.writerow(
            [f"job-{job.job_id} {job.name}", job.kind, job.card, format_micro(job.micro), job.micro]
        )
    if report.storage_micro:
        writer.writerow(
            [_("Storage"), STORAGE, "", format_micro(report.storage_micro), report.storage_micro]
        )
    if report.other_micro:
        writer.writerow(
            [_("Other"), OTHER, "", format_micro(report.other_micro), report.other_micro]
        )
    writer.writerow([_("Total"), "", "", format_micro(report.total_micro), report.total_micro])
    return out.getvalue()
