"""Storage dashboard: use against allowance, 30 days of peaks and fees, expansion, warnings."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from aladdin.lib.units import format_micro

from . import services
from .api import storage_summary


class ExpandForm(forms.Form):
    allowance_gib = forms.IntegerField(label=gettext_lazy("New allowance (GiB)"), min_value=1)


@login_required
def dashboard(request):
    summary = storage_summary(request.user)
    chart = {
        "labels": [d["day"].isoformat() for d in summary["days"]],
        "peak": [d["peak_gib"] for d in summary["days"]],
        "fee": [format_micro(d["fee_micro"]) for d in summary["days"]],
        "peak_label": _("Peak use (GiB)"),
        "fee_label": _("Fee (DCU)"),
    }
    percent = 0
    if summary["allowance_gib"]:
        percent = min(100, round(100 * summary["used_gib"] / summary["allowance_gib"]))
    return render(
        request,
        "storage/dashboard.html",
        {
            "s": summary,
            "percent": percent,
            "chart": chart,
            "form": ExpandForm(initial={"allowance_gib": summary["allowance_gib"]}),
        },
    )


@login_required
@require_POST
def expand(request):
    form = ExpandForm(request.POST)
    if form.is_valid():
        try:
            services.storage_expand(
                user=request.user, allowance_gib=form.cleaned_data["allowance_gib"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("Storage allowance updated."))
    else:
        messages.error(request, _("Enter a whole number of GiB."))
    return redirect("storage:dashboard")
