"""Job services (SPEC §7): create with admission, start, stop, delete, reconcile, balance."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from celery.exceptions import Retry
from django.urls import reverse

from aladdin.accounts.models import Notification
from aladdin.cluster.base import DriverError, NoCapacity, Phase, WorkloadStatus
from aladdin.cluster.cgroups import oom_reason
from billing.models import LedgerEntry
from gpu_jobs import services
from gpu_jobs.admission import JobRefused
from gpu_jobs.choices import JobState
from gpu_jobs.metering import owed
from gpu_jobs.models import Job

from .conftest import sh

T0 = sh(2026, 3, 1, 8)


@pytest.fixture(autouse=True)
def _at_t0():
    with time_machine.travel(T0, tick=False):
        yield


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Run the tasks a service dispatched at commit (Celery is eager in tests)."""

    def _run(func, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(**kwargs)

    return _run


@pytest.fixture
def launch(user, cards, catalog, driver, subscribe, run_on_commit):
    subscribe(user, "basic", T0)

    def _launch(**kwargs):
        kwargs.setdefault("entry", "train.py")
        kwargs.setdefault("gpu_type", cards["80g"])
        job = run_on_commit(services.job_create, user=kwargs.pop("user", user), **kwargs)
        job.refresh_from_db()
        return job

    return _launch


def ledger_total(job) -> int:
    rows = LedgerEntry.objects.filter(idempotency_key__startswith=f"gpu:job-{job.pk}:")
    return -sum(rows.values_list("delta_micro", flat=True))


def test_a_created_job_starts_on_the_driver_and_runs(launch, driver):
    job = launch(entry="train.py", args=["--lr", "0.1"], env={"WANDB_API_KEY": "s3cret"})
    assert job.state == JobState.RUNNING and job.started_at == T0
    spec = driver.specs[job.workload_name]
    assert spec.command == ["python3", "-u", "/root/train.py", "--lr", "0.1"]
    assert spec.workdir == "/root" and spec.resources.gpus == {"80g": 1}
    assert spec.env["WANDB_API_KEY"] == "s3cret" and spec.env["PYTHONUNBUFFERED"] == "1"
    # Stored encrypted; only the names are kept in clear.
    assert "s3cret" not in job.env_encrypted and job.env_keys == ["WANDB_API_KEY"]


def test_a_module_a_shell_script_and_a_conda_interpreter_run_as_asked(launch, driver, cards):
    module = launch(entry="pkg.train", python_module=True, gpu_type=cards["40g"])
    assert driver.specs[module.workload_name].command[:4] == ["python3", "-u", "-m", "pkg.train"]
    shell = launch(kind="shell", entry="scripts/run.sh", gpu_type=cards["40g"])
    assert driver.specs[shell.workload_name].command == ["bash", "/root/scripts/run.sh"]
    assert driver.specs[shell.workload_name].workdir == "/root/scripts"
    conda = launch(
        entry="a.py", interpreter="/root/miniconda3/envs/t/bin/python", gpu_type=cards["40g"]
    )
    assert driver.specs[conda.workload_name].command[0] == "/root/miniconda3/envs/t/bin/python"


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"entry": ""}, "entry", "Say what to run"),
        ({"entry": "/etc/passwd"}, "entry", "Must be under /root"),
        ({"workdir": "../../etc"}, "workdir", "Must be under /root"),
        ({"env": {"1BAD": "x"}}, "env", "not a valid variable name"),
        ({"image": "nope:1"}, "image", "not in the image catalog"),
        ({"kind": "train"}, "kind", "not a kind of job"),
        ({"workers": 2}, "workers", "use one worker"),
        ({"kind": "task", "workers": 17}, "workers", "1 to 16 workers"),
        ({"entry": "not a module", "python_module": True}, "entry", "not a Python module"),
        ({"ports": [22]}, "ports", "between 1024 and 65535"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(launch, kwargs, field, text):
    with pytest.raises(services.JobError) as error:
        launch(**kwargs)
    assert text in " ".join(error.value.message_dict[field])
    assert not Job.objects.exists()


def test_admission_refusal_creates_nothing(launch, cards):
    with pytest.raises(JobRefused) as refused:
        launch(gpu_type=cards["80g"], cards_per_worker=3)  # basic: parallelism 4, asks 6
    assert refused.value.code == "parallelism"
    assert not Job.objects.exists()


def test_a_starting_job_counts_against_parallelism(launch, driver, cards):
    driver.start_phase = Phase.PENDING
    launch(cards_per_worker=2)  # 4 of 4, still starting
    with pytest.raises(JobRefused):
        launch(gpu_type=cards["40g"])


def test_the_same_idempotency_key_gives_the_same_job(launch):
    first = launch(idempotency_key="k-1")
    again = launch(idempotency_key="k-1")
    assert again.pk == first.pk and Job.objects.count() == 1


def test_stop_releases_the_job_and_bills_exactly_to_the_release(launch, driver, run_on_commit):
    job = launch(cards_per_worker=2)
    released = T0 + timedelta(seconds=95)
    with time_machine.travel(released, tick=False):
        run_on_commit(services.job_stop, job=job)
    job.refresh_from_db()
    assert job.state == JobState.STOPPED and job.ended_at == released
    assert job.metering_closed
    assert (
        ledger_total(job) == job.charged_micro == owed(job, released) == 2 * 2_560_000 * 95 // 3600
    )
    assert job.workload_name not in driver.workloads
    assert Notification.objects.filter(user=job.user, kind="job-stopped").exists()


def test_stopping_an_ended_job_is_refused(launch, driver):
    job = launch()
    driver.set_phase(job.workload_name, Phase.SUCCEEDED)
    services.jobs_reconcile()
    job.refresh_from_db()
    with pytest.raises(services.JobError):
        services.job_stop(job=job)


def test_delete_stops_a_running_job_and_removes_its_logs(launch, driver, run_on_commit):
    job = launch()
    driver.write_log(job.workload_name, b"epoch 1\n")
    with time_machine.travel(T0 + timedelta(seconds=30), tick=False):
        run_on_commit(services.job_delete, job=job)
    job.refresh_from_db()
    assert job.deleted_at is not None and job.logs_deleted
    assert job.state == JobState.STOPPED and job.ended_at == T0 + timedelta(seconds=30)
    assert job.workload_name not in driver.logs
    assert ledger_total(job) == 2_560_000 * 30 // 3600


def test_a_job_that_exits_is_billed_to_its_exit_and_the_user_is_told(launch, driver):
    job = launch()
    exit_at = T0 + timedelta(minutes=2, seconds=7)
    driver.workloads[job.workload_name] = WorkloadStatus(
        name=job.workload_name,
        phase=Phase.FAILED,
        kind="job",
        exit_code=3,
        reason="exited with code 3",
        started_at=T0,
        finished_at=exit_at,
    )
    # The reconciler notices later; the bill still ends at the exit.
    with time_machine.travel(exit_at + timedelta(minutes=10), tick=False):
        services.jobs_reconcile()
    job.refresh_from_db()
    assert (job.state, job.exit_code, job.ended_at) == (JobState.FAILED, 3, exit_at)
    assert ledger_total(job) == 2_560_000 * 127 // 3600
    assert job.workload_name not in driver.workloads  # forgotten once recorded
    note = Notification.objects.get(user=job.user, kind="job-failed")
    assert "Exit code 3" in note.rendered.body and note.params["exit_code"] == 3


def test_a_lost_running_job_ends_at_its_last_sighting(launch, driver):
    job = launch()
    with time_machine.travel(T0 + timedelta(seconds=40), tick=False):
        services.jobs_reconcile()  # seen running
    driver.workloads.pop(job.workload_name)
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        counts = services.jobs_reconcile()
    job.refresh_from_db()
    assert counts["lost"] == 1 and job.state == JobState.FAILED
    assert job.ended_at == T0 + timedelta(seconds=40)
    assert ledger_total(job) == 2_560_000 * 40 // 3600


def test_an_orphaned_workload_is_stopped(launch, driver):
    driver.workloads["job-999"] = WorkloadStatus(name="job-999", phase=Phase.RUNNING, kind="job")
    counts = services.jobs_reconcile()
    assert counts["orphans"] == 1 and "job-999" not in driver.workloads


def test_a_start_that_waits_for_a_free_card_stays_starting_and_is_retried(
    user, cards, catalog, driver, subscribe, run_on_commit
):
    subscribe(user, "basic", T0)
    driver.fail_next = NoCapacity("no free 80G card on this host: 1 asked, 0 of 4 free")
    # Eager Celery surfaces the task's retry as an exception.
    with pytest.raises(Retry):
        run_on_commit(services.job_create, user=user, entry="a.py", gpu_type=cards["80g"])
    job = Job.objects.get()
    assert job.state == JobState.STARTING and "no free 80G card" in job.reason
    assert job.started_at is None  # not billed while waiting
    with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(
                "gpu_jobs.services._dispatch",
                lambda name, pk: getattr(__import__("gpu_jobs.tasks").tasks, name).apply(args=[pk]),
            )
            counts = services.jobs_reconcile()
    job.refresh_from_db()
    assert counts["restarted"] == 1 and job.state == JobState.RUNNING


def test_a_permanent_driver_error_fails_the_job_unbilled(launch, driver):
    driver.fail_next = DriverError("invalid spec", permanent=True)
    job = launch()
    assert job.state == JobState.FAILED and job.reason == "invalid spec"
    assert job.metering_closed and job.charged_micro == 0


def test_an_exhausted_balance_stops_the_users_jobs_and_tells_them(
    user, cards, catalog, driver, subscribe, run_on_commit
):
    from billing import selectors as billing_selectors
    from billing import services as billing_services

    subscribe(user, "basic", T0)
    left = billing_selectors.active_balance_micro(user, T0)
    billing_services.charge(
        user=user, kind="test", key="drain", amount_micro=left - 200_000, reason="test", at=T0
    )
    job = run_on_commit(services.job_create, user=user, entry="a.py", gpu_type=cards["80g"])
    # 0.2 DCU at 2.56 DCU/h lasts 281 s; meter after 6 minutes.
    with (
        time_machine.travel(T0 + timedelta(minutes=6), tick=False),
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setattr(
            "gpu_jobs.services._dispatch",
            lambda name, pk: getattr(__import__("gpu_jobs.tasks").tasks, name).apply(args=[pk]),
        )
        result = services.jobs_meter()
    job.refresh_from_db()
    assert result == {"exhausted_users": 1, "stopped": 1}
    assert job.state == JobState.STOPPED and "balance is used up" in job.reason
    assert Notification.objects.filter(user=user, kind="job-balance").count() == 1
    assert ledger_total(job) == job.charged_micro == owed(job, job.ended_at)


def test_configurations_are_saved_by_name_and_refuse_duplicates(user, cards, catalog):
    config = services.configuration_save(
        user=user, name="train", entry="train.py", gpu_type=cards["80g"], env={"A": "1"}
    )
    assert config.entry == "/root/train.py" and config.get_env() == {"A": "1"}
    with pytest.raises(services.JobError):
        services.configuration_save(user=user, name="train", entry="b.py")
    services.configuration_save(user=user, name="train", entry="c.py", configuration=config)
    config.refresh_from_db()
    assert config.entry == "/root/c.py"


def test_a_job_killed_for_memory_fails_with_the_out_of_memory_reason_on_its_page(
    launch, driver, client, user
):
    job = launch(cards_per_worker=2)
    # the 80g card preset's memory per card, times two cards
    memory_mib = job.gpu_type.memory_mib * 2
    driver.workloads[job.workload_name] = WorkloadStatus(
        name=job.workload_name,
        phase=Phase.FAILED,
        kind="job",
        exit_code=137,
        reason=oom_reason(memory_mib),
        started_at=T0,
        finished_at=T0 + timedelta(minutes=1),
    )

    with time_machine.travel(T0 + timedelta(minutes=2), tick=False):
        services.jobs_reconcile()

    job.refresh_from_db()
    expected = f"out of memory (limit {memory_mib // 1024} GiB)"
    assert (job.state, job.reason) == (JobState.FAILED, expected)
    client.force_login(user)
    assert expected in client.get(reverse("gpu_jobs:detail", args=[job.pk])).content.decode()
