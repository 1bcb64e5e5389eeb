from __future__ import annotations

import pytest

from tests.workshops.fakes import FakeDriver


@pytest.fixture
def driver(monkeypatch) -> FakeDriver:
    fake = FakeDriver()
    monkeypatch.setattr("aladdin.cluster.get_driver", lambda: fake)
    return fake


@pytest.fixture
def catalog(db):
    from workshops import catalog as workshops_catalog
    from workshops.models import Image, ResourcePreset

    workshops_catalog.load()
    return {
        "image": Image.objects.get(name="python", tag="3.12"),
        "presets": {p.name: p for p in ResourcePreset.objects.all()},
    }


@pytest.fixture
def plans(db):
    from importlib import import_module

    from django.apps import apps

    from billing.models import Plan

    import_module("billing.migrations.0002_seed_plans").seed_plans(apps, None)
    return {p.code: p for p in Plan.objects.all()}


@pytest.fixture
def make_workshop(catalog, driver, plans):
    from workshops import services

    def _make(user, name="dev", preset="2C/4G", env=None, run=True):
        ws = services.workshop_create(
            user=user,
            name=name,
            image=catalog["image"],
            preset=catalog["presets"][preset],
            env=env,
        )
        if run:
            services.workshop_start_apply(workshop_id=ws.pk)
            ws.refresh_from_db()
        return ws

    return _make
