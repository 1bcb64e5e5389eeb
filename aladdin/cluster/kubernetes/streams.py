"""Pod exec, terminals and port-forward over the API server's websockets (issue 19).

The Kubernetes backend's :class:`~aladdin.cluster.base.ExecSession`,
:class:`~aladdin.cluster.base.Terminal` and
:class:`~aladdin.cluster.base.PortStream`, on the ``exec`` and
``portforward`` subresources of a pod:

- :func:`exec_session`: ``/api/v1/namespaces/<ns>/pods/<pod>/exec`` over the
  channel protocol. Each websocket message starts with its channel's byte:
  0 stdin, 1 stdout, 2 stderr, 3 status (a ``Status`` object once the
  command ended), 4 resize (``{"Width": cols, "Height": rows}``) and, in
  ``v5.channel.k8s.io`` (Kubernetes 1.30 and later) only, 255 close: its
  payload is the channel to close, which is how stdin gets its EOF. We
  offer v5 and v4; on a server that picks v4, :meth:`KubeExecSession.close_stdin`
  raises DriverError (code ``unsupported``): the command never sees EOF there.
- :func:`terminal`: a :class:`~aladdin.cluster.base.Terminal` over a tty exec.
- :func:`port_stream`: ``/api/v1/namespaces/<ns>/pods/<pod>/portforward``
  for one port: channel 0 carries the data, channel 1 the kubelet's errors,
  and the server's first message on each channel is the port, 2 bytes
  little-endian. The wire has no half-close (v4; the API server has no v5
  port-forward), so :meth:`KubePortStream.close_write` only ends our writes
  unless the server chose v5.

The websocket is opened by the official client's
``kubernetes.stream.ws_client.create_websocket`` (its TLS, client
certificates, proxy and bearer token from the ``ApiClient``'s
configuration). We do not go through ``kubernetes.stream.stream``: it swaps
``api_client.request`` while it connects (a race with every other thread
sharing that client) and turns a refused upgrade into an ``ApiException``
with status 0, losing the API server's status code and ``Status`` body. Nor
do we read through ``WSClient``: it merges each channel into one buffer
(stdout and stderr lose their order) and decodes text. One reader thread
per stream takes the messages off the websocket into a bounded buffer, so
one thread may read while others write, resize and close (the SSH gateway
does this), and a consumer that stops reading stops the command (TCP
backpressure through the API server) instead of filling our memory.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import socket
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import quote

from kubernetes.stream import ws_client
from websocket import ABNF, WebSocket, WebSocketBadStatusException, WebSocketException

from ..base import DriverError, ExecSession, PortStream, Terminal, check_port

PROTOCOL_V5 = "v5.channel.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
# Preferred first: the API server answers with the first one it speaks.
OFFERED = (PROTOCOL_V5, PROTOCOL_V4)

STDIN, STDOUT, STDERR, STATUS, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: "close the channel named in the payload"
PORT_DATA, PORT_ERROR = 0, 1

# Output held for a reader that has not taken it; above it the reader thread
# stops taking messages off the websocket.
MAX_BUFFERED = 4 * 1024 * 1024
# The API server takes messages of any size, but a proxy in between may not:
# large writes leave as several messages.
MAX_MESSAGE = 256 * 1024
# After the port frames, how long port_stream() waits for the kubelet's
# "connection refused" (its dial in the pod is immediate), so that a refused
# port is refused at connect as locally; a later error comes with read().
REFUSAL_WAIT = 0.05
PORT_FRAMES_WAIT = 2.0

_END = object()  # the queue's last item: the stream ended


def _ws_url(api_client: Any, path: str, query: list[tuple[str, Any]]) -> str:
    return ws_client.get_websocket_url(api_client.configuration.host + path, query)


def _pod_path(namespace: str, pod: str, subresource: str) -> str:
    return (
        f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/{subresource}"
    )


def _connect(api_client: Any, path: str, query: list[tuple[str, Any]], what: str) -> WebSocket:
    """The upgraded websocket, or the API server's refusal as a DriverError."""
    configuration = api_client.configuration
    headers = {"sec-websocket-protocol": ",".join(OFFERED)}
    # The generated API methods add the bearer token this way (auth_settings
    # also runs a kubeconfig's refresh hook); certificates go in the TLS options.
    bearer = configuration.auth_settings().get("BearerToken")
    if bearer and bearer.get("value"):
        headers["authorization"] = bearer["value"]
    try:
        return ws_client.create_websocket(configuration, _ws_url(api_client, path, query), headers)
    except WebSocketBadStatusException as exc:
        raise refusal(exc.status_code, exc.resp_body, what) from None
    except (OSError, WebSocketException) as exc:
        raise DriverError(
            f"{what}: the Kubernetes API server cannot be reached: {exc}", code="unavailable"
        ) from None


