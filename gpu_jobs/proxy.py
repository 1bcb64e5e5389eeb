"""The port proxy (SPEC §7 "External access"; ``manage.py ports_proxy``, ``ports`` in Procfile.dev).

A student's server in a job (Jupyter on 8888, ComfyUI on 8188) is reached at
``<token>.<PORTS_DOMAIN>``: a different site from the portal, so the
browser never sends a portal cookie there and a student's page cannot read
or set the portal's. For each connection the proxy reads the first request's
head, finds the port by the token in its ``Host``, and if the port is open
and its job runs, opens the port *inside that job* through the cluster
driver (:meth:`~aladdin.cluster.base.ClusterDriver.connect_port`: the local
agent connects from within the job's sandbox; Kubernetes, a port-forward),
sends the head on and then relays bytes both ways, untouched: keep-alive
requests, streamed responses, large uploads and websocket upgrades all
pass, with nothing buffered beyond one read (or one pipe-full, where the
bytes are spliced in the kernel: :mod:`aladdin.cluster.splice`).

Nothing the student controls reaches the host: the token selects a row,
and the row names the workload and the port; the request itself is only
relayed into the sandbox.

A URL stops answering the moment its port is removed or its job ends: new
connections get a 404 page, and a watcher (every ``REVOKE_CHECK_SECONDS``)
cuts the open ones. Threads, not asyncio: each connection is two blocking
pumps whose reads and writes release the GIL, which is what a relay needs,
and the driver's streams are blocking.
"""

from __future__ import annotations

import contextlib
import html
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import close_old_connections
from django.utils import translation
from django.utils.translation import gettext as _

from aladdin import cluster
from aladdin.cluster import splice
from aladdin.cluster.base import DriverError, PortStream

from .choices import JobState
from .models import JobPort

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # bytes of the first request's line and headers
HEAD_TIMEOUT_SECONDS = 30.0
CHUNK = 256 * 1024
REVOKE_CHECK_SECONDS = 0.5


@dataclass(frozen=True)
class Target:
    """Where a token leads: the job's workload and the port inside it."""

    token: str
    job_id: int
    workload: str
    port: int
    running: bool


def lookup(token: str) -> Target | None:
    """The open port of ``token`` (None if there is none or its job ended)."""
    close_old_connections()
    try:
        row = (
            JobPort.objects.select_related("job")
            .filter(token=token, removed_at__isnull=True, job__deleted_at__isnull=True)
            .first()
        )
        if row is None or row.job.state not in (JobState.STARTING, JobState.RUNNING):
            return None
        if row.job.stop_requested_at is not None:
            # Stopping is ending: the URL stops answering at the click, as the
            # watcher already cuts open connections (open_tokens), not when the
            # workload is gone seconds later (and not "still starting", 503).
            return None
        return Target(
            token=token,
            job_id=row.job_id,
            workload=row.job.workload_name,
            port=row.port,
            running=row.job.state == JobState.RUNNING,
        )
    finally:
        close_old_connections()


def open_tokens(tokens: set[str]) -> set[str]:
    """Which of ``tokens`` still lead somewhere (one query for every open connection)."""
    close_old_connections()
    try:
        return set(
            JobPort.objects.filter(
                token__in=tokens,
                removed_at__isnull=True,
                job__deleted_at__isnull=True,
                job__stop_requested_at__isnull=True,
                job__state=JobState.RUNNING,
            ).values_list("token", flat=True)
        )
    finally:
        close_old_connections()


def token_from_host(host: str, domain: str) -> str | None:
    """``abc123.<domain>`` -> ``abc123``; anything else (another host, a nested name) -> None."""
    host = host.strip().lower().rstrip(".")
    suffix = "." + domain.lower()
    if not host.endswith(suffix):
        return None
    token = host[: -len(suffix)]
    if not token or len(token) > 64 or not token.isalnum():
        return None
    return token


def _read_head(sock: socket.socket) -> bytes | None:
    """The first request's head (through the blank line) plus what came after it; None if none."""
    sock.settimeout(HEAD_TIMEOUT_SECONDS)
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            return None
        chunk = sock.recv(16384)
        if not chunk:
            return None
        data += chunk
    sock.settimeout(None)
    return bytes(data)


def _host(head: bytes) -> str:
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _sep, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode("latin-1")
    return ""


def _language(head: bytes) -> str:
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _sep, value = line.partition(b":")
        if name.strip().lower() == b"accept-language" and value.strip().lower().startswith(b"zh"):
            return "zh-hans"
    return "en"


