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


# The names of the values an audit record keeps (before/after and details),
# for the keys the services write and the admin forms' own fields; a model
# field's key is named by the field's verbose_name (audit_field_label).
AUDIT_FIELD_LABELS: dict[str, Any] = {
    # the ban's snapshot
    "is_active": _("account active"),
    "banned": _("banned"),
    "active_compute_micro": _("active compute"),
    "carried_compute_micro": _("carried-over compute"),
    "debt_micro": _("arrears"),
    "running_jobs": _("running jobs"),
    "running_workshops": _("running workshops"),
    "ssh_keys": _("SSH keys"),
    "ide_connections": _("IDE connections"),
    "jobs_stopped": _("jobs stopped"),
    "job_ids": _("jobs"),
    "workshops_stopped": _("workshops stopped"),
    "workshop_ids": _("workshops"),
    "grants_forfeited": _("grants forfeited"),
    "forfeited_micro": _("compute forfeited"),
    "arrears_written_off_micro": _("arrears written off"),
    "again": _("banned before"),
    # stops, keys, images, storage, orders
    "state": _("state"),
    "stop_requested": _("stop requested"),
    "revoked_at": _("revoked at"),
    "build_state": _("build state"),
    "build_key": _("build"),
    "staff_gib": _("staff allowance (GiB)"),
    "allowance_gib": _("allowance (GiB)"),
    "needs_support": _("flagged for support"),
    "support_note": _("support note"),
    "amount_micro": _("amount"),
    "amount_fen": _("amount"),
    "grant": _("grant"),
    "review": _("arrears review"),
    "order": _("order"),
    "education_status": _("education status"),
    "hold": _("retention hold"),
    # the admin forms' fields (the models keep µDCU and fen)
    "dcu": _("compute per period (DCU)"),
    "price_yuan": _("price (yuan)"),
    "education_price_yuan": _("education price (yuan)"),
    "price_dcu_per_hour": _("price (DCU per card-hour)"),
}


def audit_field_label(key: str, subject_type: str = "") -> str:
    """What staff read for an audit record's key, translated; never the raw column name."""
    label = AUDIT_FIELD_LABELS.get(key)
    if label is not None:
        return str(label)
    if subject_type:
        from django.apps import apps
        from django.core.exceptions import FieldDoesNotExist

        try:
            model = apps.get_model(subject_type)
            return str(model._meta.get_field(key).verbose_name)
        except (LookupError, ValueError, FieldDoesNotExist, AttributeError):
            pass
    return key.removesuffix("_micro").removesuffix("_fen").replace("_", " ")


def audit_value(key: str, value: Any) -> str:
    """An audit value as the dashboard shows it: µDCU as DCU, fen as yuan, never the integer."""
    import json

    from django.utils.translation import gettext

    from aladdin.lib.units import fen_to_yuan_str, format_micro

    if isinstance(value, int) and not isinstance(value, bool):
        if key.endswith("_micro"):
            return f"{format_micro(value)} DCU"
        if key.endswith("_fen"):
            return f"¥{fen_to_yuan_str(value)}"
    if value is None or value == "" or value == []:
        return "–"
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
