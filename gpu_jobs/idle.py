"""Idle GPUs caught (issue 20): dev jobs whose cards do nothing are warned about, then stopped.

Peers judge idleness by HTTP activity (JupyterHub's culler) or a timer; a
notebook tab left open then keeps a job "busy" and billing. Here the cards'
own utilisation decides, from the Monitor's samples
(:meth:`ClusterDriver.workload_metrics`: NVML on real cards, DCGM on
Kubernetes later): a dev job (GPU Run, Debug, Shell) is idle while every
card it holds stays below the user's threshold. A Run Task is never stopped
for it (it ends by itself), nor is a job whose cards report no metrics
(virtual cards): unknown is not idle.

Each user's policy (``aladdin.workloads.idle``): warn after N
minutes idle (a notice, and an SMS unless the user turned the kind off),
stop after M minutes, or never. A stop keeps the reason with the minutes,
the threshold and what the job no longer bills per hour.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from aladdin import cluster
from aladdin.accounts.services import notification_create
from aladdin.cluster.base import DriverError
from aladdin.lib.said import Said
from aladdin.workloads.idle import Policy, gpus_busy, idle_minutes, policies_for

from . import services
from .choices import JobState
from .models import Job
from .selectors import DEV_KINDS

log = logging.getLogger(__name__)


def _hourly_micro(job: Job) -> int:
    return job.gpu_type.price_micro_per_hour * job.cards_per_worker * job.workers


def jobs_idle_check(*, now: datetime | None = None) -> dict[str, int]:
    """Warn about, or stop, the running dev jobs idle past their user's policy. Idempotent."""
    now = now or timezone.now()
    counts = {"warned": 0, "stopped": 0, "busy": 0, "unknown": 0}
    running = (
        Job.objects.filter(
            state=JobState.RUNNING,
            kind__in=DEV_KINDS,
            stop_requested_at__isnull=True,
            deleted_at__isnull=True,
        )
        .select_related("user", "gpu_type")
        .order_by("pk")
    )
    policies: dict[int, Policy] = {}
    driver = cluster.get_driver()
    for job in running:
        if job.user_id not in policies:
            policies[job.user_id] = policies_for(job.user).jobs
        policy = policies[job.user_id]
        if policy.never:
            continue
        since = now - timedelta(minutes=policy.window_minutes + 1)
        try:
            metrics = driver.workload_metrics(name=job.workload_name, since=since)
        except DriverError:
            log.info("no metrics for %s now", job.workload_name, exc_info=True)
            counts["unknown"] += 1
            continue
        minutes = idle_minutes(
            metrics, now=now, busy=gpus_busy(policy.threshold_percent), needs_gpu_metrics=True
        )
        if minutes is None:
            counts["unknown"] += 1
        elif policy.stop_minutes is not None and minutes >= policy.stop_minutes:
            _stop(job, policy, now)
            counts["stopped"] += 1
        elif policy.warn_minutes is not None and minutes >= policy.warn_minutes:
            if _warn(job, policy, minutes, now):
                counts["warned"] += 1
        else:
            counts["busy"] += 1
            if job.idle_warned_at is not None and minutes < (policy.warn_minutes or 0):
                # Working again: the next idle stretch gets its own warning.
                Job.objects.filter(pk=job.pk).update(idle_warned_at=None)
    return counts


def _warn(job: Job, policy: Policy, minutes: float, now: datetime) -> bool:
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, idle_warned_at__isnull=True).update(
            idle_warned_at=now
        ):
            return False  # warned before in this idle stretch
        notification_create(
            user=job.user,
            message="job_idle_warning",
            params={
                "id": job.pk,
                "name": job.display_name,
                "minutes": int(minutes),
                "threshold": policy.threshold_percent,
                "stop_minutes": policy.stop_minutes,
                "hourly": _hourly_micro(job),
            },
            at=now,
        )
    return True


def _stop(job: Job, policy: Policy, now: datetime) -> None:
    reason = Said(
        "job.idle_stopped",
        {
            "minutes": policy.stop_minutes,
            "threshold": policy.threshold_percent,
            "hourly": _hourly_micro(job),
        },
    )
    services.job_stop(job=job, reason=reason, at=now)
