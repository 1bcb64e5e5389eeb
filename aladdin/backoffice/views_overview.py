"""The platform overview page (/admin/backoffice/overview/): a thin view over overview.py."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from aladdin.lib.units import fen_to_yuan_str, format_micro

from . import overview as overview_reads

# Money and compute of everyone: staff who may read orders and the ledger.
OVERVIEW_PERMS = ("billing.view_order", "billing.view_ledgerentry")

GIB = 1024**3


def _charts(ov: overview_reads.Overview) -> dict:
    """The series as Chart.js reads them: ISO day labels, amounts as decimal strings."""
    days = ov.days
    return {
        "labels": [d.day.isoformat() for d in days],
        "money": {
            "title": gettext("Revenue and refunds per day (yuan)"),
            "unit": gettext("yuan"),
            "series": [
                {
                    "label": gettext("Revenue"),
                    "data": [fen_to_yuan_str(d.revenue_fen) for d in days],
                },
                {
                    "label": gettext("Refunds"),
                    "data": [fen_to_yuan_str(d.refunds_fen) for d in days],
                },
            ],
        },
        "compute": {
            "title": gettext("DCU sold, given and used per day"),
            "unit": "DCU",
            "series": [
                {"label": gettext("DCU sold"), "data": [format_micro(d.sold_micro) for d in days]},
                {
                    "label": gettext("DCU given as vouchers"),
                    "data": [format_micro(d.vouchers_micro) for d in days],
                },
                {"label": gettext("DCU used"), "data": [format_micro(d.used_micro) for d in days]},
            ],
        },
        "cards": {
            "title": gettext("GPU cards in use now"),
            "labels": [c.name for c in ov.cards],
            "data": [c.cards for c in ov.cards],
        },
    }


def overview_view(request):
    if not request.user.has_perms(OVERVIEW_PERMS):
        raise PermissionDenied
    ov = overview_reads.platform_overview()
    return TemplateResponse(
        request,
        "backoffice/overview.html",
        {
            **admin.site.each_context(request),
            "title": _("Platform overview"),
            "ov": ov,
            "charts": _charts(ov),
            "storage_used_gib": f"{ov.storage_used_bytes / GIB:.1f}",
            "days_newest_first": list(reversed(ov.days)),
        },
    )
