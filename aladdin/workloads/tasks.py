"""Celery tasks of what the workload apps share: thin, over aladdin.workloads' services.

aladdin.workloads is not a Django app; aladdin/celery.py names it so that
the worker finds this module.
"""

from __future__ import annotations

from celery import shared_task  # type: ignore[import-untyped]  # celery ships no types

from aladdin.lib.timeutil import parse_as_of

from . import disk


@shared_task(
    name="workloads.disk_guard", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def disk_guard(as_of: str | None = None) -> dict:
    """Below the free-space reserve, stop the workloads of the users furthest over their allowance."""
    return disk.disk_guard(as_of=parse_as_of(as_of) if as_of else None).as_dict()
