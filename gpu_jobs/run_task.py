"""Run Task (SPEC §7): a Python file or shell script over N workers × M cards, with torchrun.

Each worker is a workload of its own (``job-<id>-<index>``, a
:class:`~gpu_jobs.models.JobWorker` row) with its own cards, its own cgroup
and its own allocation window, metered on its own (ledger keys
``gpu:job-<id>:w<index>:…``). The driver promises (``WorkerGroup``) that
every worker reaches worker 0 at ``group_address`` on :data:`MASTER_PORT`:
the local backend runs the workers in worker 0's network namespace
(``127.0.0.1``), Kubernetes as one pod per worker behind a headless Service.

A Python entry runs as ``torchrun --nnodes=N --node_rank=i
--nproc_per_node=M --master_addr=… --master_port=… <file> <args>`` (as
``python -m torch.distributed.run``, so a conda interpreter under /root runs
its own torch); a shell script runs under bash with the same rendezvous in
its environment (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``NODE_RANK`` and torchrun's own ``PET_*`` defaults), to
call torchrun itself. Each worker's output goes to the job's log stream
(worker 0's is the job's) and to ``/root/.aladdin/tasks/<id>/worker-<i>.log``
in the user's volume (SPEC §7: task logs are kept there and count as
storage). The entry, args and ENV are the sandboxed process's data only:
they are arguments of programs inside the sandbox, never of a host program.

The task's state follows its workers' (:func:`converge`, level-triggered):
running once every worker runs; succeeded once every worker succeeded; one
worker failing ends the task failed, the others stopped, with that worker
and its exit code as the reason (``job.worker_failed``); a stop or delete
stops every worker (later workers first: they live in worker 0's network).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from aladdin.cluster.base import (
    LABEL_OWNER,
    ClusterDriver,
    DriverError,
    NoCapacity,
    Phase,
    WorkerGroup,
    WorkloadSpec,
    WorkloadStatus,
)
from aladdin.lib import said
from aladdin.lib.said import Reason, Said
from aladdin.workloads import reasons as workload_reasons

from . import admission, metering
from .choices import ACTIVE_STATES, JobState
from .models import Job, JobWorker

log = logging.getLogger(__name__)

# torchrun's default; every task has a network of its own (local: worker 0's
# namespace; Kubernetes: its pods), so one port fits all.
MASTER_PORT = 29500
MAX_WORKERS = 16
ENDED = (Phase.SUCCEEDED, Phase.FAILED)

# Inside the sandbox, as the user: the worker's output to its log file in
# /root too (tee), the command's own exit status kept. A volume that cannot
# take the file (full, read-only) still runs the task, with the stream only.
WRAPPER = r"""
log=$1; shift
{ mkdir -p -- "${log%/*}" && : >>"$log"; } 2>/dev/null || log=/dev/null
"$@" 2>&1 | tee -a -- "$log"
exit "${PIPESTATUS[0]}"
"""


def group_name(job: Job) -> str:
    return f"job-{job.pk}"


def log_dir(job_id: int) -> str:
    """The task's log directory in the user's volume (SPEC §7 "Copy Path")."""
    return Job(pk=job_id).task_log_dir


def log_path(job_id: int, index: int) -> str:
    return f"{log_dir(job_id)}/worker-{index}.log"


def is_shell(job: Job) -> bool:
    return not job.python_module and job.entry.endswith(".sh")


def command(job: Job, index: int, address: str) -> list[str]:
    """What worker ``index`` runs (in its sandbox): torchrun on the entry, or bash on a script."""
    if is_shell(job):
        inner = ["bash", job.entry, *job.args]
    else:
        python = job.interpreter or "python3"
        inner = [
            python, "-u", "-m", "torch.distributed.run",
            f"--nnodes={job.workers}",
            f"--node_rank={index}",
            f"--nproc_per_node={job.cards_per_worker}",
            f"--master_addr={address}",
            f"--master_port={MASTER_PORT}",
            *(["--module"] if job.python_module else []),
            job.entry, *job.args,
        ]  # fmt: skip
    return ["bash", "-c", WRAPPER, "aladdin-task", log_path(job.pk, index), *inner]


def rendezvous_env(job: Job, index: int, address: str) -> dict[str, str]:
    """torchrun's rendezvous for worker ``index``, as variables (the usual names and ``PET_*``)."""
    per_worker = job.cards_per_worker
    return {
        "MASTER_ADDR": address,
        "MASTER_PORT": str(MASTER_PORT),
        # All processes of the task; the first one of this worker's rank.
        # torchrun sets RANK, LOCAL_RANK and WORLD_SIZE per process it starts.
        "WORLD_SIZE": str(job.workers * per_worker),
        "RANK": str(index * per_worker),
        "LOCAL_RANK": "0",
        "NODE_RANK": str(index),
        "NNODES": str(job.workers),
        "NPROC_PER_NODE": str(per_worker),
        # torchrun reads PET_<OPTION> for each option not given.
        "PET_NNODES": str(job.workers),
        "PET_NODE_RANK": str(index),
        "PET_NPROC_PER_NODE": str(per_worker),
        "PET_MASTER_ADDR": address,
        "PET_MASTER_PORT": str(MASTER_PORT),
        "ALADDIN_TASK_LOG_DIR": log_dir(job.pk),
    }