def refusal(status: int, body: bytes | str | None, what: str) -> DriverError:
    """The API server's answer to an upgrade it refused, as a DriverError.

    It answers a ``Status`` object: 404 the pod does not exist, 400 it does
    not run ("cannot exec into a container in a completed pod; current phase
    is Succeeded", "container not found", "pod does not have a host
    assigned"), 403 our service account may not, 5xx and 429 try again.
    """
    message = ""
    if body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        message = str(parsed.get("message", "")) if isinstance(parsed, dict) else text.strip()
    message = message or f"HTTP {status}"
    text = f"{what}: {message}"
    lowered = message.lower()
    if status in (400, 404) or (status >= 500 and "container not found" in lowered):
        # The kubelet answers 500 for a container that is (re)starting: not running either.
        return DriverError(text, permanent=True, code="not_running")
    if status in (401, 403):
        return DriverError(text, permanent=True, code="forbidden")
    if status == 429 or status >= 500:
        return DriverError(text, permanent=False, code="unavailable")
    return DriverError(text, permanent=True, code="invalid")


def _chosen_protocol(ws: WebSocket) -> str:
    headers = ws.getheaders() or {}
    return str(headers.get("sec-websocket-protocol", "")).strip().lower()


def _shutdown(ws: WebSocket) -> None:
    """Wake a thread blocked on ``ws`` without closing its descriptor under it."""
    sock = ws.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Channels(abc.ABC):
    """The reader thread's side of a stream: messages off the websocket into a bounded queue.

    Subclasses decide what a message means (:meth:`_message`); the queue
    holds ``(stream, bytes)`` items, a DriverError to raise, and ``_END``.
    The thread owns the websocket's descriptor: it closes it when it ends,
    so no other thread's recv or send ever meets a reused descriptor.
    """

    def __init__(self, ws: WebSocket, name: str):
        self._ws = ws
        self._cond = threading.Condition()
        self._items: deque[Any] = deque()
        self._buffered = 0
        self._ended = False  # _END is queued
        self._closed = False  # close() was called
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True, name=name)

    def _start(self) -> None:
        self._thread.start()

    def _pump(self) -> None:
        ws = self._ws
        try:
            while not self._closed:
                opcode, frame = ws.recv_data_frame(True)
                if opcode == ABNF.OPCODE_CLOSE:
                    break
                if opcode in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) and frame.data:
                    data = frame.data
                    self._message(data[0], data[1:] if isinstance(data, bytes) else b"")
        except (OSError, ValueError, WebSocketException):
            pass  # the stream broke, or close() shut it down
        finally:
            self._end()
            ws.shutdown()

    @abc.abstractmethod
    def _message(self, channel: int, payload: bytes) -> None:
        """One frame's payload on ``channel``: what it means is the subclass's protocol."""

    def _put(self, item: Any, size: int = 0) -> None:
        with self._cond:
            while self._buffered >= MAX_BUFFERED and not self._closed:
                self._cond.wait()
            if self._ended or self._closed:
                return
            was_empty = not self._items
            self._items.append(item)
            self._buffered += size
            self._cond.notify_all()
            if was_empty:
                self._arrived()

    def _end(self, error: DriverError | None = None) -> None:
        with self._cond:
            if self._ended:
                return
            was_empty = not self._items
            if error is not None:
                self._items.append(error)
            self._items.append(_END)
            self._ended = True
            self._cond.notify_all()
            if was_empty:
                self._arrived()

    def _arrived(self) -> None:  # noqa: B027 - optional: only the exec session signals it
        """Under the lock: the queue was empty and is not (see KubeExecSession.output_fd)."""

    def _take(self, timeout: float | None) -> Any:
        """The next item, waiting up to ``timeout``; ``_END`` stays for every later call."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("no output within the timeout")
                self._cond.wait(left)
            item = self._items[0]
            if item is _END:
                return item
            self._items.popleft()
            if isinstance(item, tuple):
                self._buffered -= len(item[1])
                self._cond.notify_all()
            return item

    def _send(self, channel: int, payload: bytes, what: str) -> None:
        """One channel's bytes to the websocket, in messages of MAX_MESSAGE at most."""
        with self._send_lock:
            if self._closed:
                raise DriverError(f"the {what} is closed", permanent=True)
            view = memoryview(payload)
            try:
                for start in range(0, max(len(view), 1), MAX_MESSAGE):
                    message = bytes([channel]) + view[start : start + MAX_MESSAGE]
                    self._ws.send(message, ABNF.OPCODE_BINARY)
            except (OSError, WebSocketException) as exc:
                raise DriverError(f"the {what} connection broke: {exc}") from exc

    def _hang_up(self) -> bool:
        """Stop the stream: True the first time. Safe from any thread, while another reads."""
        with self._cond:
            if self._closed:
                return False
            self._closed = True
            self._cond.notify_all()
        # A polite close frame unless a writer is in the middle of a send
        # (it may be blocked on a full socket: the shutdown below ends it).
        if self._send_lock.acquire(blocking=False):
            try:
                if self._ws.connected:
                    with contextlib.suppress(OSError, WebSocketException):
                        self._ws.send_close()
            finally:
                self._send_lock.release()
        _shutdown(self._ws)
        self._end()
        return True


