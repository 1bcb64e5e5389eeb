"""API authentication: the IDE's bearer token, noted as the user's activity.

In accounts, not aladdin.lib: it records activity through the accounts
services, and lib imports no app. Kept apart from accounts/api.py because
DRF imports it (settings) while loading any view; the services are imported
when a request is authenticated, not then.
"""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions, status

from aladdin.lib.bearer import access_token_for

# RFC 6750 §2.2 and §2.3 also let a client send the token as a form field or a
# query parameter named access_token. RFC 9700 §4.3.2 forbids the query: it is
# written to access logs, proxies' logs, browser history and Referer headers.
# The form field is the same secret in a place no client of ours uses. So the
# Authorization header is the only way in (docs/api.md), here and on websockets.
TOKEN_PARAMETER = "access_token"


class TokenOutsideHeader(exceptions.APIException):
    """A token sent in the URL or the body: refused, never looked up (RFC 6750 §3.1)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_request"
    default_detail = _(
        "Send the access token in the Authorization header (Authorization: Bearer <token>), "
        "never in the URL or the request body."
    )


def _bearer_token(request) -> str:
    scheme, _sep, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _token_outside_header(request) -> bool:
    if TOKEN_PARAMETER in request.query_params:
        return True
    # Only form bodies: django-oauth-toolkit reads its body parameters from
    # request.POST, which stays empty (and the body unread) for JSON.
    return TOKEN_PARAMETER in request._request.POST


def _usable_here(token, request) -> bool:
    """Not expired (revoked tokens are deleted) and, if audience-restricted, for this API.

    What django-oauth-toolkit's validator checks for DRF: no scope is
    required of API calls (every token the portal issues has ``ide``), and a
    token bound to resource servers (RFC 8707) only works at one of them.
    """
    if not token.is_valid():
        return False
    return not token.resource or token.allows_audience(request.build_absolute_uri(request.path))


class ActivityOAuth2Authentication(OAuth2Authentication):
    """Bearer-token authentication (header only) that notes the call as user activity.

    SPEC §4.2: an API call with the plugin's token restarts storage retention.
    """

    def authenticate(self, request):
        if _token_outside_header(request):
            # Refused even beside a valid header or session (RFC 6750 §2: one
            # method per request), so that a client sending it learns at once
            # instead of working by accident through a cookie.
            raise TokenOutsideHeader()
        raw = _bearer_token(request)
        if not raw:
            # No token: the session (the next class) decides. Never ask
            # django-oauth-toolkit, which would look in the query and the body.
            return None
        token = access_token_for(raw)
        if token is None or token.user is None or not _usable_here(token, request):
            # A request that presents a token is judged by that token alone
            # (RFC 6750 §3.1 invalid_token). Otherwise DRF would fall through
            # to the session cookie, and a revoked token would keep working
            # in any browser that is also logged in to the portal.
            # The challenge (authenticate_header) carries the RFC 6750 error.
            request.oauth2_error = {"error": "invalid_token"}
            raise exceptions.AuthenticationFailed(
                _("The access token is invalid, expired or revoked."), code="invalid_token"
            )
        user = token.user
        if not user.is_active or user.banned_at is not None:
            # banned_at too: a ban holds even if "active" is switched back on.
            raise exceptions.AuthenticationFailed(
                _("This account is disabled."), code="account_disabled"
            )
        from aladdin.accounts.services import user_record_activity

        user_record_activity(user=user)
        return user, token


class ActivityOAuth2Scheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of :class:`ActivityOAuth2Authentication`: HTTP bearer.

    drf-spectacular matches authentication classes exactly, not by subclass:
    without this the schema would not say how to authenticate, and
    `manage.py check --deploy` would warn on every API view. Declared as
    ``http``/``bearer`` (the one way a token is accepted) rather than as
    drf-spectacular's OAuth2 flow scheme, whose description says nothing of
    where the token goes; the description names the login flow instead.
    """

    target_class = ActivityOAuth2Authentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The IDE plugin's OAuth 2.0 access token (authorization code + "
            "PKCE S256 at /o/authorize/ and /o/token/, docs/api.md), sent as "
            "`Authorization: Bearer <token>`; never in the URL or a form field.",
        }
