"""Writes of the workshops app (DESIGN rules 1, 3, 7).

User actions (``workshop_create``/``start``/``stop``/``update_resources``/
``delete``, env vars) change rows in a transaction and hand the cluster work
to a Celery task after commit. The ``*_apply`` functions are what those tasks
run: they talk to the driver outside any transaction and finish with a
conditional update, so a retried or duplicated task is harmless. The
reconciler converges rows with what the driver reports.
"""

from __future__ import annotations

import logging
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
from aladdin.cluster.images import BuildState
from aladdin.lib import said
from aladdin.lib.errors import DomainError
from aladdin.lib.said import Reason, Said
from aladdin.workloads import facts, images, quota
from aladdin.workloads import reasons as workload_reasons
from aladdin.workloads.env import encrypt_value
from aladdin.workloads.models import Image
from aladdin.workloads.reconcile import Reconciler, quietly
from aladdin.workloads.space import platform_env, user_space_prepare
from storage import selectors as storage_selectors

from . import reasons as _reasons  # noqa: F401 - defines the messages used below
from .choices import ACTIVE_STATES, WORKLOAD_KIND, WorkshopState
from .models import ResourcePreset, SSHKey, Workshop, WorkshopEnvVar, WorkshopEvent

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from aladdin.accounts.models import User


# The init a workshop runs: it only has to stay up; users come in over SSH/terminal.
WORKSHOP_COMMAND = ["sleep", "infinity"]
# A "creating" row whose workload has not appeared after this long has lost its start task.
CREATING_GRACE = timedelta(minutes=5)


class WorkshopError(DomainError):
    """A user action that is not allowed now; the message is for the user."""

    error_code = "state_conflict"


