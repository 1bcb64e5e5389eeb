"""The web terminal: a websocket pumping bytes to and from a PTY in a workload.

One consumer for every workload app: each subclasses :class:`TerminalConsumer`
and says which workload a URL's ``pk`` opens (:meth:`workload_for`), which is
where ownership and state are checked (workshops: ``workshops.consumers``;
jobs: ``gpu_jobs.consumers``).

Consumers stay dumb (DESIGN rule 8): aladdin.wsauth has set scope["user"];
here ownership and state are checked before any byte flows: a refusal is
accepted and closed at once with its code (aladdin.wsauth.refuse): 4401
anonymous, 4403 banned, 4404 another user's workload, 4409 not running, 4502
the cluster could not open a shell. Frames: binary or text frames are
keystrokes; a text frame holding JSON ``{"type": "resize", "rows", "cols"}``
resizes the window. Output goes out as binary frames.

Driver calls block, so they run in threads. The reader thread blocks in
``Terminal.read()``; ``Terminal.close()`` on disconnect makes it return b""
(the contract this relies on).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import threading
from typing import TYPE_CHECKING, cast

from channels.generic.websocket import AsyncWebsocketConsumer

from aladdin import cluster
from aladdin.cluster.base import DriverError, Terminal
from aladdin.wsauth import CLOSE_DRIVER, accepted_subprotocol, refuse, user_refusal

if TYPE_CHECKING:
    from aladdin.accounts.models import User


MAX_DIMENSION = 1000

log = logging.getLogger(__name__)


class TerminalConsumer(AsyncWebsocketConsumer, abc.ABC):
    """A shell in a running workload; subclasses say which workload (see :meth:`workload_for`)."""

    terminal: Terminal | None = None
    reader: threading.Thread | None = None

    @abc.abstractmethod
    async def workload_for(self, user: User, pk: int) -> tuple[str, None] | tuple[None, int]:
        """(the workload's name, None), or (None, the close code) when refused.

        Another user's workload is CLOSE_NOT_FOUND, one not running
        CLOSE_NOT_RUNNING (aladdin.wsauth).
        """

    async def connect(self) -> None:
        user = self.scope.get("user")
        refused = user_refusal(user)
        if refused is not None:
            await refuse(self, refused)
            return
        # user_refusal let only a signed-in, unbanned user through.
        found = await self.workload_for(cast("User", user), self.scope["url_route"]["kwargs"]["pk"])
        if found[0] is None:
            await refuse(self, found[1])
            return
        name = found[0]
        driver = cluster.get_driver()
        try:
            self.terminal = await asyncio.to_thread(driver.open_terminal, name=name)
        except DriverError:
            await refuse(self, CLOSE_DRIVER)
            return
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        # One thread per terminal (not the shared to_thread pool, which a few
        # dozen idle terminals would exhaust): it blocks in read() and hands
        # each chunk to the event loop, waiting for the send (backpressure).
        self.reader = threading.Thread(
            target=self._pump_output,
            args=(self.terminal, asyncio.get_running_loop()),
            name=f"terminal-{name}",
            daemon=True,
        )
        self.reader.start()

    def _pump_output(self, terminal: Terminal, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                data = terminal.read()
                if not data or self.terminal is None:
                    break
                asyncio.run_coroutine_threadsafe(self.send(bytes_data=data), loop).result()
        except Exception:  # a dead terminal or socket ends the pump
            log.debug("terminal pump ended", exc_info=True)
        if self.terminal is not None:
            # The shell ended by itself: tell the browser.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout=5)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.terminal is None:
            return
        if text_data is not None:
            control = _control(text_data)
            if control is not None:
                rows, cols = control
                await asyncio.to_thread(self.terminal.resize, rows=rows, cols=cols)
                return
            bytes_data = text_data.encode("utf-8")
        if bytes_data:
            try:
                await asyncio.to_thread(self.terminal.write, bytes_data)
            except DriverError:
                await self.close()

    async def disconnect(self, code: int) -> None:
        terminal, self.terminal = self.terminal, None
        if terminal is not None:
            with contextlib.suppress(DriverError):
                await asyncio.to_thread(terminal.close)


def _control(text: str) -> tuple[int, int] | None:
    """(rows, cols) for a resize message; None when the frame is keystrokes."""
    if not text.startswith("{"):
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "resize":
        return None
    try:
        rows, cols = int(message["rows"]), int(message["cols"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (0 < rows <= MAX_DIMENSION and 0 < cols <= MAX_DIMENSION):
        return None
    return rows, cols
