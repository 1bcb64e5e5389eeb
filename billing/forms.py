"""Forms of the billing pages: checkout and the invoice request.

They only check the shape of the input; the rules (what is for sale, which
orders may be invoiced, what a tax number looks like) live in
billing.payments, whose errors the views put back on these forms.
"""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Invoice, Order


class CheckoutForm(forms.Form):
    """The Buy form of a plan card on the plans page."""

    plan = forms.SlugField(widget=forms.HiddenInput)
    channel = forms.ChoiceField(
        label=_("Pay with"),
        choices=Order.Channel.choices,
        initial=Order.Channel.PAGE,
        widget=forms.RadioSelect,
    )
    # A fresh key on every render of the plans page: a double click or a
    # resent POST of the same page returns the same order instead of a second.
    key = forms.UUIDField(widget=forms.HiddenInput, required=False)


class InvoiceRequestForm(forms.Form):
    title_type = forms.ChoiceField(
        label=_("Invoice for"),
        choices=Invoice.TitleType.choices,
        initial=Invoice.TitleType.PERSONAL,
        widget=forms.RadioSelect,
    )
    title = forms.CharField(
        label=_("Title"),
        max_length=200,
        help_text=_("Your name, or the company's full name."),
    )
    tax_number = forms.CharField(
        label=_("Tax number"),
        max_length=30,
        required=False,
        help_text=_(
            "Required for a company: the unified social credit code (15 to 20 characters)."
        ),
    )
    email = forms.EmailField(
        label=_("E-mail"), help_text=_("We also send the issued invoice to this address.")
    )
