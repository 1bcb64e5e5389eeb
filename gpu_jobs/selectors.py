"""Reads of the gpu_jobs app: the user's jobs and configurations, card presets, billing so far.

Every user-facing read goes through ``jobs_for`` / ``configurations_for``, so a
view that fetches by id with them turns another user's id (or a deleted job)
into a 404 (DESIGN rule 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from . import metering
from .choices import ACTIVE_STATES, JobKind, JobState
from .models import GpuType, Job, JobConfiguration, JobPort

if TYPE_CHECKING:
    from aladdin.accounts.models import User


# Kinds that run in development mode (SPEC §7): their server may never exit
# on its own, so they bill until deleted.
DEV_KINDS = (JobKind.RUN, JobKind.DEBUG, JobKind.SHELL)


def jobs_for(user: User) -> QuerySet[Job]:
    """The user's jobs that were not deleted, newest first."""
    return Job.objects.filter(user=user, deleted_at__isnull=True).select_related("gpu_type")


def job_list(
    user: User, *, state: str | None = None, kind: str | None = None, active: bool | None = None
) -> QuerySet[Job]:
    # Each job's billing so far sums its workers (metering.owed): one query
    # for all of them rather than one per job.
    rows = jobs_for(user).prefetch_related("worker_rows", "exposed_ports")
    if state:
        rows = rows.filter(state=state)
    if kind:
        rows = rows.filter(kind=kind)
    if active is True:
        rows = rows.filter(state__in=ACTIVE_STATES)
    elif active is False:
        rows = rows.exclude(state__in=ACTIVE_STATES)
    return rows


def configurations_for(user: User) -> QuerySet[JobConfiguration]:
    return JobConfiguration.objects.filter(user=user).select_related("gpu_type")


def gpu_types() -> QuerySet[GpuType]:
    return GpuType.objects.all()


@dataclass(frozen=True)
class JobBilling:
    """What a job costs: its price, what the ledger has, and what it owes up to now."""

    price_micro_per_hour: int
    charged_micro: int
    billed_so_far_micro: int


def job_billing(job: Job, at: datetime | None = None) -> JobBilling:
    """``billed_so_far_micro``: owed from allocation to now (or to the release)."""
    at = at or timezone.now()
    return JobBilling(
        price_micro_per_hour=metering.price_micro_per_hour(job),
        charged_micro=job.charged_micro,
        billed_so_far_micro=metering.owed(job, at),
    )


def is_active(job: Job) -> bool:
    return job.state in ACTIVE_STATES


def is_dev(job: Job) -> bool:
    return job.kind in DEV_KINDS


def running_job_workload(*, user_id: int, job_id: int) -> str | None:
    """The workload name of the user's running job ``job_id``, or None (another's, ended, unknown).

    What the SSH gateway's ``ssh -L PORT:job-<id>:PORT`` may reach (issue 13):
    one answer for every refusal, as the login's.
    """
    job = (
        Job.objects.filter(
            pk=job_id, user_id=user_id, user__is_active=True, deleted_at__isnull=True
        )
        .filter(state=JobState.RUNNING)
        .first()
    )
    return job.workload_name if job is not None else None


def port_url(row: JobPort) -> str:
    """The browser's address of an exposed port: <scheme>://<token>.<PORTS_DOMAIN>/."""
    return f"{settings.PORTS_SCHEME}://{row.token}.{settings.PORTS_DOMAIN}/"


def open_ports(job: Job) -> list[JobPort]:
    """The job's exposed ports that are not removed, by number (prefetch ``exposed_ports``)."""
    return sorted(
        (p for p in job.exposed_ports.all() if p.removed_at is None), key=lambda p: p.port
    )


def live_jobs(user: User, ids: Iterable[int], at: datetime | None = None) -> dict[int, dict]:
    """What an open page shows of the jobs ``ids``, the user's own only (aladdin/live.py).

    Another user's id, or a deleted job, is simply absent.
    """
    at = at or timezone.now()
    rows = jobs_for(user).filter(pk__in=list(ids)[:200]).prefetch_related("worker_rows")
    return {
        job.pk: {
            "state": job.state,
            "state_label": str(job.get_state_display()),
            "reason": job.reason_text,
            "billed_micro": metering.owed(job, at),
            "charged_micro": job.charged_micro,
            "started_at": job.started_at,
            "ended_at": job.ended_at,
        }
        for job in rows
    }
