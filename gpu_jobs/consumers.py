"""A job's live output over a websocket (SPEC §7 "View Log"): ``ws/jobs/<pk>/logs/``.

Consumers stay dumb (DESIGN rule 8): aladdin.wsauth has set scope["user"];
ownership is checked before any byte flows: another user's job (or a
deleted one) is accepted and closed at once with 4404, an anonymous client
with 4401, a banned one with 4403, a bad ``?offset=`` with 4400
(aladdin.wsauth.refuse says why a refusal is not a refused handshake).

Frames (text, JSON), server to client only:

- ``{"type": "log", "data": <text>, "offset": <bytes>}``: output, decoded
  as UTF-8 incrementally (a character split between two chunks is held back
  until it is whole; invalid bytes become U+FFFD). ``offset`` is the byte
  offset just after this text: a client that reconnects with
  ``?offset=<it>`` gets exactly the rest.
- ``{"type": "end", "offset": N, "state": <job state>}`` once the job's
  workload has ended and all its output was sent (the end is recorded
  first, so ``state`` is final); then the server closes with 1000.

A job that has not started yet (queued, starting) is waited for: its state
is looked at every WAIT_SECONDS until its workload has output or the job
has ended. A driver failure while the job runs closes with 4502 (the client
may reconnect with its offset).

The driver's follow blocks, so one thread per socket runs it (not the
shared to_thread pool, which a few dozen quiet jobs would exhaust) and hands
each chunk to the event loop, waiting for the send (backpressure). A
disconnect closes the driver's stream, which wakes that thread.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import connections
from django.http import QueryDict

from aladdin import cluster
from aladdin.cluster import debugger
from aladdin.cluster.base import DriverError
from aladdin.workloads.consumers import TerminalConsumer
from aladdin.wsauth import (
    CLOSE_BAD_REQUEST,
    CLOSE_DRIVER,
    CLOSE_NOT_FOUND,
    CLOSE_NOT_RUNNING,
    accepted_subprotocol,
    refuse,
    user_refusal,
)

from . import logs, services
from .api import LogOffsetSerializer
from .choices import JobKind, JobState
from .models import Job

if TYPE_CHECKING:
    from aladdin.accounts.models import User

CLOSE_NORMAL = 1000
WAIT_SECONDS = 0.5
WAITING_STATES = (JobState.QUEUED, JobState.STARTING)

log = logging.getLogger(__name__)


@database_sync_to_async
def _job_for(user, pk) -> Job | None:
    return Job.objects.filter(pk=pk, user=user, deleted_at__isnull=True).first()


def _offset_from(scope) -> int | None:
    """``?offset=`` as GET /api/v1/jobs/{id}/logs reads it; None when it is invalid.

    A negative offset, or one above 2^40, used to reach the driver and come
    back as a cluster failure (4502), which the client retries for ever.
    """
    query = LogOffsetSerializer(data=QueryDict(scope.get("query_string") or b""))
    return query.validated_data["offset"] if query.is_valid() else None


def _record_end(job: Job) -> str:
    """The workload has ended: record it now (the reconciler would within seconds),
    so that a page reloading on the end frame already shows the final state."""
    try:
        return services.job_sync(job_id=job.pk)
    except DriverError:
        log.warning("could not record the end of %s", job.workload_name, exc_info=True)
        return Job.objects.filter(pk=job.pk).values_list("state", flat=True).first() or ""


class JobLogConsumer(AsyncWebsocketConsumer):
    # No groups, so no channel layer: it would cost a Redis channel per
    # socket and a blocking pop every 5 s. (With redis-py 8 that pop also
    # races its default 5 s socket timeout and kills the consumer after 5 s
    # of channel silence unless CHANNEL_LAYERS sets a longer socket_timeout.)
    channel_layer_alias = None
    pump: threading.Thread | None = None

    async def connect(self):
        self.stopped = threading.Event()
        self.stream = None
        self.stream_lock = threading.Lock()
        user = self.scope.get("user")
        refused = user_refusal(user)
        if refused is not None:
            await refuse(self, refused)
            return
        job = await _job_for(user, self.scope["url_route"]["kwargs"]["pk"])
        if job is None:
            await refuse(self, CLOSE_NOT_FOUND)
            return
        # After the ownership check, as the HTTP endpoint: 404 before 400.
        offset = _offset_from(self.scope)
        if offset is None:
            await refuse(self, CLOSE_BAD_REQUEST)
            return
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        self.pump = threading.Thread(
            target=self._pump,
            args=(job, offset, asyncio.get_running_loop()),
            name=f"logs-{job.workload_name}",
            daemon=True,
        )
        self.pump.start()

    async def receive(self, text_data=None, bytes_data=None):
        pass  # nothing to say to a log: clients only listen

    async def disconnect(self, code):
        self.stopped.set()
        with self.stream_lock:
            stream = self.stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    # --- the pump thread --------------------------------------------------
    def _pump(self, job: Job, offset: int, loop: asyncio.AbstractEventLoop) -> None:
        def call(coroutine):
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        read = offset  # bytes taken from the driver; offset = bytes fully sent
        close_code = CLOSE_NORMAL
        try:
            while not self.stopped.is_set():
                state = Job.objects.filter(pk=job.pk).values_list("state", flat=True).first()
                waiting = state in WAITING_STATES
                try:
                    stream = logs.follow(job, offset=read)
                    with self.stream_lock:
                        self.stream = stream
                    if self.stopped.is_set():
                        stream.close()
                    for chunk in stream:
                        if self.stopped.is_set():
                            break
                        read += len(chunk)
                        text = decoder.decode(chunk)
                        if text:
                            # Bytes still in the decoder are not sent yet.
                            offset = read - len(decoder.getstate()[0])
                            call(self._send_json({"type": "log", "data": text, "offset": offset}))
                except DriverError:
                    # A job not started yet may have no workload: not an error.
                    if not waiting:
                        log.warning("log stream of %s broke", job.workload_name, exc_info=True)
                        close_code = CLOSE_DRIVER
                        break
                finally:
                    with self.stream_lock:
                        stream, self.stream = self.stream, None
                    if stream is not None:
                        with contextlib.suppress(Exception):
                            stream.close()
                if not waiting:
                    # The workload had started before this follow, so the
                    # driver's end is the end of the output.
                    break
                self.stopped.wait(WAIT_SECONDS)
            if self.stopped.is_set():
                return
            if close_code == CLOSE_NORMAL:
                text = decoder.decode(b"", final=True)
                if text:
                    call(self._send_json({"type": "log", "data": text, "offset": read}))
                call(self._send_json({"type": "end", "offset": read, "state": _record_end(job)}))
            call(self.close(code=close_code))
        except Exception:  # a socket or loop gone ends the pump
            log.debug("log pump of %s ended", job.workload_name, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connections

    async def _send_json(self, message: dict) -> None:
        if not self.stopped.is_set():
            await self.send(text_data=json.dumps(message, ensure_ascii=False))


class JobTerminalConsumer(TerminalConsumer):
    """A shell in a running job (SPEC §7 "Terminal"), as the job's user, in its sandbox.

    Same frames as the workshop terminal; refused (accepted, then closed at
    once) with 4404 for another user's or a deleted job, 4409 when the job is
    not running.
    """

    async def workload_for(self, user: User, pk: int) -> tuple[str, None] | tuple[None, int]:
        job = await _job_for(user, pk)
        if job is None:
            return None, CLOSE_NOT_FOUND
        if job.state != JobState.RUNNING:
            return None, CLOSE_NOT_RUNNING
        return job.workload_name, None


# --- GPU Debug: the Debug Adapter Protocol bridge ------------------------------------

# debugpy takes a moment to listen after its job is reported running: the
# bridge tries the port again for this long before giving up with 4502.
DEBUG_CONNECT_SECONDS = 30.0
DEBUG_CONNECT_RETRY_SECONDS = 0.2
# A DAP message larger than this from the adapter ends the bridge (4502): a
# broken or hostile header must not make the portal buffer without bound.
DAP_MAX_MESSAGE_BYTES = 64 * 2**20


class DapFramingError(Exception):
    """The adapter's byte stream is not Content-Length framed DAP."""


