from __future__ import annotations

import pytest

from storage import selectors, services
from storage.services import StorageError
from tests.factories import SubscriptionFactory

from .conftest import GIB, sh


@pytest.fixture
def trial_user(make_user, plans):
    user = make_user()
    SubscriptionFactory(user=user, plan_code="trial")
    return user


def test_the_free_tier_cannot_expand(make_user, plans):
    user = make_user()
    with pytest.raises(StorageError, match="free tier cannot expand"):
        services.storage_expand(user=user, allowance_gib=40)
    assert selectors.allowance_gib(user) == 30


def test_a_plan_user_expands_up_to_the_plans_maximum(trial_user):
    services.storage_expand(user=trial_user, allowance_gib=500)
    assert selectors.allowance_gib(trial_user) == 500

    with pytest.raises(StorageError, match="at most 500 GiB.*asked for 501 GiB"):
        services.storage_expand(user=trial_user, allowance_gib=501)


def test_shrinking_below_current_use_is_refused_with_numbers(trial_user, driver):
    services.volume_register(user_id=trial_user.pk)
    services.storage_expand(user=trial_user, allowance_gib=200)
    driver.usage[trial_user.pk] = 100 * GIB + 5
    services.usage_sample(driver=driver)

    with pytest.raises(StorageError, match="You use 101 GiB"):
        services.storage_expand(user=trial_user, allowance_gib=100)
    services.storage_expand(user=trial_user, allowance_gib=101)


def test_only_staff_raise_the_allowance_beyond_the_plans_maximum(trial_user, make_user):
    staff = make_user(is_staff=True)
    services.storage_set_by_staff(user=trial_user, actor=staff, allowance_gib=800, reason="lab")
    assert selectors.allowance_gib(trial_user) == 800


def test_new_workloads_are_refused_while_use_is_over_the_allowance(make_user, plans, driver):
    user = make_user()
    services.volume_register(user_id=user.pk)
    driver.usage[user.pk] = 30 * GIB
    services.usage_sample(driver=driver, as_of=sh(2026, 4, 1))
    assert selectors.workloads_allowed(user) == (True, "")

    driver.usage[user.pk] = 30 * GIB + 1
    services.usage_sample(driver=driver, as_of=sh(2026, 4, 1, 1))
    allowed, message = selectors.workloads_allowed(user)
    assert not allowed
    assert "over your allowance (30 GiB)" in message
