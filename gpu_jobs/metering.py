"""Per-second metering of GPU jobs (SPEC §4.1, DESIGN rules 4–6).

Each worker of a job (:class:`JobWorker`) is billed from its ``started_at``
(allocation) to its ``ended_at`` (release), for every *started* second: 0.4 s
bills 1 s, 60.2 s bills 61 s (SPEC §4.1: no run is free). The ledger gets one
charge per whole minute while it runs and a final one at the end. Each
charge is the total owed so far minus what was already charged: the minute
charges cover whole seconds only (a minute boundary is a whole second), so
the final charge, on the whole allocation, takes the last started second
once, rounding never accumulates, and a meter that was down for a while
catches up exactly. Keys
are deterministic, ``(job, worker, interval)``: ``job-<id>:w<index>:<minute>``
for the minute being closed, ``job-<id>:w<index>:end`` for the last charge.
The worker's and the job's ``charged_micro`` move in the same transaction
as the ledger entry, so running a meter twice charges nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from aladdin.lib.said import Said
from billing import services as billing_services

from . import reasons as _reasons  # noqa: F401 - job.charge
from .models import Job, JobWorker

KIND = "gpu"


def price_micro_per_hour(job: Job) -> int:
    """The job's price in µDCU per hour: card price × cards per worker × workers."""
    return job.gpu_type.price_micro_per_hour * job.cards_per_worker * job.workers


def worker_price_micro_per_hour(job: Job) -> int:
    """One worker's price in µDCU per hour: card price × cards per worker."""
    return job.gpu_type.price_micro_per_hour * job.cards_per_worker


_MICROS = 1_000_000


def _elapsed_micros(window, until: datetime) -> int | None:
    """Microseconds from ``window.started_at`` to ``until`` (capped at ``window.ended_at``).

    None before the allocation (or without one). Integer arithmetic on the
    timedelta's parts: no float anywhere.
    """
    if window.started_at is None:
        return None
    end = until if window.ended_at is None else min(until, window.ended_at)
    delta = end - window.started_at
    micros = (delta.days * 86_400 + delta.seconds) * _MICROS + delta.microseconds
    return micros if micros >= 0 else None


def elapsed_seconds(window, until: datetime) -> int:
    """Whole seconds of the allocation up to ``until``: what the minute charges count."""
    micros = _elapsed_micros(window, until)
    return 0 if micros is None else micros // _MICROS


