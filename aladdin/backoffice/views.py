"""The staff search and the user 360° page, with its actions (thin: forms, one call, a message).

Every view is wrapped in ``admin.site.admin_view`` (urls.py): a visitor who
is not active staff goes to the admin login. Each then checks its Django
permission (``actions.PERMISSIONS``): staff without it get 403.
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from aladdin.accounts.models import User
from aladdin.lib.errors import DomainError
from aladdin.lib.units import FEN_PER_YUAN, dcu_to_micro, fen_to_yuan_str, format_micro
from billing.models import Order
from gpu_jobs.models import Job
from workshops.models import Workshop

from . import actions, forms, selectors

_SELF_EXPLAINING = {"reason", "confirm"}


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(_("You do not have the permission for this."))


def _user_url(user_id: int) -> str:
    return reverse("backoffice:user", args=[user_id])


def search(request: HttpRequest) -> HttpResponse:
    """``?q=``: one user found opens their 360° page; several are listed."""
    _require(request, actions.VIEW_PERMISSION)
    query = (request.GET.get("q") or "").strip()
    hits = selectors.staff_search(query) if query else []
    if len(hits) == 1:
        return redirect(_user_url(hits[0].user.pk))
    return TemplateResponse(
        request,
        "backoffice/search.html",
        {
            **admin.site.each_context(request),
            "title": _("Find a user"),
            "q": query,
            "hits": hits,
        },
    )


def user_360(request: HttpRequest, user_id: int) -> HttpResponse:
    """Everything about one user, with the staff actions next to what they act on."""
    _require(request, actions.VIEW_PERMISSION)
    subject = get_object_or_404(User, pk=user_id)
    data = selectors.user_360(subject, ledger_page=request.GET.get("ledger_page") or 1)
    perms = {name: request.user.has_perm(perm) for name, perm in actions.PERMISSIONS.items()}
    if subject.is_banned:
        # Nothing to give a banned account: its forms are not offered.
        perms.update(dict.fromkeys(actions.NOT_FOR_BANNED, False))
    return TemplateResponse(
        request,
        "backoffice/user.html",
        {
            **admin.site.each_context(request),
            "title": _("User %(user)s") % {"user": subject},
            "subject": subject,
            "d": data,
            "can": perms,
            "voucher_form": forms.VoucherForm(initial={"key": uuid.uuid4()}),
            "page_key": uuid.uuid4(),
            "ban_form": forms.BanForm(),
        },
    )


@require_POST
def act(request: HttpRequest, user_id: int, name: str) -> HttpResponse:
    """Carry out one staff action on the user; the outcome (or the refusal) as a message."""
    handler = _HANDLERS.get(name)
    if handler is None:
        raise Http404(_("Unknown action."))
    _require(request, actions.VIEW_PERMISSION)
    _require(request, actions.PERMISSIONS[name])
    subject = get_object_or_404(User, pk=user_id)
    if subject.is_banned and name in actions.NOT_FOR_BANNED:
        messages.error(
            request,
            _("The account is banned: it gets no vouchers, education prices or more storage."),
        )
        return redirect(_user_url(subject.pk))
    form_class, run = handler
    form = form_class(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            # "Amount (DCU): Enter a number."; the reason's and the ban box's own
            # messages already say what they are about.
            label = form.fields[field].label if field in form.fields else None
            for error in errors:
                shown = error if field in _SELF_EXPLAINING or not label else f"{label}: {error}"
                messages.error(request, shown)
        return redirect(_user_url(subject.pk))
    try:
        done = run(request, subject, form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, " ".join(str(m) for m in exc.messages))
    except DomainError as exc:
        messages.error(request, exc.error_detail())
    else:
        messages.success(request, done)
    return redirect(_user_url(subject.pk))


# --- one small function per action: call the service, say what happened ----------------


def _voucher(request, subject: User, data) -> str:
    amount = dcu_to_micro(data["amount_dcu"])
    actions.voucher_by_staff(
        user=subject,
        actor=request.user,
        amount_micro=amount,
        reason=data["reason"],
        key=f"backoffice:{data['key']}:{subject.pk}",
    )
    return _("Voucher of %(amount)s DCU granted.") % {"amount": format_micro(amount)}


def _refund(request, subject: User, data) -> str:
    # Another user's order is a 404, as everywhere.
    order = get_object_or_404(Order, pk=data["order"], user=subject)
    amount_fen = int((data["amount_yuan"] * FEN_PER_YUAN).to_integral_value())
    refund = actions.order_refund_by_staff(
        order=order,
        actor=request.user,
        amount_fen=amount_fen,
        reason=data["reason"],
        request_key=str(data["key"]),
    )
    return _(
        "Refunded %(amount)s yuan of order %(order)s; %(dcu)s DCU of unspent compute taken back."
    ) % {
        "amount": fen_to_yuan_str(refund.amount_fen),
        "order": order.out_trade_no,
        "dcu": format_micro(refund.reversed_micro),
    }


def _job_stop(request, subject: User, data) -> str:
    job = get_object_or_404(Job, pk=data["job"], user=subject, deleted_at__isnull=True)
    actions.job_stop_by_staff(job=job, actor=request.user, reason=data["reason"])
    return _("Job %(job)s is stopping.") % {"job": job.pk}


def _workshop_stop(request, subject: User, data) -> str:
    workshop = get_object_or_404(Workshop, pk=data["workshop"], user=subject)
    actions.workshop_stop_by_staff(workshop=workshop, actor=request.user, reason=data["reason"])
    return _("Workshop %(name)s is stopping.") % {"name": workshop.name}


def _storage_raise(request, subject: User, data) -> str:
    before = actions.storage_raise_by_staff(
        user=subject,
        actor=request.user,
        allowance_gib=data["allowance_gib"],
        reason=data["reason"],
    )
    return _("Storage allowance set to %(after)s GiB (was %(before)s GiB).") % {
        "after": data["allowance_gib"],
        "before": before,
    }


def _hold(request, subject: User, data) -> str:
    actions.storage_hold_by_staff(
        user=subject, actor=request.user, hold=data["hold"], reason=data["reason"]
    )
    return _("Storage held: it will not be reclaimed.") if data["hold"] else _("Hold lifted.")


def _education(request, subject: User, data) -> str:
    actions.education_by_staff(
        user=subject, actor=request.user, approved=data["approved"], reason=data["reason"]
    )
    return _("Education status approved.") if data["approved"] else _("Education status revoked.")


def _ban(request, subject: User, data) -> str:
    actions.ban_by_staff(user=subject, actor=request.user, reason=data["reason"])
    return _("The account is banned: workloads stopped, compute forfeited, access revoked.")


_HANDLERS = {
    "voucher": (forms.VoucherForm, _voucher),
    "refund": (forms.RefundForm, _refund),
    "job_stop": (forms.JobStopForm, _job_stop),
    "workshop_stop": (forms.WorkshopStopForm, _workshop_stop),
    "storage_raise": (forms.StorageRaiseForm, _storage_raise),
    "storage_hold": (forms.HoldForm, _hold),
    "education": (forms.EducationForm, _education),
    "ban": (forms.BanForm, _ban),
}
assert set(_HANDLERS) == set(actions.PERMISSIONS)
