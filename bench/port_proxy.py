"""Benchmark: the port proxy (gpu_jobs/proxy.py) against reaching the same server directly (issue 15).

    .venv/bin/python bench/port_proxy.py [--sizes 256 1024] [--repeats 5] [--requests 2000]
                                         [--no-record]

Starts a private agent (tests/cluster/conftest.py's ``RunningAgent``) and
one sandboxed workload with no recipe whose command is Debian's
``/usr/bin/python3`` running a small HTTP/1.1 server on 0.0.0.0:8888 inside
the sandbox: ``GET /big<MiB>`` answers a file of that size from /root (a
sparse file, sent with ``sendfile``: the server costs as little as it can,
so what is measured is the path), ``GET /small`` a 2-byte body; keep-alive.

One client (this process, the same code on every path) against three paths:

- direct: a socket made in the sandbox's own network namespace (a thread
  of this process joins it with ``setns``, as the agent's connect_port
  does) to 127.0.0.1:8888: the baseline, no relay at all;
- agent: ``LocalDriver.connect_port``, the agent's relay alone (Unix
  socket to the agent, the agent's two pumps, the sandbox's loopback);
- proxy: ``manage.py ports_proxy``'s ``PortProxy`` in its own process on
  127.0.0.1, asked for ``<token>.localhost``: the proxy's head read, its
  relay threads, then connect_port as above. The proxy gets stand-ins for
  its two database look-ups (``find`` answers the workload, ``still_open``
  keeps every token open) and the real driver: the database is a one-off
  cost per connection that the "new connection" line includes only as far
  as the stand-in does.

Throughput: ``GET /big<MiB>`` on a fresh connection, timed from the request
to the last byte, --repeats times per path and size (the paths alternate,
their order rotated each round, after one untimed round); median MiB/s and
the ratio to direct. Latency: --requests keep-alive ``GET /small`` on one
connection per path, each timed; p50/p95 and the p95 added over direct;
and 200 fresh connections each with one request (connect + relay set-up).
Recorded in docs/benchmarks.md (its own section only) unless --no-record.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from benchdocs import record_run  # noqa: E402 - bench/ as a path

sys.path.insert(0, str(REPO))  # the tests' helpers start the agent

from bench.image_start import machine, p95  # noqa: E402
from tests.cluster.conftest import RunningAgent, spec  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Port proxy: a job's port through its URL vs. directly"
INTRO = f"""{SECTION}

Command:

```
make bench-port-proxy    # .venv/bin/python bench/port_proxy.py --sizes 256 1024
```

A private agent runs one sandboxed workload (no recipe: Debian's
`/usr/bin/python3`) serving HTTP/1.1 on 0.0.0.0:8888 inside the sandbox:
a sparse file from /root sent with `sendfile`, and a 2-byte answer. One
client in the bench process reaches it three ways: **direct** (a socket
made in the sandbox's own network namespace, as if the client ran next to
the server: the baseline), **agent** (`LocalDriver.connect_port`: the
agent's relay alone) and **proxy** (`PortProxy` in its own process, asked
for `<token>.localhost`, then connect_port; its two database look-ups are
stand-ins, the driver is real). Throughput: median of the repeats of one
download per path and size on a fresh connection (paths alternate, order
rotated). Latency: keep-alive `GET /small` on one connection per path,
p50/p95, the added p95 = proxy p95 − direct p95; and fresh connections
with one request each (what a browser's first request pays). Goal (issue
15): proxy ≥ 50 % of direct throughput, p95 added latency < 5 ms.
The agent lines say what the agent's relay costs alone; the proxy lines
add the proxy's own hop on top, so their difference is the proxy's cost.
The file is sparse and the server sends it with `sendfile`, so direct is
close to what the sandbox's loopback can carry: a real server (Jupyter's
tornado) is slower, and the relays' share of its time smaller.
"""
PORT = 8888
TOKEN = "benchtoken0123456789"
USER_ID = 1
SMALL_CONNECTIONS = 200

# The server in the sandbox: standard library only (the bare sandbox has
# Debian's python3 and nothing else). Sizes in MiB come as arguments.
SERVER = r"""
import os, socket, sys, threading
sizes = [int(s) for s in sys.argv[1:]]
for mib in sizes:
    with open(f"/root/big{mib}", "wb") as f:
        f.truncate(mib << 20)

def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            if path.startswith("/big"):
                name = "/root/" + path[1:]
                size = os.path.getsize(name)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                with open(name, "rb") as f:
                    conn.sendfile(f)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass
    finally:
        conn.close()

