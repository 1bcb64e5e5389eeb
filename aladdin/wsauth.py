"""Websocket authentication: the browser's session, or the IDE plugin's bearer token.

Consumers stay dumb (DESIGN rule 8): by the time a consumer runs,
``scope["user"]`` is set here, and it only checks ownership.
"""

from __future__ import annotations

import hashlib

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def _user_for_token(raw: str):
    from oauth2_provider.models import get_access_token_model

    token = (
        get_access_token_model()
        .objects.select_related("user")
        .filter(token_checksum=_checksum(raw))
        .first()
    )
    if token is None or not token.is_valid(["ide"]) or token.user is None:
        return None
    if not token.user.is_active:
        return None
    return token.user


def _checksum(raw: str) -> str:
    # DOT stores only SHA-256 checksums (COMPLIANT_BCP_RFC9700_TOKEN_STORAGE).
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


# Stands for a token sent somewhere other than the Authorization header.
_REFUSED_TOKEN = ""


def _bearer_from_scope(scope) -> str | None:
    """The token of the Authorization header; ``_REFUSED_TOKEN`` for one sent elsewhere.

    Only the header counts, as in the REST API (aladdin.lib.api_auth): the IDE
    plugin sets it, browsers use the session cookie. A token offered as a
    subprotocol (``Sec-WebSocket-Protocol: bearer, <token>``, accepted before;
    docs/api.md, Changelog) is refused rather than ignored, so a client still
    sending it gets 4401 instead of a socket that works only while a browser
    session happens to ride along.
    """
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    protocols = scope.get("subprotocols") or []
    if protocols[:1] == ["bearer"]:
        return _REFUSED_TOKEN
    return None


class BearerTokenMiddleware:
    """Sets scope["user"] from an OAuth bearer token when one is presented."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        token = _bearer_from_scope(scope)
        if token is not None:
            user = await _user_for_token(token) if token != _REFUSED_TOKEN else None
            scope = dict(scope, user=user or AnonymousUser(), auth_method="bearer")
        return await self.inner(scope, receive, send)


def PortalAuthMiddlewareStack(inner):  # noqa: N802 - mirrors Channels' naming
    # Session auth first (sets scope["user"] from the cookie); a bearer token,
    # when present, then decides instead.
    return AuthMiddlewareStack(BearerTokenMiddleware(inner))


class PortalOriginValidator(OriginValidator):
    """Refuses websockets opened by another site's page; lets non-browser clients in.

    Channels' AllowedHostsOriginValidator also refuses a handshake without an
    Origin header, which shuts out the IDE plugin: Node's websocket clients
    send none. Browsers always send Origin on a websocket handshake, so a
    missing one cannot be a cross-site page riding on the portal's cookie;
    any Origin that is sent must still be one of ALLOWED_HOSTS.
    """

    def __init__(self, application):
        allowed_hosts = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed_hosts:
            # Same fallback as Channels' AllowedHostsOriginValidator.
            allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
        super().__init__(application, allowed_hosts)

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)
