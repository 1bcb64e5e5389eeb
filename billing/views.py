"""Billing pages of the dashboard: plans with what a purchase would do, balance, ledger.

Thin views (DESIGN rule 2): every page shows only the logged-in user's data,
read through selectors and ``selectors.subscription_preview``. There is no
buy button yet: checkout comes with Alipay (SPEC §5).
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from aladdin.lib.timeutil import day_start

from . import selectors
from .choices import LedgerKind
from .units import format_micro

SHANGHAI = ZoneInfo("Asia/Shanghai")
LEDGER_PAGE_SIZE = 50
USAGE_DAYS = 30


# --- pages ------------------------------------------------------------------------


@login_required
def plans(request):
    """The billing page: balance, current and queued periods, and the plans for sale."""
    now = timezone.now()
    return render(
        request,
        "billing/plans.html",
        {
            "offers": selectors.plan_offers(request.user, at=now),
            "current": selectors.current_subscription(request.user, now),
        },
    )


class _DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        # <input type="date"> sends and expects ISO dates whatever the language.
        super().__init__(format="%Y-%m-%d")


class LedgerFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"),
        required=False,
        choices=[("", gettext_lazy("All kinds")), *LedgerKind.choices],
    )
    since = forms.DateField(label=gettext_lazy("From"), required=False, widget=_DateInput())
    until = forms.DateField(
        label=gettext_lazy("To (inclusive)"), required=False, widget=_DateInput()
    )

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", _("The end date is before the start date."))
        return data


@login_required
def ledger(request):
    """The user's ledger, newest first, filtered by a GET form, 50 entries a page."""
    form = LedgerFilterForm(request.GET or None)
    filters: dict = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "kind": data["kind"] or None,
            "since": day_start(data["since"]) if data["since"] else None,
            # Inclusive end date: everything before the next day starts.
            "until": day_start(data["until"] + timedelta(days=1)) if data["until"] else None,
        }
    entries = selectors.ledger_entries(request.user, **filters)
    page = Paginator(entries, LEDGER_PAGE_SIZE).get_page(request.GET.get("page"))
    usage = selectors.daily_usage_micro(request.user, days=USAGE_DAYS)
    return render(
        request,
        "billing/ledger.html",
        {
            "form": form,
            "page": page,
            "filtered": any(v is not None for v in filters.values()),
            "usage": usage,
            "usage_total_micro": sum(micro for _day, micro in usage),
            "usage_chart": {
                "labels": [day.isoformat() for day, _micro in usage],
                # Exact decimal strings; the page turns them into numbers only to draw.
                "dcu": [format_micro(micro) for _day, micro in usage],
                "label": _("DCU used"),
            },
            "usage_days": USAGE_DAYS,
        },
    )
