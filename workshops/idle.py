"""Idle workshops (issue 20): warned about, then stopped, when the user asked for it.

A workshop holds no card and bills no DCU, so the default is never (stopping
one only ends the user's sessions; files under /root stay). A user who wants
their CPU and memory back sets a policy: the workshop is idle while its CPU
stays below the threshold (of one core) in the Monitor's samples; an open
SSH or terminal session that runs nothing does not make it busy.
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
from aladdin.workloads.idle import Policy, cpu_busy, idle_minutes, policies_for

from . import services
from .choices import WorkshopState
from .models import Workshop

log = logging.getLogger(__name__)


def workshops_idle_check(*, now: datetime | None = None) -> dict[str, int]:
    """Warn about, or stop, running workshops idle past their user's policy. Idempotent."""
    now = now or timezone.now()
    counts = {"warned": 0, "stopped": 0, "busy": 0, "unknown": 0}
    policies: dict[int, Policy] = {}
    driver = cluster.get_driver()
    running = Workshop.objects.filter(state=WorkshopState.RUNNING).select_related("user")
    for workshop in running.order_by("pk"):
        if workshop.user_id not in policies:
            policies[workshop.user_id] = policies_for(workshop.user).workshops
        policy = policies[workshop.user_id]
        if policy.never:
            continue
        since = now - timedelta(minutes=policy.window_minutes + 1)
        try:
            metrics = driver.workload_metrics(name=workshop.workload_name, since=since)
        except DriverError:
            log.info("no metrics for %s now", workshop.workload_name, exc_info=True)
            counts["unknown"] += 1
            continue
        minutes = idle_minutes(
            metrics, now=now, busy=cpu_busy(policy.threshold_percent), needs_gpu_metrics=False
        )
        if minutes is None:
            counts["unknown"] += 1
        elif policy.stop_minutes is not None and minutes >= policy.stop_minutes:
            services.workshop_stop(
                workshop=workshop,
                reason=Said(
                    "workshop.idle_stopped",
                    {"minutes": policy.stop_minutes, "threshold": policy.threshold_percent},
                ),
            )
            counts["stopped"] += 1
        elif policy.warn_minutes is not None and minutes >= policy.warn_minutes:
            if _warn(workshop, policy, minutes, now):
                counts["warned"] += 1
        else:
            counts["busy"] += 1
            if workshop.idle_warned_at is not None:
                # Working again: the next idle stretch gets its own warning.
                Workshop.objects.filter(pk=workshop.pk).update(idle_warned_at=None)
    return counts


def _warn(workshop: Workshop, policy: Policy, minutes: float, now: datetime) -> bool:
    with transaction.atomic():
        if not Workshop.objects.filter(pk=workshop.pk, idle_warned_at__isnull=True).update(
            idle_warned_at=now
        ):
            return False
        notification_create(
            user=workshop.user,
            message="workshop_idle_warning",
            params={
                "id": workshop.pk,
                "name": workshop.name,
                "minutes": int(minutes),
                "threshold": policy.threshold_percent,
                "stop_minutes": policy.stop_minutes,
            },
            at=now,
        )
    return True
