"""Back-office writes: each staff action through the apps' services, with its audit record.

Every function takes the member of staff (``actor``) and a ``reason``,
refuses an empty reason, and records the action in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin.accounts.models import User
from aladdin.lib.said import Said
from aladdin.workloads import reasons as _workload_reasons  # noqa: F401 - the stop reasons
from aladdin.workloads.models import Image
from gpu_jobs import services as job_services
from gpu_jobs.models import Job
from workshops import services as workshop_services
from workshops.models import SSHKey, Workshop

from . import audit


def _required(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Say why: a reason is required for every staff action."))
    return reason


def _audited_stop(*, action: str, subject: Job | Workshop, actor: User, reason: str, stop) -> Any:
    """``stop(shown_reason)`` the job or workshop and record it; the user sees the reason."""
    reason = _required(reason)
    before = {"state": subject.state}
    stopped = stop(Said("workload.stopped_by_support", {"reason": reason}))
    audit.record(
        actor=actor,
        action=action,
        reason=reason,
        target_user=stopped.user_id,
        subject=stopped,
        before=before,
        # A job's stop is applied by the worker: asked now, released soon after.
        after={"state": stopped.state, "stop_requested": True},
    )
    return stopped


@transaction.atomic
def job_stop_by_staff(*, job: Job, actor: User, reason: str) -> Job:
    """Stop a starting or running job. Billing ends at the release, as for any stop."""
    return _audited_stop(
        action="job_stop",
        subject=job,
        actor=actor,
        reason=reason,
        stop=lambda shown: job_services.job_stop(job=job, reason=shown),
    )


@transaction.atomic
def workshop_stop_by_staff(*, workshop: Workshop, actor: User, reason: str) -> Workshop:
    """Stop a creating or running workshop. Files under /root stay."""
    return _audited_stop(
        action="workshop_stop",
        subject=workshop,
        actor=actor,
        reason=reason,
        stop=lambda shown: workshop_services.workshop_stop(workshop=workshop, reason=shown),
    )


def _ban_snapshot(user: User) -> dict[str, Any]:
    """What a ban takes away, as the audit record's before/after (JSON-safe)."""
    from oauth2_provider.models import get_refresh_token_model

    from billing import selectors as billing_selectors
    from gpu_jobs.choices import ACTIVE_STATES as JOB_ACTIVE
    from workshops.choices import ACTIVE_STATES as WORKSHOP_ACTIVE
    from workshops.models import SSHKey

    user.refresh_from_db(fields=["is_active", "banned_at"])
    now = timezone.now()
    return {
        "is_active": user.is_active,
        "banned": user.banned_at is not None,
        "active_compute_micro": billing_selectors.active_balance_micro(user, now),
        "carried_compute_micro": sum(
            g.remaining_micro for g in billing_selectors.carried_grants(user)
        ),
        "debt_micro": billing_selectors.account_for(user).debt_micro,
        "running_jobs": sorted(
            Job.objects.filter(
                user=user, state__in=JOB_ACTIVE, stop_requested_at__isnull=True
            ).values_list("pk", flat=True)
        ),
        "running_workshops": sorted(
            Workshop.objects.filter(user=user, state__in=WORKSHOP_ACTIVE).values_list(
                "pk", flat=True
            )
        ),
        "ssh_keys": SSHKey.objects.filter(user=user, revoked_at__isnull=True).count(),
        "ide_connections": get_refresh_token_model()
        .objects.filter(user=user, revoked__isnull=True)
        .count(),
    }


@transaction.atomic
def user_ban_for_mining(*, user: User, actor: User, reason: str) -> User:
    """Ban for mining (SPEC §1), in one action and one audit record.

    The account is disabled for good and its phone blocked; its sessions,
    IDE tokens and SSH keys are revoked (accounts' ``user_ban_apply`` and
    the apps' registered revokers); every starting or running job and every
    workshop is asked to stop, with the ban as the reason; all compute,
    active or carried, is forfeited with FORFEIT ledger entries carrying
    ``reason``, and any arrears written off.

    Order of the forfeit and the final charges: the forfeit happens now,
    in this transaction, so the active compute is 0 the moment the ban is
    recorded (a miner keeps nothing to spend while the cluster releases the
    cards, and the ban never waits on the cluster). Each stopped job's
    final charge comes at its release (``job_stop_apply``, after commit),
    exactly to the release time, as for any stop; it then finds no grant,
    and the ledger writes the debt it would make off at once for a banned
    account (``billing.services.ledger.spend``), so the banned user is never
    left in arrears nor put in the arrears queue. The charge is still in the
    ledger, so the use is on record.

    Idempotent: banning again stops nothing twice, forfeits nothing twice
    (per-grant keys), keeps the first ban's date, and writes no second
    record when there was nothing left to take.
    """
    from aladdin.accounts import services as account_services
    from billing.services.staff import billing_forfeit_all

    reason = _required(reason)
    if (user.is_staff or user.is_superuser) and not actor.is_superuser:
        # Support banning a superuser (or a colleague) would lock the back
        # office itself; staff accounts are the superusers' to ban.
        raise ValidationError(_("Only a superuser can ban a staff account."))
    # Lock the user first: two members of staff banning at once give one
    # record, the second finding nothing left to take.
    user = User.objects.select_for_update().get(pk=user.pk)
    before = _ban_snapshot(user)
    user, newly = account_services.user_ban_apply(user=user, actor=actor, reason=reason)
    stopped = Said("workload.stopped_banned")
    jobs_stopped = job_services.jobs_stop_all(user_id=user.pk, reason=stopped)
    workshops_stopped = workshop_services.workshops_stop_all(user_id=user.pk, reason=stopped)
    forfeit = billing_forfeit_all(user=user, reason=reason)
    after = _ban_snapshot(user)
    if not newly and before == after and not forfeit.cleared_micro:
        return user  # banned before, and nothing was left to take: nothing to record
    audit.record(
        actor=actor,
        action="ban",
        reason=reason,
        target_user=user,
        subject=user,
        before=before,
        after=after,
        details={
            "jobs_stopped": jobs_stopped,
            "job_ids": before["running_jobs"],
            "workshops_stopped": workshops_stopped,
            "workshop_ids": before["running_workshops"],
            "grants_forfeited": forfeit.grant_ids,
            "forfeited_micro": forfeit.cleared_micro,
            "arrears_written_off_micro": forfeit.written_off_micro,
            "again": not newly,
        },
    )
    return user


@transaction.atomic
def ssh_key_revoke_by_staff(*, key: SSHKey, actor: User, reason: str) -> bool:
    """Revoke one SSH key (a leaked or abused key); False when it was already revoked."""
    reason = _required(reason)
    if key.revoked_at is not None:
        return False
    key = workshop_services.ssh_key_revoke(key=key)
    audit.record(
        actor=actor,
        action="ssh_key_revoke",
        reason=reason,
        target_user=key.user_id,
        subject=key,
        before={"revoked_at": None},
        after={"revoked_at": key.revoked_at.isoformat() if key.revoked_at else None},
    )
    return True


@transaction.atomic
def image_build_by_staff(*, image: Image, actor: User, reason: str) -> Image:
    """Ask the backend to build (or retry) an image now; the build runs in a task after commit."""
    from workshops import tasks as workshop_tasks

    reason = _required(reason)
    audit.record(
        actor=actor,
        action="image_build",
        reason=reason,
        subject=image,
        before={"build_state": image.build_state, "build_key": image.build_key},
    )
    transaction.on_commit(lambda: workshop_tasks.build_image.delay(image.pk))
    return image