def spec(job: Job, index: int, address: str) -> WorkloadSpec:
    """Worker ``index``'s workload: the job's spec with its own name, cards, command and rendezvous."""
    from .services import workload_spec

    base = workload_spec(job)
    name = job.worker_names[index]
    return replace(
        base,
        name=name,
        command=command(job, index, address),
        env={**base.env, **rendezvous_env(job, index, address)},
        resources=admission.job_resources(job.gpu_type, job.cards_per_worker, 1),
        labels={**base.labels, LABEL_OWNER: name},
        group=WorkerGroup(group=group_name(job), index=index, size=job.workers, port=MASTER_PORT),
    )


# --- the cluster side ------------------------------------------------------------------


def _start_each(
    driver: ClusterDriver,
    specs: list[WorkloadSpec],
    indexes: range,
    statuses: dict[int, WorkloadStatus],
) -> dict[int, DriverError]:
    """Start the workers ``indexes`` concurrently into ``statuses``; what each refused with."""
    failed: dict[int, DriverError] = {}
    with ThreadPoolExecutor(max_workers=min(len(indexes), 8)) as pool:
        futures = {i: pool.submit(driver.start_workload, specs[i]) for i in indexes}
    for index, future in futures.items():
        exc = future.exception()
        if exc is None:
            statuses[index] = future.result()
        elif isinstance(exc, DriverError):
            failed[index] = exc
        else:
            raise exc
    return failed