def dap_frame(message: str) -> bytes:
    """One DAP JSON message as the adapter reads it: ``Content-Length`` header, blank line, body."""
    body = message.encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class DapReader:
    """Splits the adapter's bytes into DAP messages (the JSON bodies, as text)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        messages = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 4096:
                    raise DapFramingError("header too long")
                return messages
            length = None
            for line in bytes(self.buffer[:end]).split(b"\r\n"):
                name, _sep, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError as exc:
                        raise DapFramingError("bad Content-Length") from exc
            if length is None or not 0 <= length <= DAP_MAX_MESSAGE_BYTES:
                raise DapFramingError("missing or bad Content-Length")
            start = end + 4
            if len(self.buffer) < start + length:
                return messages
            body = bytes(self.buffer[start : start + length])
            del self.buffer[: start + length]
            messages.append(body.decode("utf-8", errors="replace"))


class JobDebugConsumer(AsyncWebsocketConsumer):
    """The IDE's way to a GPU Debug job's adapter (SPEC §7): ``ws/jobs/<pk>/debug/``.

    Each text frame is one Debug Adapter Protocol message (its JSON), both
    ways; the bridge adds the ``Content-Length`` framing towards the adapter
    (debugpy, port :data:`aladdin.cluster.debugger.PORT` inside the job,
    reached through the driver's ``connect_port``) and strips it towards the
    IDE. Refused like the log and terminal websockets (accepted, then closed
    at once): 4401 anonymous, 4403 banned, 4404 another user's or a deleted
    job, 4400 a job that is not GPU Debug, 4409 a job that is not running.
    When the adapter closes (the program ended) the server closes with
    1000; 4502 when the adapter cannot be reached or the stream broke.

    One thread per socket reads the adapter (the driver's streams block);
    the IDE's messages are written from the event loop through a thread.
    """

    channel_layer_alias = None  # no groups (see JobLogConsumer)

    async def connect(self):
        self.stream = None
        self.stopped = threading.Event()
        self.ready = asyncio.Event()
        user = self.scope.get("user")
        refused = user_refusal(user)
        if refused is not None:
            await refuse(self, refused)
            return
        job = await _job_for(user, self.scope["url_route"]["kwargs"]["pk"])
        if job is None:
            await refuse(self, CLOSE_NOT_FOUND)
            return
        if job.kind != JobKind.DEBUG:
            await refuse(self, CLOSE_BAD_REQUEST)
            return
        if job.state != JobState.RUNNING:
            await refuse(self, CLOSE_NOT_RUNNING)
            return
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        threading.Thread(
            target=self._pump,
            args=(job.workload_name, asyncio.get_running_loop()),
            name=f"debug-{job.workload_name}",
            daemon=True,
        ).start()

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            text_data = (bytes_data or b"").decode("utf-8", errors="replace")
        await self.ready.wait()
        stream = self.stream
        if stream is None or self.stopped.is_set():
            return
        try:
            await asyncio.to_thread(stream.write, dap_frame(text_data))
        except DriverError:
            log.info("debug bridge: the adapter's stream closed", exc_info=True)

    async def disconnect(self, code):
        self.stopped.set()
        self.ready.set()
        stream = self.stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    # --- the pump thread --------------------------------------------------
    def _connect(self, name: str):
        deadline = time.monotonic() + DEBUG_CONNECT_SECONDS
        while True:
            try:
                return cluster.get_driver().connect_port(name=name, port=debugger.PORT)
            except DriverError as exc:
                # Nothing listens yet (debugpy starting): try again until the deadline.
                if exc.code != "connection_refused" or time.monotonic() >= deadline:
                    raise
            if self.stopped.wait(DEBUG_CONNECT_RETRY_SECONDS):
                return None

    def _pump(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        def call(coroutine):
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        close_code = CLOSE_NORMAL
        stream = None
        try:
            try:
                stream = self._connect(name)
            except DriverError:
                log.warning("debug bridge: cannot reach the adapter of %s", name, exc_info=True)
                close_code = CLOSE_DRIVER
            self.stream = stream
            loop.call_soon_threadsafe(self.ready.set)
            if stream is None:
                if not self.stopped.is_set():
                    call(self.close(code=close_code))
                return
            if self.stopped.is_set():
                stream.close()
                return
            reader = DapReader()
            while not self.stopped.is_set():
                data = stream.read()
                if not data:
                    break
                for message in reader.feed(data):
                    call(self._send_text(message))
            if not self.stopped.is_set():
                call(self.close(code=close_code))
        except DapFramingError:
            log.warning("debug bridge: the adapter of %s sent a bad frame", name, exc_info=True)
            with contextlib.suppress(Exception):
                call(self.close(code=CLOSE_DRIVER))
        except Exception:  # a socket or loop gone ends the pump
            log.debug("debug bridge of %s ended", name, exc_info=True)
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
            # Whatever ended the pump, a receive() waiting for the stream goes on.
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(self.ready.set)
            connections.close_all()

    async def _send_text(self, message: str) -> None:
        if not self.stopped.is_set():
            await self.send(text_data=message)
