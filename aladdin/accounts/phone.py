"""Mainland China mobile numbers, normalised to E.164 (+86…)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# ASCII digits only: \d would also accept other scripts' digits (e.g. full-width
# "８"), which would be stored as typed and never match the same number again.
_MAINLAND_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")


def normalize_phone(raw: str) -> str:
    """Return the E.164 form (+8613800138000) of a mainland mobile number.

    Accepts what people type: ``13800138000``, ``+86 138 0013 8000``,
    ``0086-138-0013-8000``, ``86 13800138000``. Raises ValidationError otherwise.
    """
    digits = re.sub(r"[\s\-()]", "", raw or "")
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if not _MAINLAND_MOBILE.match(digits):
        raise ValidationError(
            _("Enter a mainland China mobile number, e.g. 13800138000."),
            code="invalid_phone",
        )
    return "+86" + digits


def mask_phone(phone: str) -> str:
    """+8613800138000 -> +86 138****8000 (what the API and pages show)."""
    if phone.startswith("+86") and len(phone) == 14:
        national = phone[3:]
        return f"+86 {national[:3]}****{national[-4:]}"
    return phone[:3] + "****" + phone[-4:]
