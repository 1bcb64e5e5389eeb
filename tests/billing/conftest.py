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
    return {p.code: p for p in Plan.objects.all()}
