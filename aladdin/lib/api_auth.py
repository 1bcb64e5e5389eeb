"""API authentication (kept apart from api.py: DRF imports it while loading its views)."""

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions


class ActivityOAuth2Authentication(OAuth2Authentication):
    """Bearer-token authentication that notes the call as user activity.

    SPEC §4.2: an API call with the plugin's token restarts storage retention.
    """

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            from aladdin.accounts.services import user_record_activity

            user, _token = result
            if not user.is_active:
                raise exceptions.AuthenticationFailed("This account is disabled.")
            user_record_activity(user=user)
        return result
