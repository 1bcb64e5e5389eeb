"""Template tags of the storage app: unread in-app notices, the over-allowance warning."""

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


@register.inclusion_tag("storage/_over_allowance.html")
def over_allowance_warning(user, plan=None):
    """The storage page's warning, on the pages where new workloads start (SPEC §4.2).

    ``plan``: the user's current plan, where the page's view read it already.
    """
    from storage.selectors import over_allowance

    over = None
    if getattr(user, "is_authenticated", False):
        over = over_allowance(user, plan=plan)
    return {"over": over}
