"""Run Task end to end: torchrun over two real sandboxes, a gloo all-reduce (issue 18, "Done when").

Two workers of one 40G card each run ``allreduce.py`` under torchrun on the
test torch image (Python 3.11, torch 2.13.0 CPU: tests/cluster/conftest.py)
through the portal's services and a real local agent. The workers are
separate sandboxes that share worker 0's network namespace, so they meet at
127.0.0.1:29500. Each worker is billed for its own window.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from django.conf import settings
from django.utils import timezone

from aladdin.cluster.base import Phase
from billing.models import LedgerEntry
from gpu_jobs import services
from gpu_jobs.choices import ENDED_STATES, JobState
from gpu_jobs.metering import owed, worker_owed
from gpu_jobs.models import Job
from tests.cluster.conftest import REPO, TORCH_RECIPE, start_agent  # noqa: F401
from tests.factories import catalog_image

pytestmark = pytest.mark.django_db(transaction=True)

ALLREDUCE = REPO / "tests" / "gpu_jobs" / "payloads" / "allreduce.py"
# Kills the payload's process (torchrun's child), not torchrun: run inside worker 1.
KILL_PAYLOAD = (
    "import os, signal\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try: args = open(f'/proc/{pid}/cmdline', 'rb').read().decode().split('\\0')\n"
    "    except OSError: continue\n"
    "    if any(a.endswith('allreduce.py') for a in args) and 'torch.distributed.run' not in args"
    " and 'bash' not in args[0]:\n"
    "        os.kill(int(pid), signal.SIGKILL); print('killed', pid, args)\n"
)


@pytest.fixture
def torch_agent(start_agent, built_images, use_driver):  # noqa: F811 - the imported fixtures
    built_images.build(TORCH_RECIPE)
    agent = start_agent(**built_images.agent_env())
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    use_driver(agent.driver)
    return agent


@pytest.fixture
def launch_allreduce(torch_agent, user, cards, catalog, subscribe):
    subscribe(user, "basic", timezone.now())
    torch_agent.driver.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    target = torch_agent.volumes_dir / str(user.pk) / "allreduce.py"
    shutil.copy(ALLREDUCE, target)
    os.chown(target, settings.LOCAL_UID_BASE + user.pk, settings.LOCAL_UID_BASE + user.pk)
    image = catalog_image(TORCH_RECIPE)

    def _launch(*args: str) -> Job:
        return services.job_create(
            user=user,
            kind="task",
            entry="allreduce.py",
            args=list(args),
            workers=2,
            image=image.ref,
            gpu_type=cards["40g"],
        )

    return _launch


def output(driver, name: str) -> str:
    return b"".join(driver.follow_logs(name=name, follow=False)).decode(errors="replace")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, what()
        time.sleep(0.5)
    return result


def wait_ended(job: Job, timeout: float = 240) -> Job:
    def ended():
        services.job_sync(job_id=job.pk)
        job.refresh_from_db()
        return job.state in ENDED_STATES

    wait_for(ended, timeout, lambda: f"{job.state} {job.reason}")
    return job


def assert_billed_per_worker(job: Job) -> None:
    keys = dict(
        LedgerEntry.objects.filter(idempotency_key__startswith=f"gpu:job-{job.pk}:").values_list(
            "idempotency_key", "delta_micro"
        )
    )
    workers = list(job.worker_rows.all())
    assert len(workers) == 2
    for worker in workers:
        assert worker.started_at is not None and worker.ended_at is not None
        assert worker.metering_closed
        own = {k: -v for k, v in keys.items() if k.startswith(f"gpu:job-{job.pk}:w{worker.index}:")}
        assert f"gpu:job-{job.pk}:w{worker.index}:end" in own, keys
        assert (
            sum(own.values()) == worker.charged_micro == worker_owed(worker, job, worker.ended_at)
        )
    assert -sum(keys.values()) == job.charged_micro == owed(job, job.ended_at)
    assert job.metering_closed


def test_two_workers_all_reduce_with_gloo_and_each_is_billed_for_its_window(
    torch_agent, launch_allreduce, user
):
    job = launch_allreduce()
    job = wait_ended(job)
    driver = torch_agent.driver
    logs = {i: output(driver, f"job-{job.pk}-{i}") for i in (0, 1)}
    assert (job.state, job.exit_code) == (JobState.SUCCEEDED, 0), (job.reason, logs)

    # 1 + 2 over the task's two processes, one per worker
    assert "rank 0 of 2 on node 0: sum 3" in logs[0], logs
    assert "rank 1 of 2 on node 1: sum 3" in logs[1], logs
    # the same output kept in the user's volume (SPEC §7: task logs count as storage)
    tasks_dir = torch_agent.volumes_dir / str(user.pk) / ".aladdin" / "tasks" / str(job.pk)
    assert "rank 0 of 2 on node 0: sum 3" in (tasks_dir / "worker-0.log").read_text()
    assert "rank 1 of 2 on node 1: sum 3" in (tasks_dir / "worker-1.log").read_text()
    assert (tasks_dir / "worker-1.log").stat().st_uid == settings.LOCAL_UID_BASE + user.pk
    assert_billed_per_worker(job)


def test_killing_one_workers_process_fails_the_task_naming_it_and_stops_the_other(
    torch_agent, launch_allreduce
):
    job = launch_allreduce("--hold")
    driver = torch_agent.driver
    names = [f"job-{job.pk}-{i}" for i in (0, 1)]
    wait_for(
        lambda: all("holding" in output(driver, n) for n in names),
        180,
        lambda: [output(driver, n) for n in names],
    )

    session = driver.exec_in_workload(name=names[1], command=["python3", "-c", KILL_PAYLOAD])
    killed = b""
    while (chunk := session.read(timeout=30))[1]:
        killed += chunk[1]
    assert b"killed" in killed, killed

    job = wait_ended(job, timeout=120)
    assert job.state == JobState.FAILED, (job.state, job.reason)
    assert job.reason_id == "job.worker_failed" and job.reason_params["worker"] == 1
    assert job.exit_code == job.reason_params["code"] != 0
    assert "Worker 1 failed" in job.reason
    # the other worker was stopped: nothing of the task runs any more
    for name in names:
        assert driver.workload_status(name=name).phase == Phase.MISSING
    w0, w1 = job.worker_rows.all()
    assert w1.ended_at <= w0.ended_at
    assert_billed_per_worker(job)
