"""Websocket authentication: the browser's session or the IDE plugin's bearer token.

The tests talk to the real ASGI application (aladdin.asgi.application) with
Channels' WebsocketCommunicator. pytest-asyncio is not installed, so each test
is synchronous and runs its coroutine with async_to_sync; the database is
reached from another thread, hence transaction=True.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from aladdin.asgi import application
from tests.accounts.test_ide_oauth import ide_login
from tests.wsclient import refusal_code

pytestmark = pytest.mark.django_db(transaction=True)

SAME_ORIGIN = (b"origin", b"http://localhost")


def session_cookie(client, user) -> tuple[bytes, bytes]:
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def bearer(token: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {token}".encode())


def whoami(headers, *, subprotocols=None):
    """Connect to /ws/whoami/; returns (connected, close code or subprotocol, first message)."""

    async def run():
        communicator = WebsocketCommunicator(
            application, "/ws/whoami/", headers=headers, subprotocols=subprotocols
        )
        connected, detail = await communicator.connect(timeout=5)
        message = await communicator.receive_json_from(timeout=5) if connected else None
        await communicator.disconnect()
        return connected, detail, message

    return async_to_sync(run)()


def test_a_logged_in_session_user_connects_and_is_greeted(client, user):
    connected, _detail, message = whoami([session_cookie(client, user), SAME_ORIGIN])

    assert connected
    assert message == {"type": "hello", "user_id": user.pk}


def test_an_anonymous_connection_is_refused_with_4401(db):
    assert refusal_code("/ws/whoami/", [SAME_ORIGIN]) == 4401


def test_a_logged_out_session_is_refused_with_4401(client, user):
    cookie = session_cookie(client, user)
    client.logout()

    assert refusal_code("/ws/whoami/", [cookie, SAME_ORIGIN]) == 4401


def test_a_cross_origin_connection_with_a_session_cookie_is_refused_with_4403(client, user):
    # Cross-site websocket hijacking: another site's page opens our socket and
    # the browser sends the portal's cookie along. It gets the close, never a frame.
    headers = [session_cookie(client, user), (b"origin", b"http://evil.example")]

    assert refusal_code("/ws/whoami/", headers) == 4403


def test_a_banned_user_still_carried_by_the_socket_is_refused_with_4403(user):
    # A ban ends the user's sessions and tokens, so the middleware normally
    # sees an anonymous client; a socket whose scope still holds the user (a
    # session racing the ban) is refused as forbidden.
    from channels.routing import URLRouter

    from aladdin.routing import websocket_urlpatterns

    type(user).objects.filter(pk=user.pk).update(banned_at=timezone.now())
    user.refresh_from_db()

    async def run():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/whoami/")
        communicator.scope["user"] = user
        assert (await communicator.connect(timeout=5))[0]
        message = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return message

    assert async_to_sync(run)() == {"type": "websocket.close", "code": 4403}


def test_a_bearer_token_in_the_authorization_header_connects(client, user):
    tokens = ide_login(client, user)

    connected, _detail, message = whoami([bearer(tokens["access_token"]), SAME_ORIGIN])

    assert connected
    assert message == {"type": "hello", "user_id": user.pk}


def test_a_bearer_token_connects_without_an_origin_header(client, user):
    # The IDE plugin runs in Node, whose websocket clients send no Origin;
    # only browsers do, and a missing Origin is no cross-site risk.
    tokens = ide_login(client, user)

    connected, _detail, message = whoami([bearer(tokens["access_token"])])

    assert connected
    assert message == {"type": "hello", "user_id": user.pk}


def test_an_invalid_bearer_token_is_refused_with_4401(db):
    assert refusal_code("/ws/whoami/", [bearer("not-a-real-token"), SAME_ORIGIN]) == 4401


def test_a_refusal_still_echoes_the_bearer_subprotocol(db):
    # A browser that offered subprotocols fails a handshake whose answer names
    # none, and would then see 1006 instead of the close code.
    async def run():
        communicator = WebsocketCommunicator(
            application,
            "/ws/whoami/",
            headers=[SAME_ORIGIN],
            subprotocols=["bearer", "not-a-real-token"],
        )
        connected, subprotocol = await communicator.connect(timeout=5)
        message = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return connected, subprotocol, message

    assert async_to_sync(run)() == (True, "bearer", {"type": "websocket.close", "code": 4401})


def test_an_invalid_bearer_token_is_refused_even_with_a_valid_session(client, user):
    # The token decides when one is presented, as in the REST API.
    headers = [session_cookie(client, user), bearer("not-a-real-token"), SAME_ORIGIN]

    assert refusal_code("/ws/whoami/", headers) == 4401


def test_a_revoked_bearer_token_is_refused(client, user):
    from aladdin.accounts import services

    tokens = ide_login(client, user)
    services.oauth_revoke_all(user=user)

    assert refusal_code("/ws/whoami/", [bearer(tokens["access_token"]), SAME_ORIGIN]) == 4401


def test_a_disabled_users_bearer_token_is_refused(client, user):
    tokens = ide_login(client, user)
    type(user).objects.filter(pk=user.pk).update(is_active=False)

    assert refusal_code("/ws/whoami/", [bearer(tokens["access_token"]), SAME_ORIGIN]) == 4401
