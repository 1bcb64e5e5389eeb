"""Websocket authentication: the browser's session, or the IDE plugin's bearer token.

Consumers stay dumb (DESIGN rule 8): by the time a consumer runs,
``scope["user"]`` is set here, and it only checks ownership.

Refusals (docs/api.md): every consumer refuses with :func:`refuse`, which
accepts the handshake and then closes with one of the 44xx codes below. A
close *before* accept refuses the handshake itself: daphne answers it with
HTTP 403, browsers report a bare 1006, and a client cannot tell "not signed
in" from a dropped connection, so it retries forever.
"""

from __future__ import annotations

from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from aladdin.lib.bearer import access_token_for

# Close codes of the portal's websockets (docs/api.md, "Websockets").
CLOSE_BAD_REQUEST = 4400  # the URL is invalid (a bad ?offset=): the same URL fails again
CLOSE_ANONYMOUS = 4401  # not signed in (no session, bad or revoked token)
CLOSE_FORBIDDEN = 4403  # signed in but not allowed (banned), or another site's page
CLOSE_NOT_FOUND = 4404  # no such object, another user's, or deleted
CLOSE_NOT_RUNNING = 4409  # the workload is not running (terminal)
CLOSE_DRIVER = 4502  # the cluster failed; the client may reconnect


def accepted_subprotocol(scope) -> str | None:
    """``"bearer"`` when the client offered subprotocols ``bearer, <token>``, else None.

    Such a token is refused (4401, see ``_bearer_from_scope``), but a client
    that offered subprotocols fails a handshake whose answer names none and
    would see 1006 instead of the code: the answer names it all the same.
    """
    subprotocols = scope.get("subprotocols") or []
    return "bearer" if subprotocols[:1] == ["bearer"] else None


async def refuse(consumer: AsyncWebsocketConsumer, code: int) -> None:
    """Accept, then close with ``code``: the client receives the code (see the module doc).

    Nothing is sent between the two, so accepting first leaks nothing.
    """
    await consumer.accept(subprotocol=accepted_subprotocol(consumer.scope))
    await consumer.close(code=code)


def user_refusal(user) -> int | None:
    """The close code for a user who may not open any socket, or None when they may."""
    if user is None or not user.is_authenticated:
        return CLOSE_ANONYMOUS
    # A ban disables the account and ends its sessions and tokens, so a banned
    # user normally arrives anonymous; this catches a session or token that
    # outlived the ban (e.g. a ban in progress).
    if getattr(user, "banned_at", None) is not None:
        return CLOSE_FORBIDDEN
    return None


class RefusingConsumer(AsyncWebsocketConsumer):
    """Refuses every connection with ``code`` (``RefusingConsumer.as_asgi(code=…)``)."""

    code = CLOSE_FORBIDDEN
    # No channel layer: a refusal needs no Redis channel.
    channel_layer_alias = None

    async def connect(self):
        await refuse(self, self.code)


@database_sync_to_async
def _user_for_token(raw: str):
    token = access_token_for(raw)
    if token is None or not token.is_valid(["ide"]) or token.user is None:
        return None
    if not token.user.is_active:
        return None
    return token.user


# Stands for a token sent somewhere other than the Authorization header.
_REFUSED_TOKEN = ""


def _bearer_from_scope(scope) -> str | None:
    """The token of the Authorization header; ``_REFUSED_TOKEN`` for one sent elsewhere.

    Only the header counts, as in the REST API (aladdin.accounts.api_auth): the IDE
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

    async def __call__(self, scope, receive, send):
        # Channels' OriginValidator refuses before accept (an HTTP 403): refuse
        # with 4403 instead, so a client learns why (see the module doc).
        if scope["type"] == "websocket" and not self.valid_origin(_origin(scope)):
            return await _refuse_origin(scope, receive, send)
        return await self.application(scope, receive, send)

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


_refuse_origin = RefusingConsumer.as_asgi(code=CLOSE_FORBIDDEN)


def _origin(scope):
    """The parsed Origin header, None when absent (or undecodable), as Channels parses it."""
    for name, value in scope.get("headers", []):
        if name == b"origin":
            try:
                return urlparse(value.decode("latin1"))
            except UnicodeDecodeError:
                return None
    return None
