"""Celery tasks of the gpu_jobs app: thin, safe to run twice (DESIGN rule 4).

Each loads the row by id and acts only if it is still in the state the user
action left it in; periodic tasks take ``as_of`` and catch up what was missed.
"""

from __future__ import annotations

from celery import shared_task

from aladdin.cluster.base import DriverError
from aladdin.lib.timeutil import parse_as_of

from . import idle, services

_OPTS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": (DriverError,),
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "max_retries": 20,
}
_PERIODIC = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="gpu_jobs.start", **_OPTS)
def start(job_id: int) -> None:
    """Start a starting job's workload; transient errors (no free card) retry."""
    services.job_start_apply(job_id=job_id)


@shared_task(name="gpu_jobs.probe", acks_late=True, ignore_result=True)
def probe(job_id: int) -> None:
    """Measure what runs in a job that just started (best effort: no retries)."""
    services.job_probe_apply(job_id=job_id)


@shared_task(name="gpu_jobs.stop", **_OPTS)
def stop(job_id: int) -> None:
    services.job_stop_apply(job_id=job_id)


@shared_task(name="gpu_jobs.delete", **_OPTS)
def delete(job_id: int) -> None:
    services.job_delete_apply(job_id=job_id)


@shared_task(name="gpu_jobs.meter", **_PERIODIC)
def meter(as_of: str | None = None) -> dict[str, int]:
    """Charge running jobs (beat: every 20 s, so each minute is charged within it)."""
    return services.jobs_meter(as_of=parse_as_of(as_of) if as_of else None)


@shared_task(name="gpu_jobs.reconcile", **_PERIODIC)
def reconcile(as_of: str | None = None) -> dict[str, int]:
    """Converge jobs with the cluster (beat: every 5 s)."""
    return services.jobs_reconcile(as_of=parse_as_of(as_of) if as_of else None)


@shared_task(name="gpu_jobs.expire_logs", **_PERIODIC)
def expire_logs(as_of: str | None = None) -> dict[str, int]:
    """Remove dev jobs' host output N days after their end (beat: hourly; catches up)."""
    return services.jobs_expire_logs(as_of=parse_as_of(as_of) if as_of else None)


@shared_task(name="gpu_jobs.idle_check", **_PERIODIC)
def idle_check(as_of: str | None = None) -> dict[str, int]:
    """Warn about, then stop, dev jobs whose GPUs sit idle past their user's policy (issue 20)."""
    return idle.jobs_idle_check(now=parse_as_of(as_of) if as_of else None)
