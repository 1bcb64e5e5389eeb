"""Run Task on the fake driver (SPEC §4.1, §7): workers, admission, stop, delete, reconcile, billing.

The real thing (torchrun and gloo over two sandboxes) is
tests/gpu_jobs/test_task_torchrun.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import time_machine
from celery.exceptions import Retry

from aladdin.cluster.base import DriverError, NoCapacity, Phase, WorkerGroup
from billing.models import LedgerEntry
from gpu_jobs import run_task, services
from gpu_jobs.admission import JobRefused
from gpu_jobs.choices import JobState
from gpu_jobs.metering import owed, worker_owed
from gpu_jobs.models import Job

from .conftest import sh

T0 = sh(2026, 3, 1, 8)


@pytest.fixture(autouse=True)
def _at_t0():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    def _run(func, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(**kwargs)

    return _run


@pytest.fixture
def task(user, cards, catalog, driver, subscribe, run_on_commit):
    """``task(workers=2, ...)``: a Run Task launched by the basic plan's user (parallelism 4)."""
    subscribe(user, "basic", T0)

    def _task(**kwargs):
        kwargs.setdefault("entry", "train.py")
        kwargs.setdefault("gpu_type", cards["80g"])
        kwargs.setdefault("workers", 2)
        job = run_on_commit(services.job_create, user=user, kind="task", **kwargs)
        job.refresh_from_db()
        return job

    return _task


def ended(driver, name: str, phase: str, *, at, code: int | None = None) -> None:
    """The fake cluster reports ``name`` ended ``phase`` at ``at`` with ``code``."""
    driver.workloads[name] = replace(
        driver.workloads[name], phase=phase, exit_code=code, finished_at=at
    )


def ledger_keys(job) -> dict[str, int]:
    rows = LedgerEntry.objects.filter(idempotency_key__startswith=f"gpu:job-{job.pk}:")
    return {r.idempotency_key: -r.delta_micro for r in rows}


def test_a_task_starts_each_worker_with_its_own_cards_and_the_rendezvous(task, driver):
    job = task(workers=2, args=["--epochs", "3"], env={"WANDB_API_KEY": "s3cret"})

    assert job.state == JobState.RUNNING and job.started_at == T0
    assert job.worker_names == [f"job-{job.pk}-0", f"job-{job.pk}-1"]
    assert job.workload_name == f"job-{job.pk}-0"  # its log stream, terminal, ports
    master = f"job-{job.pk}-0.job-{job.pk}"  # what this driver answers for the group
    for index in (0, 1):
        spec = driver.specs[f"job-{job.pk}-{index}"]
        assert spec.group == WorkerGroup(group=f"job-{job.pk}", index=index, size=2, port=29500)
        assert spec.resources.gpus == {"80g": 1}  # each worker its own card
        assert spec.labels["aladdin/owner"] == spec.name
        log_file = f"/root/.aladdin/tasks/{job.pk}/worker-{index}.log"
        assert spec.command[:2] == ["bash", "-c"] and spec.command[3:5] == [
            "aladdin-task",
            log_file,
        ]
        assert spec.command[5:] == [
            "python3", "-u", "-m", "torch.distributed.run",
            "--nnodes=2", f"--node_rank={index}", "--nproc_per_node=1",
            f"--master_addr={master}", "--master_port=29500",
            "/root/train.py", "--epochs", "3",
        ]  # fmt: skip
        env = spec.env
        assert env["WANDB_API_KEY"] == "s3cret"
        assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == (master, "29500")
        assert (env["WORLD_SIZE"], env["RANK"], env["NODE_RANK"]) == ("2", str(index), str(index))
        assert env["LOCAL_RANK"] == "0"
        assert (env["PET_NNODES"], env["PET_NODE_RANK"], env["PET_NPROC_PER_NODE"]) == (
            "2", str(index), "1",
        )  # fmt: skip
        assert (env["PET_MASTER_ADDR"], env["PET_MASTER_PORT"]) == (master, "29500")
    assert [w.started_at for w in job.worker_rows.all()] == [T0, T0]


def test_a_shell_script_task_runs_under_bash_with_the_rendezvous_in_its_environment(
    task, driver, cards
):
    job = task(entry="run.sh", workers=2, gpu_type=cards["40g"])
    spec = driver.specs[f"job-{job.pk}-1"]
    assert spec.command[5:] == ["bash", "/root/run.sh"]
    assert (spec.env["WORLD_SIZE"], spec.env["RANK"], spec.env["NODE_RANK"]) == ("2", "1", "1")
    # With 2 cards per worker: 2 processes each, worker 1's first is rank 2.
    job.cards_per_worker = 2
    env = run_task.rendezvous_env(job, 1, "127.0.0.1")
    assert (env["WORLD_SIZE"], env["RANK"], env["PET_NPROC_PER_NODE"]) == ("4", "2", "2")
    job.entry = "/root/t.py"
    assert "--nproc_per_node=2" in run_task.command(job, 1, "127.0.0.1")