def billed_seconds(window, until: datetime) -> int:
    """Started seconds of the allocation up to ``until`` (capped at its release).

    Each started second counts: ceil of the elapsed time, and at least one
    second once the cards were allocated (a zero-length window still held
    them). ``window`` is a worker (or anything with ``started_at`` and
    ``ended_at``); 0 before the allocation.
    """
    micros = _elapsed_micros(window, until)
    if micros is None:
        return 0
    return max(1, -(-micros // _MICROS))


def worker_owed(worker: JobWorker, job: Job, until: datetime) -> int:
    """What one worker owes for its started seconds up to ``until``, in µDCU, floored."""
    return worker_price_micro_per_hour(job) * billed_seconds(worker, until) // 3600


def owed(job: Job, until: datetime) -> int:
    """Total the job owes (all its workers) up to ``until``, in µDCU."""
    return sum(worker_owed(w, job, until) for w in job.worker_rows.all())


@dataclass(frozen=True)
class _Due:
    """What a meter run would charge for one job now."""

    key: str
    target_micro: int  # the total charged once this charge is in
    amount_micro: int
    final: bool


def _due(worker: JobWorker, job: Job, at: datetime) -> _Due | None:
    """The next charge for ``worker`` at ``at``, or None when nothing is due yet.

    While it runs only whole minutes are charged (the key and its amount are
    then a function of the minute, so a retry within the same minute replays
    the same key with the same amount; a minute boundary is a whole second,
    so its started seconds are exactly its elapsed ones); once it has ended
    (``ended_at <= at``) the rest, up to the last started second, is charged
    under the ``end`` key.
    """
    if worker.started_at is None or worker.metering_closed:
        return None
    prefix = f"job-{job.pk}:w{worker.index}"
    if worker.ended_at is not None and worker.ended_at <= at:
        target = worker_owed(worker, job, worker.ended_at)
        return _Due(f"{prefix}:end", target, target - worker.charged_micro, final=True)
    minutes = elapsed_seconds(worker, at) // 60
    if minutes == 0:
        return None
    target = worker_owed(worker, job, worker.started_at + timedelta(minutes=minutes))
    if target <= worker.charged_micro:
        return None
    # ``minutes - 1`` is the index of the started minute being closed.
    return _Due(f"{prefix}:{minutes - 1}", target, target - worker.charged_micro, final=False)


def _reason(job: Job) -> Said:
    return Said(
        "job.charge",
        {"job": job.pk, "cards": job.cards_per_worker * job.workers, "card": job.gpu_type.name},
    )


def _close(worker: JobWorker) -> None:
    """Mark the worker's metering closed, and the job's once no worker is open."""
    JobWorker.objects.filter(pk=worker.pk).update(metering_closed=True)
    worker.metering_closed = True
    if not JobWorker.objects.filter(job_id=worker.job_id, metering_closed=False).exists():
        Job.objects.filter(pk=worker.job_id).update(metering_closed=True)


def _apply(worker: JobWorker, due: _Due, result: billing_services.ChargeResult) -> None:
    if result.replayed:
        # The ledger already has this key (its effect committed with the
        # rows before): nothing changes.
        return
    delta = due.target_micro - worker.charged_micro
    JobWorker.objects.filter(pk=worker.pk).update(charged_micro=due.target_micro)
    Job.objects.filter(pk=worker.job_id).update(charged_micro=F("charged_micro") + delta)
    worker.charged_micro = due.target_micro
    if due.final:
        _close(worker)


def _plan(workers: list[JobWorker], at: datetime):
    """The charges due now, and the workers to close without a charge."""
    plan: list[tuple[JobWorker, _Due]] = []
    for worker in workers:
        due = _due(worker, worker.job, at)
        if due is None:
            continue
        if due.amount_micro <= 0:
            # Nothing left to charge (the release was recorded at or before
            # the end of a minute already charged): still close the metering.
            if due.final:
                _close(worker)
            continue
        plan.append((worker, due))
    return plan


def _locked_workers(**filters) -> list[JobWorker]:
    return list(
        JobWorker.objects.select_for_update()
        .select_related("job__gpu_type", "job__user")
        .filter(**filters)
        .order_by("job_id", "index")
    )


def _refresh(job: Job) -> None:
    fresh = Job.objects.filter(pk=job.pk).values("charged_micro", "metering_closed").get()
    job.charged_micro, job.metering_closed = fresh["charged_micro"], fresh["metering_closed"]


@transaction.atomic
def meter_job(*, job: Job, at: datetime | None = None) -> bool:
    """Charge what ``job``'s workers owe up to ``at``; return whether the balance ran out.

    The caller stops the user's jobs (and tells the user) when it returns True.
    ``job`` is refreshed in place with the new ``charged_micro``.
    """
    at = at or timezone.now()
    Job.objects.select_for_update().filter(pk=job.pk).first()
    exhausted = False
    for worker, due in _plan(_locked_workers(job_id=job.pk), at):
        result = billing_services.charge(
            user=worker.job.user,
            kind=KIND,
            key=due.key,
            amount_micro=due.amount_micro,
            reason=_reason(worker.job),
            at=at,
        )
        _apply(worker, due, result)
        exhausted = exhausted or result.exhausted
    _refresh(job)
    return exhausted


@transaction.atomic
def meter_due(*, at: datetime | None = None) -> set[int]:
    """Meter every worker that holds, or held and was not fully charged for, its cards.

    One charge_batch for the whole tick. Catches up workers that ended while
    the meter was down (their ``end`` charge). Returns the ids of users
    whose balance ran out, so the caller stops their jobs and tells them.
    """
    at = at or timezone.now()
    plan = _plan(
        _locked_workers(started_at__isnull=False, started_at__lte=at, metering_closed=False), at
    )
    if not plan:
        return set()
    requests = [
        billing_services.ChargeRequest(
            user_id=worker.job.user_id,
            kind=KIND,
            key=due.key,
            amount_micro=due.amount_micro,
            reason=_reason(worker.job),
        )
        for worker, due in plan
    ]
    results = billing_services.charge_batch(requests=requests, at=at)
    exhausted: set[int] = set()
    for worker, due in plan:
        # charge_batch answers by full key, "<kind>:<key>".
        result = results[f"{KIND}:{due.key}"]
        _apply(worker, due, result)
        if result.exhausted:
            exhausted.add(worker.job.user_id)
    return exhausted
