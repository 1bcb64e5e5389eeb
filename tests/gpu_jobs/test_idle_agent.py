"""Idle-GPU stops through a real agent (issue 20): the cards' readings come the way NVML's do.

The agent samples the job's virtual card through its GPU-metrics interface
(``monitor.FileGpuMetrics``, which reads what this test writes, where real
cards answer through NVML), the portal asks the driver for the samples, and
the idle walk warns, then stops, with the reason and what the stop saves.
The user's policy is shortened to seconds (the rule is the same; minutes
of wall time would make a slow test).
"""

from __future__ import annotations

import json
import time

import pytest
from django.utils import timezone

from aladdin.accounts.models import Notification
from aladdin.workloads.idle import Policies, Policy
from gpu_jobs import idle, services
from gpu_jobs.models import Job
from tests.gpu_jobs.test_local_jobs import job_running, write_script

SLEEPER = "import time\ntime.sleep(3600)\n"
# Warn after 3 s quiet, stop after 6 s, below 5 % utilisation.
SHORT = Policy(warn_minutes=0.05, stop_minutes=0.1, threshold_percent=5)  # type: ignore[arg-type]


class ShortWalk(idle.JobsIdleWalk):
    def policy(self, policies: Policies) -> Policy:
        return SHORT


def walk() -> dict[str, int]:
    return ShortWalk(now=timezone.now()).run()


@pytest.fixture
def cards_say(tmp_path):
    path = tmp_path / "gpu-metrics.json"

    def say(percent: float) -> None:
        path.write_text(json.dumps({"default": percent}))

    say(85)
    return path, say


@pytest.fixture
def agent(start_agent, built_images, use_driver, cards_say):
    built_images.build_catalog_defaults()
    running = start_agent(
        ALADDIN_LOCAL_MONITOR_SECONDS="1",
        ALADDIN_LOCAL_VIRTUAL_GPU_METRICS_FILE=str(cards_say[0]),
        **built_images.agent_env(),
    )
    if not running.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {running.health['sandbox_reason']}")
    use_driver(running.driver)
    return running


def until(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)
    return found


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_card_goes_quiet_is_warned_then_stopped_and_a_busy_one_is_left(
    agent, cards_say, user, cards, catalog, subscribe
):
    # given a running GPU Run whose card works (the agent reads 85 % from it)
    _path, say = cards_say
    subscribe(user, "basic", timezone.now())
    write_script(agent, user, "sleep.py", SLEEPER)
    job = services.job_create(user=user, entry="sleep.py", gpu_type=cards["40g"])
    until(lambda: job_running(job.pk))
    metrics = until(
        lambda: (m := agent.driver.workload_metrics(name=job.workload_name)).samples and m
    )
    assert metrics.gpu_metrics and metrics.samples[-1].gpus[0].utilization_percent == 85

    # then a busy job is left alone
    time.sleep(4)
    assert walk()["busy"] == 1

    # when its card goes quiet: first the warning, once
    say(0)
    until(lambda: walk()["warned"] == 1, timeout=20)
    warning = Notification.objects.get(user=user, message="job_idle_warning")
    assert warning.params["id"] == job.pk and warning.params["threshold"] == 5

    # then the stop, with the reason and the DCU an hour of it would have cost
    until(lambda: walk()["stopped"] == 1, timeout=20)
    job = Job.objects.get(pk=job.pk)
    assert job.stop_requested_at is not None and job.reason_id == "job.idle_stopped"
    assert job.reason_params["hourly"] == job.gpu_type.price_micro_per_hour
    assert "saves" in job.reason
    assert Notification.objects.filter(user=user, message="job_idle_warning").count() == 1
