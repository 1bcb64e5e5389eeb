"""The close code a websocket client receives when the portal refuses it.

Through the real ASGI application (aladdin.asgi.application) with Channels'
WebsocketCommunicator. A refusal must be an accepted handshake followed by a
close with the code (docs/api.md): a handshake refused outright becomes an
HTTP 403 under daphne, and the client never sees the code.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator


def refusal_code(path: str, headers, *, subprotocols=None) -> int | None:
    """The close code sent right after the handshake; None when the socket stays open.

    Fails when the handshake itself is refused.
    """

    async def run():
        from aladdin.asgi import application

        communicator = WebsocketCommunicator(
            application, path, headers=headers, subprotocols=subprotocols
        )
        accepted, code = await communicator.connect(timeout=5)
        assert accepted, f"the handshake was refused (close code {code}): daphne answers HTTP 403"
        try:
            message = await communicator.receive_output(timeout=2)
        except TimeoutError:
            return None  # (the communicator has cancelled the consumer)
        assert message["type"] == "websocket.close", f"a refusal sent {message!r} before closing"
        await communicator.disconnect()
        return message.get("code")

    return async_to_sync(run)()
