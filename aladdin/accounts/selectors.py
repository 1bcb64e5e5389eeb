"""Account reads."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from .models import User


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
