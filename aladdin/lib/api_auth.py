"""API authentication (kept apart from api.py: DRF imports it while loading its views)."""

from django.utils.translation import gettext_lazy as _
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions


def _presents_bearer_token(request) -> bool:
    scheme, _sep, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


class ActivityOAuth2Authentication(OAuth2Authentication):
    """Bearer-token authentication that notes the call as user activity.

    SPEC §4.2: an API call with the plugin's token restarts storage retention.
    """

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            if _presents_bearer_token(request):
                # A request that presents a token is judged by that token alone
                # (RFC 6750 §3.1 invalid_token). Otherwise DRF would fall through
                # to the session cookie, and a revoked token would keep working
                # in any browser that is also logged in to the portal.
                raise exceptions.AuthenticationFailed(
                    _("The access token is invalid, expired or revoked."), code="invalid_token"
                )
            return None
        user, _token = result
        if not user.is_active:
            raise exceptions.AuthenticationFailed(
                _("This account is disabled."), code="account_disabled"
            )
        from aladdin.accounts.services import user_record_activity

        user_record_activity(user=user)
        return result
