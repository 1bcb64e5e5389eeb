from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

# Workshops' fixtures, for the quota shared with workshops.
from tests.workshops.conftest import catalog, driver, make_workshop  # noqa: F401

SH = ZoneInfo("Asia/Shanghai")
DCU = 1_000_000


def sh(*args) -> datetime:
    return datetime(*args, tzinfo=SH)


@pytest.fixture
def plans(db):
    # Seeded by migrations; a transaction=True test's flush empties them.
    from importlib import import_module

    from django.apps import apps

    from billing.models import Plan

    import_module("billing.migrations.0002_seed_plans").seed_plans(apps, None)
    return {p.code: p for p in Plan.objects.all()}


@pytest.fixture
def cards(db):
    from importlib import import_module

    from django.apps import apps

    from gpu_jobs.models import GpuType

    import_module("gpu_jobs.migrations.0002_seed_gpu_types").seed_gpu_types(apps, None)
    return {g.code: g for g in GpuType.objects.all()}


@pytest.fixture
def subscribe(plans):
    from billing import services

    def _subscribe(user, code: str, at: datetime):
        return services.subscription_create(user=user, plan=plans[code], at=at)

    return _subscribe


@pytest.fixture
def make_job(cards):
    from gpu_jobs.choices import JobState
    from gpu_jobs.models import Job, JobWorker

    def _make(user, card="80g", cards_per_worker=1, workers=1, **extra):
        extra.setdefault("state", JobState.RUNNING)
        job = Job.objects.create(
            user=user,
            entry="train.py",
            gpu_type=cards[card],
            cards_per_worker=cards_per_worker,
            workers=workers,
            **extra,
        )
        # Every worker shares the job's window, as a GPU Run's single worker does.
        JobWorker.objects.bulk_create(
            JobWorker(job=job, index=i, started_at=job.started_at, ended_at=job.ended_at)
            for i in range(workers)
        )
        return job

    return _make