class KubeExecSession(_Channels, ExecSession):
    """A command in a pod's container (pod exec over a websocket); see the module docstring.

    ``protocol`` is the channel protocol the API server chose. ``exit_code``
    is set when the status arrives: 0 on ``Success``, the code of a
    ``NonZeroExitCode`` failure; any other failure (the runtime could not
    start the command) is raised by :meth:`read` as a DriverError (code
    ``exec_failed``), once, after the output that came before it.

    :meth:`close` hangs up: the websocket closes, and the container runtime
    closes the command's stdin and, with a tty, its terminal (SIGHUP). A
    command without a tty that ignores its stdin keeps running: Kubernetes
    has no signal for it.
    """

    def __init__(self, ws: WebSocket, *, protocol: str, tty: bool, what: str):
        super().__init__(ws, name=f"k8s-exec {what}")
        self.protocol = protocol
        self.tty = tty
        self.exit_code: int | None = None
        self._what = what
        self._stdin_closed = False
        self._wake: tuple[int, int] | None = None  # output_fd's pipe
        self._start()

    # --- reading ---------------------------------------------------------------
    def _message(self, channel: int, payload: bytes) -> None:
        if channel in (STDOUT, STDERR):
            if payload:
                self._put((STDOUT if self.tty else channel, payload), len(payload))
        elif channel == STATUS:
            self._status(payload)

    def _status(self, payload: bytes) -> None:
        try:
            status = json.loads(payload or b"{}")
        except ValueError:
            status = {"status": "Failure", "message": payload.decode("utf-8", "replace")}
        if not isinstance(status, dict):
            status = {}
        if status.get("status") == "Success":
            self.exit_code = 0
            self._end()
            return
        if status.get("reason") == "NonZeroExitCode":
            causes = (status.get("details") or {}).get("causes") or []
            for cause in causes:
                if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                    with contextlib.suppress(TypeError, ValueError):
                        self.exit_code = int(cause.get("message") or "")
                        self._end()
                        return
        message = status.get("message") or "the command failed without an exit code"
        self._end(DriverError(f"{self._what}: {message}", permanent=True, code="exec_failed"))

    def read(self, timeout: float | None = None) -> tuple[int, bytes]:
        item = self._take(timeout)
        if item is _END:
            return 0, b""
        if isinstance(item, DriverError):
            raise item
        return item

    def ready(self) -> bool:
        with self._cond:
            return bool(self._items)

    def output_fd(self) -> int | None:
        # A pipe the reader thread writes a byte to when output arrives in
        # an empty queue; read_available empties both.
        with self._cond:
            if self._wake is None:
                read_end, write_end = os.pipe()
                os.set_blocking(read_end, False)
                os.set_blocking(write_end, False)
                self._wake = (read_end, write_end)
                if self._items:
                    self._signal()
            return self._wake[0]

    def _signal(self) -> None:
        assert self._wake is not None
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake[1], b"!")

    def _arrived(self) -> None:
        if self._wake is not None:
            self._signal()

    def read_available(self, limit: int) -> list[tuple[int, bytes | memoryview]]:
        out: list[tuple[int, bytes | memoryview]] = []
        with self._cond:
            if self._wake is not None:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake[0], 4096):
                        pass
            size = 0
            while self._items and size < limit:
                item = self._items[0]
                if item is _END:
                    out.append((0, b""))
                    break
                if isinstance(item, DriverError):
                    if out:
                        break  # the output first; the failure on the next call
                    # A command that never ran ends as a broken stream: no exit code.
                    self._items.popleft()
                    out.append((0, b""))
                    break
                self._items.popleft()
                self._buffered -= len(item[1])
                out.append(item)
                size += len(item[1])
            if self._items and self._wake is not None:
                self._signal()  # more than the limit: still readable
            self._cond.notify_all()
        return out

    # --- writing ---------------------------------------------------------------
    def _input(self, channel: int, payload: bytes) -> None:
        """Send to the command, unless it already exited: then the bytes have nowhere to go.

        A fast command may end (and the server close the websocket) before
        its caller wrote or closed its stdin: as locally, that is no error.
        """
        if self.exit_code is not None and not self._closed:
            return
        try:
            self._send(channel, payload, "session")
        except DriverError:
            if self._closed:
                raise
            # The send may have lost the race with the status on its way in.
            self._thread.join(1)
            if self.exit_code is None:
                raise

    def write(self, data: bytes) -> None:
        if self._stdin_closed:
            raise DriverError("the command's stdin is closed", permanent=True)
        if data:
            self._input(STDIN, bytes(data))

    def close_stdin(self) -> None:
        if self.protocol != PROTOCOL_V5:
            raise DriverError(
                f"{self._what}: the Kubernetes API server chose {self.protocol or 'no protocol'}, "
                f"which cannot end a command's stdin; that needs {PROTOCOL_V5} (Kubernetes 1.30+)",
                permanent=True,
                code="unsupported",
            )
        if self._stdin_closed:
            return
        self._input(CLOSE, bytes([STDIN]))
        self._stdin_closed = True

    def resize(self, *, rows: int, cols: int) -> None:
        if not self.tty:
            return
        size = json.dumps({"Width": int(cols), "Height": int(rows)}).encode()
        self._input(RESIZE, size)

    def close(self) -> None:
        if self._hang_up():
            with self._cond:
                wake, self._wake = self._wake, None
            if wake is not None:
                # The gateway stops watching the descriptor before it closes a session.
                for fd in wake:
                    with contextlib.suppress(OSError):
                        os.close(fd)