def _event(workshop: Workshop | None, kind: str, message: Reason = "", *, name: str = "") -> None:
    WorkshopEvent.objects.create(
        workshop=workshop,
        name=name or (workshop.workload_name if workshop else ""),
        kind=kind,
        # An operator's log (the admin only): one language, whoever caused it.
        message=message.english() if isinstance(message, Said) else message,
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
    images.image_check_launchable(image)
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
    images.image_check_launchable(workshop.image)
    _check_storage(workshop.user)
    quota.check(workshop.user, _requested(workshop), exclude_workshop_id=workshop.pk)
    workshop.state = WorkshopState.CREATING
    workshop.set_reason("")
    workshop.applied_cpu_millicores = workshop.cpu_millicores
    workshop.applied_memory_mib = workshop.memory_mib
    workshop.save()
    _event(workshop, "start", _("Workshop is waiting for creating."))
    _dispatch("start", workshop.pk)
    return workshop


@transaction.atomic
def workshop_stop(*, workshop: Workshop, reason: Reason = "") -> Workshop:
    """Stop a workshop; files under /root stay. ``reason``: shown to the user (a staff stop)."""
    workshop = _lock(workshop)
    if workshop.state not in (WorkshopState.CREATING, WorkshopState.RUNNING):
        raise WorkshopError(_("Only a running workshop can be stopped."))
    workshop.state = WorkshopState.STOPPING
    if reason:
        workshop.set_reason(reason)
    workshop.save()
    _event(workshop, "stop", reason or _("Stopping."))
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
        recipe=workshop.image.recipe(),
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


def workshops_stop_all(*, user_id: int, reason: Reason) -> int:
    """Stop every creating or running workshop of the user, ``reason`` shown on each.

    For stops the user did not ask for (the disk guard). Each is a
    conditional update, so a workshop a concurrent pass (or the user)
    already stopped is left alone and not counted. Files under /root stay.
    Returns how many this call stopped.
    """
    stopped = 0
    active = Workshop.objects.filter(user_id=user_id, state__in=ACTIVE_STATES)
    for workshop_id in list(active.values_list("pk", flat=True)):
        with transaction.atomic():
            if _transition(
                workshop_id, from_states=ACTIVE_STATES, to=WorkshopState.STOPPING, reason=reason
            ):
                _dispatch("stop", workshop_id)
                stopped += 1
    return stopped


def _transition(
    workshop_id: int, *, from_states: Iterable[str], to: str, reason: Reason = "", **extra: Any
) -> bool:
    now = timezone.now()
    fields = {"state": to, **said.columns(reason), "updated_at": now, **extra}
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
    image = images.image_prepare(image=workshop.image, driver=driver)
    if not image.launchable:
        _transition(
            workshop_id,
            from_states=[WorkshopState.CREATING],
            to=WorkshopState.FAILED,
            reason=images.ImageUnavailable(image).said,
            waiting_for_image=False,
        )
        return
    if not image.ready:
        # Building: wait in "creating" with the build's progress as the
        # reason; the reconciler starts it once the build is over.
        Workshop.objects.filter(pk=workshop_id, state=WorkshopState.CREATING).update(
            waiting_for_image=True,
            **said.columns(images.waiting_reason(image)),
            updated_at=timezone.now(),
        )
        return
    if workshop.waiting_for_image:
        Workshop.objects.filter(pk=workshop_id).update(waiting_for_image=False, **said.columns(""))
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
    _apply_status(workshop_id, status.phase, workload_reasons.from_status(status))


def _apply_status(workshop_id: int, phase: str, reason: Reason) -> None:
    if phase == Phase.RUNNING:
        if _transition(
            workshop_id,
            from_states=[WorkshopState.CREATING],
            to=WorkshopState.RUNNING,
            reason="",
            started_at=timezone.now(),
            runtime_facts={},
        ):
            _dispatch("probe", workshop_id)
    elif phase in (Phase.FAILED, Phase.SUCCEEDED):
        _transition(
            workshop_id,
            from_states=[WorkshopState.CREATING, WorkshopState.RUNNING],
            to=WorkshopState.FAILED,
            reason=reason or Said("workshop.container_ended"),
        )


def workshop_probe_apply(*, workshop_id: int) -> None:
    """Measure what runs in a running workshop (Python, torch, CUDA, GPUs) and keep it.

    Raises DriverError or TimeoutError when it could not (a busy host, the
    agent restarting): the task tries again a few times, as the page shows
    these facts for as long as the workshop runs.
    """
    workshop = Workshop.objects.filter(pk=workshop_id, state=WorkshopState.RUNNING).first()
    if workshop is None:
        return
    try:
        measured = facts.measure(cluster.get_driver(), name=workshop.workload_name)
    except (DriverError, TimeoutError):
        log.warning("could not measure what runs in %s", workshop.workload_name, exc_info=True)
        raise
    Workshop.objects.filter(pk=workshop_id, state=WorkshopState.RUNNING).update(
        runtime_facts=measured
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
        # Why it was stopped, when it was not the user (workshops_stop_all).
        reason=workshop.stored_reason,
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
    counts = ("running", "failed", "stopped", "orphans", "deleted", "image_ready")

    def rows(self) -> dict[str, Workshop]:
        return {w.workload_name: w for w in Workshop.objects.select_related("image")}

    def expects_workload(self, row: Workshop) -> bool:
        # A stopped, failed or deleting workshop has no workload to look for.
        return row.state in ACTIVE_STATES and not row.waiting_for_image

    def converge(self, workshop: Workshop, status: WorkloadStatus) -> None:
        name, phase, state = workshop.workload_name, status.phase, workshop.state
        if state == WorkshopState.CREATING and workshop.waiting_for_image:
            if phase == Phase.MISSING:
                self._wait_for_image(workshop)
        elif state == WorkshopState.CREATING:
            if phase == Phase.RUNNING:
                _apply_status(workshop.pk, phase, "")
                self.count("running")
            elif phase in (Phase.FAILED, Phase.SUCCEEDED):
                _apply_status(workshop.pk, phase, workload_reasons.from_status(status))
                self.stop_quietly(name)
                self.count("failed")
            elif phase == Phase.MISSING and workshop.updated_at < self.now - CREATING_GRACE:
                _transition(
                    workshop.pk,
                    from_states=[WorkshopState.CREATING],
                    to=WorkshopState.FAILED,
                    reason=Said("workshop.start_timeout"),
                )
                self.count("failed")
        elif state == WorkshopState.RUNNING:
            if phase == Phase.MISSING:
                _transition(
                    workshop.pk,
                    from_states=[state],
                    to=WorkshopState.FAILED,
                    reason=Said("workshop.container_gone"),
                )
                self.count("failed")
            elif phase == Phase.SUCCEEDED:
                # Ended cleanly (e.g. the agent stopped it): stopped, not failed.
                _transition(
                    workshop.pk,
                    from_states=[state],
                    to=WorkshopState.STOPPED,
                    reason=workload_reasons.from_status(status),
                    stopped_at=timezone.now(),
                )
                self.stop_quietly(name)
                self.count("stopped")
            elif phase == Phase.FAILED:
                _apply_status(workshop.pk, phase, workload_reasons.from_status(status))
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

    def _wait_for_image(self, workshop: Workshop) -> None:
        """A workshop waiting for its image: show the build's progress; start it once it is over."""
        image = workshop.image
        if image.build_state in (BuildState.BUILDING, BuildState.MISSING):
            Workshop.objects.filter(
                pk=workshop.pk, state=WorkshopState.CREATING, waiting_for_image=True
            ).update(**said.columns(images.waiting_reason(image)))
            return
        # Ready, failed or unavailable: the start task decides (and says why).
        _dispatch("start", workshop.pk)
        self.count("image_ready")

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


# --- SSH keys (issue 13) ----------------------------------------------------------
# What the gateway accepts. RSA below 3072 bits and DSA are refused (NIST
# SP 800-57: 3072 for use beyond 2030; OpenSSH itself dropped DSA), and so are
# security-key ("sk-") types and certificates, which the gateway does not verify.
SSH_KEY_TYPES = {
    "ssh-ed25519": "ed25519",
    "ecdsa-sha2-nistp256": "ecdsa",
    "ecdsa-sha2-nistp384": "ecdsa",
    "ecdsa-sha2-nistp521": "ecdsa",
    "ssh-rsa": "rsa",
}
SSH_RSA_MIN_BITS = 3072
SSH_KEYS_PER_USER = 20
# What "generate a pair" makes: the type every OpenSSH since 6.5 accepts.
SSH_GENERATED_TYPE = "ssh-ed25519"


def _ssh_key_refused(message: str) -> ValidationError:
    return ValidationError({"public_key": [message]})


def ssh_public_key_parse(text: str) -> tuple[str, int, str, str]:
    """``(algorithm, bits, OpenSSH line, SHA256 fingerprint)`` of one public key, or ValidationError.

    The message says why a key is refused and what to use instead.
    """
    import asyncssh

    line = " ".join((text or "").split())
    if not line:
        raise _ssh_key_refused(_("Paste a public key (the contents of a .pub file)."))
    if line.startswith("-----BEGIN") and "PRIVATE KEY" in line:
        raise _ssh_key_refused(
            _("This is a private key. Never share it: paste the public key (the .pub file).")
        )
    try:
        key = asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError):
        raise _ssh_key_refused(
            _(
                "This is not an OpenSSH public key. It starts with ssh-ed25519, ecdsa-sha2-… or ssh-rsa."
            )
        ) from None
    algorithm = key.algorithm.decode()
    if algorithm not in SSH_KEY_TYPES:
        raise _ssh_key_refused(
            _(
                "Keys of type %(type)s are not accepted: use ed25519, ECDSA or RSA of at least %(bits)d bits."
            )
            % {"type": algorithm, "bits": SSH_RSA_MIN_BITS}
        )
    pyca = key.pyca_key
    bits = int(getattr(pyca, "key_size", 0) or getattr(getattr(pyca, "curve", None), "key_size", 0))
    if algorithm == "ssh-ed25519":
        bits = 256
    if algorithm == "ssh-rsa" and bits < SSH_RSA_MIN_BITS:
        raise _ssh_key_refused(
            _(
                "This RSA key has %(bits)d bits; at least %(min)d are required. "
                "Make a new one with: ssh-keygen -t ed25519"
            )
            % {"bits": bits, "min": SSH_RSA_MIN_BITS}
        )
    comment = key.get_comment() or ""
    public = key.export_public_key("openssh").decode().strip()
    if comment and not public.endswith(comment):
        public = f"{public} {comment}"
    return algorithm, bits, public, key.get_fingerprint("sha256")


@transaction.atomic
def ssh_key_add(*, user: User, public_key: str, name: str = "") -> SSHKey:
    """Register ``public_key`` for ``user``. ValidationError: bad key, limit, or in use anywhere."""
    from aladdin.accounts.models import User

    algorithm, bits, line, fingerprint = ssh_public_key_parse(public_key)
    # The user's row serialises their adds, so two at once cannot both be the 20th.
    User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()
    active = SSHKey.objects.filter(user=user, revoked_at__isnull=True)
    if active.count() >= SSH_KEYS_PER_USER:
        raise _ssh_key_refused(
            _("You have %(n)d SSH keys, the most allowed. Revoke one you no longer use first.")
            % {"n": SSH_KEYS_PER_USER}
        )
    if SSHKey.objects.filter(fingerprint=fingerprint, revoked_at__isnull=True).exists():
        # The same words whoever holds it: which accounts hold a key is nobody's business.
        raise _ssh_key_refused(
            _(
                "This key is already registered. Each key belongs to one account only: "
                "make a new key for this one."
            )
        )
    # Without a name, the key's own comment ("me@laptop") names it.
    comment = line.split(" ", 2)[2] if line.count(" ") >= 2 else ""
    name = ((name or "").strip() or comment)[:100]
    return SSHKey.objects.create(
        user=user,
        name=name,
        algorithm=algorithm,
        bits=bits,
        public_key=line,
        fingerprint=fingerprint,
    )


def ssh_key_generate(*, user: User, name: str = "") -> tuple[SSHKey, str]:
    """A new key pair: the registered key and the private key in OpenSSH format.

    The private key is returned to be shown once and is never stored.
    """
    import asyncssh

    comment = (name or "").strip()[:100] or "aladdin"
    private = asyncssh.generate_private_key(SSH_GENERATED_TYPE, comment=comment)
    public = private.export_public_key("openssh").decode()
    key = ssh_key_add(user=user, public_key=public, name=name)
    return key, private.export_private_key("openssh").decode()


@transaction.atomic
def ssh_key_revoke(*, key: SSHKey) -> SSHKey:
    """Revoke one key (the row stays, with the time). Revoking twice is harmless."""
    SSHKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
    return key


def ssh_keys_revoke_all(*, user: User) -> int:
    """Revoke every key of ``user`` (ban, password reset by staff). Returns how many.

    Registered with accounts' access revokers in WorkshopsConfig.ready.
    """
    return SSHKey.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


SSH_KEY_USE_RESOLUTION = timedelta(minutes=1)


def ssh_login_record(*, key_id: int, at: datetime | None = None) -> None:
    """A login through the gateway with key ``key_id``: its last use and the user's activity.

    Written at most once a minute per key, so a burst of ``scp`` calls is not
    a burst of writes.
    """
    from django.db.models import Q

    from aladdin.accounts.services import user_record_activity

    at = at or timezone.now()
    SSHKey.objects.filter(pk=key_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=at - SSH_KEY_USE_RESOLUTION)
    ).update(last_used_at=at)
    key = SSHKey.objects.select_related("user").get(pk=key_id)
    user_record_activity(user=key.user, at=at)
