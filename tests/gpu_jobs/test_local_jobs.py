"""GPU jobs on the real local backend: cards handed out exclusively, exact bills after a kill."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.conf import settings

from aladdin.cluster.base import Phase
from billing.models import LedgerEntry
from gpu_jobs import services
from gpu_jobs.choices import JobState
from gpu_jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def local(agent, portal_driver):
    return agent


@pytest.fixture
def ready_user(user, cards, catalog, subscribe):
    from django.utils import timezone

    subscribe(user, "advanced", timezone.now())
    return user


def write_script(running, user, name: str, text: str) -> None:
    running.driver.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    path = running.volumes_dir / str(user.pk) / name
    path.write_text(text)
    uid = settings.LOCAL_UID_BASE + user.pk
    os.chown(path, uid, uid)


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def output(running, job) -> str:
    return b"".join(running.driver.follow_logs(name=job.workload_name, follow=False)).decode()


def job_running(job_id):
    services.jobs_reconcile()
    job = Job.objects.get(pk=job_id)
    return job if job.state == JobState.RUNNING else None


def test_two_jobs_never_share_a_card(local, ready_user, cards):
    write_script(
        local,
        ready_user,
        "show.py",
        "import os, time\nprint('CVD=' + os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
        "time.sleep(30)\n",
    )
    a = services.job_create(
        user=ready_user, entry="show.py", gpu_type=cards["80g"], cards_per_worker=2
    )
    b = services.job_create(
        user=ready_user, entry="show.py", gpu_type=cards["80g"], cards_per_worker=2
    )
    a, b = wait_for(lambda: job_running(a.pk)), wait_for(lambda: job_running(b.pk))
    assert len(a.gpu_devices) == 2 and len(b.gpu_devices) == 2
    assert not set(a.gpu_devices) & set(b.gpu_devices)
    line = wait_for(lambda: "CVD=" in output(local, a) and output(local, a))
    assert f"CVD={','.join(a.gpu_devices)}" in line
    # All four virtual 80G cards are taken: a third job waits, unbilled.
    local_health = local.driver._call("health")
    assert local_health["gpus"]["models"]["80g"] == {"total": 4, "free": 0}
    for job in (a, b):
        services.job_stop(job=job)
        services.job_stop_apply(job_id=job.pk)
    assert local.driver._call("health")["gpus"]["models"]["80g"]["free"] == 4


def test_a_job_whose_process_is_killed_is_billed_exactly_to_its_end(local, ready_user, cards):
    write_script(
        local, ready_user, "sleep.py", "import time\nprint('up', flush=True)\ntime.sleep(300)\n"
    )
    job = services.job_create(
        user=ready_user, entry="sleep.py", gpu_type=cards["80g"], cards_per_worker=2
    )
    job = wait_for(lambda: job_running(job.pk))
    wait_for(lambda: "up" in output(local, job))
    time.sleep(1.5)
    services.jobs_meter()  # a meter tick while it runs
    # The job's process is killed outright (OOM killer, a crash).
    status = local.driver.workload_status(name=job.workload_name)
    members = local.driver._call("status", name=job.workload_name)["status"]
    pid = members["sandbox_pid"] or members["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: (
            local.driver.workload_status(name=job.workload_name).phase
            in (Phase.FAILED, Phase.MISSING)
        )
    )
    time.sleep(1.2)  # the reconciler notices later: the bill must not grow
    services.jobs_reconcile()
    services.jobs_meter()
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.metering_closed
    assert status.started_at is not None and job.ended_at > job.started_at
    # Every started second is billed (SPEC §4.1).
    micros = (job.ended_at - job.started_at) // timedelta(microseconds=1)
    seconds = -(-micros // 1_000_000)
    expected = 2 * 2_560_000 * seconds // 3600
    charged = -sum(
        LedgerEntry.objects.filter(idempotency_key__startswith=f"gpu:job-{job.pk}:").values_list(
            "delta_micro", flat=True
        )
    )
    assert charged == job.charged_micro == expected > 0


def test_a_terminal_in_a_running_job_sees_its_cards_and_its_storage(local, ready_user, cards):
    write_script(local, ready_user, "wait.py", "import time\ntime.sleep(60)\n")
    job = services.job_create(user=ready_user, entry="wait.py", gpu_type=cards["40g"])
    job = wait_for(lambda: job_running(job.pk))
    terminal = local.driver.open_terminal(name=job.workload_name)
    try:
        terminal.write(b"echo cards=$CUDA_VISIBLE_DEVICES; ls /root; exit\n")
        seen = b""
        while b"wait.py" not in seen or b"cards=" + job.gpu_devices[0].encode() not in seen:
            chunk = terminal.read(timeout=10)
            assert chunk, seen
            seen += chunk
    finally:
        terminal.close()
        services.job_stop(job=job)
        services.job_stop_apply(job_id=job.pk)
