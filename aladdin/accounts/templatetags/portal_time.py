"""Times as students read them: recent ones relative ("3 minutes ago"), the exact time on hover.

Pages render in the current time zone, which is the platform's TIME_ZONE
(Asia/Shanghai) unless a request activates another; the hover text names the
offset so that a student abroad knows which clock it is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

register = template.Library()

# Within a day a relative form is easier to read ("12 minutes ago"); older or
# further ahead, "3 days, 4 hours ago" says less than the date itself.
RELATIVE_WITHIN = timedelta(days=1)


def exact_time(value: datetime) -> str:
    """``2026-05-10 12:00:05 (UTC+08:00)`` in the current time zone."""
    local = timezone.localtime(value)
    offset = date_format(local, "O")  # "+0800"
    return f"{date_format(local, 'Y-m-d H:i:s')} (UTC{offset[:3]}:{offset[3:]})"


@register.filter
def when(value, short: str = "Y-m-d H:i") -> str:
    """A ``<time>`` element: relative within a day of now, else ``short``; exact on hover.

    ``{{ job.started_at|when }}``; an empty value renders as "" (so ``|default:"—"`` works).
    """
    if not isinstance(value, datetime):
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    local = timezone.localtime(value)
    if abs(timezone.now() - value) < RELATIVE_WITHIN:
        text = naturaltime(value)
    else:
        text = date_format(local, short)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), exact_time(value), text
    )
