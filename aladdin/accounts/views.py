"""Account pages: overview of the account, language, education, IDEs, password reset by SMS."""

from __future__ import annotations

import time

from allauth.account.internal.flows.login import get_authentication_records
from allauth.account.signals import password_reset
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from . import selectors, services
from .forms import EducationEmailForm, LanguageForm, NewPasswordForm
from .phone import mask_phone

# How recently an SMS code login must have happened to set a new password
# without the old one.
RESET_WINDOW_SECONDS = 10 * 60


@login_required
def account(request):
    return render(
        request,
        "accounts/account.html",
        {
            "masked_phone": mask_phone(request.user.phone),
            "education_form": EducationEmailForm(),
            "language_form": LanguageForm(initial={"language": request.user.language}),
            "ides": selectors.connected_ides(user=request.user),
            "education_domains": settings.EDUCATION_EMAIL_DOMAINS,
        },
    )


@require_POST
def set_language(request):
    """Switch language: saved on the account when logged in, else in a cookie."""
    form = LanguageForm(request.POST)
    next_url = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = "/"
    response = HttpResponseRedirect(next_url)
    if form.is_valid():
        language = form.cleaned_data["language"]
        if request.user.is_authenticated:
            services.user_set_language(user=request.user, language=language)
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            max_age=365 * 24 * 3600,
            samesite="Lax",
        )
    return response


@login_required
@require_POST
def education_request(request):
    form = EducationEmailForm(request.POST)
    if form.is_valid():
        try:
            services.education_request_verification(
                user=request.user, email=form.cleaned_data["email"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request,
                _("We sent a confirmation link to %(email)s. It is valid for 24 hours.")
                % {"email": form.cleaned_data["email"]},
            )
    else:
        messages.error(request, _("Enter a valid e-mail address."))
    return redirect("account")


@login_required
def education_confirm(request, token: str):
    try:
        services.education_confirm(user=request.user, token=token)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Your education status is verified. Education prices apply."))
    return redirect("account")


@login_required
@require_POST
def ide_revoke(request, token_id: int):
    from oauth2_provider.models import get_refresh_token_model

    try:
        services.ide_connection_revoke(user=request.user, refresh_token_id=token_id)
    except get_refresh_token_model().DoesNotExist:
        raise Http404 from None
    messages.success(request, _("The IDE was disconnected. It must log in again."))
    return redirect("account")


def password_reset_sms(request):
    """Forgot password: prove the phone with an SMS login code, then set a new one."""
    login_code_url = reverse("account_request_login_code") + "?next=" + reverse("password_new")
    return render(request, "accounts/password_reset_sms.html", {"login_code_url": login_code_url})


def _recent_code_login(request) -> bool:
    records = get_authentication_records(request)
    return any(
        r.get("method") == "code" and time.time() - r.get("at", 0) <= RESET_WINDOW_SECONDS
        for r in records
    )


@login_required
def password_new(request):
    if not _recent_code_login(request):
        messages.error(
            request,
            _("To set a new password without the old one, first log in with an SMS code."),
        )
        return redirect("password_reset_sms")
    form = NewPasswordForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        request.user.set_password(form.cleaned_data["password1"])
        request.user.save(update_fields=["password"])
        update_session_auth_hash(request, request.user)
        # Same signal allauth sends, so IDE tokens are revoked the same way.
        password_reset.send(sender=request.user.__class__, request=request, user=request.user)
        messages.success(request, _("Your password was changed."))
        return redirect("account")
    return render(request, "accounts/password_new.html", {"form": form})