class KubeTerminal(Terminal):
    """A terminal in a pod: a tty exec (:class:`KubeExecSession`) as :class:`Terminal`.

    :meth:`read` raises ``TimeoutError`` when nothing arrived within
    ``timeout`` and returns ``b""`` once the shell ended or :meth:`close`
    was called (from any thread). ``exit_code`` is the shell's, once known.
    """

    def __init__(self, session: KubeExecSession):
        self.session = session
        self.exit_code: int | None = None
        self._closed = False

    def read(self, timeout: float | None = None) -> bytes:
        if self._closed:
            return b""
        try:
            stream, data = self.session.read(timeout)
        except DriverError:
            stream, data = 0, b""
        if not stream:
            self.exit_code = self.session.exit_code
            self.close()
            return b""
        return data

    def write(self, data: bytes) -> None:
        if self._closed:
            raise DriverError("the terminal is closed", permanent=True)
        self.session.write(data)

    def resize(self, *, rows: int, cols: int) -> None:
        if self._closed:
            raise DriverError("the terminal is closed", permanent=True)
        self.session.resize(rows=rows, cols=cols)

    def close(self) -> None:
        self._closed = True
        self.session.close()


class KubePortStream(_Channels, PortStream):
    """A TCP connection to a port in a pod (pod port-forward over a websocket).

    A "connection refused" (any error) on the error channel is raised by
    :meth:`read` once, after the data that came before it; later reads
    return ``b""``. Without v5 (the API server's port-forward has none),
    :meth:`close_write` cannot reach the pod: it only refuses later writes.
    """

    def __init__(self, ws: WebSocket, *, protocol: str, port: int, what: str):
        super().__init__(ws, name=f"k8s-port {what}")
        self.protocol = protocol
        self.port = port
        self._what = what
        self._seen_port: set[int] = set()  # channels whose port frame arrived
        self._errors = b""
        self._pending = b""  # the rest of a chunk larger than a read asked for
        self._write_closed = False
        self._start()

    def _message(self, channel: int, payload: bytes) -> None:
        if channel not in (PORT_DATA, PORT_ERROR):
            return
        if channel not in self._seen_port:
            # The server's first message on a channel names its port.
            payload = payload[2:]
            with self._cond:
                self._seen_port.add(channel)
                self._cond.notify_all()
        if not payload:
            return
        if channel == PORT_DATA:
            self._put((PORT_DATA, payload), len(payload))
            return
        self._errors += payload
        message = self._errors.decode("utf-8", "replace").strip()
        if "refused" in message.lower():
            error = DriverError(
                f"{self._what}: nothing listens on port {self.port}: {message}",
                permanent=True,
                code="connection_refused",
            )
        else:
            error = DriverError(f"{self._what}: {message}", code="unavailable")
        # The kubelet closes the stream after its error: end it here.
        self._end(error)

    def _settle(self) -> None:
        """Wait for the port frames, then briefly for a refusal; raise it if it came."""
        deadline = time.monotonic() + PORT_FRAMES_WAIT
        with self._cond:
            while len(self._seen_port) < 2 and not self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            deadline = time.monotonic() + REFUSAL_WAIT
            while not self._ended and not self._items:  # the pod spoke: it listens
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            first = self._items[0] if self._items else None
        if isinstance(first, DriverError):
            self.close()
            raise first

    def read(self, size: int = 65536) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        item = self._take(None)
        if item is _END:
            return b""
        if isinstance(item, DriverError):
            raise item
        data = item[1]
        if len(data) > size:
            data, self._pending = data[:size], data[size:]
        return data

    def write(self, data: bytes) -> None:
        if self._write_closed:
            raise DriverError("the port connection's sending side is closed", permanent=True)
        if data:
            self._send(PORT_DATA, bytes(data), "port connection")

    def close_write(self) -> None:
        if self._write_closed:
            return
        self._write_closed = True
        if self.protocol == PROTOCOL_V5:
            with contextlib.suppress(DriverError):
                self._send(CLOSE, bytes([PORT_DATA]), "port connection")

    def close(self) -> None:
        self._hang_up()


