"""Idle GPUs caught (issue 20): a dev job whose cards stop working is warned about, then stopped.

The cards' utilisation comes through the driver's Monitor interface
(``workload_metrics``: NVML samples on real cards), here the fake driver's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse

from aladdin.accounts.models import Notification
from aladdin.cluster.base import GpuSample, MetricSample, WorkloadMetrics
from aladdin.workloads import idle as policies
from gpu_jobs import idle
from gpu_jobs.choices import JobKind, JobState
from gpu_jobs.models import Job

from .conftest import sh

T0 = sh(2026, 3, 10, 8)
INTERVAL = 60  # one sample a minute keeps the tests short


@pytest.fixture(autouse=True)
def _at_t0():
    with time_machine.travel(T0, tick=False):
        yield


def samples(busy_until_minute: int, minutes: int, *, busy: float = 85.0, idle_use: float = 0.0):
    """One sample a minute from T0 for ``minutes``: ``busy`` % use until the given minute, then ``idle_use``."""
    return [
        MetricSample(
            at=T0 + timedelta(minutes=m),
            period_seconds=INTERVAL,
            cpu_percent=100.0,
            memory_bytes=1 << 30,
            gpus=(
                GpuSample(
                    index="0",
                    utilization_percent=busy if m < busy_until_minute else idle_use,
                    memory_used_mib=2048,
                    memory_total_mib=40960,
                ),
            ),
        )
        for m in range(1, minutes + 1)
    ]


def report(driver, job, series, *, gpu_metrics=True):
    driver.metrics[job.workload_name] = WorkloadMetrics(
        name=job.workload_name,
        available=True,
        gpu_metrics=gpu_metrics,
        interval_seconds=INTERVAL,
        samples=series,
    )


def check(minute: int, django_capture_on_commit_callbacks) -> dict:
    with time_machine.travel(T0 + timedelta(minutes=minute, seconds=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            return idle.jobs_idle_check()


def test_an_idle_job_is_warned_once_then_stopped_with_its_reason(
    user, make_job, driver, subscribe, django_capture_on_commit_callbacks
):
    subscribe(user, "basic", T0 - timedelta(days=1))
    job = make_job(user, card="40g", kind=JobKind.RUN, started_at=T0)
    # Busy for 10 minutes, then its card does nothing (the notebook tab stays open).
    report(driver, job, samples(10, 80))

    assert check(30, django_capture_on_commit_callbacks)["busy"] == 1  # 20 idle minutes
    counts = check(41, django_capture_on_commit_callbacks)  # 31 idle minutes: warn
    assert counts["warned"] == 1
    assert check(45, django_capture_on_commit_callbacks)["warned"] == 0  # once
    warning = Notification.objects.get(user=user, message="job_idle_warning")
    assert warning.params["minutes"] >= 30 and warning.params["threshold"] == 5

    counts = check(71, django_capture_on_commit_callbacks)  # 61 idle minutes: stop
    assert counts["stopped"] == 1
    job.refresh_from_db()
    assert job.stop_requested_at is not None and job.reason_id == "job.idle_stopped"
    assert job.reason_params == {"minutes": 60, "threshold": 5, "hourly": 1_280_000}
    assert job.reason == (
        "Stopped: its GPUs were idle for 60 minutes (utilisation below 5%). "
        "Stopping it saves 1.28 DCU for each hour it would have kept running."
    )


def test_a_busy_job_a_task_and_a_job_without_gpu_metrics_are_left_alone(
    user, make_job, driver, subscribe, django_capture_on_commit_callbacks
):
    subscribe(user, "basic", T0 - timedelta(days=1))
    busy = make_job(user, card="40g", kind=JobKind.SHELL, started_at=T0)
    report(driver, busy, samples(80, 80))
    virtual = make_job(user, card="40g", kind=JobKind.RUN, started_at=T0)
    report(driver, virtual, samples(0, 80), gpu_metrics=False)
    task = make_job(user, card="40g", kind=JobKind.TASK, started_at=T0)
    report(driver, task, samples(0, 80))

    counts = check(80, django_capture_on_commit_callbacks)
    assert counts == {"warned": 0, "stopped": 0, "busy": 1, "unknown": 1}
    assert not Job.objects.filter(stop_requested_at__isnull=False).exists()
    assert not Notification.objects.filter(message="job_idle_warning").exists()


def test_a_stale_monitor_is_unknown_and_working_again_resets_the_warning(
    user, make_job, driver, subscribe, django_capture_on_commit_callbacks
):
    subscribe(user, "basic", T0 - timedelta(days=1))
    job = make_job(user, card="40g", kind=JobKind.RUN, started_at=T0)
    report(driver, job, samples(5, 40))
    assert check(40, django_capture_on_commit_callbacks)["warned"] == 1
    # The card works again: the warning is cleared for the next idle stretch.
    report(driver, job, samples(5, 40) + samples(100, 45)[40:])
    assert check(45, django_capture_on_commit_callbacks)["busy"] == 1
    job.refresh_from_db()
    assert job.idle_warned_at is None
    # No sample for 10 minutes (the Monitor lost it): not proof of idleness.
    assert check(56, django_capture_on_commit_callbacks)["unknown"] == 1


def test_the_users_policy_never_stops_and_the_form_sets_it(
    user, make_job, driver, subscribe, client, django_capture_on_commit_callbacks
):
    subscribe(user, "basic", T0 - timedelta(days=1))
    client.force_login(user)
    response = client.post(
        reverse("gpu_jobs:idle_policy"),
        {
            "warn_minutes": "",
            "stop_minutes": "",
            "threshold_percent": "5",
            "workshop_cpu_percent": "5",
        },
    )
    assert response.status_code == 302
    assert policies.policies_for(user).jobs.never
    job = make_job(user, card="40g", kind=JobKind.RUN, started_at=T0)
    report(driver, job, samples(0, 80))
    assert check(80, django_capture_on_commit_callbacks) == {
        "warned": 0,
        "stopped": 0,
        "busy": 0,
        "unknown": 0,
    }
    # A warning after the stop is refused with a message.
    client.post(
        reverse("gpu_jobs:idle_policy"),
        {
            "warn_minutes": "30",
            "stop_minutes": "20",
            "threshold_percent": "5",
            "workshop_cpu_percent": "5",
        },
    )
    assert policies.policies_for(user).jobs.never
    page = client.get(reverse("gpu_jobs:launch")).content.decode()
    assert 'data-testid="idle-policy"' in page
    assert job.state == JobState.RUNNING


def cpu_samples(busy_until_minute: int, minutes: int):
    return [
        MetricSample(
            at=T0 + timedelta(minutes=m),
            period_seconds=INTERVAL,
            cpu_percent=150.0 if m < busy_until_minute else 0.5,
            memory_bytes=1 << 29,
        )
        for m in range(1, minutes + 1)
    ]


def test_workshops_are_never_stopped_by_default_and_stopped_when_the_user_asks(
    user, make_workshop, driver, django_capture_on_commit_callbacks
):
    from workshops import idle as workshop_idle
    from workshops.models import Workshop

    workshop = make_workshop(user)
    driver.metrics[workshop.workload_name] = WorkloadMetrics(
        name=workshop.workload_name,
        available=True,
        interval_seconds=INTERVAL,
        samples=cpu_samples(5, 100),
    )

    def check_workshops(minute):
        with time_machine.travel(T0 + timedelta(minutes=minute, seconds=5), tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                return workshop_idle.workshops_idle_check()

    assert check_workshops(100) == {"warned": 0, "stopped": 0, "busy": 0, "unknown": 0}
    policies.policies_set(
        user=user,
        jobs=policies.DEFAULTS.jobs,
        workshops=policies.Policy(30, 90, 5),
    )
    assert check_workshops(40)["warned"] == 1
    assert Notification.objects.filter(user=user, message="workshop_idle_warning").count() == 1
    assert check_workshops(96)["stopped"] == 1
    workshop.refresh_from_db()
    assert workshop.state != "running" and workshop.reason_id == "workshop.idle_stopped"
    assert "idle for 90 minutes" in Workshop.objects.get(pk=workshop.pk).reason