def test_a_task_is_refused_with_its_parallelism_numbers(task, cards):
    # 3 workers × 1 80G card × 2 per card = 6 > the basic plan's 4.
    with pytest.raises(JobRefused) as refused:
        task(workers=3)
    text = " ".join(refused.value.messages)
    assert "this job needs 6 (3 × DC100 (Hopper) 80G, 2 per card)" in text, text
    assert "your plan allows 4" in text
    with pytest.raises(JobRefused) as multi:
        task(workers=2, cards_per_worker=2, gpu_type=cards["40g"])
    assert "do not support multi-card jobs" in " ".join(multi.value.messages)
    assert not Job.objects.exists()


def test_a_task_counts_against_parallelism_with_all_its_workers(task, cards):
    task(workers=2, gpu_type=cards["40g"])  # 2 of 4
    task(workers=2, gpu_type=cards["40g"])  # 4 of 4
    with pytest.raises(JobRefused) as refused:
        task(workers=1, gpu_type=cards["40g"])
    assert "your running jobs use 4" in " ".join(refused.value.messages)


def test_stop_stops_every_worker_and_bills_each_to_its_release(task, driver, run_on_commit):
    job = task(workers=2)
    with time_machine.travel(T0 + timedelta(seconds=90), tick=False):
        run_on_commit(services.job_stop, job=job)
    job.refresh_from_db()
    assert job.state == JobState.STOPPED and job.reason_id == "job.stopped_by_you"
    stopped = [c["name"] for c in driver.called("stop_workload")]
    assert stopped == [f"job-{job.pk}-1", f"job-{job.pk}-0"]  # later workers first
    end = T0 + timedelta(seconds=90)
    assert [(w.started_at, w.ended_at) for w in job.worker_rows.all()] == [(T0, end)] * 2
    assert job.metering_closed and job.ended_at == end
    keys = ledger_keys(job)
    worker = job.worker_rows.first()
    assert keys[f"gpu:job-{job.pk}:w0:end"] == keys[f"gpu:job-{job.pk}:w1:end"]
    assert (
        sum(keys.values())
        == job.charged_micro
        == owed(job, end)
        == 2 * worker_owed(worker, job, end)
    )


def test_delete_stops_the_task_and_removes_every_workers_output(task, driver, run_on_commit):
    job = task(workers=2)
    run_on_commit(services.job_delete, job=job)
    job.refresh_from_db()
    assert job.state == JobState.STOPPED and job.logs_deleted
    assert {c["name"] for c in driver.called("delete_logs")} == set(job.worker_names)
    assert not driver.workloads


def test_one_worker_failing_fails_the_task_names_it_and_stops_the_others(
    task, driver, _at_t0, client, user
):
    job = task(workers=2)
    # given: worker 1 exits 3 at 30 s; the reconciler sees it at 40 s
    ended(driver, f"job-{job.pk}-1", Phase.FAILED, at=T0 + timedelta(seconds=30), code=3)
    _at_t0.shift(timedelta(seconds=40))

    services.jobs_reconcile()

    job.refresh_from_db()
    assert (job.state, job.exit_code) == (JobState.FAILED, 3)
    assert (job.reason_id, job.reason_params) == ("job.worker_failed", {"worker": 1, "code": 3})
    assert "Worker 1 failed (exit code 3)" in job.reason
    assert [c["name"] for c in driver.called("stop_workload")] == [f"job-{job.pk}-0"]
    w0, w1 = job.worker_rows.all()
    assert w1.ended_at == T0 + timedelta(seconds=30)  # its own exit
    assert w0.ended_at == T0 + timedelta(seconds=40)  # stopped when the failure was seen
    assert job.charged_micro == owed(job, job.ended_at) == sum(ledger_keys(job).values())
    assert set(ledger_keys(job)) == {f"gpu:job-{job.pk}:w0:end", f"gpu:job-{job.pk}:w1:end"}


