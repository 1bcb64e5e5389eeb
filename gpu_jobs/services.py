"""Writes of the gpu_jobs app (DESIGN rules 1, 3, 4, 7; SPEC §4.1, §7).

User actions (``job_create``, ``job_stop``, ``job_delete``, configurations)
change rows in a transaction and hand the cluster work to a Celery task after
commit. The ``*_apply`` functions are what those tasks run: they talk to the
driver outside any transaction and finish with conditional updates, so a
retried or duplicated task is harmless. ``jobs_reconcile`` converges rows
with what the driver reports; metering (``gpu_jobs.metering``) bills from the
allocation time to the release time the driver recorded, so a job that ended
while the portal was down is billed exactly to its end.

States: a job is created ``starting`` (it already counts against the user's
parallelism and quota, so two concurrent submissions cannot both pass
admission), becomes ``running`` when the driver reports its process started
(``started_at``: the allocation time), and ends ``succeeded``/``failed`` when
its process exits or ``stopped`` when the user or an exhausted balance
stopped it (``ended_at``: the release time).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin import cluster
from aladdin.accounts.services import notification_create
from aladdin.cluster import debugger
from aladdin.cluster.base import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_USER,
    ClusterDriver,
    DriverError,
    NoCapacity,
    Phase,
    QuotaExceeded,
    WorkloadSpec,
    WorkloadStatus,
)
from aladdin.cluster.images import BuildState
from aladdin.lib import said
from aladdin.lib.said import Reason, Said
from aladdin.workloads import facts, images
from aladdin.workloads import reasons as workload_reasons
from aladdin.workloads.models import Image
from aladdin.workloads.reconcile import Reconciler, quietly
from aladdin.workloads.space import platform_env, user_space_prepare
from billing import services as billing_services
from storage import files as storage_files

from . import admission, logs, metering, run_task
from . import reasons as _reasons  # noqa: F401 - defines the messages used below
from .choices import ACTIVE_STATES, ENDED_STATES, JobKind, JobState
from .models import GpuType, Job, JobConfiguration, JobPort, JobWorker
from .selectors import DEV_KINDS
from .validation import (
    DEFAULT_IMAGE,
    MAX_PORTS,
    JobError,
    JobNotFound,
    clean_args,
    clean_entry,
    clean_env,
    clean_image,
    clean_path,
    clean_ports,
)

if TYPE_CHECKING:
    from aladdin.accounts.models import User


log = logging.getLogger(__name__)

WORKLOAD_KIND = "job"
# Every kind of SPEC §7 runs.
SUPPORTED_KINDS = (JobKind.RUN, JobKind.DEBUG, JobKind.SHELL, JobKind.TASK)
# A starting job whose workload has not appeared after this long gets its
# start task dispatched again by the reconciler (the task is idempotent).
START_REDISPATCH_AFTER = timedelta(seconds=30)


# --- user actions ------------------------------------------------------------------


def _dispatch(task_name: str, job_id: int) -> None:
    from . import tasks

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.delay(job_id))


def _refuse_a_missing_entry(user: User, entry: str) -> None:
    """Refuse at launch, with its path, an entry file the user's volume does not have.

    ``entry`` is absolute under /root (clean_entry). Asked of the volume
    through the driver's files access (the user's own sandbox judges the
    path); a backend that cannot tell lets the launch go on, and the job
    then fails with the interpreter's own message.
    """
    if storage_files.file_exists(user=user, path=entry) is False:
        raise JobError(
            {
                "entry": _(
                    "%(path)s is not in your storage. Upload it (Files page, scp or your IDE) "
                    "or correct the path, then launch again."
                )
                % {"path": entry}
            }
        )


@transaction.atomic
def job_create(
    *,
    user: User,
    kind: str = JobKind.RUN,
    entry: str,
    gpu_type: GpuType,
    cards_per_worker: int = 1,
    workers: int = 1,
    python_module: bool = False,
    args: Sequence[str] | None = None,
    env: dict | None = None,
    workdir: str = "",
    image: str = "",
    interpreter: str = "",
    ports: Iterable[int] | None = None,
    idempotency_key: str = "",
    at: datetime | None = None,
) -> Job:
    """Admit and start a job. Raises JobError (bad input) or admission.JobRefused.

    With ``idempotency_key``, a repeated call (a retried HTTP request) returns
    the job the first call created instead of creating another.
    """
    at = at or timezone.now()
    if kind not in SUPPORTED_KINDS:
        raise JobError(
            {
                "kind": _(
                    "%(kind)s is not a kind of job: use GPU Run, GPU Debug, Run Shell or Run Task."
                )
                % {"kind": JobKind(kind).label if kind in JobKind.values else kind}
            }
        )
    if kind != JobKind.TASK and workers != 1:
        raise JobError({"workers": _("GPU Run, GPU Debug and Run Shell use one worker.")})
    if not 1 <= int(workers) <= run_task.MAX_WORKERS:
        raise JobError(
            {
                "workers": _("A Run Task has 1 to %(max)s workers; you asked for %(n)s.")
                % {"max": run_task.MAX_WORKERS, "n": workers}
            }
        )
    idempotency_key = _clean_key(idempotency_key)
    entry = clean_entry(kind, entry, python_module)
    workdir = clean_path(workdir, field="workdir", must_be_under_root=True)
    image = clean_image(image)
    interpreter = clean_path(interpreter, field="interpreter", must_be_under_root=True)
    # What no change of the request fixes is said first: no plan, an image
    # this host cannot provide; then a missing entry file.
    admission.refuse_without_plan(user, at)
    if not interpreter:
        # The image runs only if it is what it says (a conda interpreter
        # under /root replaces it, SPEC §6, so then it is not checked).
        image_row = images.image_for_ref(image)
        if image_row is not None:
            images.image_check_launchable(image_row)
    if not python_module:
        _refuse_a_missing_entry(user, entry)
    # Serialise admissions of this user: the balance, parallelism and quota
    # read below stay true until this job's row is committed.
    billing_services.account_lock(user=user)
    if idempotency_key:
        existing = Job.objects.filter(user=user, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    job = Job(
        user=user,
        kind=kind,
        entry=entry,
        python_module=bool(python_module),
        args=clean_args(args),
        workdir=workdir,
        image=image,
        interpreter=interpreter,
        gpu_type=gpu_type,
        cards_per_worker=int(cards_per_worker),
        workers=int(workers),
        ports=clean_ports(ports),
        idempotency_key=idempotency_key,
        state=JobState.STARTING,
    )
    job.set_env(clean_env(env))
    admission.admit(
        user=user,
        gpu_type=gpu_type,
        cards_per_worker=job.cards_per_worker,
        workers=job.workers,
        at=at,
    )
    try:
        with transaction.atomic():
            job.save()
            JobWorker.objects.bulk_create([JobWorker(job=job, index=i) for i in range(job.workers)])
            JobPort.objects.bulk_create([JobPort(job=job, port=port) for port in job.ports])
    except IntegrityError:
        if not idempotency_key:
            raise
        # The same key raced past the check (a second database connection
        # without our lock, e.g. SQLite's deferred mode): answer with the first.
        existing = Job.objects.filter(user=user, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing
    _dispatch("start", job.pk)
    return job


def _clean_key(key: str) -> str:
    return (key or "").strip()[: Job._meta.get_field("idempotency_key").max_length]


@transaction.atomic
def job_create_once(*, user: User, idempotency_key: str, **launch: Any) -> tuple[Job, bool]:
    """:func:`job_create` for a retryable request: (the job, whether this call made it).

    The key is looked up under the user's account lock, in the transaction
    that creates the job, so of concurrent calls with one key exactly one
    creates the job (True) and every other gets that job (False). A look-up
    before the call, outside the lock, let two concurrent requests both
    answer "created".
    """
    key = _clean_key(idempotency_key)
    billing_services.account_lock(user=user)
    existed = bool(key) and Job.objects.filter(user=user, idempotency_key=key).exists()
    return job_create(user=user, idempotency_key=key, **launch), not existed


def _lock(job: Job) -> Job:
    return Job.objects.select_for_update().select_related("gpu_type").get(pk=job.pk)


# --- external access (SPEC §7) ---------------------------------------------------------


@transaction.atomic
def port_add(*, job: Job, port: int) -> JobPort:
    """Serve ``port`` of a starting or running job at its own URL; the open one if already there.

    Raises JobError: the job ended, the number is not a port a user may
    expose, or the job already has the most ports allowed.
    """
    job = _lock(job)
    if job.state not in ACTIVE_STATES or job.stop_requested_at is not None:
        raise JobError(_("Ports can be added to a starting or running job only."))
    (number,) = clean_ports([port])
    open_ports = list(job.exposed_ports.filter(removed_at__isnull=True))
    for existing in open_ports:
        if existing.port == number:
            return existing
    if len(open_ports) >= MAX_PORTS:
        raise JobError({"ports": _("At most %(n)s external ports.") % {"n": MAX_PORTS}})
    row = JobPort.objects.create(job=job, port=number)
    job.ports = sorted({*job.ports, number})
    job.save(update_fields=["ports", "updated_at"])
    return row


@transaction.atomic
def port_remove(*, job: Job, port: int) -> None:
    """Stop serving ``port``: its URL answers 404 from now on (the proxy drops open connections)."""
    job = _lock(job)
    removed = job.exposed_ports.filter(port=port, removed_at__isnull=True).update(
        removed_at=timezone.now()
    )
    if not removed:
        raise JobNotFound(_("Port %(port)s is not open on this job.") % {"port": port})
    job.ports = [p for p in job.ports if p != port]
    job.save(update_fields=["ports", "updated_at"])


@transaction.atomic
def job_stop(*, job: Job, reason: Reason = "", at: datetime | None = None) -> Job:
    """Stop a starting or running job; billing ends when its resources are released."""
    job = _lock(job)
    if job.state not in ACTIVE_STATES or job.deleted_at is not None:
        raise JobError(_("Only a starting or running job can be stopped."))
    if job.stop_requested_at is None:
        job.stop_requested_at = at or timezone.now()
        fields = job.set_reason(reason or Said("job.stopped_by_you"))
        job.save(update_fields=["stop_requested_at", *fields, "updated_at"])
    _dispatch("stop", job.pk)
    return job


@transaction.atomic
def job_delete(*, job: Job, at: datetime | None = None) -> Job:
    """Delete a job: a running one is stopped and released first; its logs go.

    The row stays (hidden) because the ledger names it; it is what the
    user was charged for.
    """
    job = _lock(job)
    if job.deleted_at is not None:
        return job
    now = at or timezone.now()
    job.deleted_at = now
    fields = ["deleted_at", "updated_at"]
    if job.state in ACTIVE_STATES and job.stop_requested_at is None:
        job.stop_requested_at = now
        fields += ["stop_requested_at", *job.set_reason(Said("job.deleted_by_you"))]
    job.save(update_fields=fields)
    _dispatch("delete", job.pk)
    return job


def _stop_active(user_id: int, reason: Reason, now: datetime) -> list[int]:
    """Ask every active job of the user to stop, with ``reason``; the ids this call asked.

    Call inside a transaction. A job whose stop was already asked (by the
    user, or a concurrent pass) keeps its own reason and is not counted.
    """
    ids = list(
        Job.objects.select_for_update()
        .filter(user_id=user_id, state__in=ACTIVE_STATES, stop_requested_at__isnull=True)
        .values_list("pk", flat=True)
    )
    if ids:
        Job.objects.filter(pk__in=ids).update(
            stop_requested_at=now, **said.columns(reason), updated_at=now
        )
        for job_id in ids:
            _dispatch("stop", job_id)
    return ids


def jobs_stop_all(*, user_id: int, reason: Reason, at: datetime | None = None) -> int:
    """Stop every active job of the user with ``reason`` on each (the disk guard's stop).

    Billing ends when each is released (job_stop_apply), as for any stop.
    Returns how many this call stopped.
    """
    with transaction.atomic():
        return len(_stop_active(user_id, reason, at or timezone.now()))


def jobs_stop_for_balance(*, user_id: int, at: datetime | None = None) -> int:
    """Stop every active job of a user whose balance ran out, and tell the user once."""
    now = at or timezone.now()
    with transaction.atomic():
        ids = _stop_active(user_id, Said("job.balance_out"), now)
        if not ids:
            return 0
        user = Job.objects.get(pk=ids[0]).user
        notification_create(
            user=user, message="jobs_stopped_balance", params={"n": len(ids)}, at=now
        )
    return len(ids)


# --- configurations ----------------------------------------------------------------


@transaction.atomic
def configuration_save(
    *,
    user: User,
    name: str,
    kind: str = JobKind.RUN,
    entry: str = "",
    python_module: bool = False,
    args: Sequence[str] | None = None,
    env: dict | None = None,
    workdir: str = "",
    image: str = "",
    interpreter: str = "",
    gpu_type: GpuType | None = None,
    cards_per_worker: int = 1,
    workers: int = 1,
    ports: Iterable[int] | None = None,
    configuration: JobConfiguration | None = None,
) -> JobConfiguration:
    """Create (or, given ``configuration``, update) a named launch configuration."""
    name = (name or "").strip()
    if not name:
        raise JobError({"name": _("Give the configuration a name.")})
    clash = JobConfiguration.objects.filter(user=user, name=name)
    if configuration is not None:
        clash = clash.exclude(pk=configuration.pk)
    if clash.exists():
        raise JobError(
            {"name": _("You already have a configuration named %(name)s.") % {"name": name}}
        )
    config = configuration or JobConfiguration(user=user)
    if kind not in JobKind.values:
        raise JobError({"kind": _("Unknown job kind %(kind)s.") % {"kind": kind}})
    config.name = name[:100]
    config.kind = kind
    config.entry = clean_entry(kind, entry, python_module) if entry else ""
    config.python_module = bool(python_module)
    config.args = clean_args(args)
    config.workdir = clean_path(workdir, field="workdir", must_be_under_root=True)
    config.image = clean_image(image) if image else ""
    config.interpreter = clean_path(interpreter, field="interpreter", must_be_under_root=True)
    config.gpu_type = gpu_type
    config.cards_per_worker = max(1, int(cards_per_worker))
    config.workers = max(1, int(workers))
    config.ports = clean_ports(ports)
    config.set_env(clean_env(env))
    config.save()
    return config


@transaction.atomic
def configuration_delete(*, configuration: JobConfiguration) -> None:
    configuration.delete()


# --- the cluster side (run by tasks) -------------------------------------------------


def job_command(job: Job) -> list[str]:
    """The command the workload runs (SPEC §7: a file, a module with -m, or a script).

    GPU Debug runs the same file or module under the platform's debugpy,
    which waits for the IDE before the first line (aladdin.cluster.debugger).
    """
    if job.kind == JobKind.SHELL:
        return ["bash", job.entry, *job.args]
    # The job's interpreter (a conda python under /root) wins over the image:
    # the image's interpreter is first on PATH otherwise.
    python = job.interpreter or "python3"
    if job.kind == JobKind.DEBUG:
        target = ["-m", job.entry] if job.python_module else [job.entry]
        return debugger.command(python, [*target, *job.args])
    if job.python_module:
        return [python, "-u", "-m", job.entry, *job.args]
    return [python, "-u", job.entry, *job.args]


def workload_env(job: Job) -> dict[str, str]:
    """Platform defaults, then the user's ENV (the user's win), then what the job needs."""
    env = platform_env()
    env.update(job.get_env())
    env.setdefault("PYTHONUNBUFFERED", "1")  # logs stream live (SPEC §7)
    env["ALADDIN_JOB_ID"] = str(job.pk)
    if job.kind == JobKind.DEBUG:
        # Python 3.11+ freezes some stdlib modules; pydevd then warns on every
        # start that breakpoints there may be missed. Not the student's code.
        env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def workload_spec(job: Job) -> WorkloadSpec:
    recipe = None
    if not job.interpreter:
        image_row = images.image_for_ref(job.image or DEFAULT_IMAGE)
        recipe = image_row.recipe() if image_row is not None else None
    workdir = job.workdir
    if not workdir:
        # A file's own directory, as an IDE runs it; /root for a module.
        workdir = posixpath.dirname(job.entry) if job.entry.startswith("/") else "/root"
    return WorkloadSpec(
        name=job.workload_name,
        user_id=job.user_id,
        kind=WORKLOAD_KIND,
        image=job.image or DEFAULT_IMAGE,
        recipe=recipe,
        command=job_command(job),
        env=workload_env(job),
        resources=admission.job_resources(job.gpu_type, job.cards_per_worker, job.workers),
        workdir=workdir or "/root",
        debugger=job.kind == JobKind.DEBUG,
        labels={
            LABEL_USER: str(job.user_id),
            LABEL_KIND: WORKLOAD_KIND,
            LABEL_OWNER: job.workload_name,
        },
    )


def _notify_end(job: Job) -> None:
    # Keyed by str: job.state is the field's plain string (JobState members equal it).
    messages: dict[str, str] = {
        JobState.SUCCEEDED: "job_succeeded",
        JobState.FAILED: "job_failed",
        JobState.STOPPED: "job_stopped",
    }
    notification_create(
        user=job.user,
        message=messages[job.state],
        params={
            "id": job.pk,
            "name": job.display_name,
            "exit_code": job.exit_code,
            # Rendered in the reader's language when the notice is read.
            "reason": said.as_param(job.stored_reason),
        },
    )


def _fail_unstarted(job_id: int, reason: Reason) -> None:
    """A job that never got its resources: it ends failed and is never billed."""
    now = timezone.now()
    with transaction.atomic():
        changed = Job.objects.filter(pk=job_id, state=JobState.STARTING).update(
            state=JobState.FAILED,
            **said.columns(reason),
            ended_at=now,
            metering_closed=True,
            updated_at=now,
        )
        if changed:
            JobWorker.objects.filter(job_id=job_id, started_at__isnull=True).update(
                metering_closed=True
            )
    if changed:
        _notify_end(Job.objects.select_related("user").get(pk=job_id))


def _end_state(job: Job, status: WorkloadStatus) -> tuple[str, Reason]:
    if job.stop_requested_at is not None:
        return JobState.STOPPED, job.stored_reason
    if status.phase == Phase.SUCCEEDED:
        return JobState.SUCCEEDED, ""
    return JobState.FAILED, workload_reasons.from_status(status, Said("job.process_failed"))


def _set_window(job_id: int, *, started_at: datetime | None, ended_at: datetime | None) -> None:
    """The workers' allocation window. GPU Run and Run Shell are one workload, so
    their (single) worker's window is the job's; Run Task will set each worker's
    from its own workload."""
    workers = JobWorker.objects.filter(job_id=job_id)
    if started_at is not None:
        workers.filter(started_at__isnull=True).update(started_at=started_at)
    if ended_at is not None:
        workers.filter(ended_at__isnull=True).update(ended_at=ended_at)
    if started_at is None and ended_at is not None:
        # Never allocated: nothing to bill.
        workers.filter(started_at__isnull=True).update(metering_closed=True)


def _apply_status(
    job_id: int, status: WorkloadStatus, *, driver: ClusterDriver | None = None
) -> str:
    """Bring the row up to what the driver says; returns the job's state afterwards."""
    now = timezone.now()
    job = Job.objects.select_related("gpu_type", "user").get(pk=job_id)
    if job.state not in ACTIVE_STATES:
        return job.state
    started_at = job.started_at or status.started_at
    if status.phase == Phase.RUNNING:
        with transaction.atomic():
            changed = Job.objects.filter(pk=job_id, state__in=ACTIVE_STATES).update(
                state=JobState.RUNNING,
                started_at=started_at or now,
                last_seen_at=now,
                gpu_devices=list(status.gpu_devices) or job.gpu_devices,
                **said.columns("" if job.stop_requested_at is None else job.stored_reason),
                updated_at=now,
            )
            if changed:
                _set_window(job_id, started_at=started_at or now, ended_at=None)
        if changed and job.state == JobState.STARTING:
            _dispatch("probe", job_id)
        return JobState.RUNNING
    if status.phase in (Phase.SUCCEEDED, Phase.FAILED):
        state, reason = _end_state(job, status)
        ended_at = status.finished_at or now
        if started_at is not None and ended_at < started_at:
            ended_at = started_at
        with transaction.atomic():
            changed = Job.objects.filter(pk=job_id, state__in=ACTIVE_STATES).update(
                state=state,
                **said.columns(reason),
                exit_code=status.exit_code,
                started_at=started_at,
                ended_at=ended_at,
                metering_closed=started_at is None,
                updated_at=now,
            )
            if changed:
                _set_window(job_id, started_at=started_at, ended_at=ended_at)
                job.refresh_from_db()
                if started_at is not None:
                    # The final charge: exactly to the release time.
                    metering.meter_job(job=job, at=max(now, ended_at))
                _notify_end(job)
        if changed and driver is not None:
            _forget_quietly(driver, job.workload_name)
        return state
    return job.state


