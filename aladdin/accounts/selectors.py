"""Account reads."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from .models import Notification, NotificationPreference, User


def connected_ides(*, user: User) -> QuerySet[Any]:
    """The user's live IDE logins: one row per refresh-token family, newest first."""
    from oauth2_provider.models import get_refresh_token_model

    return (
        get_refresh_token_model()
        .objects.filter(
            user=user, revoked__isnull=True, application__client_id=settings.OAUTH_IDE_CLIENT_ID
        )
        .select_related("application", "access_token")
        .order_by("-created")
    )


def notifications_for(*, user: User) -> QuerySet[Notification]:
    """The user's notices, newest first (only theirs: another user's id is not found)."""
    return Notification.objects.filter(user=user).order_by("-created_at", "-pk")


def unread_count(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def sms_preferences(*, user: User) -> list[tuple[str, Any, bool]]:
    """(kind, label, texted) for every kind that can be texted; on unless turned off."""
    from .notices import SMS_KINDS

    saved = dict(NotificationPreference.objects.filter(user=user).values_list("kind", "sms"))
    return [(kind, label, saved.get(kind, True)) for kind, label in SMS_KINDS.items()]


def sms_wanted(*, user: User, kind: str) -> bool:
    """Whether notices of ``kind`` are texted to ``user`` (on by default)."""
    saved = NotificationPreference.objects.filter(user=user, kind=kind).values_list(
        "sms", flat=True
    )
    return next(iter(saved), True)
