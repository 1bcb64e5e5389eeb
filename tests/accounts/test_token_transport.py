"""The IDE plugin's token travels only in the Authorization header, and no log keeps one.

RFC 6750 also allows the token as a query parameter or a form field; RFC 9700
§4.3.2 forbids the query (access logs, proxies, Referer). The portal accepts
the header only, on the REST API and on websockets, and whatever a client
sends, no log line (Python logging, daphne's access log) carries a token.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from aladdin.lib.accesslog import redact_target
from tests.accounts.test_ide_oauth import CLIENT_ID, ide_login, me, refresh
from tests.servers import running
from tests.services_plugin import free_port

REPO = Path(__file__).resolve().parents[2]


def api_me(client, **kwargs):
    return client.get("/api/v1/me", **kwargs)


# --- REST API ------------------------------------------------------------------------


def test_a_token_in_the_query_string_is_refused(client, user):
    tokens = ide_login(client, user)

    response = api_me(
        client, data={"access_token": tokens["access_token"]}, headers={"accept-language": "en"}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert "Authorization header" in response.json()["detail"]


def test_a_token_in_a_form_body_is_refused(client, user):
    tokens = ide_login(client, user)

    response = client.post(
        "/api/v1/billing/orders", {"access_token": tokens["access_token"], "plan": "trial"}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_a_token_in_the_query_string_is_refused_beside_a_valid_header(client, user):
    # One way per request (RFC 6750 §2), so a client learns of the stray copy.
    tokens = ide_login(client, user)

    response = client.get(
        "/api/v1/me",
        {"access_token": tokens["access_token"]},
        headers={"authorization": f"Bearer {tokens['access_token']}"},
    )

    assert response.status_code == 400


def test_a_token_in_the_query_string_does_not_ride_on_a_browser_session(client, user):
    tokens = ide_login(client, user)
    client.force_login(user)

    assert api_me(client, data={"access_token": tokens["access_token"]}).status_code == 400
    # The session alone, and the header alone, still work.
    assert api_me(client).status_code == 200
    client.logout()
    assert me(client, tokens["access_token"]).status_code == 200


def test_a_token_does_not_open_a_browser_session_through_the_login_form(client, make_user):
    # The OAuth2Backend authentication backend accepted a token with any
    # credentials: a login form posted with a wrong password and an IDE token
    # logged the browser in as the token's owner.
    victim = make_user(username="victim")
    tokens = ide_login(client, victim)

    client.post(
        "/accounts/login/?access_token=" + tokens["access_token"],
        {"login": "victim", "password": "not-the-password"},
    )

    assert api_me(client).status_code in (401, 403)
    assert "_auth_user_id" not in client.session


# --- websockets ----------------------------------------------------------------------


def whoami_close_code(headers, *, subprotocols=None):
    """The close code /ws/whoami/ answers with; None if it greets the client.

    A refusal is a refused handshake or an accepted one closed at once; both
    carry the code.
    """
    from aladdin.asgi import application

    async def run():
        communicator = WebsocketCommunicator(
            application, "/ws/whoami/", headers=headers, subprotocols=subprotocols
        )
        connected, code = await communicator.connect(timeout=5)
        if not connected:
            return code
        message = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return message.get("code") if message["type"] == "websocket.close" else None

    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_a_websocket_token_in_the_subprotocol_is_refused(client, user):
    tokens = ide_login(client, user)

    code = whoami_close_code(
        [(b"origin", b"http://localhost")], subprotocols=["bearer", tokens["access_token"]]
    )

    assert code == 4401


@pytest.mark.django_db(transaction=True)
def test_a_websocket_token_in_the_subprotocol_is_refused_beside_a_session(client, user):
    tokens = ide_login(client, user)
    client.force_login(user)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())

    code = whoami_close_code(
        [cookie, (b"origin", b"http://localhost")],
        subprotocols=["bearer", tokens["access_token"]],
    )

    assert code == 4401


@pytest.mark.django_db(transaction=True)
def test_a_websocket_token_in_the_authorization_header_is_accepted(client, user):
    tokens = ide_login(client, user)

    code = whoami_close_code([(b"authorization", f"Bearer {tokens['access_token']}".encode())])

    assert code is None


# --- logs ----------------------------------------------------------------------------


def test_no_log_line_carries_a_token_even_at_debug_level(client, user, caplog):
    # given every logger at DEBUG (LOG_LEVEL=DEBUG)
    caplog.set_level(logging.DEBUG)
    tokens = ide_login(client, user)

    # when the plugin refreshes, revokes, and a client puts tokens in URLs
    renewed = refresh(client, tokens["refresh_token"]).json()
    me(client, renewed["access_token"])
    api_me(client, data={"access_token": renewed["access_token"]})
    client.get("/api/v1/nope", {"access_token": renewed["access_token"]})
    client.post("/o/revoke_token/", {"token": renewed["refresh_token"], "client_id": CLIENT_ID})

    # then no token appears in any record
    text = caplog.text
    for secret in (*tokens.values(), *renewed.values()):
        if isinstance(secret, str) and len(secret) >= 20:
            assert secret not in text


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/api/v1/me?access_token=abc", "/api/v1/me?access_token=[redacted]"),
        ("/x?a=1&refresh_token=r&b=2", "/x?a=1&refresh_token=[redacted]&b=2"),
        ("/x?ACCESS_TOKEN=abc", "/x?ACCESS_TOKEN=[redacted]"),
        ("/x?access%5Ftoken=abc", "/x?access%5Ftoken=[redacted]"),
        ("/cb?code=c&state=s", "/cb?code=[redacted]&state=s"),
        ("/api/v1/jobs?page=2", "/api/v1/jobs?page=2"),
        ("/api/v1/jobs", "/api/v1/jobs"),
    ],
)
def test_secret_query_parameters_are_redacted(target, expected):
    assert redact_target(target) == expected


def _procfile_web_command() -> str:
    for line in (REPO / "Procfile.dev").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == "web":
            return command.strip()
    raise AssertionError("Procfile.dev has no web process")


# The web server of `make run` (Procfile.dev) and of production
# (deploy/systemd/aladdin-web.service, docs/operations.md), each with its
# access log on, as they run there.
WEB_SERVERS = {
    "daphne": _procfile_web_command,
    "uvicorn": lambda: (
        ".venv/bin/uvicorn aladdin.asgi:application --host 127.0.0.1 "
        "--port ${ALADDIN_WEB_PORT} --no-proxy-headers --lifespan off"
    ),
}
SECRET = "secret-token-value-0123456789abcdef"


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _websocket_handshake(port: int, target: str) -> bytes:
    """Open a websocket on ``target`` and return the server's first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            (
                f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        return sock.recv(4096)


@pytest.mark.parametrize("server", sorted(WEB_SERVERS))
def test_the_web_servers_access_log_never_shows_a_token_from_a_url(tmp_path, server):
    # The refused requests need no database: the token is refused before any
    # look-up, the websocket is anonymous.
    port = free_port()
    env = dict(
        os.environ,
        ALADDIN_VAR_DIR=str(tmp_path),
        ALADDIN_WEB_PORT=str(port),
        BIND="127.0.0.1",
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="aladdin.settings",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "web.log"
    with running(WEB_SERVERS[server](), env=env, port=port, log=log):
        url = f"http://127.0.0.1:{port}/api/v1/me?page=1&access_token={SECRET}"
        assert _get(url) == 400, log.read_text(errors="replace")
        answer = _websocket_handshake(port, f"/ws/whoami/?refresh_token={SECRET}&x=1")
        assert answer.startswith(b"HTTP/1.1 101"), answer
        deadline = time.monotonic() + 10
        while log.read_text().count("whoami") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)

    text = log.read_text(errors="replace")
    assert "/api/v1/me?page=1&access_token=[redacted]" in text
    assert "/ws/whoami/" in text
    assert SECRET not in text