def _forget_quietly(driver: ClusterDriver, name: str) -> None:
    try:
        driver.forget_workload(name=name)
    except DriverError:
        log.warning("could not forget %s; the reconciler will", name, exc_info=True)


def job_start_apply(*, job_id: int) -> None:
    """Start the workload of a starting job. Raises DriverError when worth a retry."""
    job = Job.objects.select_related("gpu_type", "user").starting_unstopped(job_id).first()
    if job is None:
        return  # stopped, deleted or already handled
    driver = cluster.get_driver()
    if not _image_ready_for(job, driver):
        return
    if job.kind == JobKind.TASK:
        user_space_prepare(user=job.user, driver=driver)
        run_task.start(job, driver)
        return
    try:
        user_space_prepare(user=job.user, driver=driver)
        status = driver.start_workload(workload_spec(job))
    except QuotaExceeded as exc:
        _fail_unstarted(job_id, str(exc))
        return
    except DriverError as exc:
        if exc.code == "no_debugger":
            # The operator's to fix (make debugpy); the student gets the way out.
            log.warning("cannot start GPU Debug job %s: %s", job_id, exc)
            _fail_unstarted(job_id, Said("job.no_debugger"))
            return
        if exc.permanent:
            _fail_unstarted(job_id, str(exc))
            return
        if isinstance(exc, NoCapacity):
            # Every card of this type on the host is taken: wait (the job is
            # not billed until it gets its cards); the retry or the
            # reconciler starts it when one is free.
            Job.objects.starting_unstopped(job_id).update(
                **said.columns(str(exc)), updated_at=timezone.now()
            )
        raise
    _apply_status(job_id, status, driver=driver)


