"""The small forms of the user 360° page: each staff action asks for a reason."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class ReasonForm(forms.Form):
    """A reason (required, recorded with the staff member's name)."""

    reason = forms.CharField(
        label=_("Reason"),
        max_length=2000,
        error_messages={"required": _("Say why: a reason is required for every staff action.")},
        widget=forms.TextInput(attrs={"size": 40, "placeholder": _("Reason (recorded)")}),
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(
                gettext("Say why: a reason is required for every staff action.")
            )
        return reason


class VoucherForm(ReasonForm):
    amount_dcu = forms.DecimalField(
        label=_("Amount (DCU)"),
        max_digits=15,
        decimal_places=6,
        widget=forms.NumberInput(attrs={"step": "any", "min": "0", "style": "width:7em"}),
    )
    # One key per page load: a double click or a resent POST grants once.
    key = forms.UUIDField(widget=forms.HiddenInput)

    def clean_amount_dcu(self):
        amount = self.cleaned_data["amount_dcu"]
        if amount <= 0:
            raise forms.ValidationError(gettext("A voucher must be worth more than 0 DCU."))
        return amount


class RefundForm(ReasonForm):
    order = forms.IntegerField(widget=forms.HiddenInput)
    amount_yuan = forms.DecimalField(
        label=_("Amount (yuan)"),
        max_digits=12,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "style": "width:7em"}),
    )
    key = forms.UUIDField(widget=forms.HiddenInput)

    def clean_amount_yuan(self):
        amount = self.cleaned_data["amount_yuan"]
        if amount < Decimal("0.01"):
            raise forms.ValidationError(gettext("A refund must be at least 0.01 yuan."))
        return amount


class JobStopForm(ReasonForm):
    job = forms.IntegerField(widget=forms.HiddenInput)


class WorkshopStopForm(ReasonForm):
    workshop = forms.IntegerField(widget=forms.HiddenInput)


class StorageRaiseForm(ReasonForm):
    allowance_gib = forms.IntegerField(
        label=_("New allowance (GiB)"),
        min_value=1,
        widget=forms.NumberInput(attrs={"min": "1", "style": "width:6em"}),
    )


class HoldForm(ReasonForm):
    hold = forms.TypedChoiceField(
        choices=[("1", _("Hold")), ("0", _("Lift the hold"))],
        coerce=lambda v: v == "1",
        widget=forms.HiddenInput,
    )


class EducationForm(ReasonForm):
    approved = forms.TypedChoiceField(
        choices=[("1", _("Approve")), ("0", _("Revoke"))],
        coerce=lambda v: v == "1",
        widget=forms.HiddenInput,
    )


class BanForm(ReasonForm):
    confirm = forms.BooleanField(
        label=_("I understand: the ban is permanent, stops everything and forfeits all compute."),
        error_messages={"required": _("Tick the box to confirm the ban.")},
    )


# --- staff login (/admin/login/) -----------------------------------------------------


def find_staff_login(identifier: str):
    """The user a login box names: a phone number typed any way, else a username."""
    from aladdin.accounts.models import User
    from aladdin.accounts.phone import normalize_phone

    identifier = (identifier or "").strip()
    if not identifier:
        return None
    try:
        return User.objects.filter(phone=normalize_phone(identifier)).first()
    except forms.ValidationError:
        return User.objects.filter(username__iexact=identifier).first()


class StaffAuthenticationForm(AdminAuthenticationForm):
    """The admin login with a phone number (any format people type) or a username.

    Django's form authenticates ``username=`` against USERNAME_FIELD (the
    phone, stored as E.164), so ``138 0013 8000`` or a username never
    matched. Credentials go through allauth's adapter, which applies the
    failed-login rate limit that the students' login has.
    """

    username = forms.CharField(
        label=_("Phone number or username"),
        max_length=150,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": _(
            "Please enter the correct phone number (or username) and password of a "
            "staff account. Both fields may be case-sensitive."
        ),
    }

    def clean(self):
        from allauth.account.adapter import get_adapter

        from aladdin.accounts.phone import normalize_phone

        identifier = (self.cleaned_data.get("username") or "").strip()
        password = self.cleaned_data.get("password")
        if identifier and password:
            try:
                credentials = {"phone": normalize_phone(identifier)}
            except forms.ValidationError:
                credentials = {"username": identifier}
            self.user_cache = get_adapter(self.request).authenticate(
                self.request, password=password, **credentials
            )
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class TotpCodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code from your authenticator app"),
        max_length=8,
        widget=forms.TextInput(
            attrs={"autofocus": True, "autocomplete": "one-time-code", "inputmode": "numeric"}
        ),
    )

    def clean_code(self):
        return "".join(self.cleaned_data["code"].split())
