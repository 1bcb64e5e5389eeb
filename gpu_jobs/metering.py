"""Per-second metering of GPU jobs (SPEC §4.1, DESIGN rules 4–6).

A job is billed from ``started_at`` (allocation) to ``ended_at`` (release).
The ledger gets one charge per started minute while it runs and a final one
at the end. Each charge is the total owed so far minus what was already
charged, so rounding never accumulates and a meter that was down for a while
catches up exactly. Keys are deterministic — ``job-<id>:<minute>`` for the
minute being closed, ``job-<id>:end`` for the last charge — and the job's
``charged_micro`` moves in the same transaction as the ledger entry, so
running a meter twice charges nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import services as billing_services

from .models import Job

KIND = "gpu"


def price_micro_per_hour(job: Job) -> int:
    """The job's price in µDCU per hour: card price × cards per worker × workers."""
    return job.gpu_type.price_micro_per_hour * job.cards_per_worker * job.workers


def billed_seconds(job: Job, until: datetime) -> int:
    """Whole seconds from allocation to ``until`` (capped at the release), never negative."""
    if job.started_at is None:
        return 0
    end = until if job.ended_at is None else min(until, job.ended_at)
    delta = end - job.started_at
    # Integer arithmetic on timedelta parts: no float anywhere.
    seconds = delta.days * 86_400 + delta.seconds
    return max(seconds, 0)


def owed(job: Job, until: datetime) -> int:
    """Total owed from allocation to ``until``, in µDCU, floored (exact integers)."""
    return price_micro_per_hour(job) * billed_seconds(job, until) // 3600


@dataclass(frozen=True)
class _Due:
    """What a meter run would charge for one job now."""

    key: str
    target_micro: int  # the total charged once this charge is in
    amount_micro: int
    final: bool


def _due(job: Job, at: datetime) -> _Due | None:
    """The next charge for ``job`` at ``at``, or None when nothing is due yet.

    While the job runs only whole minutes are charged (the key and its
    amount are then a function of the minute, so a retry within the same
    minute replays the same key with the same amount); once it has ended
    (``ended_at <= at``) the rest is charged under the ``end`` key.
    """
    if job.started_at is None or job.metering_closed:
        return None
    if job.ended_at is not None and job.ended_at <= at:
        target = owed(job, job.ended_at)
        return _Due(f"job-{job.pk}:end", target, target - job.charged_micro, final=True)
    minutes = billed_seconds(job, at) // 60
    if minutes == 0:
        return None
    target = owed(job, job.started_at + timedelta(minutes=minutes))
    if target <= job.charged_micro:
        return None
    # ``minutes - 1`` is the index of the started minute being closed.
    return _Due(f"job-{job.pk}:{minutes - 1}", target, target - job.charged_micro, final=False)


def _reason(job: Job) -> str:
    return _("GPU job %(job)s: %(cards)s × %(card)s") % {
        "job": job.pk,
        "cards": job.cards_per_worker * job.workers,
        "card": job.gpu_type.name,
    }


def _apply(job: Job, due: _Due, result: billing_services.ChargeResult) -> None:
    if result.replayed:
        # The ledger already has this key (its effect committed with the job
        # row before): nothing changes.
        return
    fields = {"charged_micro": due.target_micro}
    if due.final:
        fields["metering_closed"] = True
    Job.objects.filter(pk=job.pk).update(**fields)
    for name, value in fields.items():
        setattr(job, name, value)


@transaction.atomic
def meter_job(*, job: Job, at: datetime | None = None) -> bool:
    """Charge what ``job`` owes up to ``at``; return whether the balance ran out.

    The caller stops the user's jobs (and tells the user) when it returns True.
    ``job`` is refreshed in place with the new ``charged_micro``.
    """
    at = at or timezone.now()
    locked = Job.objects.select_for_update().select_related("gpu_type").get(pk=job.pk)
    due = _due(locked, at)
    if due is None:
        job.charged_micro, job.metering_closed = locked.charged_micro, locked.metering_closed
        return False
    if due.amount_micro <= 0:
        # Nothing left to charge (the end fell inside an already charged
        # second); still close the metering.
        if due.final:
            Job.objects.filter(pk=locked.pk).update(metering_closed=True)
            job.metering_closed = True
        job.charged_micro = locked.charged_micro
        return False
    result = billing_services.charge(
        user=locked.user,
        kind=KIND,
        key=due.key,
        amount_micro=due.amount_micro,
        reason=_reason(locked),
        at=at,
    )
    _apply(locked, due, result)
    job.charged_micro, job.metering_closed = locked.charged_micro, locked.metering_closed
    return result.exhausted


@transaction.atomic
def meter_due(*, at: datetime | None = None) -> set[int]:
    """Meter every job that holds, or held and was not fully charged for, its cards.

    One charge_batch for the whole tick. Catches up jobs that ended while
    the meter was down (their ``end`` charge). Returns the ids of users
    whose balance ran out, so the caller stops their jobs and tells them.
    """
    at = at or timezone.now()
    jobs = list(
        Job.objects.select_for_update()
        .select_related("gpu_type")
        .filter(started_at__isnull=False, started_at__lte=at, metering_closed=False)
        .order_by("pk")
    )
    plan: list[tuple[Job, _Due]] = []
    requests: list[billing_services.ChargeRequest] = []
    for job in jobs:
        due = _due(job, at)
        if due is None:
            continue
        if due.amount_micro <= 0:
            if due.final:
                Job.objects.filter(pk=job.pk).update(metering_closed=True)
            continue
        plan.append((job, due))
        requests.append(
            billing_services.ChargeRequest(
                user_id=job.user_id,
                kind=KIND,
                key=due.key,
                amount_micro=due.amount_micro,
                reason=_reason(job),
            )
        )
    if not requests:
        return set()
    results = billing_services.charge_batch(requests=requests, at=at)
    exhausted: set[int] = set()
    for job, due in plan:
        # charge_batch answers by full key, "<kind>:<key>".
        result = results[f"{KIND}:{due.key}"]
        _apply(job, due, result)
        if result.exhausted:
            exhausted.add(job.user_id)
    return exhausted
