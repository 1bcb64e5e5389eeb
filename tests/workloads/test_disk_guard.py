"""The free-space reserve (aladdin/workloads/disk.py) on the fake driver: who is stopped, and why.

The real disk, a real agent and a workload filling it: tests/workloads/test_disk.py.
"""

from __future__ import annotations

import logging

import pytest

from aladdin.accounts.models import Notification
from aladdin.cluster.base import DiskSpace
from aladdin.workloads import disk
from aladdin.workloads import tasks as workload_tasks
from gpu_jobs.choices import JobState
from storage.models import StorageAllowance
from workshops import services as workshop_services
from workshops.choices import WorkshopState

GIB = 2**30
RESERVE = 10 * GIB
FREE_TIER_GIB = 30  # the allowance of a user without a plan


@pytest.fixture
def low_disk(driver, settings):
    """The volumes' disk has 8 GiB free against a 10 GiB reserve: 2 GiB short."""
    settings.LOCAL_DISK_RESERVE_MIB = RESERVE // 2**20
    driver.disk = DiskSpace(total=100 * GIB, free=8 * GIB)
    return driver


def _using(driver, user, gib: float) -> None:
    driver.usage[user.pk] = int(gib * GIB)


def _reasons(user) -> list[str]:
    return [w.reason for w in user.workshops.all()]


def test_above_the_reserve_no_volume_is_measured_and_nothing_stops(
    driver, settings, make_user, make_workshop
):
    settings.LOCAL_DISK_RESERVE_MIB = 1024
    student = make_user()
    make_workshop(student)
    _using(driver, student, FREE_TIER_GIB + 5)

    result = disk.disk_guard()

    assert not result.below and result.chosen == []
    assert driver.called("storage_usage_bytes") == []
    assert student.workshops.get().state == WorkshopState.RUNNING


def test_a_reserve_of_zero_turns_the_guard_off(driver, settings, make_user, make_workshop):
    settings.LOCAL_DISK_RESERVE_MIB = 0
    driver.disk = DiskSpace(total=GIB, free=0)
    student = make_user()
    make_workshop(student)
    _using(driver, student, FREE_TIER_GIB + 5)

    result = disk.disk_guard()

    assert result.as_dict()["below"] is False
    assert driver.called("disk_free") == []


def test_below_the_reserve_the_user_furthest_over_is_stopped_with_the_numbers(
    low_disk, make_user, make_workshop, django_capture_on_commit_callbacks
):
    # given: far over (5 GiB), a little over (1 GiB), within the allowance
    far, little, within = make_user(), make_user(), make_user()
    for student in (far, little, within):
        make_workshop(student)
    _using(low_disk, far, FREE_TIER_GIB + 5)
    _using(low_disk, little, FREE_TIER_GIB + 1)
    _using(low_disk, within, FREE_TIER_GIB - 1)

    # when: 2 GiB short of the reserve
    with django_capture_on_commit_callbacks(execute=True):
        result = disk.disk_guard()

    # then: the 5 GiB of the furthest covers the 2 GiB: only that user stops
    assert [o.user_id for o in result.over] == [far.pk, little.pk]
    assert result.chosen == [far.pk] and result.stopped == {far.pk: 1}
    workshop = far.workshops.get()
    assert workshop.state == WorkshopState.STOPPED
    for number in ("8.0\xa0GB free", "reserve 10.0\xa0GB", "5.0\xa0GB over", "of 30.0\xa0GB"):
        assert number in workshop.reason, workshop.reason
    assert low_disk.called("stop_workload") == [
        {"name": workshop.workload_name, "grace_seconds": 10}
    ]
    assert _reasons(little) == [""] and _reasons(within) == [""]
    assert little.workshops.get().state == WorkshopState.RUNNING
    notice = Notification.objects.get(user=far)
    # stored as numbers, read as the same words as the workshop's reason
    assert notice.kind == "storage_disk_full" and notice.rendered.body == workshop.reason