def _bool(value: bool) -> str:
    return "true" if value else "false"


def exec_session(
    api_client: Any,
    *,
    namespace: str,
    pod: str,
    container: str,
    argv: list[str],
    tty: bool = False,
    rows: int = 24,
    cols: int = 80,
) -> ExecSession:
    """Run ``argv`` in ``container`` of ``pod`` (pod exec); see :class:`KubeExecSession`.

    With ``tty`` the command gets a terminal of ``rows`` x ``cols`` and
    stdout and stderr are one stream (1). Raises DriverError: ``not_running``
    (permanent) when the pod is missing or its container does not run,
    ``unavailable`` (transient) when the API server cannot be reached or
    answers 5xx, ``unsupported`` when it speaks neither v5 nor v4.
    """
    what = f"exec in {namespace}/{pod}"
    if not argv:
        raise DriverError(f"{what}: no command", permanent=True, code="invalid")
    query: list[tuple[str, Any]] = [
        ("command", list(argv)),
        ("container", container),
        ("stdin", "true"),
        ("stdout", "true"),
        ("stderr", _bool(not tty)),
        ("tty", _bool(tty)),
    ]
    ws = _connect(api_client, _pod_path(namespace, pod, "exec"), query, what)
    protocol = _chosen_protocol(ws)
    if protocol not in OFFERED:
        ws.shutdown()
        raise DriverError(
            f"{what}: the Kubernetes API server chose {protocol or 'no channel protocol'}, "
            f"not {' or '.join(OFFERED)}",
            permanent=True,
            code="unsupported",
        )
    session = KubeExecSession(ws, protocol=protocol, tty=tty, what=what)
    if tty:
        try:
            session.resize(rows=rows, cols=cols)
        except DriverError:
            pass  # already ended: read() tells how
    return session


def terminal(
    api_client: Any,
    *,
    namespace: str,
    pod: str,
    container: str,
    argv: list[str],
    rows: int = 24,
    cols: int = 80,
) -> Terminal:
    """A terminal running ``argv`` (a shell) in ``container`` of ``pod``; see :class:`KubeTerminal`."""
    session = exec_session(
        api_client,
        namespace=namespace,
        pod=pod,
        container=container,
        argv=argv,
        tty=True,
        rows=rows,
        cols=cols,
    )
    assert isinstance(session, KubeExecSession)
    return KubeTerminal(session)


def port_stream(api_client: Any, *, namespace: str, pod: str, port: int) -> PortStream:
    """A TCP connection to ``port`` on the pod's loopback (pod port-forward); see :class:`KubePortStream`.

    Raises DriverError: ``invalid`` (a bad port), ``not_running`` (the pod
    is missing or does not run), ``connection_refused`` (permanent: nothing
    listens; here when the kubelet said so at once, else from the first
    :meth:`~KubePortStream.read`), ``unavailable`` (transient).
    """
    port = check_port(port)
    what = f"port-forward to {namespace}/{pod}:{port}"
    path = _pod_path(namespace, pod, "portforward")
    ws = _connect(api_client, path, [("ports", str(port))], what)
    stream = KubePortStream(ws, protocol=_chosen_protocol(ws), port=port, what=what)
    stream._settle()
    return stream
