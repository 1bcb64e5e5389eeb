"""The notification bell of the top bar (templates/base.html)."""

from __future__ import annotations

from django import template

register = template.Library()


@register.inclusion_tag("accounts/_bell.html", takes_context=True)
def notification_bell(context):
    """A link to /notifications/ with the user's unread count; nothing for visitors."""
    from aladdin.accounts import selectors

    user = getattr(context.get("request"), "user", None)
    if user is None or not user.is_authenticated:
        return {"show": False}
    return {"show": True, "unread": selectors.unread_count(user=user)}
