"""The web terminal consumer, through the real ASGI application and a fake driver.

pytest-asyncio is not installed: each test runs its coroutine with
async_to_sync; the database is reached from another thread, hence transaction=True.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from aladdin.asgi import application
from aladdin.cluster.base import DriverError
from tests.wsclient import refusal_code
from workshops import services
from workshops.choices import WorkshopState

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def cookie(client, user):
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def test_another_users_workshop_is_refused_with_4404(
    client, user, other_user, make_workshop, driver
):
    ws = make_workshop(other_user)
    path = f"/ws/workshops/{ws.pk}/terminal/"
    assert refusal_code(path, [cookie(client, user), ORIGIN]) == 4404
    assert driver.terminals == []


def test_anonymous_is_refused_with_4401(client, user, make_workshop, driver):
    ws = make_workshop(user)
    assert refusal_code(f"/ws/workshops/{ws.pk}/terminal/", [ORIGIN]) == 4401
    assert driver.terminals == []


def test_a_stopped_workshop_is_refused_with_4409(client, user, make_workshop, driver):
    ws = make_workshop(user)
    services.workshop_stop(workshop=ws)
    path = f"/ws/workshops/{ws.pk}/terminal/"
    assert refusal_code(path, [cookie(client, user), ORIGIN]) == 4409


def test_a_shell_the_cluster_cannot_open_is_refused_with_4502(
    client, user, make_workshop, driver, monkeypatch
):
    ws = make_workshop(user)

    def broken(**_):
        raise DriverError("agent unreachable")

    monkeypatch.setattr(driver, "open_terminal", broken)
    path = f"/ws/workshops/{ws.pk}/terminal/"
    assert refusal_code(path, [cookie(client, user), ORIGIN]) == 4502


def test_bytes_flow_both_ways_and_resize_and_close(client, user, make_workshop, driver):
    ws = make_workshop(user)
    assert ws.state == WorkshopState.RUNNING
    headers = [cookie(client, user), ORIGIN]

    async def run():
        communicator = WebsocketCommunicator(
            application, f"/ws/workshops/{ws.pk}/terminal/", headers=headers
        )
        connected, _code = await communicator.connect(timeout=5)
        assert connected
        await communicator.send_to(bytes_data=b"ls\r")
        first = await communicator.receive_output(timeout=5)
        await communicator.send_to(text_data="pwd\r")
        second = await communicator.receive_output(timeout=5)
        await communicator.send_to(
            text_data=json.dumps({"type": "resize", "rows": 40, "cols": 120})
        )
        await communicator.disconnect()
        return first, second

    first, second = async_to_sync(run)()
    assert first["bytes"] == b"echo:ls\r"
    assert second["bytes"] == b"echo:pwd\r"
    terminal = driver.terminals[0]
    assert terminal.written == [b"ls\r", b"pwd\r"]
    assert terminal.size == (40, 120)
    assert terminal.closed


def test_the_socket_closes_when_the_shell_ends(client, user, make_workshop, driver):
    ws = make_workshop(user)
    headers = [cookie(client, user), ORIGIN]

    async def run():
        communicator = WebsocketCommunicator(
            application, f"/ws/workshops/{ws.pk}/terminal/", headers=headers
        )
        connected, _code = await communicator.connect(timeout=5)
        assert connected
        driver.terminals[0].close()  # the shell exited
        message = await communicator.receive_output(timeout=5)
        await communicator.wait()
        return message

    assert async_to_sync(run)()["type"] == "websocket.close"
