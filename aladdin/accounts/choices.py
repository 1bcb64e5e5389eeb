from typing import Any

from django.db import models
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _


class EducationStatus(models.TextChoices):
    NONE = "none", _("Not verified")
    EMAIL = "email", _("Verified by education e-mail")
    STAFF = "staff", _("Approved by staff")


class Language(models.TextChoices):
    ZH_HANS = "zh-hans", "简体中文"
    EN = "en", "English"


# The audit log's action codes (StaffAction.action) across every app, with the
# names support staff read. A code not listed here is shown as it is; a test
# (tests/backoffice/test_audit_log.py) checks that every code the code base
# writes is listed.
_EDITED = {
    "plan": _("plan"),
    "gpu_type": _("GPU card and price"),
    "image": _("image"),
    "preset": _("resource preset"),
    "platform_env": _("platform environment default"),
}
STAFF_ACTION_LABELS: dict[str, Any] = {
    "ban": _("Ban for mining"),
    "education_approve": _("Education status approved"),
    "education_revoke": _("Education status revoked"),
    "password_reset": _("Password reset"),
    "voucher": _("Voucher"),
    "arrears_clean": _("Arrears: clean the data"),
    "arrears_hold": _("Arrears: hold"),
    "arrears_contact": _("Arrears: contact the user"),
    "refund": _("Refund"),
    "order_support_resolved": _("Payment flagged for support: handled"),
    "invoice_issued": _("Invoice issued"),
    "storage_allowance": _("Storage allowance changed"),
    "storage_hold": _("Storage retention held"),
    "storage_unhold": _("Storage retention hold lifted"),
    "storage_reclaim": _("Storage reclaimed"),
    "job_stop": _("GPU job stopped"),
    "workshop_stop": _("Workshop stopped"),
    "ssh_key_revoke": _("SSH key revoked"),
    "image_build": _("Image build requested"),
}
for _code, _thing in _EDITED.items():
    # Lazy: the label is translated when shown, in the reader's language.
    STAFF_ACTION_LABELS[f"{_code}_add"] = format_lazy(_("Added: {thing}"), thing=_thing)
    STAFF_ACTION_LABELS[f"{_code}_change"] = format_lazy(_("Changed: {thing}"), thing=_thing)
    STAFF_ACTION_LABELS[f"{_code}_delete"] = format_lazy(_("Deleted: {thing}"), thing=_thing)


def staff_action_label(code: str) -> str:
    """The translated name of an audit-log action code (the code itself when unknown)."""
    label = STAFF_ACTION_LABELS.get(code)
    return str(label) if label is not None else code
