"""Celery tasks of the storage app: thin wrappers around services (DESIGN rule 4).

Each takes an optional ``as_of`` (ISO 8601) and catches up what was missed.
"""

from __future__ import annotations

from celery import shared_task

from aladdin.lib.timeutil import parse_as_of

from . import services

_OPTS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="storage.sample_usage", **_OPTS)
def sample_usage(as_of: str | None = None) -> int:
    """Measure every volume; keep each user's peak of the day (every STORAGE_SAMPLE_SECONDS)."""
    return services.usage_sample(as_of=parse_as_of(as_of) if as_of else None)


@shared_task(name="storage.nightly_charge", **_OPTS)
def nightly_charge(as_of: str | None = None) -> int:
    """Charge every unsettled day up to yesterday (00:30 Asia/Shanghai)."""
    return services.nightly_charge(as_of=parse_as_of(as_of) if as_of else None)


@shared_task(name="storage.retention", **_OPTS)
def retention(as_of: str | None = None) -> dict:
    """Warn 3 days before and reclaim volumes past their retention (SPEC §4.2)."""
    return services.retention_run(as_of=parse_as_of(as_of) if as_of else None)
