"""A tests-only ClusterDriver keeping workloads in memory (the real backends test themselves).

Tests get it from the ``driver`` fixture (tests/conftest.py), which makes it the
portal's driver; ``use_driver`` installs any other driver (a real LocalDriver
pointed at a private agent, one that hangs). ``FakeDriver.calls`` records every
interface call in order, with its arguments.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from aladdin.cluster.base import (
    LABEL_KIND,
    LABEL_USER,
    ClusterDriver,
    DiskSpace,
    DriverError,
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
    workload's Monitor samples by name; others have none) and
    ``metrics_error`` (raised by :meth:`workload_metrics`).
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

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append(Call(method, kwargs))

    def called(self, method: str) -> list[dict[str, Any]]:
        """The arguments of each call of ``method``, in order."""
        return [call.kwargs for call in self.calls if call.method == method]

    def health(self) -> dict:
        self._record("health")
        return {"ok": True}

    def ensure_user_space(self, *, user_id: int, storage_gib: int, quota: Resources) -> None:
        self._record("ensure_user_space", user_id=user_id, storage_gib=storage_gib, quota=quota)
        self.user_spaces[user_id] = (storage_gib, quota)

    def delete_user_space(self, *, user_id: int) -> None:
        self._record("delete_user_space", user_id=user_id)
        self.deleted.append(user_id)
        self.usage.pop(user_id, None)
        self.user_spaces.pop(user_id, None)

    def storage_usage_bytes(self, *, user_id: int) -> int:
        self._record("storage_usage_bytes", user_id=user_id)
        return self.usage.get(user_id, 0)

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
        if self.workloads.get(name, None) is None:
            raise DriverError("no such workload")
        terminal = FakeTerminal(rows, cols)
        self.terminals.append(terminal)
        return terminal

    def exec_in_workload(self, *, name, command=None, tty=False, env=None, rows=24, cols=80):
        # The SSH gateway's tests use a real agent (tests/sshgw); here only the refusal.
        self._record("exec_in_workload", name=name, command=command, tty=tty)
        raise DriverError(f"{name} is not running", permanent=True, code="not_running")

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
        )

    def add_orphan(self, name: str, user_id: int) -> None:
        self.workloads[name] = WorkloadStatus(
            name=name,
            phase=Phase.RUNNING,
            user_id=user_id,
            kind="workshop",
            labels={LABEL_USER: str(user_id), LABEL_KIND: "workshop"},
        )
