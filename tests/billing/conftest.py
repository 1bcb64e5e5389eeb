from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from billing.models import Plan

SH = ZoneInfo("Asia/Shanghai")


def sh(*args) -> datetime:
    """An aware Asia/Shanghai datetime: sh(2026, 4, 1, 10)."""
    return datetime(*args, tzinfo=SH)


@pytest.fixture
def plans(db) -> dict[str, Plan]:
    # Migration 0002 seeds the plans; a transaction=True test's flush empties
    # the table for the tests after it, so seed again (idempotent).
    from importlib import import_module

    from django.apps import apps

    import_module("billing.migrations.0002_seed_plans").seed_plans(apps, None)
    return {p.code: p for p in Plan.objects.all()}
