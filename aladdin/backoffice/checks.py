"""``manage.py check --deploy``: production staff accounts need their second factor."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def staff_second_factor(app_configs, **kwargs):
    if getattr(settings, "ALADDIN_STAFF_MFA_REQUIRED", False):
        return []
    return [
        Warning(
            "ALADDIN_STAFF_MFA_REQUIRED is off: staff log in to the back office with a "
            "password alone.",
            hint="Unset ALADDIN_STAFF_MFA_REQUIRED (it is on whenever DEBUG is off).",
            id="backoffice.W001",
        )
    ]
