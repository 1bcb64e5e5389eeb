"""Template tags of the back office's own pages (the admin home's queues)."""

from __future__ import annotations

from django import template

from aladdin.backoffice import queues as queues_module

register = template.Library()


@register.simple_tag(takes_context=True)
def support_queues(context) -> list[queues_module.Queue]:
    """The queues the logged-in member of staff may open, with their counts."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_active or not user.is_staff:
        return []
    return queues_module.queues_for(user)
