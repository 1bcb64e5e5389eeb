from __future__ import annotations

import pytest

from aladdin.cluster.base import QuotaExceeded, Resources
from aladdin.workloads import quota
from tests.factories import SubscriptionFactory
from workshops import services
from workshops.models import Image, ResourcePreset


def test_free_tier_gets_the_base_quota(user, plans):
    assert quota.limit_for(user) == Resources(cpu_millicores=2000, memory_mib=4096)


def test_trial_quota_is_parallelism_times_ten_cpu_and_121_gib(user, plans):
    SubscriptionFactory(user=user, plan_code="trial")
    assert quota.limit_for(user) == Resources(cpu_millicores=20_000, memory_mib=242 * 1024)


def test_second_large_workshop_is_refused_with_the_manuals_message(user, plans, make_workshop):
    # given a Trial user (parallelism 2) with a running 16C/64G workshop
    SubscriptionFactory(user=user, plan_code="trial")
    make_workshop(user, name="big", preset="16C/64G")
    # when they ask for another 16C one
    with pytest.raises(QuotaExceeded) as exc:
        make_workshop(user, name="big-2", preset="16C/64G")
    # then
    assert str(exc.value) == (
        "exceeded quota: requested: limits.cpu=16,limits.memory=64Gi, "
        "used: limits.cpu=16,limits.memory=64Gi, "
        "limited: limits.cpu=20,limits.memory=242Gi. "
        "Stop workshop big (16 CPU / 64 GiB) to make room, or choose a smaller size."
    )


def test_a_free_user_asking_for_more_than_the_free_size_is_told_what_fits_and_about_plans(
    user, plans, make_workshop
):
    # Nothing runs: "stop other workshops" would be a lie.
    with pytest.raises(QuotaExceeded) as exc:
        make_workshop(user, name="big", preset="16C/64G")
    text = str(exc.value)
    assert "Stop" not in text
    assert "Without a plan you can use 2 CPU / 4 GiB at a time" in text
    assert "buy a plan (each unit of GPU parallelism allows 10 CPU / 121 GiB)" in text


def test_a_plan_user_asking_for_more_than_the_plan_is_told_the_plan_s_limit(
    user, plans, make_workshop
):
    SubscriptionFactory(user=user, plan_code="trial")  # 20 CPU / 242 GiB
    with pytest.raises(QuotaExceeded) as exc:
        services.workshop_create(
            user=user,
            name="huge",
            image=Image.objects.filter(is_active=True).first(),
            preset=ResourcePreset.objects.create(
                name="32C", cpu_millicores=32_000, memory_mib=64 * 1024, sort=99
            ),
        )
    assert "Your plan allows 20 CPU / 242 GiB in all" in str(exc.value)


def test_stopped_workshops_do_not_count(user, plans, make_workshop):
    SubscriptionFactory(user=user, plan_code="trial")
    ws = make_workshop(user, name="big", preset="16C/64G")
    services.workshop_stop(workshop=ws)
    services.workshop_stop_apply(workshop_id=ws.pk)
    make_workshop(user, name="big-2", preset="16C/64G")


def test_registered_usage_counts_against_the_quota(user, plans, make_workshop, monkeypatch):
    # the hook gpu_jobs will use
    monkeypatch.setattr(quota, "_usage_providers", list(quota._usage_providers))
    quota.register_usage(
        lambda user, **_excluded: [
            quota.Holding("job #9", Resources(cpu_millicores=1000, memory_mib=1024))
        ]
    )
    with pytest.raises(QuotaExceeded):
        make_workshop(user, name="dev", preset="2C/4G")