def _image_ready_for(job: Job, driver: ClusterDriver) -> bool:
    """Whether ``job`` may start now: its image is built (or it runs the user's own interpreter).

    An image still building leaves the job starting (unbilled) with the
    build's progress as its reason; one that cannot run here fails it with
    the reason. Never another image in its place.
    """
    if job.interpreter:
        return True
    image = images.image_for_ref(job.image or DEFAULT_IMAGE)
    if image is None:
        _fail_unstarted(job.pk, Said("workload.image_not_in_catalog", {"image": job.image}))
        return False
    image = images.image_prepare(image=image, driver=driver)
    if not image.launchable:
        _fail_unstarted(job.pk, images.ImageUnavailable(image).said)
        return False
    if not image.ready:
        # Never over a stop asked meanwhile (a ban, the student): its reason is
        # what the job ends with and what its notice says.
        Job.objects.starting_unstopped(job.pk).update(
            waiting_for_image=True,
            **said.columns(images.waiting_reason(image)),
            updated_at=timezone.now(),
        )
        return False
    if job.waiting_for_image:
        Job.objects.filter(pk=job.pk).update(waiting_for_image=False, **said.columns(""))
    return True


def job_probe_apply(*, job_id: int) -> None:
    """Measure what runs in a job that just started (Python, torch, CUDA, GPUs) and keep it.

    A job that ended before the probe ran keeps none (its image's facts,
    measured when it was built, are on GET /images).
    """
    job = Job.objects.filter(pk=job_id, state=JobState.RUNNING).first()
    if job is None:
        return
    try:
        measured = facts.measure(
            cluster.get_driver(), name=job.workload_name, python=job.interpreter or "python3"
        )
    except (DriverError, TimeoutError):
        log.info("could not measure what runs in %s", job.workload_name, exc_info=True)
        return
    Job.objects.filter(pk=job_id).update(runtime_facts=measured)


