"""Workshops and the storage allowance (SPEC §4.2): a volume over its allowance refuses new workloads."""

from __future__ import annotations

import pytest

from storage.models import StorageAllowance
from workshops import services

GIB = 2**30


def test_creating_a_workshop_registers_the_users_volume(user, make_workshop, driver):
    make_workshop(user)
    row = StorageAllowance.objects.get(user=user)
    assert row.has_volume


def test_a_volume_over_its_allowance_refuses_a_new_workshop_with_the_numbers(
    user, make_workshop, catalog
):
    make_workshop(user)
    StorageAllowance.objects.filter(user=user).update(last_bytes=31 * GIB)

    with pytest.raises(services.WorkshopError) as refused:
        services.workshop_create(
            user=user,
            name="second",
            image=catalog["image"],
            preset=catalog["presets"]["2C/4G"],
        )
    assert "31.0 GiB" in str(refused.value) and "30 GiB" in str(refused.value)
