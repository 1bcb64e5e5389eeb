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

from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from aladdin.accounts.services import notification_create
from aladdin.lib.said import Said
from aladdin.workloads.idle import IdleWalk, Policies, Policy, gpus_busy

from . import services
from .choices import JobState
from .models import Job
from .selectors import DEV_KINDS


def _hourly_micro(job: Job) -> int:
    return job.gpu_type.price_micro_per_hour * job.cards_per_worker * job.workers


class JobsIdleWalk(IdleWalk):
    needs_gpu_metrics = True  # unknown (virtual cards) is not idle

    def rows(self) -> QuerySet[Job]:
        return (
            Job.objects.filter(
                state=JobState.RUNNING,
                kind__in=DEV_KINDS,
                stop_requested_at__isnull=True,
                deleted_at__isnull=True,
            )
            .select_related("user", "gpu_type")
            .order_by("pk")
        )

    def policy(self, policies: Policies) -> Policy:
        return policies.jobs

    def busy(self, policy: Policy):
        return gpus_busy(policy.threshold_percent)

    def notify(self, row: Job, policy: Policy, minutes: float) -> None:
        notification_create(
            user=row.user,
            message="job_idle_warning",
            params={
                "id": row.pk,
                "name": row.display_name,
                "minutes": int(minutes),
                "threshold": policy.threshold_percent,
                "stop_minutes": policy.stop_minutes,
                "hourly": _hourly_micro(row),
            },
            at=self.now,
        )

    def stop(self, row: Job, policy: Policy) -> None:
        reason = Said(
            "job.idle_stopped",
            {
                "minutes": policy.stop_minutes,
                "threshold": policy.threshold_percent,
                "hourly": _hourly_micro(row),
            },
        )
        services.job_stop(job=row, reason=reason, at=self.now)


def jobs_idle_check(*, now: datetime | None = None) -> dict[str, int]:
    """Warn about, or stop, the running dev jobs idle past their user's policy. Idempotent."""
    return JobsIdleWalk(now=now or timezone.now()).run()