def test_a_task_succeeds_once_every_worker_succeeded_each_billed_to_its_exit(task, driver, _at_t0):
    job = task(workers=2)
    ended(driver, f"job-{job.pk}-1", Phase.SUCCEEDED, at=T0 + timedelta(seconds=70), code=0)
    _at_t0.shift(timedelta(seconds=75))
    services.jobs_reconcile()
    job.refresh_from_db()
    assert job.state == JobState.RUNNING  # worker 0 still runs, and bills

    ended(driver, f"job-{job.pk}-0", Phase.SUCCEEDED, at=T0 + timedelta(seconds=125), code=0)
    _at_t0.shift(timedelta(seconds=60))
    services.jobs_reconcile()

    job.refresh_from_db()
    assert (job.state, job.exit_code) == (JobState.SUCCEEDED, 0)
    w0, w1 = job.worker_rows.all()
    assert (w0.ended_at, w1.ended_at) == (T0 + timedelta(seconds=125), T0 + timedelta(seconds=70))
    assert job.ended_at == T0 + timedelta(seconds=125)
    assert job.charged_micro == owed(job, job.ended_at) == sum(ledger_keys(job).values())
    assert not driver.workloads  # both forgotten


def test_a_lost_worker_fails_the_running_task_billed_to_its_last_sighting(task, driver, _at_t0):
    job = task(workers=2)
    _at_t0.shift(timedelta(seconds=50))
    services.jobs_reconcile()  # seen running at 50 s
    del driver.workloads[f"job-{job.pk}-1"]
    _at_t0.shift(timedelta(seconds=30))

    services.jobs_reconcile()

    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.reason_id == "job.lost"
    assert [c["name"] for c in driver.called("stop_workload")] == [f"job-{job.pk}-0"]
    assert {w.ended_at for w in job.worker_rows.all()} == {T0 + timedelta(seconds=50)}
    assert job.charged_micro == owed(job, job.ended_at)


def test_a_starting_task_with_a_missing_worker_is_started_again(
    task, driver, _at_t0, run_on_commit
):
    driver.start_phase = Phase.PENDING
    job = task(workers=2)
    assert job.state == JobState.STARTING
    del driver.workloads[f"job-{job.pk}-1"]
    driver.start_phase = Phase.RUNNING
    _at_t0.shift(timedelta(minutes=1))

    counts = run_on_commit(services.jobs_reconcile)

    job.refresh_from_db()
    assert counts["restarted"] == 1
    assert f"job-{job.pk}-1" in driver.workloads
    # the start task ran (eagerly): worker 0 stayed pending, so the task still starts
    assert job.state == JobState.STARTING
    driver.set_phase(f"job-{job.pk}-0", Phase.RUNNING)
    services.jobs_reconcile()
    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_the_api_launches_a_task_with_its_workers(
    client, user, cards, catalog, driver, subscribe, django_capture_on_commit_callbacks
):
    subscribe(user, "basic", T0)
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/jobs",
            {"kind": "task", "entry": "train.py", "gpu_type": "40g", "workers": 3},
            content_type="application/json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["workers"], body["cards"]) == ("task", 3, 3)
    assert len([n for n in driver.specs if n.startswith(f"job-{body['id']}-")]) == 3


def test_the_task_page_shows_its_workers_and_log_directory(task, client, user):
    job = task(workers=2)
    client.force_login(user)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "2 × 1 card" in page
    assert f"/root/.aladdin/tasks/{job.pk}" in page


def _launch_waiting_for_a_card(user, cards, driver, run_on_commit, monkeypatch, start):
    """Launch a 2-worker task on 40G cards with ``start`` as the driver's; it waits for a card."""
    monkeypatch.setattr(driver, "start_workload", start)
    with pytest.raises(Retry):  # eager Celery surfaces the task's retry
        run_on_commit(
            services.job_create, user=user, kind="task", entry="t.py", workers=2,
            gpu_type=cards["40g"],
        )  # fmt: skip
    job = Job.objects.get()
    assert job.state == JobState.STARTING and "no free 40G card" in job.reason
    return job


def test_a_later_worker_waiting_for_a_card_keeps_the_task_starting_worker_0_billed(
    user, cards, catalog, driver, subscribe, run_on_commit, monkeypatch, _at_t0
):
    subscribe(user, "basic", T0)
    real_start = driver.start_workload
    full = {"yes": True}

    def start(spec):
        if spec.name.endswith("-1") and full["yes"]:
            raise NoCapacity("no free 40G card on this host: 1 asked, 0 of 4 free")
        return real_start(spec)

    job = _launch_waiting_for_a_card(user, cards, driver, run_on_commit, monkeypatch, start)
    w0, w1 = job.worker_rows.all()
    assert (w0.started_at, w1.started_at) == (T0, None)  # worker 0 holds its card: billed

    full["yes"] = False
    _at_t0.shift(timedelta(seconds=20))
    services.job_start_apply(job_id=job.pk)  # the retry
    job.refresh_from_db()
    w0, w1 = job.worker_rows.all()
    assert job.state == JobState.RUNNING and job.started_at == T0
    assert (w0.started_at, w1.started_at) == (T0, T0 + timedelta(seconds=20))


