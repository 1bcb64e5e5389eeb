from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from billing.models import Plan
from tests.workshops.fakes import FakeDriver

SH = ZoneInfo("Asia/Shanghai")
GIB = 1 << 30


def sh(*args) -> datetime:
    """An aware Asia/Shanghai datetime: sh(2026, 4, 1, 10)."""
    return datetime(*args, tzinfo=SH)


class UsageDriver(FakeDriver):
    """FakeDriver whose volumes report the bytes a test sets."""

    def __init__(self):
        super().__init__()
        self.usage: dict[int, int] = {}
        self.deleted: list[int] = []

    def storage_usage_bytes(self, *, user_id: int) -> int:
        return self.usage.get(user_id, 0)

    def delete_user_space(self, *, user_id: int) -> None:
        self.deleted.append(user_id)
        self.usage.pop(user_id, None)
        super().delete_user_space(user_id=user_id)


@pytest.fixture
def plans(db) -> dict[str, Plan]:
    from importlib import import_module

    from django.apps import apps

    import_module("billing.migrations.0002_seed_plans").seed_plans(apps, None)
    return {p.code: p for p in Plan.objects.all()}


@pytest.fixture
def driver(monkeypatch) -> UsageDriver:
    fake = UsageDriver()
    monkeypatch.setattr("storage.services.get_driver", lambda: fake)
    return fake
