"""Local backend: workloads are sandboxed processes on the portal's own host.

SPEC §9: each user's storage is a directory under ``LOCAL_VOLUMES_DIR``
standing in for /root; each workload runs as an unprivileged uid in a
bubblewrap sandbox (:mod:`aladdin.cluster.sandbox`). The processes belong
to the agent (:mod:`aladdin.cluster.agent`, ``manage.py cluster_agent``),
not to web or worker processes: this driver is only its client, one short
connection per call over the agent's Unix socket, speaking the typed
messages of :mod:`aladdin.cluster.protocol` (the agent's refusals arrive as
error codes and are raised as the matching driver exceptions).

An unreachable agent is a ``DriverError(permanent=False)``: Celery retries
and the reconciler catches up once ``make run`` has it back.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from . import protocol
from .base import (
    Capabilities,
    ClusterDriver,
    DiskSpace,
    DriverError,
    ExecSession,
    PortStream,
    Resources,
    Terminal,
    WorkloadMetrics,
    WorkloadSpec,
    WorkloadStatus,
    check_port,
)
from .images import ImageRecipe, ImageState
from .protocol import AgentError

AGENT_DOWN = "the local agent is not running (make run starts it)"
CONNECT_TIMEOUT = 2
CALL_TIMEOUT = 15
# What one recv asks of the agent's socket: a frame of exec output is up to
# ~350 KiB of JSON (agent/execs.py READ_CHUNK, base64).
RECV_CHUNK = 256 * 1024


class _Connection:
    """One connection to the agent: protocol frames (JSON lines) in both directions."""

    def __init__(self, path: Path, timeout: float):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CONNECT_TIMEOUT)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise DriverError(f"{AGENT_DOWN}: {exc}", permanent=False) from exc
        self.sock.settimeout(timeout)
        self.buffer = bytearray()
        self.answer: dict[str, Any] = {}  # a stream's accepting answer (see _open_stream)

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(protocol.encode_line(message))

    def receive(self) -> dict[str, Any] | None:
        """The next message; None when the agent closed the connection. Raises ValueError, OSError."""
        # Only the new bytes are searched for the end of the line: a frame of
        # output is a few hundred KiB, read in several pieces.
        end = self.buffer.find(b"\n")
        while end < 0:
            chunk = self.sock.recv(RECV_CHUNK)
            if not chunk:
                return None
            start = len(self.buffer)
            self.buffer += chunk
            end = self.buffer.find(b"\n", start)
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        return protocol.decode_line(line)

    def close(self) -> None:
        self.sock.close()


def _unreachable(exc: BaseException) -> DriverError:
    return DriverError(f"{AGENT_DOWN}: {exc!r}", permanent=False)


def _answer_checked(answer: dict[str, Any] | None) -> dict[str, Any]:
    """``answer`` if it is a success; the refusal it carries as a DriverError otherwise."""
    if answer is None:
        raise DriverError(f"{AGENT_DOWN}: it closed the connection", permanent=False)
    try:
        protocol.raise_for_error(answer)
    except AgentError as exc:
        raise protocol.driver_error(exc) from None
    return answer


class LocalTerminal(Terminal):
    """A PTY in a workload's sandbox, relayed by the agent (the protocol's terminal stream).

    :meth:`read` raises ``TimeoutError`` when nothing arrived within
    ``timeout``; it returns ``b""`` once the shell has exited.
    """

    def __init__(self, connection: _Connection):
        self._conn = connection
        self._closed = False
        self.exit_code: int | None = None

    def read(self, timeout: float | None = None) -> bytes:
        if self._closed:
            return b""
        self._conn.sock.settimeout(timeout)
        while True:
            try:
                message = self._conn.receive()
                decoded = protocol.decode_terminal_output(message) if message else None
            except TimeoutError:
                raise
            except (OSError, ValueError, AgentError):
                decoded = None
            if decoded is None or isinstance(decoded, protocol.TerminalExit):
                self.exit_code = decoded.code if decoded else None
                self.close()
                return b""
            if decoded.data:
                return decoded.data

    def _send(self, message: protocol.TerminalInput | protocol.TerminalResize) -> None:
        if self._closed:
            raise DriverError("the terminal is closed", permanent=True)
        try:
            self._conn.send(message.to_wire())
        except OSError as exc:
            raise DriverError(f"the terminal connection broke: {exc}") from exc

    def write(self, data: bytes) -> None:
        self._send(protocol.TerminalInput(data))

    def resize(self, *, rows: int, cols: int) -> None:
        self._send(protocol.TerminalResize(int(rows), int(cols)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._conn.send(protocol.TerminalClose().to_wire())
        self._conn.close()


class LocalExecSession(ExecSession):
    """A command in a workload's sandbox, relayed by the agent (the protocol's exec stream).

    One thread reads (:meth:`read`), others may write, resize and close:
    sends and receives use the socket's two directions independently, and
    :meth:`close` shuts the socket down rather than closing it under a
    reader (see :class:`LogStream`).
    """

    def __init__(self, connection: _Connection, request_type: type):
        self._conn = connection
        self._send_lock = threading.Lock()
        self._closed = False
        self._ended = False
        self.exit_code: int | None = None
        # Binary frames when the agent agreed (the driver always asks); an
        # agent of an earlier release answers a plain Done: JSON lines.
        started = protocol.decode_answer(request_type, connection.answer)
        self.binary = bool(started.binary) and started.binary_version == protocol.BINARY_VERSION
        self._reader: protocol.ExecOutputReader | None = None  # see output_fd

    def read(self, timeout: float | None = None) -> tuple[int, bytes]:
        while not self._ended:
            self._conn.sock.settimeout(timeout)
            decoded: protocol.ExecOutput | protocol.TerminalExit | None
            try:
                decoded = self._receive()
            except TimeoutError:
                raise
            except (OSError, ValueError, AgentError):
                decoded = None
            if decoded is None or isinstance(decoded, protocol.TerminalExit):
                self.exit_code = decoded.code if decoded else None
                self._ended = True
                self.close()
                break
            if decoded.data:
                return decoded.stream, decoded.data
        return 0, b""

    def ready(self) -> bool:
        # A frame's header already here, or bytes waiting on the socket: the
        # agent sends whole frames, so the rest of one is in flight at most.
        if self._ended or len(self._conn.buffer) >= protocol.FRAME_HEADER.size:
            return True
        try:
            return bool(select.select([self._conn.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # read() reports the broken stream

    def output_fd(self) -> int | None:
        # Only binary frames can be decoded piece by piece (JSON lines, an
        # older agent's, stay with read() in a thread). Blocking sends (the
        # writer thread's) and reads that never wait (MSG_DONTWAIT) share
        # the socket: its timeout applies to both directions.
        if not self.binary or self._ended:
            return None
        self._conn.sock.settimeout(None)
        self._reader = protocol.ExecOutputReader()
        return self._conn.sock.fileno()

    def read_available(self, limit: int) -> list[tuple[int, bytes | memoryview]]:
        reader = self._reader
        assert reader is not None, "output_fd() first"
        if self._ended:
            return [(0, b"")]
        conn = self._conn
        out: list[tuple[int, bytes | memoryview]] = []
        ended = False
        try:
            if conn.buffer:  # frames that arrived with the answer
                pending, conn.buffer = bytes(conn.buffer), bytearray()
                out.extend(reader.feed(pending))
            if reader.exit is None:
                chunk = conn.sock.recv(limit, socket.MSG_DONTWAIT)
                ended = not chunk
                out.extend(reader.feed(chunk))
        except BlockingIOError:
            pass  # nothing more yet
        except (OSError, ValueError, AgentError):
            ended = True  # a broken stream ends as read() reports it: no exit status
        if ended or reader.exit is not None:
            self.exit_code = reader.exit.code if reader.exit is not None else None
            self._ended = True
            out.append((0, b""))
        return out

    def _receive(self) -> protocol.ExecOutput | protocol.TerminalExit | None:
        """The next output message; None when the stream ended without one."""
        if not self.binary:
            message = self._conn.receive()
            return protocol.decode_exec_output(message) if message else None
        while True:
            frame = self._receive_frame()
            if frame is None:
                return None
            decoded = protocol.decode_exec_output_frame(*frame)
            if decoded is not None:  # an unknown kind is skipped
                return decoded

    def _receive_frame(self) -> tuple[int, bytes] | None:
        # Partial frames stay in the connection's buffer, so a read that
        # timed out loses nothing; bytearray drops consumed bytes from its
        # front without moving the rest.
        conn, size = self._conn, protocol.FRAME_HEADER.size
        buffer = conn.buffer
        while len(buffer) < size:
            if not self._fill(RECV_CHUNK):
                return None
        kind, length = protocol.frame_header(buffer[:size])
        end = size + length
        while len(buffer) < end:
            if not self._fill(max(RECV_CHUNK, end - len(buffer))):
                return None
        payload = bytes(buffer[size:end])
        del buffer[:end]
        return kind, payload

    def _fill(self, size: int) -> bool:
        chunk = self._conn.sock.recv(size)
        self._conn.buffer += chunk
        return bool(chunk)

    def _send(
        self, message: protocol.TerminalInput | protocol.ExecEof | protocol.TerminalResize
    ) -> None:
        wire = (
            protocol.exec_input_frame(message)
            if self.binary
            else protocol.encode_line(message.to_wire())
        )
        with self._send_lock:
            if self._closed:
                raise DriverError("the session is closed", permanent=True)
            try:
                self._conn.sock.sendall(wire)
            except OSError as exc:
                raise DriverError(f"the exec connection broke: {exc}") from exc

    def write(self, data: bytes) -> None:
        self._send(protocol.TerminalInput(data))

    def close_stdin(self) -> None:
        self._send(protocol.ExecEof())

    def resize(self, *, rows: int, cols: int) -> None:
        self._send(protocol.TerminalResize(int(rows), int(cols)))

    def close(self) -> None:
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
            close = protocol.TerminalClose()
            with contextlib.suppress(OSError):
                if self.binary:
                    self._conn.sock.sendall(protocol.exec_input_frame(close))
                else:
                    self._conn.send(close.to_wire())
        # Wakes a reader blocked in recv; the fd is closed by the garbage
        # collector once no thread uses it (never under a reader).
        with contextlib.suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_RDWR)


class LocalPortStream(PortStream):
    """A port inside a workload, relayed by the agent (raw bytes after ``connect_port``'s Done).

    :meth:`close` shuts the socket down rather than closing it under a
    reader (see :class:`LogStream`).
    """

    def __init__(self, connection: _Connection):
        self._conn = connection
        # Bytes of the port that arrived with the Done line come first.
        self._pending = bytes(connection.buffer)
        connection.buffer = bytearray()
        connection.sock.settimeout(None)
        self._closed = False

    def read(self, size: int = 65536) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        try:
            return self._conn.sock.recv(size)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        if self._closed:
            raise DriverError("the port connection is closed", permanent=True)
        try:
            self._conn.sock.sendall(data)
        except OSError as exc:
            raise DriverError(f"the port connection broke: {exc}") from exc

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_RDWR)

    def raw_socket(self) -> socket.socket | None:
        # After the Done line the agent relays raw bytes: the socket is the
        # stream, once the bytes that came with Done are read.
        return None if self._pending else self._conn.sock


class LogStream(Iterator[bytes]):
    """A workload's output as the agent pushes it (its ``follow`` op); see ``follow_logs``.

    :meth:`close` may be called from any thread: it shuts the socket down,
    which wakes a ``__next__`` blocked in ``recv`` (it then ends), and the
    agent's thread sees the hang-up and ends too. A stream that breaks
    without the agent's end message raises DriverError.
    """

    def __init__(self, connection: _Connection):
        self._conn = connection
        self._lock = threading.Lock()
        self._closed = False
        self._reading = False
        self.offset: int | None = None  # the agent's byte offset after the last chunk

    def __iter__(self) -> LogStream:
        return self

    def __next__(self) -> bytes:
        with self._lock:
            if self._closed:
                raise StopIteration
            self._reading = True
        try:
            while True:
                try:
                    message = self._conn.receive()
                    decoded = protocol.decode_log_message(message) if message else None
                except (OSError, ValueError, AgentError) as exc:
                    if self._closed:
                        raise StopIteration from None
                    raise DriverError(f"the log stream broke: {exc!r}") from exc
                if decoded is None:
                    if self._closed:
                        raise StopIteration
                    raise DriverError(f"{AGENT_DOWN}: it closed the log stream", permanent=False)
                self.offset = decoded.offset
                if isinstance(decoded, protocol.LogEnd):
                    self._finish()
                    raise StopIteration
                if decoded.data:
                    return decoded.data
        except BaseException:
            self._finish()
            raise
        finally:
            with self._lock:
                self._reading = False
                if self._closed:
                    self._conn.close()

    def _finish(self) -> None:
        with self._lock:
            self._closed = True

    def close(self) -> None:
        with self._lock:
            if self._closed and not self._reading:
                return
            self._closed = True
            reading = self._reading
        if reading:
            # Never close the fd under a thread blocked on it (it could be
            # reused); shutdown wakes that thread, which closes it.
            with contextlib.suppress(OSError):
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        else:
            self._conn.close()


class LocalDriver(ClusterDriver):
    name = "local"
    # The agent holds a later worker until worker 0's sandbox has its network
    # namespace (agent/workloads.py, _group_leader).
    starts_workers_together = True
    # Ask for the protocol's binary exec frames (JSON and base64 cost a third
    # of an scp's CPU); tests turn it off to speak JSON as older portals do.
    exec_binary = True

    def __init__(self, socket_path: Path | None = None):
        # Tests point a driver at their own agent; the portal uses the setting.
        self._socket_path = Path(socket_path) if socket_path else None

    @property
    def socket_path(self) -> Path:
        return self._socket_path or settings.LOCAL_AGENT_SOCKET

    @property
    def volumes_dir(self) -> Path:
        return settings.LOCAL_VOLUMES_DIR

    def _call(self, op: str, *, timeout: float = CALL_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """One request and its answer at the wire level (JSON objects); a refusal raises.

        Every operation goes through here, so a test can stand in for the
        agent by replacing this method; :meth:`_ask` is the typed layer on top.
        """
        conn = _Connection(self.socket_path, timeout)
        try:
            conn.send({"op": op, **fields})
            answer = conn.receive()
        except (OSError, ValueError) as exc:
            raise _unreachable(exc) from exc
        finally:
            conn.close()
        return _answer_checked(answer)

    def _ask(self, request: protocol.Request, *, timeout: float = CALL_TIMEOUT) -> Any:
        """``request``'s typed answer (protocol.ANSWERS). Raises DriverError."""
        fields = protocol.encode_request(request)
        answer = self._call(fields.pop("op"), timeout=timeout, **fields)
        try:
            return protocol.decode_answer(type(request), answer)
        except AgentError as exc:
            raise DriverError(
                f"the agent's answer to {request.op} is not understood: {exc}"
            ) from exc

    def _open_stream(
        self,
        request: protocol.Follow
        | protocol.OpenTerminal
        | protocol.Exec
        | protocol.OpenFiles
        | protocol.ConnectPort,
    ) -> _Connection:
        """A connection on which ``request`` was accepted; what follows is its stream."""
        conn = _Connection(self.socket_path, CALL_TIMEOUT)
        try:
            conn.send(protocol.encode_request(request))
            conn.answer = _answer_checked(conn.receive())
        except (OSError, ValueError) as exc:
            conn.close()
            raise _unreachable(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def health(self) -> dict:
        try:
            self.volumes_dir.mkdir(parents=True, exist_ok=True)
            # The volumes directory must be writable: every workload needs it.
            with tempfile.NamedTemporaryFile(dir=self.volumes_dir, prefix=".health-"):
                pass
            free = shutil.disk_usage(self.volumes_dir).free
        except OSError as exc:
            return {"ok": False, "driver": self.name, "error": f"volumes directory: {exc}"}
        result = {
            "ok": True,
            "driver": self.name,
            "volumes_dir": str(self.volumes_dir),
            "free_gib": round(free / 2**30, 1),
            # The disk guard's numbers (aladdin/workloads/disk.py), for /metrics.
            "disk_free_bytes": free,
            "disk_reserve_bytes": int(settings.LOCAL_DISK_RESERVE_MIB) * 2**20,
            "insecure": bool(settings.ALADDIN_LOCAL_INSECURE),
            "pid": os.getpid(),
        }
        try:
            agent: protocol.HealthInfo = self._ask(protocol.Health(), timeout=3)
        except DriverError as exc:
            return {**result, "ok": False, "agent": "unreachable", "error": str(exc)}
        result.update(
            agent="running",
            agent_pid=agent.pid,
            sandbox="bubblewrap" if agent.sandbox else "unavailable",
            running_workloads=agent.running,
            # {"virtual": bool, "models": {"80g": {"total": 4, "free": 2}, ...}}
            gpus=protocol.to_wire(agent.gpus),
            # Hard caps per volume (project quotas), or why they are off (issue 14).
            project_quota=agent.project_quota,
            project_quota_reason=agent.project_quota_reason,
        )
        if not agent.sandbox:
            # The dashboard says so (SPEC §9): single user, or insecure.
            result["sandbox_reason"] = agent.sandbox_reason
            result["single_user_id"] = agent.single_user_id
        # Memory, CPU and process limits per workload (SPEC §9), or why there are none.
        result["limits"] = agent.limits or "off"
        if not agent.limits:
            result["limits_reason"] = agent.limits_reason or "the agent does not enforce limits"
        if agent.sandbox:
            # Outbound network with the egress policy (SPEC §9), or loopback
            # only and why. Unsandboxed workloads share the host's network:
            # the sandbox notice covers them.
            result["network"] = agent.network or "off"
            if not agent.network:
                result["network_reason"] = agent.network_reason or "the agent gives no network"
        return result

    def capabilities(self) -> Capabilities:
        """The agent's typed facts (protocol.HealthInfo); unknown when it does not answer."""
        try:
            agent: protocol.HealthInfo = self._ask(protocol.Health(), timeout=3)
        except DriverError as exc:
            return Capabilities.unknown(str(exc))
        gpus = agent.gpus
        real_cards = gpus is not None and bool(gpus.models) and not gpus.virtual
        return Capabilities(
            isolation="bubblewrap" if agent.sandbox else "",
            isolation_reason=agent.sandbox_reason,
            insecure=agent.insecure,
            limits=agent.limits,
            limits_reason=agent.limits_reason
            or ("" if agent.limits else "the agent does not enforce limits"),
            # Unsandboxed workloads share the host's network: the isolation
            # notice covers them.
            network=(agent.network if agent.sandbox else "host"),
            network_reason=(
                agent.network_reason or "the agent gives no network"
                if agent.sandbox and not agent.network
                else ""
            ),
            # NVML on real cards (aladdin.cluster.monitor); virtual cards report nothing.
            gpu_metrics=real_cards,
            gpu_metrics_reason="" if real_cards else "no real cards on this host (virtual cards)",
            volume_quota=agent.project_quota,
            volume_quota_reason=agent.project_quota_reason,
        )

    def ensure_user_space(self, *, user_id: int, storage_gib: int, quota: Resources) -> None:
        """Create the volume directory (owned by the user's uid, 0700).

        ``storage_gib`` becomes the volume's hard cap where the volumes'
        filesystem has project quotas (agent/projquota.py); elsewhere the
        portal refuses new workloads over the allowance (SPEC §4.2). The CPU
        and memory quota is the portal's own check before starting.
        """
        self._ask(protocol.EnsureUserSpace(user_id=int(user_id), storage_gib=int(storage_gib)))

    def disk_free(self) -> DiskSpace:
        info: protocol.DiskInfo = self._ask(protocol.DiskFree())
        return DiskSpace(total=info.total, free=info.free)

    def delete_user_space(self, *, user_id: int) -> None:
        self._ask(protocol.DeleteUserSpace(user_id=int(user_id)), timeout=120)

    def storage_usage_bytes(self, *, user_id: int) -> int:
        usage: protocol.UsageInfo = self._ask(protocol.Usage(user_id=int(user_id)), timeout=120)
        return usage.bytes

    # --- images (issue 14): the agent builds them (agent/images.py) ---
    def image_status(self, recipe: ImageRecipe) -> ImageState:
        answer: protocol.ImageStateAnswer = self._ask(protocol.ImageStatus(recipe=recipe))
        return answer.state

    def build_image(self, recipe: ImageRecipe) -> ImageState:
        answer: protocol.ImageStateAnswer = self._ask(protocol.BuildImage(recipe=recipe))
        return answer.state

    def workload_metrics(self, *, name: str, since: datetime | None = None) -> WorkloadMetrics:
        """The agent's samples of ``name`` (agent/monitor.py); "no metrics" from an older agent."""
        try:
            answer: protocol.MetricsAnswer = self._ask(protocol.Metrics(name=name, since=since))
        except DriverError as exc:
            # An agent of an earlier release does not know the operation:
            # it has no metrics to give, which is not the caller's error.
            if exc.code == protocol.ErrorCode.INVALID.value:
                return WorkloadMetrics(name=name)
            raise
        return answer.metrics

    def group_address(self, *, group: str) -> str:
        """The loopback: a Run Task's workers share worker 0's network namespace (agent)."""
        return "127.0.0.1"

    def start_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Raises NoCapacity when a card model asked for has none free (a typed refusal).

        A grouped spec (a Run Task's worker) that the agent started without
        echoing its group was run alone by an agent older than Run Task: it
        is stopped again and refused (permanent) rather than left to wait
        for a rendezvous it cannot reach.
        """
        answer: protocol.StatusAnswer = self._ask(protocol.Start(spec=spec), timeout=45)
        status = answer.status.to_status()
        if spec.group is not None and status.group != spec.group.group:
            with contextlib.suppress(DriverError):
                self.stop_workload(name=spec.name, grace_seconds=1)
            raise DriverError(
                "the local agent is older than Run Task (multi-worker jobs): restart it "
                "(make run) to run this job",
                permanent=True,
                code="invalid",
            )
        return status

    def stop_workload(self, *, name: str, grace_seconds: float = 10) -> WorkloadStatus:
        answer: protocol.StatusAnswer = self._ask(
            protocol.Stop(name=name, grace_seconds=grace_seconds), timeout=grace_seconds + 20
        )
        return answer.status.to_status()

    def workload_status(self, *, name: str) -> WorkloadStatus:
        answer: protocol.StatusAnswer = self._ask(protocol.Status(name=name))
        return answer.status.to_status()

    def forget_workload(self, *, name: str) -> None:
        self._ask(protocol.Forget(name=name))

    def list_workloads(self) -> list[WorkloadStatus]:
        answer: protocol.ListAnswer = self._ask(protocol.ListWorkloads())
        return [record.to_status() for record in answer.workloads]

    def follow_logs(self, *, name: str, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        if not follow:
            return self._read_logs(name=name, offset=offset)
        # One connection for the whole follow: the agent pushes each chunk as
        # it finds it (its `follow` op) instead of being asked every 0.5 s.
        conn = self._open_stream(protocol.Follow(name=name, offset=int(offset)))
        conn.sock.settimeout(None)  # a quiet workload may print nothing for hours
        return LogStream(conn)

    def _read_logs(self, *, name: str, offset: int) -> Iterator[bytes]:
        while True:
            chunk: protocol.LogChunk = self._ask(protocol.Logs(name=name, offset=offset))
            if not chunk.data:
                return
            offset = chunk.offset
            yield chunk.data

    def delete_logs(self, *, name: str) -> None:
        self._ask(protocol.DeleteLogs(name=name))

    def open_terminal(self, *, name: str, rows: int = 24, cols: int = 80) -> Terminal:
        return LocalTerminal(
            self._open_stream(protocol.OpenTerminal(name=name, rows=rows, cols=cols))
        )

    def exec_in_workload(
        self,
        *,
        name: str,
        command: list[str] | None = None,
        tty: bool = False,
        env: dict[str, str] | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> ExecSession:
        request = protocol.Exec(
            name=name,
            command=list(command or []),
            tty=bool(tty),
            env=dict(env or {}),
            rows=int(rows),
            cols=int(cols),
            binary=self.exec_binary,
        )
        return LocalExecSession(self._open_stream(request), protocol.Exec)

    def open_files(self, *, user_id: int) -> ExecSession:
        """The agent's ``files`` stream: sftp-server in a sandbox over the volume (agent/files.py)."""
        request = protocol.OpenFiles(user_id=int(user_id), binary=self.exec_binary)
        return LocalExecSession(self._open_stream(request), protocol.OpenFiles)

    def connect_port(self, *, name: str, port: int) -> PortStream:
        request = protocol.ConnectPort(name=name, port=check_port(port))
        return LocalPortStream(self._open_stream(request))
