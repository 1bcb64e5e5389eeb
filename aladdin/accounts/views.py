"""Account pages: overview of the account, language, education, IDEs, password reset by SMS.

Also thin subclasses of allauth's code pages (login code, phone verification
at sign-up) that close two gaps; see the note above ConfirmLoginCode.
"""

from __future__ import annotations

import abc
import hashlib
import time

from allauth.account.adapter import get_adapter
from allauth.account.internal.flows.login import get_authentication_records
from allauth.account.signals import password_reset
from allauth.account.views._login import ConfirmLoginCodeView
from allauth.account.views._phone import _VerifyPhoneChangeView, _VerifyPhoneSignupView
from allauth.core import ratelimit
from allauth.core.ratelimit import RateLimited
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from aladdin.lib.pagination import CountingPaginator

from . import notices, selectors, services
from .forms import EducationEmailForm, LanguageForm, NewPasswordForm
from .models import Notification
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
            "sms_preferences": selectors.sms_preferences(user=request.user),
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
    # Logged-in people cannot ask for a login code (allauth sends them on), so
    # they prove the phone by reauthenticating with a code instead; both count
    # as a code authentication for password_new.
    code_view = (
        "account_request_reauthentication_code"
        if request.user.is_authenticated
        else "account_request_login_code"
    )
    login_code_url = reverse(code_view) + "?next=" + reverse("password_new")
    return render(request, "accounts/password_reset_sms.html", {"login_code_url": login_code_url})


def _recent_code_login(request) -> bool:
    # allauth keeps the records per user: without the user it returns none.
    records = get_authentication_records(request, request.user)
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


# --- allauth's code pages, two gaps closed ----------------------------------------
# 1. "Resend" for a number without an account: allauth 65.22 texts nothing
#    (and on the login-code page it crashes: it asserts a user to make the
#    code for). A real resend goes through our SMS gate, so within 60 s it is
#    a 429 while the other would be a redirect: the difference tells an
#    attacker which numbers have accounts. Here such a resend takes the same
#    quota and answers the same way, still without texting.
# 2. Wrong attempts: allauth counts them in the session, which each request
#    reads at its start and writes at its end, so N parallel guesses all see
#    "0 wrong so far" and N codes get tried. An atomic Redis counter per code
#    request caps the guesses at OTP_MAX_ATTEMPTS however they arrive.


class _AtomicAttemptsMixin(abc.ABC):
    """Caps wrong code attempts per code request; each view says where its process is."""

    @abc.abstractmethod
    def _otp_process(self):
        """The allauth code-verification process of this request."""

    @abc.abstractmethod
    def _respond_too_many_attempts(self):
        """The response once the attempts are used up (the code is dead)."""

    def post(self, request, *args, **kwargs):
        if self._action == "verify" and not self._take_attempt():
            return self._respond_too_many_attempts()
        return super().post(request, *args, **kwargs)

    def _take_attempt(self) -> bool:
        state = self._otp_process().state
        # One counter per code request ("at" is when it started), like
        # allauth's own count, which a resend does not reset either.
        ident = f"{state.get('phone') or state.get('email')}:{state.get('at')}"
        key = "otp:attempts:" + hashlib.sha256(ident.encode()).hexdigest()
        cache.add(key, 0, timeout=settings.OTP_TTL_SECONDS + 60)
        return cache.incr(key) <= settings.OTP_MAX_ATTEMPTS


class ConfirmLoginCode(_AtomicAttemptsMixin, ConfirmLoginCodeView):
    def _otp_process(self):
        return self._process

    def _respond_too_many_attempts(self):
        # As allauth answers the last of too many wrong codes.
        adapter = get_adapter(self.request)
        adapter.add_message(
            self.request, messages.ERROR, message=adapter.error_messages["too_many_login_attempts"]
        )
        initiated_by_user = self._process.state.get("initiated_by_user")
        self._process.abort()
        return redirect("account_request_login_code" if initiated_by_user else "account_login")

    def _resend_form_valid(self, form):
        process = self._process
        phone = process.state.get("phone")
        if process.user is not None or not phone:
            return super()._resend_form_valid(form)
        get_adapter(self.request).consume_sms_quota(phone)
        process.add_sent_message({"recipient": phone, "phone": phone})
        process.record_resend()
        process.persist()
        return HttpResponseRedirect(
            self.passthrough_next_url(reverse("account_confirm_login_code"))
        )