def start(job: Job, driver: ClusterDriver) -> None:
    """Start every worker of a starting task (worker 0 first where the backend needs it); converge.

    A retried start finds the workers already there (deterministic names).
    Raises DriverError when worth a retry (NoCapacity included: the workers
    that got cards run, and are billed, until the rest get theirs).
    """
    from .services import _fail_unstarted

    address = driver.group_address(group=group_name(job))
    specs = [spec(job, index, address) for index in range(job.workers)]  # DB reads: here
    statuses: dict[int, WorkloadStatus] = {}
    errors: list[DriverError] = []
    if driver.starts_workers_together and len(specs) > 1:
        # Every worker at once (the backend holds the later ones until worker
        # 0's network exists): the task runs after one start, not two in a row.
        failed = _start_each(driver, specs, range(len(specs)), statuses)
        # Without worker 0 the others could not join it: its error is the one
        # that counts (NoCapacity is retried, not a later worker's not_running).
        errors = [failed[0]] if 0 in failed else list(failed.values())
    else:
        try:
            statuses[0] = driver.start_workload(specs[0])
        except DriverError as exc:
            errors.append(exc)
        if not errors and statuses[0].phase not in ENDED and len(specs) > 1:
            # The later workers together: each start is a round trip to the
            # cluster, and the task runs once all do.
            errors = list(_start_each(driver, specs, range(1, len(specs)), statuses).values())
    permanent = [e for e in errors if e.permanent]
    if errors and not permanent:
        _open_windows(job.pk, statuses)
        no_capacity = [e for e in errors if isinstance(e, NoCapacity)]
        if no_capacity:
            # Waits for cards (not billed for those it lacks); retried.
            Job.objects.starting_unstopped(job.pk).update(
                **said.columns(str(no_capacity[0])), updated_at=timezone.now()
            )
        raise errors[0]
    if permanent:
        if not statuses:
            _fail_unstarted(job.pk, str(permanent[0]))
            return
        # A later worker refused (worker 0 already ended, say): what the
        # started ones report decides; none failed: the refusal is the reason.
        statuses = current(job, driver)
        if converge(job.pk, statuses, driver=driver) in ACTIVE_STATES:
            stopped = stop_all(job, driver)
            _end(job.pk, stopped, JobState.FAILED, str(permanent[0]), None, driver=driver)
        return
    state = converge(job.pk, statuses, driver=driver)
    if state in ACTIVE_STATES and statuses[0].phase in ENDED:
        # Worker 0 exited 0 before the others started: they could never join
        # its rendezvous (nor its network, locally); a retry would not either.
        stopped = stop_all(job, driver, ended=statuses)
        _end(job.pk, stopped, JobState.FAILED, Said("job.leader_ended"), None, driver=driver)


def current(job: Job, driver: ClusterDriver) -> dict[int, WorkloadStatus]:
    """What the driver says about each worker now."""
    return {i: driver.workload_status(name=name) for i, name in enumerate(job.worker_names)}


def stop_all(
    job: Job, driver: ClusterDriver, *, ended: dict[int, WorkloadStatus] | None = None
) -> dict[int, WorkloadStatus]:
    """Stop every worker (later ones first: they live in worker 0's network); their ends.

    Workers in ``ended`` (already ended, as reported) are left as they are.
    """
    now = timezone.now()
    ends = {i: s for i, s in (ended or {}).items() if s.phase in ENDED}
    for index in reversed(range(job.workers)):
        if index in ends:
            continue
        status = driver.stop_workload(name=job.worker_names[index])
        if status.phase in (Phase.MISSING, Phase.RUNNING, Phase.PENDING):
            # Never started (or the driver lost it): released now.
            status = replace(status, phase=Phase.FAILED, finished_at=status.finished_at or now)
        ends[index] = status
    return ends


def _open_windows(job_id: int, statuses: dict[int, WorkloadStatus]) -> None:
    """Each worker that got its cards is billed from then (its own window)."""
    now = timezone.now()
    # One commit for all (each its own on SQLite was a disk sync per worker
    # on the way to "running"); each update is conditional, so a retry or a
    # concurrent pass opens nothing twice.
    with transaction.atomic():
        for index, status in statuses.items():
            if status.phase in (Phase.RUNNING, *ENDED):
                JobWorker.objects.filter(
                    job_id=job_id, index=index, started_at__isnull=True
                ).update(started_at=status.started_at or now)


