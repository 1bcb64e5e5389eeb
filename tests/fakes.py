"""A tests-only ClusterDriver keeping workloads in memory (the real backends test themselves).

Tests get it from the ``driver`` fixture (tests/conftest.py), which makes it the
portal's driver; ``use_driver`` installs any other driver (a real LocalDriver
pointed at a private agent, one that hangs). ``FakeDriver.calls`` records every
interface call in order, with its arguments.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from aladdin.cluster.base import (
    LABEL_KIND,
    LABEL_USER,
    Capabilities,
    ClusterDriver,
    DiskSpace,
    DriverError,
    ExecSession,
    NoCapacity,
    Phase,
    Resources,
    Terminal,
    WorkloadMetrics,
    WorkloadSpec,
    WorkloadStatus,
)
from aladdin.cluster.images import BuildState, ImageRecipe, ImageState


class FakeTerminal(Terminal):
    def __init__(self, rows: int, cols: int):
        self.size = (rows, cols)
        self.written: list[bytes] = []
        self.output: queue.Queue[bytes] = queue.Queue()
        self.closed = False

    def read(self, timeout: float | None = None) -> bytes:
        # Blocks until output or close(); close() wakes it with b"" (the contract).
        data = self.output.get(timeout=timeout)
        return data

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.output.put(b"echo:" + data)

    def resize(self, *, rows: int, cols: int) -> None:
        self.size = (rows, cols)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.output.put(b"")


class FakeExecSession(ExecSession):
    """``exec_in_workload`` of the fake: the argv as a plain host process in the user's fake home.

    No isolation at all (tests only): it gives the contract's shape (stdin,
    separate stdout and stderr, the exit status, 128 + a signal) with real
    bytes. With ``tty`` stderr joins stdout, as a PTY's would.
    """

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], tty: bool):
        self.exit_code = None
        self._queue: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self._proc = subprocess.Popen(  # noqa: S603 - a test's own command
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if tty else subprocess.PIPE,
        )
        streams = [(1, self._proc.stdout)] + ([] if tty else [(2, self._proc.stderr)])
        self._open = len(streams)
        self._ended = False
        for number, pipe in streams:
            threading.Thread(target=self._pump, args=(number, pipe), daemon=True).start()

    def _pump(self, number: int, pipe) -> None:
        while data := os.read(pipe.fileno(), 65536):
            self._queue.put((number, data))
        self._queue.put((0, b""))

    def read(self, timeout: float | None = None) -> tuple[int, bytes]:
        while True:
            if self._ended:
                return 0, b""
            try:
                number, data = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError from None
            if number:
                return number, data
            self._open -= 1
            if self._open == 0:
                code = self._proc.wait()
                self.exit_code = 128 - code if code < 0 else code
                self._ended = True

    def ready(self) -> bool:
        return not self._queue.empty()

    def write(self, data: bytes) -> None:
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise DriverError(f"the command's stdin is closed: {exc}") from exc

    def close_stdin(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()

    def resize(self, *, rows: int, cols: int) -> None:
        pass

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self.close_stdin()


class FakeLogStream(Iterator[bytes]):
    """``follow_logs`` of the fake: what ``logs[name]`` holds past the offset, polled.

    Ends (with follow) once the workload is missing or has ended and all was
    yielded; ``close()`` from another thread ends it too.
    """

    POLL_SECONDS = 0.01

    def __init__(self, driver: FakeDriver, name: str, offset: int, follow: bool):
        self.driver, self.name, self.offset, self.follow = driver, name, offset, follow
        self.closed = threading.Event()

    def __iter__(self) -> FakeLogStream:
        return self

    def __next__(self) -> bytes:
        while not self.closed.is_set():
            status = self.driver.workloads.get(self.name)
            ended = status is None or status.phase in (Phase.SUCCEEDED, Phase.FAILED)
            data = self.driver.logs.get(self.name, b"")[self.offset :]
            if data:
                self.offset += len(data)
                return data
            if ended or not self.follow:
                break
            self.closed.wait(self.POLL_SECONDS)
        raise StopIteration

    def close(self) -> None:
        self.closed.set()


class Call(NamedTuple):
    """One call of the driver interface: the method's name and its arguments."""

    method: str
    kwargs: dict[str, Any]