class VerifyPhoneAtSignup(_AtomicAttemptsMixin, _VerifyPhoneSignupView):
    def _otp_process(self):
        return self.process

    def _respond_too_many_attempts(self):
        self.process.abort()
        return self.respond_process_failed(None)

    def _resend_form_valid(self, form):
        process = self.process
        if process.user is not None and not process.state.get("account_already_exists"):
            return super()._resend_form_valid(form)
        adapter = get_adapter(self.request)
        # Same steps, in the same order, as allauth's resend for a real account.
        process.record_resend()
        try:
            ratelimit.consume(
                self.request, action="verify_phone", key=process.phone, raise_exception=True
            )
        except RateLimited:
            adapter.add_message(
                self.request, messages.ERROR, message=adapter.error_messages["rate_limited"]
            )
        else:
            adapter.consume_sms_quota(process.phone)
            adapter.add_message(
                self.request,
                messages.INFO,
                "account/messages/phone_verification_sent.txt",
                {"phone": process.phone},
            )
            process.persist()
        return HttpResponseRedirect(self.passthrough_next_url(reverse("account_verify_phone")))


confirm_login_code = ConfirmLoginCode.as_view()
_verify_phone_at_signup = VerifyPhoneAtSignup.as_view()
_verify_phone_change = _VerifyPhoneChangeView.as_view()


def verify_phone(request):
    """allauth's /accounts/phone/verify/ dispatcher, with the sign-up page above."""
    if request.user.is_authenticated:
        return _verify_phone_change(request)
    return _verify_phone_at_signup(request)


# --- notifications ----------------------------------------------------------------------

NOTICES_PER_PAGE = 20


def _back_to_notices(request):
    """Where a mark-read form asked to return (same site only), else the notifications page."""
    next_url = request.POST.get("next") or ""
    if next_url and url_has_allowed_host_and_scheme(
        next_url, {request.get_host()}, request.is_secure()
    ):
        return HttpResponseRedirect(next_url)
    return redirect("notifications")


@login_required
def notifications(request):
    """The user's notices, newest first, paginated; each in the reader's language."""
    paginator = CountingPaginator(selectors.notifications_for(user=request.user), NOTICES_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    return render(
        request,
        "accounts/notifications.html",
        {"page": page, "unread": selectors.unread_count(user=request.user)},
    )


@login_required
@require_POST
def notification_read(request, pk: int):
    try:
        services.notification_mark_read(user=request.user, notification_id=pk)
    except Notification.DoesNotExist:
        raise Http404 from None
    return _back_to_notices(request)


@login_required
def notification_open(request, pk: int):
    """Follow a notice's link: it counts as read (as a mail client does), then its page."""
    try:
        notification = services.notification_mark_read(user=request.user, notification_id=pk)
    except Notification.DoesNotExist:
        raise Http404 from None
    url = notices.render(notification).url
    return redirect(url or reverse("notifications"))


@login_required
@require_POST
def notifications_read_all(request):
    count = services.notifications_mark_all_read(user=request.user)
    if count:
        messages.success(
            request,
            ngettext("%(n)d notice marked read.", "%(n)d notices marked read.", count)
            % {"n": count},
        )
    return _back_to_notices(request)


@login_required
@require_POST
def notification_preferences(request):
    """The SMS switches of the account page: a kind not ticked is not texted."""
    known = {kind for kind, _label, _on in selectors.sms_preferences(user=request.user)}
    wanted = set(request.POST.getlist("sms")) & known
    services.notification_preferences_set(user=request.user, sms_kinds=wanted)
    messages.success(request, _("Your SMS preferences are saved."))
    return redirect(reverse("account") + "#sms-preferences")
