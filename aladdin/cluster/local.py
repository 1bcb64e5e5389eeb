"""Local backend: workloads are sandboxed processes on the portal's own host.

SPEC §9: each user's storage is a directory under ``LOCAL_VOLUMES_DIR``
standing in for /root; each workload runs as an unprivileged uid in a
bubblewrap sandbox (:mod:`aladdin.cluster.sandbox`). The processes belong
to the agent (:mod:`aladdin.cluster.agent`, ``manage.py cluster_agent``),
not to web or worker processes: this driver is only its client, one short
connection per call over the agent's Unix socket (newline-delimited JSON).

An unreachable agent is a ``DriverError(permanent=False)``: Celery retries
and the reconciler catches up once ``make run`` has it back.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from django.conf import settings

from .base import ClusterDriver, DriverError, Resources, Terminal, WorkloadSpec, WorkloadStatus

AGENT_DOWN = "the local agent is not running (make run starts it)"
CONNECT_TIMEOUT = 2
CALL_TIMEOUT = 15


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _status(data: dict) -> WorkloadStatus:
    return WorkloadStatus(
        name=data["name"],
        phase=data["phase"],
        user_id=data.get("user_id"),
        kind=data.get("kind") or "",
        exit_code=data.get("exit_code"),
        reason=data.get("reason") or "",
        started_at=_parse_time(data.get("started_at")),
        finished_at=_parse_time(data.get("finished_at")),
        labels=dict(data.get("labels") or {}),
        gpu_devices=tuple(str(d) for d in data.get("gpu_devices") or ()),
    )


class _Connection:
    """One connection to the agent: JSON lines in both directions."""

    def __init__(self, path: Path, timeout: float):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CONNECT_TIMEOUT)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise DriverError(f"{AGENT_DOWN}: {exc}", permanent=False) from exc
        self.sock.settimeout(timeout)
        self.buffer = b""

    def send(self, obj: dict) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def receive(self) -> dict | None:
        """The next message; None when the agent closed the connection."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


