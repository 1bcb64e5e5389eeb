"""A dev job's output on the host is removed ALADDIN_JOB_LOG_RETENTION_DAYS after it ends (SPEC §7).

``jobs_expire_logs`` (the hourly ``gpu_jobs.expire_logs`` task) takes an
``as_of`` time: everything that ended before ``as_of`` minus the retention
and is not removed yet is due, so a missed run is caught up and a second run
changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from django.test import override_settings

from aladdin.cluster.base import DriverError
from gpu_jobs import logs, services, tasks
from gpu_jobs.choices import JobKind, JobState
from tests.cluster.conftest import spec

from .conftest import sh

ENDED = sh(2026, 3, 1, 8)
WEEK = timedelta(days=7)


def ended_job(make_job, user, *, ended_at=ENDED, kind=JobKind.SHELL, **extra):
    extra.setdefault("state", JobState.SUCCEEDED)
    return make_job(
        user, kind=kind, started_at=ended_at - timedelta(minutes=1), ended_at=ended_at, **extra
    )


def host_output(driver, job) -> bytes:
    # The driver itself, not gpu_jobs.logs (which no longer asks it once removed).
    return b"".join(driver.follow_logs(name=job.workload_name, follow=False))


def test_the_agent_keeps_the_output_for_the_retention_then_removes_it(
    user,
    make_job,
    agent,
    use_driver,
):
    # given a Run Shell whose output the local agent kept on the host
    use_driver(agent.driver)
    job = ended_job(make_job, user)
    agent.driver.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    agent.driver.start_workload(
        spec(job.workload_name, user_id=user.pk, kind="job", command=["sh", "-c", "echo kept"])
    )
    b"".join(agent.driver.follow_logs(name=job.workload_name))  # until it ends
    assert host_output(agent.driver, job) == b"kept\n"

    # when the task runs just before the retention ends: it is kept
    assert services.jobs_expire_logs(as_of=ENDED + WEEK) == {"removed": 0, "failed": 0}
    assert host_output(agent.driver, job) == b"kept\n"

    # and just after: the host file is gone and the job says so
    removed_at = ENDED + WEEK + timedelta(seconds=1)
    assert services.jobs_expire_logs(as_of=removed_at) == {"removed": 1, "failed": 0}
    assert host_output(agent.driver, job) == b""
    job.refresh_from_db()
    assert job.logs_deleted and job.logs_expired_at == removed_at
    # Readers get an ended, empty log without asking the driver.
    assert logs.read_logs(job, offset=5) == logs.LogChunk(b"", 5, ended=True)
    assert list(logs.follow(job)) == []


def test_a_missed_run_is_caught_up_and_a_second_run_changes_nothing(user, make_job, driver):
    # given three dev jobs that ended days apart while the task did not run
    jobs = [
        ended_job(make_job, user, ended_at=ENDED + timedelta(days=d), kind=kind)
        for d, kind in ((0, JobKind.RUN), (1, JobKind.SHELL), (6, JobKind.DEBUG))
    ]
    for job in jobs:
        driver.write_log(job.workload_name, b"output\n")

    # when it runs again 12 days after the first ended
    first = ENDED + timedelta(days=12)
    assert services.jobs_expire_logs(as_of=first) == {"removed": 2, "failed": 0}
    # and again, later the same hour
    assert services.jobs_expire_logs(as_of=first + timedelta(minutes=30)) == {
        "removed": 0,
        "failed": 0,
    }

    # then the two past their week are removed once, the third is kept
    for job in jobs:
        job.refresh_from_db()
    assert [j.logs_expired_at for j in jobs] == [first, first, None]
    assert set(driver.logs) == {jobs[2].workload_name}


def test_only_ended_dev_jobs_that_are_not_deleted_are_touched(user, make_job, driver):
    long_ago = ENDED - timedelta(days=60)
    running = make_job(user, kind=JobKind.SHELL, state=JobState.RUNNING, started_at=long_ago)
    task = ended_job(make_job, user, ended_at=long_ago, kind=JobKind.TASK)
    deleted = ended_job(make_job, user, ended_at=long_ago, deleted_at=ENDED)
    failed_to_start = make_job(
        user, kind=JobKind.RUN, state=JobState.FAILED, ended_at=long_ago, metering_closed=True
    )

    counts = services.jobs_expire_logs(as_of=ENDED)

    # Task logs live in the user's volume and count as storage; deleted jobs
    # are the reconciler's; a job that never started has nothing, but is marked.
    assert counts == {"removed": 1, "failed": 0}
    for job in (running, task, deleted, failed_to_start):
        job.refresh_from_db()
    assert [j.logs_expired_at is not None for j in (running, task, deleted, failed_to_start)] == [
        False,
        False,
        False,
        True,
    ]


def test_a_driver_failure_leaves_the_job_for_the_next_run(user, make_job, driver, monkeypatch):
    job = ended_job(make_job, user)
    driver.write_log(job.workload_name, b"output\n")
    delete_logs = driver.delete_logs

    def unreachable(**_):
        raise DriverError("agent unreachable")

    monkeypatch.setattr(driver, "delete_logs", unreachable)
    assert services.jobs_expire_logs(as_of=ENDED + 2 * WEEK) == {"removed": 0, "failed": 1}
    job.refresh_from_db()
    assert not job.logs_deleted and job.logs_expired_at is None

    monkeypatch.setattr(driver, "delete_logs", delete_logs)
    assert services.jobs_expire_logs(as_of=ENDED + 2 * WEEK) == {"removed": 1, "failed": 0}
    assert job.workload_name not in driver.logs


@override_settings(JOB_LOG_RETENTION_DAYS=2)
def test_the_setting_says_how_many_days(user, make_job, driver):
    job = ended_job(make_job, user)

    assert services.jobs_expire_logs(as_of=ENDED + timedelta(days=2))["removed"] == 0
    assert services.jobs_expire_logs(as_of=ENDED + timedelta(days=2, seconds=1))["removed"] == 1
    job.refresh_from_db()
    assert job.logs_deleted


def test_the_periodic_task_is_scheduled_by_name_and_takes_as_of(user, make_job, driver):
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["gpu-jobs-expire-logs"]
    assert entry["task"] == tasks.expire_logs.name == "gpu_jobs.expire_logs"
    job = ended_job(make_job, user)

    # An ISO time, naive = Asia/Shanghai, as the other periodic tasks take it.
    result = tasks.expire_logs.apply(kwargs={"as_of": "2026-03-08T08:00:01"}).get()

    assert result == {"removed": 1, "failed": 0}
    job.refresh_from_db()
    assert job.logs_expired_at == ENDED + WEEK + timedelta(seconds=1)


def test_the_job_page_says_the_output_was_removed_and_opens_no_stream(
    client, user, make_job, driver
):
    job = ended_job(make_job, user)
    services.jobs_expire_logs(as_of=ENDED + 2 * WEEK)
    client.force_login(user)

    page = client.get(f"/jobs/{job.pk}/").content.decode()

    assert 'data-testid="job-logs-removed"' in page
    assert "output for 7 days after the job ends" in page
    assert 'id="job-logs"' not in page  # no log viewer: it would show an empty log
    response = client.get(f"/api/v1/jobs/{job.pk}/logs")
    assert response.status_code == 200 and response.content == b""
    assert response["X-Log-Ended"] == "true"
