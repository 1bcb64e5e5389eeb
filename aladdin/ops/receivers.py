"""Celery signal receivers: heartbeats of periodic tasks and a shared failure count.

Instrumentation only, no business rule (DESIGN rule 1 keeps those out of
signals). The signals fire in the process that ran the task, for worker runs
and for eager ``apply()``/``delay()`` alike; a task function called directly
as a plain function is not a run and records nothing.
"""

from __future__ import annotations

from celery.signals import task_failure, task_success
from django.utils import timezone

from . import services


@task_success.connect(dispatch_uid="aladdin.ops.heartbeat_on_success")
def _on_success(sender=None, **kwargs):
    name = getattr(sender, "name", None)
    if name in services.periodic_task_names():
        services.task_heartbeat_record(task=name, at=timezone.now())


@task_failure.connect(dispatch_uid="aladdin.ops.count_failure")
def _on_failure(sender=None, exception=None, **kwargs):
    name = getattr(sender, "name", None) or "unknown"
    services.task_failure_count(task=name)
    if name in services.periodic_task_names():
        services.task_heartbeat_record(
            task=name, at=timezone.now(), error=f"{type(exception).__name__}: {exception}"
        )
