"""Writes of the workshops app (DESIGN rules 1, 3, 7).

User actions (``workshop_create``/``start``/``stop``/``update_resources``/
``delete``, env vars) change rows in a transaction and hand the cluster work
to a Celery task after commit. The ``*_apply`` functions are what those tasks
run: they talk to the driver outside any transaction and finish with a
conditional update, so a retried or duplicated task is harmless. The
reconciler converges rows with what the driver reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin import cluster
from aladdin.cluster.base import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_USER,
    DriverError,
    Phase,
    QuotaExceeded,
    Resources,
    WorkloadSpec,
    WorkloadStatus,
)
from aladdin.lib.errors import DomainError
from aladdin.workloads import quota
from aladdin.workloads.env import encrypt_value
from aladdin.workloads.models import Image
from aladdin.workloads.reconcile import Reconciler, quietly
from aladdin.workloads.space import platform_env, user_space_prepare
from storage import selectors as storage_selectors

from .choices import WORKLOAD_KIND, WorkshopState
from .models import ResourcePreset, Workshop, WorkshopEnvVar, WorkshopEvent

if TYPE_CHECKING:
    from aladdin.accounts.models import User


# The init a workshop runs: it only has to stay up; users come in over SSH/terminal.
WORKSHOP_COMMAND = ["sleep", "infinity"]
# A "creating" row whose workload has not appeared after this long has lost its start task.
CREATING_GRACE = timedelta(minutes=5)


class WorkshopError(DomainError):
    """A user action that is not allowed now; the message is for the user."""

    error_code = "state_conflict"


def _event(workshop: Workshop | None, kind: str, message: str = "", *, name: str = "") -> None:
    WorkshopEvent.objects.create(
        workshop=workshop,
        name=name or (workshop.workload_name if workshop else ""),
        kind=kind,
        message=message,
    )


def _requested(workshop: Workshop) -> Resources:
    return Resources(cpu_millicores=workshop.cpu_millicores, memory_mib=workshop.memory_mib)


def _dispatch(task_name: str, workshop_id: int) -> None:
    from . import tasks

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.delay(workshop_id))


# --- user actions ---------------------------------------------------------------


@transaction.atomic
def workshop_create(
    *,
    user: User,
    name: str,
    image: Image,
    preset: ResourcePreset,
    env: dict[str, str] | None = None,
) -> Workshop:
    """Create a workshop and start it. Raises ValidationError, QuotaExceeded."""
    workshop = Workshop(
        user=user,
        name=name,
        image=image,
        preset=preset,
        cpu_millicores=preset.cpu_millicores,
        memory_mib=preset.memory_mib,
        applied_cpu_millicores=preset.cpu_millicores,
        applied_memory_mib=preset.memory_mib,
        state=WorkshopState.CREATING,
    )
    workshop.full_clean()
    if not image.is_active:
        raise ValidationError({"image": _("This image is no longer offered.")})
    _check_storage(user)
    quota.check(user, _requested(workshop))
    workshop.save()
    for key, value in (env or {}).items():
        workshop_env_set(workshop=workshop, key=key, value=value)
    _event(workshop, "created", _("Workshop is waiting for creating."))
    _dispatch("start", workshop.pk)
    return workshop


def _check_storage(user: User) -> None:
    # A local directory cannot enforce its size (SPEC §4.2): while the volume
    # is over the allowance, new workloads are refused with the numbers.
    ok, message = storage_selectors.workloads_allowed(user)
    if not ok:
        raise WorkshopError(message)


def _lock(workshop: Workshop) -> Workshop:
    return Workshop.objects.select_for_update().get(pk=workshop.pk)


@transaction.atomic
def workshop_start(*, workshop: Workshop) -> Workshop:
    """Start a stopped or failed workshop with its current resources."""
    workshop = _lock(workshop)
    if workshop.state not in (WorkshopState.STOPPED, WorkshopState.FAILED):
        raise WorkshopError(_("Only a stopped workshop can be started."))
    _check_storage(workshop.user)
    quota.check(workshop.user, _requested(workshop), exclude_workshop_id=workshop.pk)
    workshop.state = WorkshopState.CREATING
    workshop.reason = ""
    workshop.applied_cpu_millicores = workshop.cpu_millicores
    workshop.applied_memory_mib = workshop.memory_mib
    workshop.save()
    _event(workshop, "start", _("Workshop is waiting for creating."))
    _dispatch("start", workshop.pk)
    return workshop


@transaction.atomic
def workshop_stop(*, workshop: Workshop) -> Workshop:
    """Stop a workshop; files under /root stay."""
    workshop = _lock(workshop)
    if workshop.state not in (WorkshopState.CREATING, WorkshopState.RUNNING):
        raise WorkshopError(_("Only a running workshop can be stopped."))
    workshop.state = WorkshopState.STOPPING
    workshop.save()
    _event(workshop, "stop", _("Stopping."))
    _dispatch("stop", workshop.pk)
    return workshop


@transaction.atomic
def workshop_update_resources(*, workshop: Workshop, preset: ResourcePreset) -> Workshop:
    """Change the resources; they apply on the next start (SPEC §6)."""
    workshop = _lock(workshop)
    if workshop.state == WorkshopState.DELETING:
        raise WorkshopError(_("This workshop is being deleted."))
    workshop.preset = preset
    workshop.cpu_millicores = preset.cpu_millicores
    workshop.memory_mib = preset.memory_mib
    workshop.save()
    _event(workshop, "resources", _("Resources set to %(label)s.") % {"label": preset.label})
    return workshop


@transaction.atomic
def workshop_delete(*, workshop: Workshop) -> Workshop:
    """Delete a workshop: its workload is stopped, then the row goes."""
    workshop = _lock(workshop)
    if workshop.state == WorkshopState.DELETING:
        return workshop
    workshop.state = WorkshopState.DELETING
    workshop.save()
    _event(workshop, "delete", _("Deleting."))
    _dispatch("delete", workshop.pk)
    return workshop


@transaction.atomic
def workshop_env_set(*, workshop: Workshop, key: str, value: str) -> WorkshopEnvVar:
    """Set a variable (applies on the next start). The value is stored encrypted."""
    var = WorkshopEnvVar.objects.filter(workshop=workshop, key=key).first() or WorkshopEnvVar(
        workshop=workshop, key=key
    )
    var.value_encrypted = encrypt_value(value)
    var.full_clean(exclude=["workshop"])
    var.save()
    return var


@transaction.atomic
def workshop_env_delete(*, workshop: Workshop, key: str) -> None:
    WorkshopEnvVar.objects.filter(workshop=workshop, key=key).delete()


# --- the cluster side (run by tasks) ---------------------------------------------------


def workload_env(workshop: Workshop) -> dict[str, str]:
    """Platform defaults merged with the user's variables; the user's win."""
    env = platform_env()
    for var in workshop.env_vars.all():
        env[var.key] = var.plaintext()
    return env


def workload_spec(workshop: Workshop) -> WorkloadSpec:
    return WorkloadSpec(
        name=workshop.workload_name,
        user_id=workshop.user_id,
        kind=WORKLOAD_KIND,
        image=workshop.image.ref,
        command=list(WORKSHOP_COMMAND),
        env=workload_env(workshop),
        resources=Resources(
            cpu_millicores=workshop.applied_cpu_millicores,
            memory_mib=workshop.applied_memory_mib,
        ),
        labels={
            LABEL_USER: str(workshop.user_id),
            LABEL_KIND: WORKLOAD_KIND,
            LABEL_OWNER: workshop.workload_name,
        },
    )


def _transition(
    workshop_id: int, *, from_states: Iterable[str], to: str, reason: str = "", **extra: Any
) -> bool:
    now = timezone.now()
    fields = {"state": to, "reason": reason, "updated_at": now, **extra}
    changed = Workshop.objects.filter(pk=workshop_id, state__in=from_states).update(**fields)
    if changed:
        workshop = Workshop.objects.get(pk=workshop_id)
        _event(workshop, to, reason)
    return bool(changed)


def workshop_start_apply(*, workshop_id: int) -> None:
    """Start the workload of a "creating" workshop. Raises DriverError when worth a retry."""
    workshop = (
        Workshop.objects.select_related("image", "user")
        .filter(pk=workshop_id, state=WorkshopState.CREATING)
        .first()
    )
    if workshop is None:
        return  # stopped, deleted or already handled
    driver = cluster.get_driver()
    try:
        user_space_prepare(user=workshop.user, driver=driver)
        status = driver.start_workload(workload_spec(workshop))
    except QuotaExceeded as exc:
        _transition(workshop_id, from_states=[WorkshopState.CREATING], to="failed", reason=str(exc))
        return
    except DriverError as exc:
        if exc.permanent:
            _transition(
                workshop_id, from_states=[WorkshopState.CREATING], to="failed", reason=str(exc)
            )
            return
        raise
    _apply_status(workshop_id, status.phase, status.reason)


def _apply_status(workshop_id: int, phase: str, reason: str) -> None:
    if phase == Phase.RUNNING:
        _transition(
            workshop_id,
            from_states=[WorkshopState.CREATING],
            to=WorkshopState.RUNNING,
            reason="",
            started_at=timezone.now(),
        )
    elif phase in (Phase.FAILED, Phase.SUCCEEDED):
        _transition(
            workshop_id,
            from_states=[WorkshopState.CREATING, WorkshopState.RUNNING],
            to=WorkshopState.FAILED,
            reason=reason or _("The workshop's container ended."),
        )


def workshop_stop_apply(*, workshop_id: int) -> None:
    workshop = Workshop.objects.filter(pk=workshop_id, state=WorkshopState.STOPPING).first()
    if workshop is None:
        return
    cluster.get_driver().stop_workload(name=workshop.workload_name)
    _transition(
        workshop_id,
        from_states=[WorkshopState.STOPPING],
        to=WorkshopState.STOPPED,
        stopped_at=timezone.now(),
    )


def workshop_delete_apply(*, workshop_id: int) -> None:
    workshop = Workshop.objects.filter(pk=workshop_id, state=WorkshopState.DELETING).first()
    if workshop is None:
        return
    name = workshop.workload_name
    cluster.get_driver().stop_workload(name=name)
    with transaction.atomic():
        deleted, _rows = Workshop.objects.filter(
            pk=workshop_id, state=WorkshopState.DELETING
        ).delete()
        if deleted:
            _event(
                None,
                "deleted",
                _("Workshop %(name)s deleted.") % {"name": workshop.name},
                name=name,
            )


class WorkshopReconciler(Reconciler):
    """Workshops' rules in the shared reconcile pass (aladdin.workloads.reconcile).

    - creating: running → running; ended → failed (workload stopped);
      missing past CREATING_GRACE → failed (its start task was lost).
    - running: missing → failed; exited cleanly → stopped; failed → failed.
    - stopping, deleting: applied again until done.
    - stopped or failed rows must not keep a workload; workloads with no
      workshop are stopped. Every change is a WorkshopEvent.
    """

    kind = WORKLOAD_KIND
    counts = ("running", "failed", "stopped", "orphans", "deleted")

    def rows(self) -> dict[str, Workshop]:
        return {w.workload_name: w for w in Workshop.objects.all()}

    def converge(self, workshop: Workshop, status: WorkloadStatus) -> None:
        name, phase, state = workshop.workload_name, status.phase, workshop.state
        if state == WorkshopState.CREATING:
            if phase == Phase.RUNNING:
                _apply_status(workshop.pk, phase, "")
                self.count("running")
            elif phase in (Phase.FAILED, Phase.SUCCEEDED):
                _apply_status(workshop.pk, phase, status.reason)
                self.stop_quietly(name)
                self.count("failed")
            elif phase == Phase.MISSING and workshop.updated_at < self.now - CREATING_GRACE:
                _transition(
                    workshop.pk,
                    from_states=[WorkshopState.CREATING],
                    to=WorkshopState.FAILED,
                    reason=_("The workshop did not start in time."),
                )
                self.count("failed")
        elif state == WorkshopState.RUNNING:
            if phase == Phase.MISSING:
                _transition(
                    workshop.pk,
                    from_states=[state],
                    to=WorkshopState.FAILED,
                    reason=_("The workshop's container is gone."),
                )
                self.count("failed")
            elif phase == Phase.SUCCEEDED:
                # Ended cleanly (e.g. the agent stopped it): stopped, not failed.
                _transition(
                    workshop.pk,
                    from_states=[state],
                    to=WorkshopState.STOPPED,
                    reason=status.reason,
                    stopped_at=timezone.now(),
                )
                self.stop_quietly(name)
                self.count("stopped")
            elif phase == Phase.FAILED:
                _apply_status(workshop.pk, phase, status.reason)
                self.stop_quietly(name)
                self.count("failed")
        elif state == WorkshopState.STOPPING:
            quietly(workshop_stop_apply, workshop_id=workshop.pk)
            self.count("stopped")
        elif state == WorkshopState.DELETING:
            quietly(workshop_delete_apply, workshop_id=workshop.pk)
            self.count("deleted")
        elif phase != Phase.MISSING and self.stop_quietly(name):
            # Stopped or failed rows must not keep a workload.
            _event(workshop, "orphan-stopped", _("A workload of a stopped workshop was stopped."))
            self.count("orphans")

    def orphan(self, name: str, status: WorkloadStatus) -> None:
        if not self.stop_quietly(name):
            return
        _event(
            None,
            "orphan-removed",
            _("Workload %(name)s had no workshop; it was stopped.") % {"name": name},
            name=name,
        )
        self.count("orphans")


def workshops_reconcile(*, as_of: datetime | None = None) -> dict[str, int]:
    """Converge rows with the driver's workloads (level-triggered, DESIGN rule 7)."""
    return WorkshopReconciler(as_of=as_of).run()