listener = socket.create_server(("0.0.0.0", 8888), backlog=256)
print("listening", flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# The proxy in its own process, as `manage.py ports_proxy` runs it, with
# stand-ins for the database look-ups; argv: port, agent socket, workload.
PROXY = r"""
import sys, django
django.setup()
from aladdin.cluster.local import LocalDriver
from gpu_jobs.proxy import PortProxy, Target
port, agent_socket, workload, token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
driver = LocalDriver(socket_path=agent_socket)
target = Target(token=token, job_id=1, workload=workload, port=8888, running=True)
server = PortProxy(
    ("127.0.0.1", port),
    domain=f"localhost:{port}",  # as PORTS_DOMAIN's default: the Host carries the port
    find=lambda t: target if t == token else None,
    still_open=lambda tokens: tokens,
    connect=driver.connect_port,
)
print("listening", flush=True)
server.serve_forever(poll_interval=0.5)
"""

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


class Conn:
    """What the client needs of a connection: sendall and recv_into (a socket, or the agent's)."""

    def __init__(self, sock: socket.socket, pending: bytes = b""):
        self.sock = sock
        self.pending = pending

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_into(self, buf: memoryview) -> int:
        if self.pending:
            n = min(len(buf), len(self.pending))
            buf[:n] = self.pending[:n]
            self.pending = self.pending[n:]
            return n
        return self.sock.recv_into(buf)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def in_netns(pid: int, port: int) -> Conn:
    """A socket to 127.0.0.1:port made in ``pid``'s network namespace (a thread joins it)."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    out: list = []

    def join() -> None:
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            out.append(socket.create_connection(("127.0.0.1", port)))
        except BaseException as exc:  # noqa: BLE001 - carried to the caller
            out.append(exc)

    import threading

    thread = threading.Thread(target=join)
    thread.start()
    thread.join()
    os.close(fd)
    if isinstance(out[0], BaseException):
        raise out[0]
    out[0].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Conn(out[0])


BUF = memoryview(bytearray(1 << 20))


def request(conn: Conn, path: str, host: str) -> int:
    """Send one GET and read its whole answer; returns the body's length."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        n = conn.recv_into(BUF[:65536])
        if not n:
            raise ConnectionError(f"{path}: closed after {head!r}")
        head += bytes(BUF[:n])
    head, _, rest = head.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise ConnectionError(f"{path}: {head!r}")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    left = length - len(rest)
    while left > 0:
        n = conn.recv_into(BUF[: min(left, len(BUF))])
        if not n:
            raise ConnectionError(f"{path}: closed with {left} bytes to go")
        left -= n
    return length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="MiB")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    from tests.services_plugin import free_port

    base = Path(tempfile.mkdtemp(prefix="aladdin-bench-ports-"))
    os.chmod(base, 0o711)
    (base / "var").mkdir(mode=0o700)
    agent = RunningAgent(base, {})
    proxy: subprocess.Popen | None = None
    name = "bench-port-server"
    try:
        agent.start()
        if not agent.health["sandbox"]:
            raise SystemExit(f"cannot sandbox here: {agent.health['sandbox_reason']}")
        driver = agent.driver
        driver.ensure_user_space(
            user_id=USER_ID, storage_gib=max(args.sizes) // 1024 + 2, quota=None
        )
        command = ["/usr/bin/python3", "-c", SERVER, *map(str, args.sizes)]
        status = driver.start_workload(spec(name, user_id=USER_ID, command=command, kind="job"))
        if status.phase == "failed":
            raise SystemExit(f"the server did not start: {status.reason}")
        record_ = next(r for r in driver._call("list")["workloads"] if r["name"] == name)
        sandbox_pid = record_["sandbox_pid"]

        proxy_port = free_port()
        proxy_log = (base / "proxy.log").open("wb")
        proxy = subprocess.Popen(
            [sys.executable, "-c", PROXY, str(proxy_port), str(agent.socket), name, TOKEN],
            cwd=REPO,
            # Settings as `make run` reads them (DEBUG: no SECRET_KEY needed); no database is used.
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "aladdin.settings",
                "DEBUG": "1",
                "ALADDIN_VAR_DIR": str(base / "var"),
            },
            stdout=proxy_log,
            stderr=subprocess.STDOUT,
        )

        def via_agent() -> Conn:
            stream = driver.connect_port(name=name, port=PORT)
            # After connect_port's Done the agent's socket is the raw stream.
            return Conn(stream._conn.sock, stream._pending)

        def via_proxy() -> Conn:
            sock = socket.create_connection(("127.0.0.1", proxy_port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return Conn(sock)

        paths: dict[str, tuple[Callable[[], Conn], str]] = {
            "direct": (lambda: in_netns(sandbox_pid, PORT), "127.0.0.1:8888"),
            "agent": (via_agent, "127.0.0.1:8888"),
            "proxy": (via_proxy, f"{TOKEN}.localhost:{proxy_port}"),
        }
        # Ready when the server answers through every path (the proxy's Django start too).
        deadline = time.monotonic() + 60
        for label, (connect, host) in paths.items():
            while True:
                try:
                    conn = connect()
                    try:
                        request(conn, "/small", host)
                    finally:
                        conn.close()
                    break
                except Exception as exc:  # noqa: BLE001 - not up yet
                    if time.monotonic() > deadline or (proxy.poll() is not None):
                        raise SystemExit(
                            f"{label} never answered: {exc}\n"
                            + (base / "proxy.log").read_text(errors="replace")
                        ) from exc
                    time.sleep(0.2)

        load_before = os.getloadavg()[0]
        rates: dict[tuple[str, int], list[float]] = {}
        labels = list(paths)
        for round_ in range(args.repeats + 1):
            shift = round_ % len(labels)
            for size in args.sizes:
                for label in labels[shift:] + labels[:shift]:
                    connect, host = paths[label]
                    conn = connect()
                    t0 = time.perf_counter()
                    got = request(conn, f"/big{size}", host)
                    elapsed = time.perf_counter() - t0
                    conn.close()
                    assert got == size << 20, (label, got)
                    if round_:  # the first round warms the page cache, untimed
                        rates.setdefault((label, size), []).append(size / elapsed)

        latencies: dict[str, list[float]] = {}
        fresh: dict[str, list[float]] = {}
        for label, (connect, host) in paths.items():
            conn = connect()
            for _ in range(50):  # warm-up
                request(conn, "/small", host)
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                request(conn, "/small", host)
                times.append(time.perf_counter() - t0)
            conn.close()
            latencies[label] = times
            times = []
            for _ in range(SMALL_CONNECTIONS):
                t0 = time.perf_counter()
                conn = connect()
                request(conn, "/small", host)
                times.append(time.perf_counter() - t0)
                conn.close()
            fresh[label] = times
        load_after = os.getloadavg()[0]
    finally:
        if proxy is not None:
            proxy.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proxy.wait(10)
            if proxy.poll() is None:
                proxy.kill()
        with contextlib.suppress(Exception):
            agent.driver.stop_workload(name=name, grace_seconds=0)
        agent.stop()
        shutil.rmtree(base, ignore_errors=True)

    lines = []
    for size in args.sizes:
        direct = statistics.median(rates[("direct", size)])
        for label in ("agent", "proxy"):
            rate = statistics.median(rates[(label, size)])
            lines.append(
                f"download {size} MiB via {label}: median {rate:.0f} MiB/s; direct "
                f"{direct:.0f} MiB/s; ratio {rate / direct:.0%} of direct"
            )

    def ms(values: list[float]) -> str:
        return f"p50 {statistics.median(values) * 1000:.2f} ms, p95 {p95(values) * 1000:.2f} ms"

    for title, table in (
        (f"small request, keep-alive ({args.requests})", latencies),
        (f"small request, new connection ({SMALL_CONNECTIONS})", fresh),
    ):
        for label in ("agent", "proxy"):
            added = p95(table[label]) - p95(table["direct"])
            lines.append(
                f"{title} via {label}: {ms(table[label])}; direct {ms(table['direct'])}; "
                f"added p95 {added * 1000:.2f} ms"
            )
    for line in lines:
        print(line)
    if not args.no_record:
        record(
            "make bench-port-proxy"
            + ("" if sys.argv[1:] == [] else f' ARGS="{" ".join(sys.argv[1:])}"'),
            lines,
            f"Machine: {machine()}; {args.repeats} repeats; load average {load_before:.1f} "
            f"before, {load_after:.1f} after.",
        )


def record(command: str, lines: list[str], notes: str) -> None:
    """Put this run at the top of this benchmark's section (bench/benchdocs.py)."""
    record_run(section=SECTION, intro=INTRO, command=command, lines=lines, notes=notes)


if __name__ == "__main__":
    main()