class LocalTerminal(Terminal):
    """A PTY in a workload's sandbox, relayed by the agent (see the agent's protocol).

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
            except TimeoutError:
                raise
            except (OSError, ValueError):
                message = None
            if message is None or "exit" in message:
                self.exit_code = message.get("exit") if message else None
                self.close()
                return b""
            if "data" in message:
                data = base64.b64decode(message["data"])
                if data:
                    return data

    def _send(self, obj: dict) -> None:
        if self._closed:
            raise DriverError("the terminal is closed", permanent=True)
        try:
            self._conn.send(obj)
        except OSError as exc:
            raise DriverError(f"the terminal connection broke: {exc}") from exc

    def write(self, data: bytes) -> None:
        self._send({"data": base64.b64encode(data).decode()})

    def resize(self, *, rows: int, cols: int) -> None:
        self._send({"resize": [int(rows), int(cols)]})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._conn.send({"close": True})
        self._conn.close()


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
                except (OSError, ValueError) as exc:
                    if self._closed:
                        raise StopIteration from None
                    raise DriverError(f"the log stream broke: {exc!r}") from exc
                if message is None:
                    if self._closed:
                        raise StopIteration
                    raise DriverError(f"{AGENT_DOWN}: it closed the log stream", permanent=False)
                self.offset = message.get("offset", self.offset)
                if message.get("end"):
                    self._finish()
                    raise StopIteration
                data = base64.b64decode(message.get("data") or "")
                if data:
                    return data
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

    def __init__(self, socket_path: Path | None = None):
        # Tests point a driver at their own agent; the portal uses the setting.
        self._socket_path = Path(socket_path) if socket_path else None

    @property
    def socket_path(self) -> Path:
        return self._socket_path or settings.LOCAL_AGENT_SOCKET

    @property
    def volumes_dir(self):
        return settings.LOCAL_VOLUMES_DIR

    def _call(self, op: str, *, timeout: float = CALL_TIMEOUT, **params) -> dict:
        conn = _Connection(self.socket_path, timeout)
        try:
            conn.send({"op": op, **params})
            answer = conn.receive()
        except (OSError, ValueError) as exc:
            raise DriverError(f"{AGENT_DOWN}: {exc!r}", permanent=False) from exc
        finally:
            conn.close()
        if answer is None:
            raise DriverError(f"{AGENT_DOWN}: it closed the connection", permanent=False)
        if not answer.get("ok"):
            raise DriverError(answer.get("error", "agent error"), permanent=answer["permanent"])
        return answer

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
            "insecure": bool(settings.ALADDIN_LOCAL_INSECURE),
            "pid": os.getpid(),
        }
        try:
            agent = self._call("health", timeout=3)
        except DriverError as exc:
            return {**result, "ok": False, "agent": "unreachable", "error": str(exc)}
        result.update(
            agent="running",
            agent_pid=agent["pid"],
            sandbox="bubblewrap" if agent["sandbox"] else "unavailable",
            running_workloads=agent["running"],
            # {"virtual": bool, "models": {"80g": {"total": 4, "free": 2}, ...}}
            gpus=agent.get("gpus"),
        )
        if not agent["sandbox"]:
            # The dashboard says so (SPEC §9): single user, or insecure.
            result["sandbox_reason"] = agent["sandbox_reason"]
            result["single_user_id"] = agent["single_user_id"]
        return result

    def ensure_user_space(self, *, user_id: int, storage_gib: int, quota: Resources) -> None:
        """Create the volume directory (owned by the user's uid, 0700).

        The size and quota are not enforced locally: the portal checks
        quota before starting, and storage is billed from
        :meth:`storage_usage_bytes`.
        """
        self._call("ensure_user_space", user_id=int(user_id))

    def delete_user_space(self, *, user_id: int) -> None:
        self._call("delete_user_space", user_id=int(user_id), timeout=120)

    def storage_usage_bytes(self, *, user_id: int) -> int:
        return int(self._call("usage", user_id=int(user_id), timeout=120)["bytes"])

    def start_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        data = asdict(spec)
        data["resources"] = asdict(spec.resources)
        data["gpu_devices"] = list(spec.gpu_devices)
        return _status(self._call("start", spec=data, timeout=45)["status"])

    def stop_workload(self, *, name: str, grace_seconds: float = 10) -> WorkloadStatus:
        answer = self._call(
            "stop", name=name, grace_seconds=grace_seconds, timeout=grace_seconds + 20
        )
        return _status(answer["status"])

    def workload_status(self, *, name: str) -> WorkloadStatus:
        return _status(self._call("status", name=name)["status"])

    def forget_workload(self, *, name: str) -> None:
        self._call("forget", name=name)

    def list_workloads(self) -> list[WorkloadStatus]:
        return [_status(w) for w in self._call("list")["workloads"]]

    def follow_logs(self, *, name: str, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        if not follow:
            return self._read_logs(name=name, offset=offset)
        # One connection for the whole follow: the agent pushes each chunk as
        # it finds it (its `follow` op) instead of being asked every 0.5 s.
        conn = _Connection(self.socket_path, CALL_TIMEOUT)
        try:
            conn.send({"op": "follow", "name": name, "offset": int(offset)})
            answer = conn.receive()
        except (OSError, ValueError) as exc:
            conn.close()
            raise DriverError(f"{AGENT_DOWN}: {exc!r}", permanent=False) from exc
        if not answer or not answer.get("ok"):
            conn.close()
            raise DriverError(
                (answer or {}).get("error", AGENT_DOWN),
                permanent=(answer or {}).get("permanent", False),
            )
        conn.sock.settimeout(None)  # a quiet workload may print nothing for hours
        return LogStream(conn)

    def _read_logs(self, *, name: str, offset: int) -> Iterator[bytes]:
        while True:
            answer = self._call("logs", name=name, offset=offset)
            data = base64.b64decode(answer["data"])
            if not data:
                return
            offset = answer["offset"]
            yield data

    def delete_logs(self, *, name: str) -> None:
        self._call("delete_logs", name=name)

    def open_terminal(self, *, name: str, rows: int = 24, cols: int = 80) -> Terminal:
        conn = _Connection(self.socket_path, CALL_TIMEOUT)
        try:
            conn.send({"op": "terminal", "name": name, "rows": rows, "cols": cols})
            answer = conn.receive()
        except (OSError, ValueError) as exc:
            conn.close()
            raise DriverError(f"{AGENT_DOWN}: {exc!r}", permanent=False) from exc
        if not answer or not answer.get("ok"):
            conn.close()
            raise DriverError(
                (answer or {}).get("error", AGENT_DOWN),
                permanent=(answer or {}).get("permanent", False),
            )
        return LocalTerminal(conn)