def test_workers_started_together_wait_for_worker_0s_card_and_are_retried(
    user, cards, catalog, driver, subscribe, run_on_commit, monkeypatch, _at_t0
):
    # A backend that takes the workers together (the local agent): worker 0
    # out of cards makes the later ones' not_running a consequence, not the
    # task's end: it waits for a card and is retried.
    subscribe(user, "basic", T0)
    monkeypatch.setattr(driver, "starts_workers_together", True)
    real_start = driver.start_workload
    full = {"yes": True}

    def start(spec):
        if full["yes"]:
            if spec.name.endswith("-0"):
                raise NoCapacity("no free 40G card on this host: 1 asked, 0 of 4 free")
            raise DriverError(f"{spec.name[:-2]}-0 is not running", code="not_running")
        return real_start(spec)

    job = _launch_waiting_for_a_card(user, cards, driver, run_on_commit, monkeypatch, start)

    full["yes"] = False
    services.job_start_apply(job_id=job.pk)  # the retry
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert sorted(c["spec"].name for c in driver.called("start_workload")) == [
        f"job-{job.pk}-0",
        f"job-{job.pk}-1",
    ]


def test_a_later_worker_refused_for_good_fails_the_task_and_stops_worker_0(
    task, driver, monkeypatch
):
    real_start = driver.start_workload

    def start(spec):
        if spec.name.endswith("-1"):
            raise DriverError("the local agent is older than Run Task", permanent=True)
        return real_start(spec)

    monkeypatch.setattr(driver, "start_workload", start)
    job = task(workers=2)
    assert job.state == JobState.FAILED and "older than Run Task" in job.reason
    assert [c["name"] for c in driver.called("stop_workload")] == [
        f"job-{job.pk}-1",
        f"job-{job.pk}-0",
    ]
    assert job.metering_closed and job.charged_micro == owed(job, job.ended_at)


def test_the_launch_form_launches_a_task_with_its_workers(
    client, user, cards, catalog, driver, subscribe, django_capture_on_commit_callbacks
):
    subscribe(user, "basic", T0)
    client.force_login(user)
    form = {
        "kind": "task", "entry": "train.py", "args": "--epochs 3", "env": "", "workdir": "",
        "image": "python:3.11", "interpreter": "", "gpu_type": "40g", "cards_per_worker": "1",
        "workers": "3", "save_name": "", "launch": "",
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/jobs/new/", form)
    job = Job.objects.get(user=user)
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert (job.kind, job.workers, job.cards) == ("task", 3, 3)
    assert len(driver.specs) == 3
    # Another kind keeps one worker whatever the field says.
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/jobs/new/", {**form, "kind": "run"})
    assert Job.objects.filter(user=user, kind="run").get().workers == 1


def test_a_worker_0_that_exits_before_the_others_start_fails_the_task_unretried(
    task, driver, monkeypatch
):
    real_start = driver.start_workload

    def start(spec):
        status = real_start(spec)
        if spec.name.endswith("-0"):  # `true` as the entry: done at once
            status = replace(status, phase=Phase.SUCCEEDED, exit_code=0, finished_at=T0)
            driver.workloads[spec.name] = status
        return status

    monkeypatch.setattr(driver, "start_workload", start)
    job = task(workers=2, entry="quick.sh")
    assert job.state == JobState.FAILED and job.reason_id == "job.leader_ended"
    assert [s.name for s in map(lambda c: c["spec"], driver.called("start_workload"))] == [
        f"job-{job.pk}-0"
    ]
    assert job.metering_closed and job.charged_micro == owed(job, job.ended_at)


def test_a_worker_that_could_not_join_an_ended_worker_0_says_so(task, driver):
    # Worker 0 (a short script) ended as worker 1 was being started: worker 1
    # never ran (the host's error is about a pipe), the task says why.
    job = task(workers=2, entry="quick.sh")
    first, second = job.worker_names
    ended(driver, first, Phase.SUCCEEDED, at=T0, code=0)
    driver.workloads[second] = replace(
        driver.workloads[second],
        phase=Phase.FAILED,
        exit_code=None,
        reason="could not start: [Errno 32] Broken pipe",
        reason_id="workload.not_started",
        reason_params={"detail": "[Errno 32] Broken pipe"},
        finished_at=T0,
    )
    services.jobs_reconcile()
    job.refresh_from_db()
    assert (job.state, job.reason_id) == (JobState.FAILED, "job.leader_ended")
