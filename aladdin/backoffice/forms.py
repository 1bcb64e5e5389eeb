"""The small forms of the user 360° page: each staff action asks for a reason."""

from __future__ import annotations

from decimal import Decimal

from django import forms
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
