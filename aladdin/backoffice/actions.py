"""The staff actions of the user 360° page: one function each, audited, refusing bad input.

Each takes the member of staff (``actor``) and a ``reason``, refuses an
empty reason with a :class:`ValidationError` (nothing changed), and leaves
an audit record (:func:`aladdin.backoffice.audit.record`, or the record the
app's own staff service writes: vouchers, storage, holds, education and the
ban and refunds record themselves; calling ``audit.record`` again would log them
twice).

``PERMISSIONS`` says which Django permission each action needs; the views
check it (superusers have them all). The "support" group is given these.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from aladdin.accounts import services as account_services
from aladdin.accounts.models import User
from billing import payments
from billing.models import Grant, Order, Refund
from billing.services import staff as billing_staff
from gpu_jobs.models import Job
from storage import selectors as storage_selectors
from storage import services as storage_services
from workshops.models import Workshop

from . import services

# Action name -> the permission it needs (superusers pass every check).
PERMISSIONS: dict[str, str] = {
    "voucher": "billing.add_grant",  # as the Accounts admin's "Grant voucher"
    "refund": "billing.add_refund",  # as the Orders admin's "Refund"
    "job_stop": "gpu_jobs.change_job",
    "workshop_stop": "workshops.change_workshop",
    "storage_raise": "storage.change_storageallowance",
    "storage_hold": "storage.change_storageallowance",
    "education": "accounts.change_user",
    "ban": "accounts.change_user",
}
# What a banned account is not given (a ban is for good; refunds, stops and
# the retention hold stay possible, e.g. for an appeal).
NOT_FOR_BANNED = frozenset({"voucher", "education", "storage_raise"})
# Seeing the 360° page and searching.
VIEW_PERMISSION = "accounts.view_user"

# A staff override above this is surely a typo (the largest plan allows far less).
STORAGE_MAX_GIB = 100_000


def _required(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("Say why: a reason is required for every staff action."))
    return reason


def voucher_by_staff(*, user: User, actor: User, amount_micro: int, reason: str, key: str) -> Grant:
    """Give ``user`` compute (an extension pack); the same ``key`` twice grants once."""
    reason = _required(reason)
    if amount_micro <= 0:
        raise ValidationError(_("A voucher must be worth more than 0 DCU."))
    return billing_staff.voucher_grant(
        user=user, amount_micro=amount_micro, reason=reason, key=key, actor=actor
    )


def order_refund_by_staff(
    *, order: Order, actor: User, amount_fen: int, reason: str, request_key: str
) -> Refund:
    """Refund all or part of ``order`` at Alipay and take back the unspent compute.

    Billing's refund service checks the amount (at most what is left to
    refund), refuses a repeated ``request_key`` and records the request
    (StaffAction "refund"). If Alipay refuses, the refund stays requested
    (retry it from the refunds list) and the error is raised.
    """
    return payments.order_refund(
        order=order,
        amount_fen=amount_fen,
        reason=_required(reason),
        actor=actor,
        request_key=request_key,
    )


def job_stop_by_staff(*, job: Job, actor: User, reason: str) -> Job:
    return services.job_stop_by_staff(job=job, actor=actor, reason=reason)


def workshop_stop_by_staff(*, workshop: Workshop, actor: User, reason: str) -> Workshop:
    return services.workshop_stop_by_staff(workshop=workshop, actor=actor, reason=reason)


@transaction.atomic
def storage_raise_by_staff(*, user: User, actor: User, allowance_gib: int, reason: str) -> int:
    """Set the user's storage allowance above what the plan allows (a staff override).

    Refuses a value below the space the user already uses (their files
    would not fit) or above :data:`STORAGE_MAX_GIB`. Returns the allowance
    before; storage's service records the change, before and after.
    """
    reason = _required(reason)
    before = storage_selectors.allowance_gib(user)
    used_gib = storage_selectors.gib_ceil(storage_selectors.used_bytes(user))
    if allowance_gib < max(used_gib, 1):
        raise ValidationError(
            _("The user already uses %(used)s GiB: the allowance cannot be below that.")
            % {"used": used_gib}
        )
    if allowance_gib > STORAGE_MAX_GIB:
        raise ValidationError(_("At most %(max)s GiB can be set here.") % {"max": STORAGE_MAX_GIB})
    storage_services.storage_set_by_staff(
        user=user,
        actor=actor,
        allowance_gib=allowance_gib,
        reason=reason,
    )
    return before


def storage_hold_by_staff(*, user: User, actor: User, hold: bool, reason: str) -> None:
    """Put (``hold``) or lift a retention hold: a held volume is never reclaimed."""
    storage_services.storage_hold_set(user=user, actor=actor, hold=hold, reason=_required(reason))


def education_by_staff(*, user: User, actor: User, approved: bool, reason: str) -> User:
    """Approve (or revoke) the user's education status: education prices from the next order."""
    return account_services.education_set_by_staff(
        user=user, actor=actor, approved=approved, reason=_required(reason)
    )


def ban_by_staff(*, user: User, actor: User, reason: str) -> User:
    """Ban for mining (SPEC §1), through the back office's ban service."""
    if user.pk == actor.pk:
        raise ValidationError(_("You cannot ban your own account."))
    if user.is_superuser:
        raise ValidationError(_("A superuser cannot be banned from here."))
    return services.user_ban_for_mining(user=user, actor=actor, reason=_required(reason))
