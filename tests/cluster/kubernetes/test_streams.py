"""Pod exec, terminals and port-forward over websockets, through the real client (issue 19).

Against :class:`ChannelServer`, a tiny API server that speaks only the
websocket channel protocols of the ``exec`` and ``portforward``
subresources (v5 and v4, the upgrade refusals with their ``Status``
bodies) and runs real processes on this host for them: the framing, the
protocol choice and the refusals are ours to get right, whatever the
Kubernetes stub in ``tests/kubestub`` grows into.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import shutil
import socket
import struct
import subprocess
import termios
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.sync.server import serve

from aladdin.cluster.base import DriverError
from aladdin.cluster.kubernetes import streams

NS = "u-1"


def status(code: int, reason: str, message: str) -> Response:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
    ).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(code, reason, headers, body)


class ChannelServer:
    """The exec and port-forward websockets of an API server, for pods that are this host.

    ``pods`` maps a pod name to its phase; only "Running" ones take an exec.
    ``protocols``: the channel protocols it speaks, best first.
    ``requests`` records each upgrade's path, query and headers.
    """

    def __init__(self, protocols=("v5.channel.k8s.io", "v4.channel.k8s.io")):
        self.protocols = list(protocols)
        self.pods = {"web": "Running", "done": "Succeeded"}
        self.requests: list[dict] = []
        self.server = serve(
            self.handle,
            "127.0.0.1",
            0,
            process_request=self.admit,
            select_subprotocol=self.choose,
            compression=None,
            max_size=None,
        )
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def api_client(self) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.port}"
        configuration.api_key = {"authorization": "test-token"}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    def close(self) -> None:
        self.server.shutdown()

    # --- the upgrade ---------------------------------------------------------------
    def choose(self, connection, offered):
        for protocol in self.protocols:
            if protocol in offered:
                return protocol
        return None

    def admit(self, connection, request):
        url = urlsplit(request.path)
        parts = url.path.strip("/").split("/")
        self.requests.append(
            {"path": url.path, "query": parse_qs(url.query), "headers": dict(request.headers)}
        )
        if len(parts) != 7 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "pods":
            return status(404, "NotFound", "the server could not find the requested resource")
        pod, sub = parts[5], parts[6]
        if pod == "broken":
            return status(500, "InternalError", "etcd is having a moment")
        phase = self.pods.get(pod)
        if phase is None:
            return status(404, "NotFound", f'pods "{pod}" not found')
        if phase != "Running":
            return status(
                400,
                "BadRequest",
                f"cannot {sub} into a container in a completed pod; current phase is {phase}",
            )
        return None

    def handle(self, connection) -> None:
        url = urlsplit(connection.request.path)
        query = parse_qs(url.query)
        if url.path.endswith("/exec"):
            Exec(connection, query).run()
        else:
            PortForward(connection, int(query["ports"][0])).run()


class Exec:
    """One exec: the command's pipes (or a pty) relayed to and from the channels."""

    def __init__(self, connection, query):
        self.ws = connection
        self.send_lock = threading.Lock()
        self.tty = query.get("tty") == ["true"]
        self.v5 = connection.subprotocol == "v5.channel.k8s.io"
        argv = query["command"]
        self.proc = None
        try:
            self.start(argv)
        except FileNotFoundError:
            # What the runtime answers for a command it cannot start.
            message = f'exec: "{argv[0]}": executable file not found in $PATH'
            result = {"status": "Failure", "reason": "InternalError", "message": message}
            self.send(3, json.dumps(result).encode())
            self.ws.close()

    def start(self, argv: list[str]) -> None:
        if self.tty:
            self.master, slave = pty.openpty()
            self.proc = subprocess.Popen(
                argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
            os.close(slave)
            self.outputs = {self.master: 1}
            self.stdin_fd = self.master
        else:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            self.outputs = {self.proc.stdout.fileno(): 1, self.proc.stderr.fileno(): 2}
            self.stdin_fd = self.proc.stdin.fileno()

    def send(self, channel: int, data: bytes) -> None:
        with self.send_lock, contextlib.suppress(ConnectionClosed):
            self.ws.send(bytes([channel]) + data)

    def pump_output(self) -> None:
        fds = set(self.outputs)
        while fds:
            ready, _, _ = select.select(list(fds), [], [])
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # a pty's EIO once the shell is gone
                    data = b""
                if data:
                    self.send(self.outputs[fd], data)
                else:
                    fds.discard(fd)
        code = self.proc.wait()
        if code == 0:
            result = {"metadata": {}, "status": "Success"}
        else:
            result = {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        self.send(3, json.dumps(result).encode())
        with contextlib.suppress(ConnectionClosed):
            self.ws.close()

    def run(self) -> None:
        if self.proc is None:
            return
        threading.Thread(target=self.pump_output, daemon=True).start()
        try:
            for message in self.ws:
                channel, payload = message[0], message[1:]
                if channel == 0 and self.stdin_fd is not None:
                    os.write(self.stdin_fd, payload)
                elif channel == 255 and self.v5 and payload == b"\x00" and not self.tty:
                    self.proc.stdin.close()
                    self.stdin_fd = None
                elif channel == 4 and self.tty:
                    size = json.loads(payload)
                    winsize = struct.pack("HHHH", size["Height"], size["Width"], 0, 0)
                    fcntl.ioctl(self.master, termios.TIOCSWINSZ, winsize)
        except ConnectionClosed:
            pass
        finally:
            # A hang-up, as the runtime does it: the command's terminal or stdin goes.
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()


class PortForward:
    """One port-forward: a TCP connection to the port on loopback, on channels 0 and 1."""

    def __init__(self, connection, port: int):
        self.ws = connection
        self.port = port

    def run(self) -> None:
        prefix = struct.pack("<H", self.port)
        self.ws.send(b"\x00" + prefix)
        self.ws.send(b"\x01" + prefix)
        try:
            conn = socket.create_connection(("127.0.0.1", self.port))
        except OSError as exc:
            self.ws.send(
                b"\x01"
                + (
                    f"error forwarding port {self.port} to pod web: failed to connect to "
                    f"localhost:{self.port} inside namespace: dial tcp 127.0.0.1:{self.port}: "
                    f"connect: connection refused ({exc.strerror})"
                ).encode()
            )
            self.ws.close()
            return

        def pump() -> None:
            while data := conn.recv(65536):
                with contextlib.suppress(ConnectionClosed):
                    self.ws.send(b"\x00" + data)
            with contextlib.suppress(ConnectionClosed):
                self.ws.close()

        threading.Thread(target=pump, daemon=True).start()
        try:
            for message in self.ws:
                if message[0] == 0:
                    conn.sendall(message[1:])
        except ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def server():
    stub = ChannelServer()
    yield stub
    stub.close()


def run_all(session, stdin: bytes = b"", timeout: float = 10):
    """(stdout, stderr, exit code) of ``session`` given ``stdin`` and then EOF."""
    session.write(stdin)
    session.close_stdin()
    out = {1: b"", 2: b""}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stream, data = session.read(timeout=timeout)
        if not stream:
            return out[1], out[2], session.exit_code
        out[stream] += data
    raise AssertionError(f"no end within {timeout}s: {out}")


# --- exec ----------------------------------------------------------------------------


def test_exec_gives_stdin_separate_stdout_and_stderr_and_the_exit_code(server):
    session = streams.exec_session(
        server.api_client(),
        namespace=NS,
        pod="web",
        container="main",
        argv=["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"],
    )

    assert run_all(session, b"hello\n") == (b"HELLO\n", b"oops\n", 3)
    assert session.protocol == "v5.channel.k8s.io"
    assert session.read(timeout=1) == (0, b"")  # the end stays the end
    session.close()
    session.close()  # idempotent
    with pytest.raises(DriverError):
        session.write(b"more")


def test_exec_asks_for_the_command_container_and_streams_with_the_bearer_token(server):
    session = streams.exec_session(
        server.api_client(),
        namespace=NS,
        pod="web",
        container="main",
        argv=["printf", "%s", "a b"],
    )
    assert run_all(session) == (b"a b", b"", 0)

    request = server.requests[-1]
    assert request["path"] == f"/api/v1/namespaces/{NS}/pods/web/exec"
    assert request["query"]["command"] == ["printf", "%s", "a b"]
    assert request["query"]["container"] == ["main"]
    assert request["query"]["stderr"] == ["true"]
    assert request["query"]["tty"] == ["false"]
    assert request["headers"]["authorization"] == "Bearer test-token"


def test_exec_output_larger_than_the_buffer_arrives_whole_and_in_order(server):
    session = streams.exec_session(
        server.api_client(),
        namespace=NS,
        pod="web",
        container="main",
        argv=["sh", "-c", "head -c 6000000 /dev/zero | tr '\\0' x; echo end >&2"],
    )
    out, err, code = run_all(session, timeout=20)
    assert (len(out), set(out), err, code) == (6_000_000, {ord("x")}, b"end\n", 0)


def test_a_large_write_reaches_the_command_whole(server):
    session = streams.exec_session(
        server.api_client(), namespace=NS, pod="web", container="main", argv=["wc", "-c"]
    )
    out, _, code = run_all(session, b"y" * 1_000_000)
    assert (out.strip(), code) == (b"1000000", 0)


def test_the_event_loop_hooks_give_the_same_output(server):
    session = streams.exec_session(
        server.api_client(),
        namespace=NS,
        pod="web",
        container="main",
        argv=["sh", "-c", "cat; echo err >&2; exit 4"],
    )
    fd = session.output_fd()
    assert fd is not None
    session.write(b"through the pipe\n")
    session.close_stdin()
    got = {1: b"", 2: b""}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert select.select([fd], [], [], 10)[0], "the descriptor never turned readable"
        items = session.read_available(65536)
        if items and items[-1] == (0, b""):
            for stream, data in items[:-1]:
                got[stream] += bytes(data)
            break
        for stream, data in items:
            got[stream] += bytes(data)
    assert (got[1], got[2], session.exit_code) == (b"through the pipe\n", b"err\n", 4)
    session.close()


def test_close_from_another_thread_ends_a_waiting_read(server):
    session = streams.exec_session(
        server.api_client(), namespace=NS, pod="web", container="main", argv=["sleep", "30"]
    )
    with pytest.raises(TimeoutError):
        session.read(timeout=0.2)
    threading.Timer(0.2, session.close).start()
    started = time.monotonic()
    assert session.read(timeout=10) == (0, b"")
    assert time.monotonic() - started < 5
    assert session.exit_code is None  # hung up: no status


def test_on_a_v4_server_close_stdin_is_refused_clearly_and_the_rest_works():
    old = ChannelServer(protocols=["v4.channel.k8s.io"])
    try:
        session = streams.exec_session(
            old.api_client(),
            namespace=NS,
            pod="web",
            container="main",
            argv=["sh", "-c", "read line; echo got $line; exit 2"],
        )
        assert session.protocol == "v4.channel.k8s.io"
        with pytest.raises(DriverError) as refused:
            session.close_stdin()
        assert refused.value.code == "unsupported"
        assert "v5.channel.k8s.io" in str(refused.value)
        session.write(b"x\n")
        assert session.read(timeout=10) == (1, b"got x\n")
        assert session.read(timeout=10) == (0, b"")
        assert session.exit_code == 2
    finally:
        old.close()


@pytest.mark.parametrize("pod", ["done", "missing"])
def test_exec_into_an_ended_or_missing_pod_is_not_running(server, pod):
    with pytest.raises(DriverError) as refused:
        streams.exec_session(
            server.api_client(), namespace=NS, pod=pod, container="main", argv=["true"]
        )
    assert (refused.value.code, refused.value.permanent) == ("not_running", True)
    expected = "current phase is Succeeded" if pod == "done" else 'pods "missing" not found'
    assert expected in str(refused.value)


def test_an_api_server_error_or_no_server_is_transient(server):
    with pytest.raises(DriverError) as failed:
        streams.exec_session(
            server.api_client(), namespace=NS, pod="broken", container="main", argv=["true"]
        )
    assert (failed.value.code, failed.value.permanent) == ("unavailable", False)
    assert "etcd is having a moment" in str(failed.value)

    server.close()
    with pytest.raises(DriverError) as unreachable:
        streams.exec_session(
            server.api_client(), namespace=NS, pod="web", container="main", argv=["true"]
        )
    assert (unreachable.value.code, unreachable.value.permanent) == ("unavailable", False)


def test_a_command_that_cannot_start_is_a_driver_error_after_no_output(server):
    session = streams.exec_session(
        server.api_client(), namespace=NS, pod="web", container="main", argv=["no-such-command"]
    )
    with pytest.raises(DriverError) as failed:
        session.read(timeout=10)
    assert failed.value.code == "exec_failed"
    assert "executable file not found" in str(failed.value)
    assert session.read(timeout=1) == (0, b"")
    assert session.exit_code is None


# --- terminal ------------------------------------------------------------------------


def read_until(terminal, marker: bytes, timeout: float = 10) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen
        chunk = terminal.read(timeout=left)
        assert chunk, seen
        seen += chunk
    return seen


def test_a_terminal_echoes_what_is_typed_and_follows_resizes(server):
    terminal = streams.terminal(
        server.api_client(),
        namespace=NS,
        pod="web",
        container="main",
        argv=["sh", "-i"],
        rows=30,
        cols=100,
    )
    try:
        terminal.write(b"stty size; echo mark-$((6*7))\n")
        assert b"30 100" in read_until(terminal, b"mark-42")
        terminal.resize(rows=40, cols=120)
        terminal.write(b"stty size; echo mark-$((7*7))\n")
        assert b"40 120" in read_until(terminal, b"mark-49")
        request = server.requests[-1]
        assert request["query"]["tty"] == ["true"]
        assert request["query"]["stderr"] == ["false"]
        terminal.write(b"exit 5\n")
        deadline = time.monotonic() + 10
        while terminal.read(timeout=10) and time.monotonic() < deadline:
            pass
        assert terminal.exit_code == 5
        assert terminal.read() == b""
    finally:
        terminal.close()
        terminal.close()  # idempotent
    with pytest.raises(DriverError):
        terminal.write(b"late\n")


def test_closing_a_terminal_ends_a_read_waiting_in_another_thread(server):
    terminal = streams.terminal(
        server.api_client(), namespace=NS, pod="web", container="main", argv=["sh"]
    )
    threading.Timer(0.3, terminal.close).start()
    deadline = time.monotonic() + 10
    while terminal.read(timeout=10):
        assert time.monotonic() < deadline
    assert time.monotonic() < deadline


def test_a_terminal_into_a_missing_pod_is_not_running(server):
    with pytest.raises(DriverError) as refused:
        streams.terminal(server.api_client(), namespace=NS, pod="gone", container="c", argv=["sh"])
    assert refused.value.code == "not_running"


# --- port-forward ---------------------------------------------------------------------


@contextlib.contextmanager
def listener():
    """A process in the "pod": answers each connection with what it got, upper-cased, at EOF."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve_one(conn: socket.socket) -> None:
        with conn:
            got = b""
            while data := conn.recv(65536):
                got += data
                if got.endswith(b"\n"):
                    conn.sendall(got.upper())
                    if got == b"bye\n":
                        return
                    got = b""

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = sock.accept()
                threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield sock.getsockname()[1]
    finally:
        # Wakes the accept() above: a close alone leaves it listening.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def read_exactly(stream, size: int, timeout: float = 10) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < size:
        assert time.monotonic() < deadline, got
        chunk = stream.read(size - len(got))
        assert chunk, got
        got += chunk
    return got


def test_port_forward_reaches_a_process_listening_in_the_pod(server):
    with listener() as port:
        stream = streams.port_stream(server.api_client(), namespace=NS, pod="web", port=port)
        try:
            stream.write(b"hello pod\n")
            assert read_exactly(stream, 10) == b"HELLO POD\n"
            big = b"z" * 300_000 + b"\n"
            stream.write(big)
            assert read_exactly(stream, len(big)) == big.upper()
            assert server.requests[-1]["query"]["ports"] == [str(port)]
        finally:
            stream.close()
            stream.close()  # idempotent
        assert stream.read() == b""
        with pytest.raises(DriverError):
            stream.write(b"late")


def test_port_forward_ends_when_the_pods_side_closes(server):
    with listener() as port:
        stream = streams.port_stream(server.api_client(), namespace=NS, pod="web", port=port)
        stream.write(b"bye\n")
        assert read_exactly(stream, 4) == b"BYE\n"
        assert stream.read() == b""
        stream.close_write()
        with pytest.raises(DriverError):
            stream.write(b"after close_write")
        stream.close()


def test_port_forward_to_a_closed_port_is_connection_refused(server):
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # a port that is ours but where nothing listens
        port = bound.getsockname()[1]
        with pytest.raises(DriverError) as refused:
            stream = streams.port_stream(server.api_client(), namespace=NS, pod="web", port=port)
            stream.read()  # where the kubelet's answer came late
    assert (refused.value.code, refused.value.permanent) == ("connection_refused", True)


def test_port_forward_to_a_pod_that_does_not_run_is_not_running(server):
    for pod in ("done", "missing"):
        with pytest.raises(DriverError) as refused:
            streams.port_stream(server.api_client(), namespace=NS, pod=pod, port=80)
        assert (refused.value.code, refused.value.permanent) == ("not_running", True)


def test_port_forward_refuses_a_bad_port_before_asking(server):
    with pytest.raises(DriverError) as refused:
        streams.port_stream(server.api_client(), namespace=NS, pod="web", port=70000)
    assert refused.value.code == "invalid"
    assert server.requests == []


# --- against the API-server stub and its kubelet (tests/kubestub) ----------------------

STUB_PY = "/usr/bin/python3"  # the sandbox binds /root over this host's pyenv interpreter


def stub_pod(name: str, command: list[str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "registry.example/aladdin/python:3.11",
                    "command": command,
                    "volumeMounts": [{"name": "home", "mountPath": "/root"}],
                }
            ],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "home"}}],
        },
    }


def wait_phase(api, namespace: str, name: str, phase: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while api.read_namespaced_pod(name, namespace).status.phase != phase:
        assert time.monotonic() < deadline, f"{name} never reached {phase}"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    """The stub with a running pod ``box``, an echo server ``web`` on ``port`` and an ended ``done``."""
    if shutil.which("bwrap") is None or not os.path.exists(STUB_PY):
        pytest.skip("the stub's kubelet needs bubblewrap and /usr/bin/python3")
    from tests.kubestub.server import KubeStub

    port = free_port()
    echo = (
        "import socket, threading\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\n"
        "def one(c):\n"
        "    while (d := c.recv(65536)): c.sendall(d.upper())\n"
        "    c.close()\n"
        "while True:\n"
        "    c, _ = s.accept(); threading.Thread(target=one, args=(c,)).start()\n"
    )
    with KubeStub(root=tmp_path_factory.mktemp("kubestub")) as stub:
        api_client = client.ApiClient(stub.configuration())
        api = client.CoreV1Api(api_client)
        api.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        api.create_namespaced_pod(NS, stub_pod("box", ["sleep", "300"]))
        api.create_namespaced_pod(NS, stub_pod("web", [STUB_PY, "-c", echo]))
        api.create_namespaced_pod(NS, stub_pod("done", ["true"]))
        for name, phase in (("box", "Running"), ("web", "Running"), ("done", "Succeeded")):
            wait_phase(api, NS, name, phase)
        yield api_client, port
        api_client.close()


def test_stub_exec_gives_stdin_separate_stdout_and_stderr_and_exit_code_3(kube):
    api_client, _ = kube
    session = streams.exec_session(
        api_client,
        namespace=NS,
        pod="box",
        container="main",
        argv=["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"],
    )
    try:
        assert session.protocol == "v5.channel.k8s.io"
        assert run_all(session, b"hello\n") == (b"HELLO\n", b"oops\n", 3)
    finally:
        session.close()


def test_stub_exec_of_a_command_that_succeeds_is_exit_0(kube):
    api_client, _ = kube
    session = streams.exec_session(
        api_client, namespace=NS, pod="box", container="main", argv=["wc", "-c"]
    )
    out, err, code = run_all(session, b"x" * 100_000)
    session.close()
    assert (out.strip(), err, code) == (b"100000", b"", 0)


def test_stub_terminal_echoes_and_follows_resizes(kube):
    api_client, _ = kube
    terminal = streams.terminal(
        api_client, namespace=NS, pod="box", container="main", argv=["sh"], rows=30, cols=100
    )
    try:
        terminal.write(b"stty size; echo mark-$((6*7))\n")
        seen = read_until(terminal, b"mark-42")
        assert b"30 100" in seen
        assert b"echo mark-$((6*7))" in seen  # the terminal echoes what is typed
        terminal.resize(rows=40, cols=120)
        time.sleep(0.1)  # the resize and the keystrokes travel on separate channels
        terminal.write(b"stty size; echo mark-$((7*7))\n")
        assert b"40 120" in read_until(terminal, b"mark-49")
    finally:
        terminal.close()
    assert terminal.read() == b""


@pytest.mark.parametrize("pod", ["done", "missing"])
def test_stub_exec_into_an_ended_or_missing_pod_is_not_running(kube, pod):
    api_client, _ = kube
    with pytest.raises(DriverError) as refused:
        streams.exec_session(api_client, namespace=NS, pod=pod, container="main", argv=["true"])
    assert (refused.value.code, refused.value.permanent) == ("not_running", True)


def test_stub_port_forward_reaches_the_pods_listener_and_a_closed_port_is_refused(kube):
    api_client, port = kube
    deadline = time.monotonic() + 10
    while True:  # the pod's server may still be starting
        try:
            stream = streams.port_stream(api_client, namespace=NS, pod="web", port=port)
            stream.write(b"hello pod\n")
            got = read_exactly(stream, 10)
            break
        except DriverError as exc:
            assert exc.code == "connection_refused" and time.monotonic() < deadline
            time.sleep(0.1)
    try:
        assert got == b"HELLO POD\n"
        stream.write(b"again\n")
        assert read_exactly(stream, 6) == b"AGAIN\n"
    finally:
        stream.close()

    closed = free_port()
    with pytest.raises(DriverError) as refused:
        stream = streams.port_stream(api_client, namespace=NS, pod="web", port=closed)
        stream.read()
    assert (refused.value.code, refused.value.permanent) == ("connection_refused", True)

    with pytest.raises(DriverError) as not_running:
        streams.port_stream(api_client, namespace=NS, pod="missing", port=port)
    assert not_running.value.code == "not_running"


def test_one_thread_writes_while_another_reads(server):
    # cat answers as it reads: neither side finishes unless both run at once,
    # with more in flight than any buffer on the way holds.
    session = streams.exec_session(
        server.api_client(), namespace=NS, pod="web", container="main", argv=["cat"]
    )
    chunk = bytes(range(256)) * 256  # 64 KiB
    total = 10 * 1024 * 1024

    def feed() -> None:
        for _ in range(total // len(chunk)):
            session.write(chunk)
        session.close_stdin()

    writer = threading.Thread(target=feed)
    writer.start()
    received = bytearray()
    while True:
        stream, data = session.read(timeout=20)
        if not stream:
            break
        received += data
    writer.join(10)
    session.close()
    assert (len(received), session.exit_code) == (total, 0)
    assert received[: len(chunk) * 2] == chunk * 2


def test_output_nobody_reads_stays_bounded_and_close_still_ends_it(server):
    session = streams.exec_session(
        server.api_client(), namespace=NS, pod="web", container="main", argv=["yes"]
    )
    deadline = time.monotonic() + 10
    while session._buffered < streams.MAX_BUFFERED:
        assert time.monotonic() < deadline, session._buffered
        time.sleep(0.05)
    first = session._buffered
    time.sleep(0.3)  # yes writes far more than the buffer in that time
    assert streams.MAX_BUFFERED <= first == session._buffered <= streams.MAX_BUFFERED + 65536
    assert session.ready()
    session.close()  # the reader thread, waiting for room, ends too
    session._thread.join(5)
    assert not session._thread.is_alive()


def test_the_descriptor_stays_readable_while_output_is_left_over_the_limit(server):
    session = streams.exec_session(
        server.api_client(),
        namespace=NS,
        pod="web",
        container="main",
        argv=["sh", "-c", "head -c 300000 /dev/zero"],
    )
    fd = session.output_fd()
    got, ended = 0, False
    deadline = time.monotonic() + 10
    while not ended:
        assert time.monotonic() < deadline
        assert select.select([fd], [], [], 5)[0]
        items = session.read_available(1000)  # less than one message
        assert items
        for stream, data in items:
            ended = ended or not stream
            got += len(data)
    assert (got, session.exit_code) == (300000, 0)
    session.close()


def test_stdin_of_a_command_that_already_exited_goes_nowhere_without_error(server):
    session = streams.exec_session(
        server.api_client(), namespace=NS, pod="web", container="main", argv=["true"]
    )
    assert session.read(timeout=10) == (0, b"")  # exited; the server closed the websocket
    session.write(b"too late\n")
    session.close_stdin()
    session.resize(rows=10, cols=10)
    assert session.exit_code == 0
    session.close()
    with pytest.raises(DriverError):
        session.write(b"after close")