def page(status: int, title: str, message: str) -> bytes:
    """A small HTML answer of the proxy's own (the connection then closes)."""
    body = (
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>{html.escape(title)}</title>"
        "<body style='font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;"
        f"padding:0 1rem'><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
    ).encode()
    reason = {404: "Not Found", 502: "Bad Gateway", 503: "Service Unavailable", 400: "Bad Request"}
    return (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class Registry:
    """Open relays by token, so a removed port or an ended job cuts them within a check."""

    def __init__(self, still_open: Callable[[set[str]], set[str]]):
        self._still_open = still_open
        self._lock = threading.Lock()
        self._relays: dict[str, set[Relay]] = {}

    def add(self, relay: Relay) -> None:
        with self._lock:
            self._relays.setdefault(relay.target.token, set()).add(relay)

    def remove(self, relay: Relay) -> None:
        with self._lock:
            relays = self._relays.get(relay.target.token)
            if relays is not None:
                relays.discard(relay)
                if not relays:
                    del self._relays[relay.target.token]

    def check(self) -> int:
        """Cut the relays whose token no longer leads anywhere; returns how many."""
        with self._lock:
            tokens = set(self._relays)
        if not tokens:
            return 0
        gone = tokens - self._still_open(tokens)
        cut = 0
        for token in gone:
            with self._lock:
                relays = list(self._relays.get(token, ()))
            for relay in relays:
                relay.cut()
                cut += 1
        return cut

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(REVOKE_CHECK_SECONDS):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive a database hiccup
                log.warning("port proxy: revocation check failed", exc_info=True)


class Relay:
    """One client connection relayed to one port inside a job."""

    def __init__(self, client: socket.socket, target: Target, stream: PortStream):
        self.client = client
        self.target = target
        self.stream = stream
        self._cut = threading.Event()

    def cut(self) -> None:
        """End both directions now (the port was removed or the job ended)."""
        self._cut.set()
        self.stream.close()
        with contextlib.suppress(OSError):
            self.client.shutdown(socket.SHUT_RDWR)

    def run(self, first: bytes) -> None:
        # Where the driver's stream is a plain socket (the local agent's), the
        # bytes move in the kernel (splice): about twice the throughput of
        # reading them into Python on a busy 2-core machine (docs/benchmarks.md).
        raw = self.stream.raw_socket()
        up = threading.Thread(target=self._client_to_port, args=(first, raw), daemon=True)
        up.start()
        try:
            if raw is not None:
                splice.pump(raw, self.client)
            else:
                while True:
                    data = self.stream.read(CHUNK)
                    if not data:
                        break
                    self.client.sendall(data)
            with contextlib.suppress(OSError):
                self.client.shutdown(socket.SHUT_WR)
        except OSError:
            self.stream.close()
        up.join()

    def _client_to_port(self, first: bytes, raw: socket.socket | None) -> None:
        try:
            self.stream.write(first)
            if raw is not None:
                splice.pump(self.client, raw)
            else:
                while True:
                    data = self.client.recv(CHUNK)
                    if not data:
                        break
                    self.stream.write(data)
            self.stream.close_write()
        except (OSError, DriverError):
            # The browser went away or the port closed: the other pump ends too.
            self.stream.close()


class PortProxy(socketserver.ThreadingTCPServer):
    """The listening side: one thread a connection, a watcher cutting revoked relays."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        *,
        domain: str,
        find: Callable[[str], Target | None] = lookup,
        still_open: Callable[[set[str]], set[str]] = open_tokens,
        connect: Callable[..., PortStream] | None = None,
    ):
        self.domain = domain
        self.find = find
        self.connect = connect or (lambda **kw: cluster.get_driver().connect_port(**kw))
        self.registry = Registry(still_open)
        self._stop = threading.Event()
        super().__init__(address, _Handler)
        self._watcher = threading.Thread(
            target=self.registry.watch, args=(self._stop,), daemon=True
        )
        self._watcher.start()

    def server_close(self) -> None:
        self._stop.set()
        super().server_close()

    def serve(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            head = _read_head(client)
        except OSError:
            return
        if head is None:
            return
        with translation.override(_language(head)):
            answer = self._route(client, head)
        if answer is not None:
            with contextlib.suppress(OSError):
                client.sendall(answer)

    def _route(self, client: socket.socket, head: bytes) -> bytes | None:
        token = token_from_host(_host(head), self.domain)
        target = self.find(token) if token else None
        if target is None:
            return page(
                404,
                _("No such port"),
                _("This address leads nowhere: the port was removed, or its job ended."),
            )
        if not target.running:
            return page(
                503,
                _("The job is not running yet"),
                _("Job #%(job)s is still starting; reload this page in a moment.")
                % {"job": target.job_id},
            )
        try:
            stream = self.connect(name=target.workload, port=target.port)
        except DriverError as exc:
            if exc.code == "connection_refused":
                return page(
                    502,
                    _("Nothing is listening yet"),
                    _(
                        "Nothing is listening on port %(port)s in job #%(job)s yet — your "
                        "server must listen on 0.0.0.0 (e.g. --ip 0.0.0.0 or --listen "
                        "0.0.0.0), or it is still starting."
                    )
                    % {"port": target.port, "job": target.job_id},
                )
            if exc.code == "not_running":
                return page(
                    404, _("No such port"), _("Job #%(job)s has ended.") % {"job": target.job_id}
                )
            log.warning("port proxy: cannot reach %s:%s: %s", target.workload, target.port, exc)
            return page(
                503,
                _("The job cannot be reached"),
                _("The platform cannot reach job #%(job)s right now; try again in a moment.")
                % {"job": target.job_id},
            )
        relay = Relay(client, target, stream)
        self.registry.add(relay)
        started = time.monotonic()
        try:
            relay.run(head)
        finally:
            self.registry.remove(relay)
            stream.close()
            log.debug(
                "port proxy: %s closed after %.1f s", target.token[:6], time.monotonic() - started
            )
        return None


class _Handler(socketserver.BaseRequestHandler):
    server: PortProxy

    def handle(self) -> None:
        self.server.serve(self.request)