def job_stop_apply(*, job_id: int) -> None:
    """Stop (release) a job whose stop was asked for; record the release time."""
    job = Job.objects.filter(pk=job_id, stop_requested_at__isnull=False).first()
    if job is None:
        return
    driver = cluster.get_driver()
    if job.state in ACTIVE_STATES and job.kind == JobKind.TASK:
        # Every worker; the task then ends stopped, each billed to its release.
        run_task.converge(job_id, run_task.stop_all(job, driver), driver=driver)
    elif job.state in ACTIVE_STATES:
        status = driver.stop_workload(name=job.workload_name)
        if status.phase == Phase.MISSING or status.phase == Phase.RUNNING:
            # Never started (or the driver lost it): released now.
            status = WorkloadStatus(
                name=status.name,
                phase=Phase.FAILED,
                started_at=status.started_at,
                finished_at=status.finished_at or timezone.now(),
            )
        _apply_status(job_id, status, driver=driver)


def job_delete_apply(*, job_id: int) -> None:
    """Release a deleted job, then remove its kept output."""
    job = Job.objects.filter(pk=job_id, deleted_at__isnull=False, logs_deleted=False).first()
    if job is None:
        return
    if job.state in ACTIVE_STATES:
        job_stop_apply(job_id=job_id)
    driver = cluster.get_driver()
    for name in job.worker_names:
        driver.delete_logs(name=name)
        _forget_quietly(driver, name)
    if job.kind == JobKind.TASK:
        # A task's logs live in the user's volume (SPEC §7): they go with it.
        logs.delete_task_logs(job)
    Job.objects.filter(pk=job_id).update(logs_deleted=True, updated_at=timezone.now())


