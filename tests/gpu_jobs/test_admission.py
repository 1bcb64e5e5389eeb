"""Admission of GPU jobs (SPEC §4.1, §7): each rule refuses with the numbers."""

from __future__ import annotations

import pytest
import time_machine

from aladdin.workloads import quota
from billing import services as billing_services
from gpu_jobs.admission import JobRefused, admit, minute_price_micro
from gpu_jobs.choices import JobState
from gpu_jobs.models import Job
from storage.models import StorageAllowance
from workshops.models import Workshop

from .conftest import DCU, sh

T0 = sh(2026, 3, 1, 8)
GIB = 2**30


@pytest.fixture(autouse=True)
def _at_t0():
    # The quota and the storage allowance read the plan in force now.
    with time_machine.travel(T0, tick=False):
        yield


def refusal(**kwargs) -> str:
    with pytest.raises(JobRefused) as refused:
        admit(**kwargs)
    return " ".join(refused.value.messages)


def test_the_card_presets_are_seeded(cards):
    assert cards["40g"].name == "DC100 (Hopper) 40G"
    assert cards["80g"].price_micro_per_hour == 2_560_000
    assert cards["40g"].price_micro_per_hour == 1_280_000
    assert (cards["40g"].parallelism_weight, cards["80g"].parallelism_weight) == (1, 2)
    assert cards["80g"].memory_mib == 121 * 1024 and cards["80g"].cpu_millicores == 10_000
    assert not cards["40g"].multi_card_allowed and cards["80g"].multi_card_allowed


def test_a_job_that_fits_every_rule_is_admitted(user, cards, subscribe):
    subscribe(user, "basic", T0)
    admit(user=user, gpu_type=cards["80g"], cards_per_worker=2, workers=1, at=T0)


def test_40g_cards_refuse_multi_card_workers(user, cards, subscribe):
    subscribe(user, "advanced", T0)
    text = refusal(user=user, gpu_type=cards["40g"], cards_per_worker=2, workers=1, at=T0)
    assert "DC100 (Hopper) 40G" in text and "multi-card" in text
    assert "2 cards per worker" in text and "allowed is 1" in text
    # One card per worker on several workers is fine.
    admit(user=user, gpu_type=cards["40g"], cards_per_worker=1, workers=2, at=T0)


def test_parallelism_counts_running_jobs_weighted_by_card(user, cards, subscribe, make_job):
    subscribe(user, "basic", T0)  # parallelism 4
    make_job(user, card="80g")  # uses 2
    make_job(user, card="40g", state=JobState.SUCCEEDED)  # ended: not counted
    admit(user=user, gpu_type=cards["40g"], cards_per_worker=1, workers=2, at=T0)  # 2 + 2 = 4
    text = refusal(user=user, gpu_type=cards["80g"], cards_per_worker=1, workers=2, at=T0)
    assert "needs 4" in text and "use 2" in text and "allows 4" in text
    # It would fit alone: the running jobs are named, with what they use.
    running = Job.objects.get(user=user, state=JobState.RUNNING)
    assert f"Stop job #{running.pk} (2) to make room" in text


def test_a_job_bigger_than_the_plan_is_told_to_shrink_not_to_stop_others(user, cards, subscribe):
    subscribe(user, "basic", T0)  # parallelism 4
    text = refusal(user=user, gpu_type=cards["80g"], cards_per_worker=1, workers=3, at=T0)
    assert "needs 6" in text and "allows 4" in text
    assert "Stop" not in text and "a plan with more GPU parallelism" in text


def test_the_free_tier_is_told_gpu_jobs_need_a_plan(user, cards, plans):
    with pytest.raises(JobRefused) as exc:
        admit(user=user, gpu_type=cards["40g"], cards_per_worker=1, workers=1, at=T0)
    assert exc.value.code == "plan_needed"
    assert "GPU jobs need a plan" in str(exc.value) and "Stop" not in str(exc.value)


def test_the_cpu_memory_quota_is_shared_with_workshops(user, cards, subscribe, make_workshop):
    subscribe(user, "trial", T0)  # parallelism 2: 20 CPU, 242 GiB
    make_workshop(user, preset="16C/64G")
    text = refusal(user=user, gpu_type=cards["80g"], cards_per_worker=1, workers=1, at=T0)
    assert "exceeded quota" in text
    assert "requested: limits.cpu=10,limits.memory=121Gi" in text
    assert "used: limits.cpu=16,limits.memory=64Gi" in text
    assert "limited: limits.cpu=20,limits.memory=242Gi" in text
    workshop = Workshop.objects.get(user=user)
    assert f"Stop workshop {workshop.name} (16 CPU / 64 GiB) to make room" in text


def test_running_jobs_count_in_the_workshops_quota(user, cards, subscribe, make_job):
    subscribe(user, "basic", T0)
    make_job(user, card="80g", cards_per_worker=2)
    make_job(user, card="40g", state=JobState.QUEUED)  # holds nothing yet
    used = quota.used_by(user)
    assert (used.cpu_millicores, used.memory_mib) == (20_000, 242 * 1024)


def test_a_job_needs_a_minute_of_its_price_in_active_balance(user, cards, subscribe):
    subscribe(user, "basic", T0)  # 56.6 DCU
    minute = minute_price_micro(cards["80g"], 2, 1)
    assert minute == 85_334  # 5.12 DCU/h / 60, rounded up
    balance = 56_600_000
    billing_services.charge(
        user=user, kind="test", key="spend", amount_micro=balance - minute + 1, reason="r", at=T0
    )
    text = refusal(user=user, gpu_type=cards["80g"], cards_per_worker=2, workers=1, at=T0)
    assert "0.085334 DCU" in text and "0.085333 DCU" in text and "2.56 DCU/h" in text
    assert "Top up" in text


def test_exactly_one_minute_of_balance_is_enough(user, cards, subscribe):
    subscribe(user, "basic", T0)
    minute = minute_price_micro(cards["40g"], 1, 1)
    billing_services.charge(
        user=user, kind="test", key="spend", amount_micro=56_600_000 - minute, reason="r", at=T0
    )
    admit(user=user, gpu_type=cards["40g"], cards_per_worker=1, workers=1, at=T0)
    assert minute * 60 >= 1 * DCU * 128 // 100


def test_storage_over_its_allowance_refuses_a_job(user, cards, subscribe):
    subscribe(user, "basic", T0)  # 60 GiB free
    StorageAllowance.objects.create(user=user, has_volume=True, last_bytes=61 * GIB)
    text = refusal(user=user, gpu_type=cards["40g"], cards_per_worker=1, workers=1, at=T0)
    assert "61.0 GiB" in text and "60 GiB" in text
