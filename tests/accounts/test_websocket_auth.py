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

from aladdin.asgi import application
from tests.accounts.test_ide_oauth import ide_login

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


def test_an_anonymous_connection_is_refused(db):
    connected, code, _message = whoami([SAME_ORIGIN])

    assert not connected
    assert code == 4401


def test_a_logged_out_session_is_refused(client, user):
    cookie = session_cookie(client, user)
    client.logout()

    connected, code, _message = whoami([cookie, SAME_ORIGIN])

    assert not connected
    assert code == 4401


def test_a_cross_origin_connection_with_a_session_cookie_is_refused(client, user):
    # Cross-site websocket hijacking: another site's page opens our socket and
    # the browser sends the portal's cookie along.
    connected, _code, _message = whoami(
        [session_cookie(client, user), (b"origin", b"http://evil.example")]
    )

    assert not connected


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


def test_an_invalid_bearer_token_is_refused(db):
    connected, code, _message = whoami([bearer("not-a-real-token"), SAME_ORIGIN])

    assert not connected
    assert code == 4401


def test_an_invalid_bearer_token_is_refused_even_with_a_valid_session(client, user):
    # The token decides when one is presented, as in the REST API.
    connected, code, _message = whoami(
        [session_cookie(client, user), bearer("not-a-real-token"), SAME_ORIGIN]
    )

    assert not connected
    assert code == 4401


def test_a_revoked_bearer_token_is_refused(client, user):
    from aladdin.accounts import services

    tokens = ide_login(client, user)
    services.oauth_revoke_all(user=user)

    connected, code, _message = whoami([bearer(tokens["access_token"]), SAME_ORIGIN])

    assert not connected
    assert code == 4401


def test_a_disabled_users_bearer_token_is_refused(client, user):
    tokens = ide_login(client, user)
    type(user).objects.filter(pk=user.pk).update(is_active=False)

    connected, code, _message = whoami([bearer(tokens["access_token"]), SAME_ORIGIN])

    assert not connected
    assert code == 4401
