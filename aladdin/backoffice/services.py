"""Back-office writes: each staff action through the apps' services, with its audit record.

Every function takes the member of staff (``actor``) and a ``reason``,
refuses an empty reason, and records the action in the same transaction.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from aladdin.accounts.models import User
from gpu_jobs import services as job_services
from gpu_jobs.models import Job
from workshops import services as workshop_services
from workshops.models import Workshop

from . import audit


def _required(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Say why: a reason is required for every staff action."))
    return reason


@transaction.atomic
def job_stop_by_staff(*, job: Job, actor: User, reason: str) -> Job:
    """Stop a starting or running job; the user sees the reason. Billing ends at the release."""
    reason = _required(reason)
    before = {"state": job.state}
    job = job_services.job_stop(
        job=job, reason=_("Stopped by support: %(reason)s") % {"reason": reason}
    )
    audit.record(
        actor=actor,
        action="job_stop",
        reason=reason,
        target_user=job.user_id,
        subject=job,
        before=before,
        after={"state": job.state, "stop_requested_at": str(job.stop_requested_at)},
    )
    return job


@transaction.atomic
def workshop_stop_by_staff(*, workshop: Workshop, actor: User, reason: str) -> Workshop:
    """Stop a creating or running workshop; the user sees the reason. Files under /root stay."""
    reason = _required(reason)
    before = {"state": workshop.state}
    workshop = workshop_services.workshop_stop(
        workshop=workshop, reason=_("Stopped by support: %(reason)s") % {"reason": reason}
    )
    audit.record(
        actor=actor,
        action="workshop_stop",
        reason=reason,
        target_user=workshop.user_id,
        subject=workshop,
        before=before,
        after={"state": workshop.state},
    )
    return workshop


def user_ban_for_mining(*, user: User, actor: User, reason: str) -> User:
    """Ban for mining (SPEC §1): disable, stop every workload, forfeit all compute, revoke access.

    First version: the account ban (disable, block the phone, revoke tokens,
    keys and sessions), then every workload stopped and every grant forfeited.
    """
    from aladdin.accounts import services as account_services
    from billing.services.staff import billing_forfeit_all

    reason = _required(reason)
    with transaction.atomic():
        user = account_services.user_ban(user=user, actor=actor, reason=reason)
        stopped = _("Stopped: the account was banned.")
        job_services.jobs_stop_all(user_id=user.pk, reason=stopped)
        workshop_services.workshops_stop_all(user_id=user.pk, reason=stopped)
        billing_forfeit_all(user=user, reason=reason)
    return user
