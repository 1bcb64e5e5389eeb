"""django-allauth adapter: phone identity, SMS through our gate, bans."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter, get_adapter
from allauth.account.fields import PhoneField
from allauth.account.internal.flows.login import get_authentication_records
from allauth.core.exceptions import ImmediateHttpResponse
from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from . import sms
from .models import BannedPhone, User
from .phone import normalize_phone

# A login this soon after the account was made is its first (sign-up).
NEW_ACCOUNT_WINDOW = timedelta(minutes=10)

# The pages where a phone number only names the account to log in to.
LOGIN_VIEWS = frozenset({"account_login", "account_request_login_code"})


class MainlandPhoneField(PhoneField):
    """Accepts 13800138000 as typed by people; cleans to +8613800138000."""

    def __init__(self, *args, **kwargs):
        kwargs["validators"] = []
        super().__init__(*args, **kwargs)
        self.widget.attrs["placeholder"] = _("Mobile number, e.g. 13800138000")
        self.widget.attrs["inputmode"] = "tel"

    def clean(self, value):
        # Skip PhoneField's E.164-only validator; the adapter normalises.
        value = forms.CharField.clean(self, value)
        if not value:
            return value
        return get_adapter().clean_phone(value)


class AccountAdapter(DefaultAccountAdapter):
    def phone_form_field(self, **kwargs: Any) -> Any:
        return MainlandPhoneField(**kwargs)

    def clean_phone(self, phone: str) -> str:
        phone = normalize_phone(phone)
        # Every phone field (sign-up, change of number, reset) passes here, so
        # a number banned for mining can neither register again nor be
        # attached to another account. Not on the login pages, though: there a
        # banned number is treated like any other, so that whoever types it
        # learns nothing; only its owner, with the right password or texted
        # code, reaches pre_login and is told of the ban and how to appeal.
        if not self._logging_in() and BannedPhone.objects.filter(phone=phone).exists():
            raise ValidationError(
                _(
                    "This phone number is blocked on Aladdin and cannot be used. "
                    "Contact support if you think this is wrong."
                ),
                code="phone_banned",
            )
        return phone

    def _logging_in(self) -> bool:
        request = getattr(self, "request", None)
        match = getattr(request, "resolver_match", None)
        return match is not None and match.url_name in LOGIN_VIEWS

    def generate_phone_verification_code(self, *, user, phone: str) -> str:
        # Explicitly the OS CSPRNG and exactly OTP_LENGTH digits, whatever
        # allauth's code format defaults become. Login codes sent by SMS come
        # from here too (allauth generates them as phone verification codes).
        return f"{secrets.randbelow(10**settings.OTP_LENGTH):0{settings.OTP_LENGTH}d}"

    # --- phone storage (allauth's phone interface) -------------------------
    def set_phone(self, user, phone: str, verified: bool) -> None:
        user.phone = normalize_phone(phone)
        user.phone_verified = verified
        if user.pk:
            user.save(update_fields=["phone", "phone_verified"])

    def get_phone(self, user) -> tuple[str, bool] | None:
        if not user.phone:
            return None
        return user.phone, user.phone_verified

    def set_phone_verified(self, user, phone: str) -> None:
        was_unverified = not user.phone_verified
        self.set_phone(user, phone, True)
        if was_unverified and user.last_login is None and self._proved_by_code_login(user):
            # Someone signed up with this number and never proved it; the
            # number's owner has now logged in with a texted code. The password
            # was chosen by whoever signed up, perhaps not the owner, and would
            # let them in later (account pre-hijacking), so it goes.
            user.set_unusable_password()
            user.save(update_fields=["password"])
            self.add_message(
                self.request,
                messages.INFO,
                message=_(
                    "Your phone number is verified. Set a password on your account page "
                    "if you want to log in with one."
                ),
            )

    def _proved_by_code_login(self, user) -> bool:
        request = getattr(self, "request", None)
        if request is None or not hasattr(request, "session"):
            return False
        records = get_authentication_records(request, user)
        return bool(records) and records[-1].get("method") == "code"

    def get_user_by_phone(self, phone: str):
        try:
            phone = normalize_phone(phone)
        except ValidationError:
            return None
        # Inactive accounts count too: their number is taken (a sign-up with it
        # would break the unique constraint), and logging in to them ends on
        # the "account inactive" or "banned" page rather than "no account".
        return User.objects.filter(phone=phone).first()

    def save_user(self, request, user, form, commit=True):
        # Our user row needs its phone before the first save; allauth sets it
        # after. A number that already has a row (even a never-verified one)
        # never gets here: allauth treats it as "account already exists" and
        # texts its owner, who can then log in by code and own that row (see
        # set_phone_verified).
        phone = form.cleaned_data.get("phone")
        if phone:
            # The verification code is texted right after the row is saved. If
            # the SMS limits would refuse it, refuse now: a row whose number
            # cannot be verified would only block its own sign-up.
            try:
                sms.check(phone=phone, ip=self._client_ip())
            except sms.SmsLimitExceeded as exc:
                self._refuse(exc)
            user.phone = phone
        user.language = getattr(request, "LANGUAGE_CODE", user.language) or user.language
        return super().save_user(request, user, form, commit=commit)

    def populate_username(self, request, user) -> None:
        # The username is optional (log in with the phone); allauth would
        # invent one ("user", "user2", ...) that then takes names from people.
        user.username = (user.username or "").strip() or None

    def is_open_for_signup(self, request) -> bool:
        return True

    def login(self, request, user) -> None:
        super().login(request, user)
        # From the next request on, the account's saved language wins
        # (UserLanguageMiddleware); the rest of this one, the "welcome back"
        # message included, is worded in it too, not in the login page's.
        if user.language:
            translation.activate(user.language)
            request.LANGUAGE_CODE = user.language

    def add_message(
        self,
        request,
        level,
        message_template=None,
        message_context=None,
        extra_tags="",
        message=None,
    ):
        # allauth says "welcome back" after every login, the first (right
        # after sign-up) included: a new account is welcomed, not back.
        user = (message_context or {}).get("user")
        joined = getattr(user, "date_joined", None)
        if (
            message_template == "account/messages/logged_in.txt"
            and joined is not None
            and timezone.now() - joined < NEW_ACCOUNT_WINDOW
        ):
            message_template = "account/messages/signed_up.txt"
        return super().add_message(
            request, level, message_template, message_context, extra_tags, message
        )

    def _get_login_attempts_cache_key(self, request, **credentials: Any) -> str:
        # allauth keys failed logins by email or username only: every phone
        # login shared one empty key, so five wrong passwords for any number
        # locked every phone login on the site for five minutes.
        login = credentials.get("phone") or credentials.get("username") or ""
        try:
            login = normalize_phone(login)
        except ValidationError:
            login = login.lower()
        return f"aladdin:{login}"

    # --- SMS ----------------------------------------------------------------
    def _client_ip(self) -> str | None:
        request = getattr(self, "request", None)
        if request is None:
            return None
        return self.get_client_ip(request)

    def consume_sms_quota(self, phone: str) -> None:
        """Take one send from the limits without texting (a resend to a number
        without an account must cost what a real resend costs, or the 429s
        would tell the two apart)."""
        try:
            sms.consume(phone=phone, ip=self._client_ip())
        except sms.SmsLimitExceeded as exc:
            self._refuse(exc)

    def _refuse(self, exc: sms.SmsLimitExceeded):
        response = render(
            self.request,
            "accounts/sms_limited.html",
            {"message": exc.message(), "retry_after": exc.retry_after},
            status=429,
        )
        response["Retry-After"] = str(exc.retry_after)
        raise ImmediateHttpResponse(response)

    def send_verification_code_sms(self, user, phone: str, code: str, **kwargs: Any) -> None:
        try:
            sms.send_code(phone=phone, code=code, purpose="verification", ip=self._client_ip())
        except sms.SmsLimitExceeded as exc:
            self._refuse(exc)

    def send_unknown_account_sms(self, phone: str, **kwargs: Any) -> None:
        # Same gate, same limits, same response as a known number, so the
        # page never tells whether the number has an account.
        text = _(
            "Someone asked for an Aladdin login code for this number, but no account uses it. "
            "Sign up at %(url)s"
        ) % {"url": settings.SITE_URL}
        try:
            sms.send_notice(phone=phone, text=text, purpose="unknown_account", ip=self._client_ip())
        except sms.SmsLimitExceeded as exc:
            self._refuse(exc)

    def send_account_already_exists_sms(self, phone: str) -> None:
        text = _(
            "Someone tried to sign up to Aladdin with this number, which already has an account. "
            "Log in at %(url)s"
        ) % {"url": settings.SITE_URL}
        try:
            sms.send_notice(phone=phone, text=text, purpose="already_exists", ip=self._client_ip())
        except sms.SmsLimitExceeded as exc:
            self._refuse(exc)

    # --- login gate -----------------------------------------------------------
    def pre_login(self, request, user, **kwargs):
        # Reached only with the right credentials (password or texted code):
        # a banned user is told so, and how to appeal. Wrong credentials never
        # get here and get the usual answer, so a ban cannot be probed.
        if user.banned_at is not None:
            raise ImmediateHttpResponse(
                render(
                    request,
                    "accounts/banned.html",
                    {
                        "reason": user.ban_reason,
                        "support_contact": settings.ALADDIN_SUPPORT_CONTACT,
                    },
                    status=403,
                )
            )
        return super().pre_login(request, user, **kwargs)