class FakeDriver(ClusterDriver):
    """Workloads, user spaces and logs in memory; every interface call recorded in ``calls``.

    Knobs a test may set: ``fail_next`` (raised by the next start),
    ``start_phase`` (what a start reports), ``usage`` (a user's volume bytes),
    ``disk`` (the volumes' filesystem, :meth:`disk_free`), ``metrics`` (a
    workload's Monitor samples by name; others have none),
    ``metrics_error`` (raised by :meth:`workload_metrics`), ``caps`` (what
    :meth:`capabilities` answers) and ``gpu_capacity`` (cards per model; None:
    as many as asked).

    It keeps the driver contract (tests/cluster/contract): a worker ``i > 0``
    of a group is refused while worker 0 does not run, a start over the free
    cards is :class:`NoCapacity`, exec runs the argv as a host process (no
    isolation), and logs stay after :meth:`forget_workload`. Workloads run
    nothing: a test writes their output (:meth:`write_log`) and ends them
    (:meth:`finish`).
    """

    name = "fake"

    def __init__(self):
        self.calls: list[Call] = []
        self.workloads: dict[str, WorkloadStatus] = {}
        self.specs: dict[str, WorkloadSpec] = {}
        self.user_spaces: dict[int, tuple[int, Resources]] = {}
        self.terminals: list[FakeTerminal] = []
        self.start_calls = 0
        self.fail_next: DriverError | None = None
        self.start_phase = Phase.RUNNING
        self.logs: dict[str, bytes] = {}  # each workload's output so far (write_log)
        self.usage: dict[int, int] = {}  # bytes in each user's volume (storage_usage_bytes)
        self.deleted: list[int] = []  # users whose space was deleted, in order
        # The volumes' filesystem: 1 TiB, half free, unless a test says otherwise.
        self.disk = DiskSpace(total=2**40, free=2**39)
        # Each recipe's state by ref; unknown refs are ready (a fake host has every image).
        self.images: dict[str, ImageState] = {}
        self.metrics: dict[str, WorkloadMetrics] = {}
        self.metrics_error: DriverError | None = None
        # Every promise kept unless a test says otherwise.
        self.caps = Capabilities(
            isolation="fake", limits="fake", network="fake", gpu_metrics=True, volume_quota=True
        )
        self.gpu_capacity: dict[str, int] | None = None
        self._homes: Path | None = None

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append(Call(method, kwargs))

    def called(self, method: str) -> list[dict[str, Any]]:
        """The arguments of each call of ``method``, in order."""
        return [call.kwargs for call in self.calls if call.method == method]

    def health(self) -> dict:
        self._record("health")
        return {"ok": True}

    def capabilities(self) -> Capabilities:
        self._record("capabilities")
        return self.caps

    def home(self, user_id: int) -> Path:
        """The user's ``/root`` as the fake keeps it: a temporary directory (removed at exit)."""
        if self._homes is None:
            self._homes = Path(tempfile.mkdtemp(prefix="aladdin-fake-"))
            import atexit

            atexit.register(shutil.rmtree, self._homes, ignore_errors=True)
        home = self._homes / str(user_id)
        home.mkdir(exist_ok=True)
        return home

    def ensure_user_space(self, *, user_id: int, storage_gib: int, quota: Resources) -> None:
        self._record("ensure_user_space", user_id=user_id, storage_gib=storage_gib, quota=quota)
        self.user_spaces[user_id] = (storage_gib, quota)

    def delete_user_space(self, *, user_id: int) -> None:
        self._record("delete_user_space", user_id=user_id)
        self.deleted.append(user_id)
        self.usage.pop(user_id, None)
        self.user_spaces.pop(user_id, None)
        if self._homes is not None:
            shutil.rmtree(self._homes / str(user_id), ignore_errors=True)

    def storage_usage_bytes(self, *, user_id: int) -> int:
        self._record("storage_usage_bytes", user_id=user_id)
        if user_id in self.usage or self._homes is None:
            return self.usage.get(user_id, 0)
        # What exec wrote into the fake home.
        home = self._homes / str(user_id)
        return sum(f.stat().st_size for f in home.rglob("*") if f.is_file()) if home.exists() else 0

    def disk_free(self) -> DiskSpace:
        self._record("disk_free")
        return self.disk

    def workload_metrics(self, *, name: str, since: datetime | None = None) -> WorkloadMetrics:
        self._record("workload_metrics", name=name, since=since)
        if self.metrics_error is not None:
            raise self.metrics_error
        metrics = self.metrics.get(name) or WorkloadMetrics(name=name)
        samples = [s for s in metrics.samples if since is None or s.at > since]
        return replace(metrics, samples=samples)

    def set_image(self, ref: str, state: str, **fields: Any) -> None:
        """Make ``ref`` report ``state`` (with ``reason``, ``progress``, ``cpu_only``...)."""
        self.images[ref] = ImageState(key=ref, state=state, **fields)

    def image_status(self, recipe: ImageRecipe) -> ImageState:
        self._record("image_status", recipe=recipe)
        return self.images.get(recipe.ref) or ImageState(key=recipe.key(), state=BuildState.READY)

    def build_image(self, recipe: ImageRecipe) -> ImageState:
        self._record("build_image", recipe=recipe)
        state = self.image_status(recipe)
        if state.state in (BuildState.MISSING, BuildState.FAILED):
            state = ImageState(key=state.key, state=BuildState.BUILDING)
            self.images[recipe.ref] = state
        return state

    def group_address(self, *, group: str) -> str:
        # As the Kubernetes backend answers: worker 0's pod through the headless Service.
        return f"{group}-0.{group}"

    def start_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        self._record("start_workload", spec=spec)
        self.start_calls += 1
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if spec.name in self.workloads:
            return self.workloads[spec.name]
        if spec.group is not None and spec.group.index > 0:
            first = self.workloads.get(f"{spec.group.group}-0")
            if first is None or first.phase not in (Phase.PENDING, Phase.RUNNING):
                raise DriverError(
                    f"worker 0 of {spec.group.group} does not run",
                    permanent=True,
                    code="not_running",
                )
        self._check_capacity(spec)
        status = WorkloadStatus(
            name=spec.name,
            phase=self.start_phase,
            user_id=spec.user_id,
            kind=spec.kind,
            labels=dict(spec.labels),
            group=spec.group.group if spec.group else "",
        )
        self.workloads[spec.name] = status
        self.specs[spec.name] = spec
        return status

    def _check_capacity(self, spec: WorkloadSpec) -> None:
        if self.gpu_capacity is None:
            return
        for model, asked in spec.resources.gpus.items():
            total = self.gpu_capacity.get(model, 0)
            held = sum(
                self.specs[name].resources.gpus.get(model, 0)
                for name, status in self.workloads.items()
                if name in self.specs and status.phase in (Phase.PENDING, Phase.RUNNING)
            )
            if asked > total - held:
                raise NoCapacity(
                    f"no free {model.upper()} card on this host: {asked} asked, "
                    f"{max(total - held, 0)} of {total} free"
                )

    def stop_workload(self, *, name: str, grace_seconds: float = 10) -> WorkloadStatus:
        self._record("stop_workload", name=name, grace_seconds=grace_seconds)
        self.workloads.pop(name, None)
        return WorkloadStatus(name=name, phase=Phase.MISSING)

    def workload_status(self, *, name: str) -> WorkloadStatus:
        self._record("workload_status", name=name)
        return self.workloads.get(name) or WorkloadStatus(name=name, phase=Phase.MISSING)

    def forget_workload(self, *, name: str) -> None:
        self._record("forget_workload", name=name)
        self.workloads.pop(name, None)

    def list_workloads(self) -> list[WorkloadStatus]:
        self._record("list_workloads")
        return list(self.workloads.values())

    def follow_logs(self, *, name: str, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        self._record("follow_logs", name=name, offset=offset, follow=follow)
        return FakeLogStream(self, name, offset, follow)

    def delete_logs(self, *, name: str) -> None:
        self._record("delete_logs", name=name)
        status = self.workloads.get(name)
        if status is not None and status.phase in (Phase.PENDING, Phase.RUNNING):
            raise DriverError(f"{name} is still running; stop it first", permanent=True)
        self.logs.pop(name, None)

    def write_log(self, name: str, data: bytes) -> None:
        """Test helper: the workload ``name`` printed ``data``."""
        self.logs[name] = self.logs.get(name, b"") + data

    def open_terminal(self, *, name: str, rows: int = 24, cols: int = 80) -> Terminal:
        self._record("open_terminal", name=name, rows=rows, cols=cols)
        status = self.workloads.get(name)
        if status is None or status.phase != Phase.RUNNING:
            raise DriverError(f"{name} is not running", permanent=True, code="not_running")
        terminal = FakeTerminal(rows, cols)
        self.terminals.append(terminal)
        return terminal

    def exec_in_workload(self, *, name, command=None, tty=False, env=None, rows=24, cols=80):
        # The SSH gateway's tests use a real agent (tests/sshgw); here only the refusal.
        self._record("exec_in_workload", name=name, command=command, tty=tty)
        status = self.workloads.get(name)
        if status is None or status.phase != Phase.RUNNING:
            raise DriverError(f"{name} is not running", permanent=True, code="not_running")
        spec = self.specs.get(name)
        home = self.home(status.user_id or 0)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            **(spec.env if spec else {}),
            **(env or {}),
        }
        return FakeExecSession(command or ["sh"], cwd=home, env=environment, tty=tty)

    def connect_port(self, *, name: str, port: int):
        # As exec: the gateway's forwarding tests use a real agent (tests/sshgw).
        self._record("connect_port", name=name, port=port)
        raise DriverError(f"{name} is not running", permanent=True, code="not_running")

    # helpers for tests
    def set_phase(self, name: str, phase: str, reason: str = "") -> None:
        old = self.workloads[name]
        self.workloads[name] = WorkloadStatus(
            name=name,
            phase=phase,
            user_id=old.user_id,
            kind=old.kind,
            reason=reason,
            labels=old.labels,
            group=old.group,
        )

    def finish(self, name: str, exit_code: int = 0, reason: str = "") -> None:
        """The workload ``name`` exited with ``exit_code``: ended, kept until stop or forget."""
        old = self.workloads[name]
        self.workloads[name] = replace(
            old,
            phase=Phase.SUCCEEDED if exit_code == 0 else Phase.FAILED,
            exit_code=exit_code,
            reason=reason,
            finished_at=datetime.now(UTC),
        )

    def add_orphan(self, name: str, user_id: int) -> None:
        self.workloads[name] = WorkloadStatus(
            name=name,
            phase=Phase.RUNNING,
            user_id=user_id,
            kind="workshop",
            labels={LABEL_USER: str(user_id), LABEL_KIND: "workshop"},
        )
