"""Idle workshops (issue 20): warned about, then stopped, when the user asked for it.

A workshop holds no card and bills no DCU, so the default is never (stopping
one only ends the user's sessions; files under /root stay). A user who wants
their CPU and memory back sets a policy: the workshop is idle while its CPU
stays below the threshold (of one core) in the Monitor's samples; an open
SSH or terminal session that runs nothing does not make it busy.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from aladdin.accounts.services import notification_create
from aladdin.lib.said import Said
from aladdin.workloads.idle import IdleWalk, Policies, Policy, cpu_busy

from . import services
from .choices import WorkshopState
from .models import Workshop


class WorkshopsIdleWalk(IdleWalk):
    def rows(self) -> QuerySet[Workshop]:
        return (
            Workshop.objects.filter(state=WorkshopState.RUNNING)
            .select_related("user")
            .order_by("pk")
        )

    def policy(self, policies: Policies) -> Policy:
        return policies.workshops

    def busy(self, policy: Policy):
        return cpu_busy(policy.threshold_percent)

    def notify(self, row: Workshop, policy: Policy, minutes: float) -> None:
        notification_create(
            user=row.user,
            message="workshop_idle_warning",
            params={
                "id": row.pk,
                "name": row.name,
                "minutes": int(minutes),
                "threshold": policy.threshold_percent,
                "stop_minutes": policy.stop_minutes,
            },
            at=self.now,
        )

    def stop(self, row: Workshop, policy: Policy) -> None:
        services.workshop_stop(
            workshop=row,
            reason=Said(
                "workshop.idle_stopped",
                {"minutes": policy.stop_minutes, "threshold": policy.threshold_percent},
            ),
        )


def workshops_idle_check(*, now: datetime | None = None) -> dict[str, int]:
    """Warn about, or stop, running workshops idle past their user's policy. Idempotent."""
    return WorkshopsIdleWalk(now=now or timezone.now()).run()