def test_users_are_stopped_until_their_excess_covers_the_shortfall(
    low_disk, make_user, make_workshop
):
    low_disk.disk = DiskSpace(total=100 * GIB, free=4 * GIB)  # 6 GiB short
    far, little, within = make_user(), make_user(), make_user()
    for student in (far, little, within):
        make_workshop(student)
    _using(low_disk, far, FREE_TIER_GIB + 5)
    _using(low_disk, little, FREE_TIER_GIB + 1)
    _using(low_disk, within, FREE_TIER_GIB)  # exactly the allowance: within it

    result = disk.disk_guard()

    assert result.chosen == [far.pk, little.pk]
    assert far.workshops.get().state == WorkshopState.STOPPING
    assert little.workshops.get().state == WorkshopState.STOPPING
    assert within.workshops.get().state == WorkshopState.RUNNING


def test_nobody_over_the_allowance_stops_nothing_and_alerts_the_operator(
    low_disk, make_user, make_workshop, caplog
):
    student = make_user()
    make_workshop(student)
    _using(low_disk, student, FREE_TIER_GIB)

    with caplog.at_level(logging.ERROR, logger="aladdin.workloads.disk"):
        result = disk.disk_guard()

    assert result.chosen == [] and "no user is over the storage allowance" in result.alert
    assert "below the reserve" in caplog.text
    assert student.workshops.get().state == WorkshopState.RUNNING
    assert not Notification.objects.filter(user=student).exists()


def test_a_second_pass_stops_nothing_more_and_notifies_once(
    low_disk, make_user, make_workshop, make_job
):
    student = make_user()
    make_workshop(student)
    job = make_job(student)
    _using(low_disk, student, FREE_TIER_GIB + 5)

    first = disk.disk_guard()
    second = disk.disk_guard()

    assert first.stopped == {student.pk: 2} and second.stopped == {student.pk: 0}
    assert Notification.objects.filter(user=student, kind="storage_disk_full").count() == 1
    job.refresh_from_db()
    assert job.stop_requested_at is not None and "disk is almost full" in job.reason


def test_a_job_stopped_for_the_disk_ends_with_its_reason(
    low_disk, make_user, make_job, django_capture_on_commit_callbacks
):
    student = make_user()
    StorageAllowance.objects.create(user=student, has_volume=True)
    job = make_job(student)
    _using(low_disk, student, FREE_TIER_GIB + 3)

    with django_capture_on_commit_callbacks(execute=True):
        disk.disk_guard()

    job.refresh_from_db()
    assert job.state not in (JobState.STARTING, JobState.RUNNING)
    assert "3.0\xa0GB over your allowance of 30.0\xa0GB" in job.reason, job.reason


def test_the_users_next_workload_is_refused_with_the_numbers_the_guard_measured(
    low_disk, make_user, make_workshop, catalog
):
    student = make_user()
    make_workshop(student)
    _using(low_disk, student, FREE_TIER_GIB + 5)
    disk.disk_guard()

    with pytest.raises(workshop_services.WorkshopError) as refused:
        workshop_services.workshop_create(
            user=student,
            name="again",
            image=catalog["image"],
            preset=catalog["presets"]["2C/4G"],
        )
    assert "35.0 GiB" in str(refused.value) and "30 GiB" in str(refused.value)


def test_the_periodic_task_runs_the_guard(low_disk, make_user, make_workshop):
    student = make_user()
    make_workshop(student)
    _using(low_disk, student, FREE_TIER_GIB + 5)

    summary = workload_tasks.disk_guard()

    assert summary["below"] is True and summary["chosen"] == [student.pk]
    assert summary["stopped"] == 1


def test_the_guard_is_in_the_beat_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["workloads-disk-guard"]
    assert entry["task"] == "workloads.disk_guard"
    assert entry["schedule"] == float(settings.LOCAL_DISK_CHECK_SECONDS)
