"""Template tags of the storage app: unread in-app notices (the overview page shows them)."""

from __future__ import annotations

from django import template

register = template.Library()


@register.inclusion_tag("storage/_notices.html")
def unread_notices(user, limit: int = 5):
    """The user's unread in-app notices, newest first (retention warnings and others)."""
    from aladdin.accounts.models import Notification

    notices = []
    if getattr(user, "is_authenticated", False):
        notices = list(Notification.objects.filter(user=user, read_at__isnull=True)[:limit])
    return {"notices": notices}
