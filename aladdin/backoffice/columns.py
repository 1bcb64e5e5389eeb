"""Admin list/readonly columns for the integer amounts (DESIGN rule 5): staff read DCU and yuan.

``granted_dcu = dcu_column("granted_micro", _("Granted (DCU)"))`` in a ModelAdmin
gives the column (sortable by the integer field unless ``ordering=None``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from aladdin.lib.units import fen_to_yuan_str, format_micro

_DEFAULT = object()


def _column(formatter, field: str, description: Any, ordering: Any):
    @admin.display(description=description, ordering=field if ordering is _DEFAULT else ordering)
    def column(self, obj):
        return formatter(getattr(obj, field))

    return column


def dcu_column(field: str, description: Any, *, ordering: Any = _DEFAULT):
    """µDCU ``field`` shown as DCU, exact (``format_micro``)."""
    return _column(format_micro, field, description, ordering)


def yuan_column(field: str, description: Any, *, ordering: Any = _DEFAULT):
    """Fen ``field`` shown as yuan with two decimals."""
    return _column(fen_to_yuan_str, field, description, ordering)


@admin.display(description=_("reason"))
def reason_column(self, obj) -> str:
    """A job's, workshop's or ledger entry's reason in the reader's language (aladdin.lib.said)."""
    return obj.reason_text
