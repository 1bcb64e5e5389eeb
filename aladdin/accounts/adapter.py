"""django-allauth adapter: phone identity, SMS through our gate, bans."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter, get_adapter
from allauth.account.fields import PhoneField
from allauth.core.exceptions import ImmediateHttpResponse
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from . import sms
from .models import BannedPhone, User
from .phone import normalize_phone


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
        if BannedPhone.objects.filter(phone=phone).exists():
            raise ValidationError(
                _(
                    "This phone number cannot be used to register. Contact support if you think this is wrong."
                )
            )
        return phone

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
        self.set_phone(user, phone, True)

    def get_user_by_phone(self, phone: str):
        try:
            phone = normalize_phone(phone)
        except ValidationError:
            return None
        return User.objects.filter(phone=phone, is_active=True).first()

    def save_user(self, request, user, form, commit=True):
        # Our user row needs its phone before the first save; allauth sets it
        # after. A stale, never-verified sign-up with the same number (someone
        # typed a number that is not theirs) gives way to this one.
        phone = form.cleaned_data.get("phone")
        if phone:
            stale_before = timezone.now() - timezone.timedelta(seconds=settings.OTP_TTL_SECONDS)
            User.objects.filter(
                phone=phone, phone_verified=False, date_joined__lt=stale_before
            ).delete()
            user.phone = phone
        user.language = getattr(request, "LANGUAGE_CODE", user.language) or user.language
        return super().save_user(request, user, form, commit=commit)

    def is_open_for_signup(self, request) -> bool:
        return True

    # --- SMS ----------------------------------------------------------------
    def _client_ip(self) -> str | None:
        request = getattr(self, "request", None)
        if request is None:
            return None
        return self.get_client_ip(request)

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
        if user.banned_at is not None:
            raise ImmediateHttpResponse(
                render(request, "accounts/banned.html", {"reason": user.ban_reason}, status=403)
            )
        return super().pre_login(request, user, **kwargs)