def converge(
    job_id: int, statuses: dict[int, WorkloadStatus], *, driver: ClusterDriver | None = None
) -> str:
    """Bring a task's row up to what its workers report; its state afterwards.

    ``statuses`` by worker index; a worker not in it (or MISSING) has not
    started. See the module docstring for the rules.
    """
    job = Job.objects.select_related("gpu_type", "user").get(pk=job_id)
    if job.state not in ACTIVE_STATES:
        return job.state
    _open_windows(job_id, statuses)
    failed = sorted(
        (s.finished_at or timezone.now(), i, s) for i, s in statuses.items() if s.phase == FAILED
    )
    if failed and job.stop_requested_at is None:
        _at, index, first = failed[0]
        code = first.exit_code
        ends = dict(statuses)
        if driver is not None:
            ends = stop_all(job, driver, ended=statuses)
        reason: Reason = Said("job.worker_failed", {"worker": index, "code": code})
        leader = statuses.get(0)
        if code is None and index > 0 and leader is not None and leader.phase in ENDED:
            # It could not join worker 0's network (its rendezvous, on
            # Kubernetes): worker 0 had already ended. Say that, not the
            # host's error ("could not start: Broken pipe").
            reason = Said("job.leader_ended")
        elif code is None:
            # It never ran (could not start): the cluster's own reason says why.
            reason = workload_reasons.from_status(first, Said("job.process_failed"))
        return _end(job_id, ends, JobState.FAILED, reason, code, driver=driver)
    every = [statuses.get(i) for i in range(job.workers)]
    if all(s is not None and s.phase in ENDED for s in every):
        if job.stop_requested_at is not None:
            return _end(job_id, statuses, JobState.STOPPED, job.stored_reason, None, driver=driver)
        return _end(job_id, statuses, JobState.SUCCEEDED, "", 0, driver=driver)
    if all(s is not None and s.phase in (Phase.RUNNING, Phase.SUCCEEDED) for s in every):
        return _running(job, statuses)
    return job.state


FAILED = Phase.FAILED


def _running(job: Job, statuses: dict[int, WorkloadStatus]) -> str:
    from .services import _dispatch

    now = timezone.now()
    # The task's allocation starts with its first worker's (the windows just opened).
    starts = [w for w in job.worker_rows.values_list("started_at", flat=True) if w is not None]
    devices = [d for i in sorted(statuses) for d in statuses[i].gpu_devices]
    changed = Job.objects.filter(pk=job.pk, state__in=ACTIVE_STATES).update(
        state=JobState.RUNNING,
        started_at=job.started_at or (min(starts) if starts else now),
        last_seen_at=now,
        gpu_devices=devices or job.gpu_devices,
        **said.columns("" if job.stop_requested_at is None else job.stored_reason),
        updated_at=now,
    )
    if changed and job.state == JobState.STARTING:
        _dispatch("probe", job.pk)
    return JobState.RUNNING


def _end(
    job_id: int,
    statuses: dict[int, WorkloadStatus],
    state: str,
    reason: Reason,
    exit_code: int | None,
    *,
    driver: ClusterDriver | None,
    lost_at: datetime | None = None,
) -> str:
    """End the task ``state``: each worker's window closes at its own release; final charges."""
    from .services import _forget_quietly, _notify_end

    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("gpu_type", "user").get(pk=job_id)
        if job.state not in ACTIVE_STATES:
            return job.state
        workers = {w.index: w for w in job.worker_rows.all()}
        starts, ends = [], []
        for index, worker in workers.items():
            status = statuses.get(index)
            started = worker.started_at
            if started is None and status is not None and status.phase != Phase.MISSING:
                started = status.started_at
            if started is None:
                JobWorker.objects.filter(pk=worker.pk).update(ended_at=now, metering_closed=True)
                continue
            ended = lost_at or (status.finished_at if status is not None else None) or now
            ended = max(ended, started)
            JobWorker.objects.filter(pk=worker.pk).update(started_at=started, ended_at=ended)
            starts.append(started)
            ends.append(ended)
        Job.objects.filter(pk=job_id).update(
            state=state,
            **said.columns(reason),
            exit_code=exit_code,
            started_at=job.started_at or (min(starts) if starts else None),
            ended_at=max(ends) if ends else now,
            metering_closed=not starts,
            updated_at=now,
        )
        job.refresh_from_db()
        if starts:
            # The final charges: each worker exactly to its release.
            metering.meter_job(job=job, at=max(now, *ends))
        _notify_end(job)
    if driver is not None:
        for name in job.worker_names:
            _forget_quietly(driver, name)
    return state


def lose(job: Job, at: datetime) -> str:
    """A running task the cluster lost (a worker missing): failed, billed to when it was last seen."""
    return _end(job.pk, {}, JobState.FAILED, Said("job.lost"), None, driver=None, lost_at=at)
