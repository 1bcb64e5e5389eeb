from __future__ import annotations

import pytest

from aladdin.cluster.base import QuotaExceeded, Resources
from aladdin.workloads import quota
from tests.factories import SubscriptionFactory
from workshops import services


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
        "Stop other workshops, or shrink this one to 2 CPU / 4 GiB."
    )


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
        lambda user, exclude_workshop_id=None: Resources(cpu_millicores=1000, memory_mib=1024)
    )
    with pytest.raises(QuotaExceeded):
        make_workshop(user, name="dev", preset="2C/4G")
