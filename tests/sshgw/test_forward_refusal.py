"""A port forward that the cluster refuses after the connect (issue 19: a pod's port-forward
reports a refused port on its error channel, possibly after the first frames) ends the
client's channel with EOF instead of killing the relay thread and leaving it hanging."""

from __future__ import annotations

import asyncio
import concurrent.futures

from aladdin.cluster.base import DriverError
from aladdin.sshgw.server import _Forward


class LateRefusal:
    def __init__(self):
        self.reads = [b"first bytes"]

    def read(self, size: int = 65536) -> bytes:
        if self.reads:
            return self.reads.pop()
        raise DriverError("connection refused", permanent=True, code="connection_refused")


class Channel:
    def __init__(self):
        self.written: list[bytes] = []
        self.eof = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def write_eof(self) -> None:
        self.eof.set()


class Connection:
    def activity(self, **_counts) -> None:
        pass


def test_a_late_refusal_ends_the_channel_with_eof_after_what_arrived():
    async def run() -> Channel:
        forward = _Forward(Connection(), LateRefusal())  # type: ignore[arg-type]
        channel = Channel()
        forward.chan = channel
        thread = asyncio.to_thread(forward._pump_output)
        await asyncio.wait_for(thread, 5)
        await asyncio.wait_for(channel.eof.wait(), 5)
        return channel

    # A thread of its own: an earlier test (Playwright's sync API) may have left
    # an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        channel = pool.submit(asyncio.run, run()).result(timeout=30)
    assert channel.written == [b"first bytes"]