def job_sync(*, job_id: int) -> str:
    """Ask the driver about one job now (e.g. when its log stream ended)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state not in ACTIVE_STATES:
        return job.state if job else ""
    driver = cluster.get_driver()
    if job.kind == JobKind.TASK:
        statuses = run_task.current(job, driver)
        if all(s.phase == Phase.MISSING for s in statuses.values()):
            return job.state
        return run_task.converge(job_id, statuses, driver=driver)
    status = driver.workload_status(name=job.workload_name)
    if status.phase == Phase.MISSING:
        return job.state
    return _apply_status(job_id, status, driver=driver)


# --- metering and reconciling (periodic) ------------------------------------------


def jobs_meter(*, as_of: datetime | None = None) -> dict[str, int]:
    """Charge every running job up to ``as_of``; stop the jobs of users who ran out."""
    at = as_of or timezone.now()
    exhausted = metering.meter_due(at=at)
    stopped = 0
    for user_id in sorted(exhausted):
        stopped += jobs_stop_for_balance(user_id=user_id, at=at)
    return {"exhausted_users": len(exhausted), "stopped": stopped}


def jobs_expire_logs(*, as_of: datetime | None = None) -> dict[str, int]:
    """Remove the host output of dev jobs that ended more than JOB_LOG_RETENTION_DAYS ago.

    SPEC §7: a dev job's output is kept on the host so it can be read after
    the end, and removed a set number of days after it. Each job is marked
    (``logs_deleted``, ``logs_expired_at``) only once the driver removed its
    output (missing = success), so a run that fails half-way, or that beat
    skipped, is caught up by the next: everything ended before the cutoff
    and not yet removed is due, whenever the task runs. Deleted jobs are the
    reconciler's (``job_delete_apply``).
    """
    at = as_of or timezone.now()
    cutoff = at - timedelta(days=settings.JOB_LOG_RETENTION_DAYS)
    due = (
        Job.objects.filter(
            kind__in=DEV_KINDS,
            state__in=ENDED_STATES,
            ended_at__lt=cutoff,
            logs_deleted=False,
            deleted_at__isnull=True,
        )
        .order_by("ended_at", "pk")
        .values_list("pk", flat=True)
    )
    driver = cluster.get_driver()
    counts = {"removed": 0, "failed": 0}
    for job_id in list(due):
        if not quietly(driver.delete_logs, name=Job(pk=job_id).workload_name):
            counts["failed"] += 1
            continue
        # Conditional: a run racing this one (or a delete) marks it only once.
        counts["removed"] += Job.objects.filter(pk=job_id, logs_deleted=False).update(
            logs_deleted=True, logs_expired_at=at, updated_at=timezone.now()
        )
    return counts


class JobReconciler(Reconciler):
    """GPU jobs' rules in the shared reconcile pass (aladdin.workloads.reconcile).

    - starting: running → running; ended → its end; missing for a while →
      the start task is dispatched again (idempotent: deterministic names).
    - running: ended → its end, billed to the driver's finish time; missing
      (the cluster lost it) → failed, billed to the last time it was seen.
    - a stop or delete asked for → applied again until done.
    - workloads with no active job (orphans) → stopped, or forgotten if ended.
    """

    kind = WORKLOAD_KIND
    counts = ("running", "ended", "lost", "restarted", "orphans", "deleted")

    def __init__(self, *, as_of: datetime | None = None):
        super().__init__(as_of=as_of)
        self.seen_running: list[int] = []
        # A Run Task's workers, gathered by converge() and judged together in finish().
        self.tasks: dict[int, tuple[Job, dict[int, WorkloadStatus]]] = {}
        self._images: dict[str, Image | None] = {}  # by ref, read once a pass

    def rows(self) -> dict[str, Job]:
        return {
            name: j
            for j in Job.objects.filter(state__in=ACTIVE_STATES).select_related("gpu_type")
            for name in j.worker_names
        }

    def converge(self, job: Job, status: WorkloadStatus) -> None:
        phase = status.phase
        if job.kind == JobKind.TASK:
            _job, statuses = self.tasks.setdefault(job.pk, (job, {}))
            statuses[job.worker_names.index(status.name)] = status
            return
        if job.stop_requested_at is not None:
            if quietly(job_stop_apply, job_id=job.pk):
                self.count("ended")
        elif phase == Phase.RUNNING and job.state == JobState.RUNNING:
            # The common case, batched in finish(): one UPDATE for every job still running.
            self.seen_running.append(job.pk)
            self.count("running")
        elif phase in (Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED):
            state = _apply_status(job.pk, status, driver=self.driver)
            self.count("running" if state == JobState.RUNNING else "ended")
        elif phase == Phase.PENDING:
            pass
        elif job.state == JobState.STARTING and job.waiting_for_image:
            self._wait_for_image(job)
        elif job.state == JobState.STARTING:
            if job.updated_at < self.now - START_REDISPATCH_AFTER:
                Job.objects.filter(pk=job.pk).update(updated_at=self.now)
                _dispatch("start", job.pk)
                self.count("restarted")
        else:
            # Running in the database, unknown to the cluster: lost. It was
            # billed while seen; it ends at the last time it was seen.
            ended_at = job.last_seen_at or job.started_at or self.now
            lost = WorkloadStatus(
                name=job.workload_name,
                phase=Phase.FAILED,
                reason=Said("job.lost").english(),
                reason_id="job.lost",
                started_at=job.started_at,
                finished_at=ended_at,
            )
            _apply_status(job.pk, lost)
            self.count("lost")

    def _wait_for_image(self, job: Job) -> None:
        """A job waiting for its image: show the build's progress; start it once it is over."""
        ref = job.image or DEFAULT_IMAGE
        if ref not in self._images:
            self._images[ref] = images.image_for_ref(ref)
        image = self._images[ref]
        if image is not None and image.build_state in (BuildState.BUILDING, BuildState.MISSING):
            Job.objects.starting_unstopped(job.pk).filter(waiting_for_image=True).update(
                **said.columns(images.waiting_reason(image))
            )
            return
        # Ready, failed or unavailable: the start task decides (and says why).
        _dispatch("start", job.pk)
        self.count("restarted")

    def orphan(self, name: str, status: WorkloadStatus) -> None:
        if status.phase in (Phase.SUCCEEDED, Phase.FAILED):
            quietly(self.driver.forget_workload, name=name)
        elif self.stop_quietly(name):
            log.warning("reconcile: stopped orphaned workload %s", name)
            self.count("orphans")

    def _converge_task(self, job: Job, statuses: dict[int, WorkloadStatus]) -> None:
        """One Run Task from all its workers' statuses (gpu_jobs.run_task)."""
        present = {i: s for i, s in statuses.items() if s.phase != Phase.MISSING}
        if job.stop_requested_at is not None:
            if quietly(job_stop_apply, job_id=job.pk):
                self.count("ended")
        elif (
            job.state == JobState.RUNNING
            and len(present) < job.workers
            and not any(s.phase == Phase.FAILED for s in present.values())
        ):
            # A worker the cluster lost: the task cannot go on. The others
            # are stopped; every worker is billed to the last time it was seen.
            for index in present:
                self.stop_quietly(job.worker_names[index])
            run_task.lose(job, job.last_seen_at or job.started_at or self.now)
            self.count("lost")
        elif job.state == JobState.STARTING and not present and job.waiting_for_image:
            self._wait_for_image(job)
        else:
            try:
                state = run_task.converge(job.pk, present, driver=self.driver)
            except DriverError:
                log.warning("reconcile: task %s", job.pk, exc_info=True)
                return
            if state == JobState.RUNNING:
                self.count("running")
            elif state in ENDED_STATES:
                self.count("ended")
            elif len(present) < job.workers and job.updated_at < self.now - START_REDISPATCH_AFTER:
                Job.objects.filter(pk=job.pk).update(updated_at=self.now)
                _dispatch("start", job.pk)
                self.count("restarted")

    def finish(self) -> None:
        for job, statuses in self.tasks.values():
            self._converge_task(job, statuses)
        if self.seen_running:
            Job.objects.filter(pk__in=self.seen_running, state=JobState.RUNNING).update(
                last_seen_at=self.now
            )
        # Deleted jobs, ended or not, until their output is removed.
        for job_id in Job.objects.filter(deleted_at__isnull=False, logs_deleted=False).values_list(
            "pk", flat=True
        ):
            if quietly(job_delete_apply, job_id=job_id):
                self.count("deleted")


def jobs_reconcile(*, as_of: datetime | None = None) -> dict[str, int]:
    """Converge job rows with the driver's workloads (level-triggered, DESIGN rule 7)."""
    return JobReconciler(as_of=as_of).run()
