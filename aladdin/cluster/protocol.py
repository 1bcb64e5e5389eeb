"""The driver operations as typed messages: what the local agent and :class:`LocalDriver` exchange.

Both ends import this module; neither writes JSON by hand. Each operation is
a :class:`~aladdin.cluster.base.ClusterDriver` method, so the table below is
also the contract a Kubernetes backend implements with API calls instead of
messages (its errors are the same :class:`ErrorCode` meanings, raised as the
same driver exceptions).

Framing. A Unix socket, one connection per call, newline-delimited JSON
(one object a line). A request is ``{"op": <name>, <fields>}``; the answer
is ``{"ok": true, <fields>}`` or ``{"ok": false, "code": <ErrorCode>,
"error": <message>, "permanent": <bool>}``. Bytes travel as base64 text,
times as ISO 8601 with their offset. The JSON is exactly what the agent of
earlier releases spoke (errors only gained ``code``): the agent outlives web
and worker restarts, so a portal upgraded under a running agent must still
understand it, and the reverse.

=====================  ======================  ======================================
request (op)           answer                  errors (besides ``invalid``)
=====================  ======================  ======================================
Health (health)        HealthInfo              -- (driver: ``health()`` never raises)
EnsureUserSpace        Done                    ``unavailable``
DiskFree (disk_free)   DiskInfo                ``unavailable``
DeleteUserSpace        Done                    ``user_space_busy`` (running workloads)
Usage (usage)          UsageInfo               ``unavailable``
Start (start)          StatusAnswer            ``no_capacity``, ``single_user``
Stop (stop)            StatusAnswer            -- (missing: phase ``missing``)
Status (status)        StatusAnswer            -- (missing: phase ``missing``)
Forget (forget)        Done                    ``still_running``
ListWorkloads (list)   ListAnswer              --
Logs (logs)            LogChunk                --
DeleteLogs             Done                    ``still_running``
Follow (follow)        Done, then a stream     --
OpenTerminal           Done, then a stream     ``not_running``
Exec (exec)            ExecStarted, a stream   ``not_running``
OpenFiles (files)      ExecStarted, a stream   ``unavailable`` (cannot sandbox)
ConnectPort            Done, then raw bytes    ``not_running``, ``connection_refused``
ImageStatus            ImageStateAnswer        --
BuildImage             ImageStateAnswer        --
Metrics (metrics)      MetricsAnswer           -- (unknown workload: none available)
=====================  ======================  ======================================

``Metrics`` (issue 18) returns a workload's samples (CPU, memory, per-GPU use)
taken after ``since``. An agent older than it answers ``invalid`` (unknown
operation), which the driver reads as "no metrics", not as an error.
``Start``'s spec may carry ``group`` (:class:`~aladdin.cluster.base.WorkerGroup`:
one worker of a Run Task). The agent then runs worker ``index > 0`` in
worker 0's network namespace (``not_running`` if worker 0 does not run) and
echoes ``group`` in the record; an agent of earlier releases ignores the
field (and echoes nothing), which the driver refuses rather than run the
worker alone. Specs without a group are what earlier agents always took.

``ImageStatus`` says where an image recipe stands (never builds);
``BuildImage`` starts its build unless it is ready, building or
unavailable: a failed build or an unavailable recipe is an answer (its
state and reason), not an error. An agent older than images answers
``invalid`` (unknown operation).

A start that was accepted but could not run (bad image, an image that is
not built, bwrap failed) is not an error: the answer's status has phase ``failed`` and the reason, as a
pod that fails to start does on Kubernetes. Any operation may also fail with
``unavailable`` (the agent hit an OS error, or cannot be reached: the driver
raises that one itself).

Streams. After ``Follow``'s ``Done`` the agent sends :class:`LogData` as the
log grows and finally :class:`LogEnd` once the workload has ended (or has no
record) and all was sent; the client sends nothing and closes its end to
stop. After ``OpenTerminal``'s ``Done`` the connection carries the PTY both
ways: :class:`TerminalInput`, :class:`TerminalResize`,
:class:`TerminalClose` in; :class:`TerminalOutput`, then
:class:`TerminalExit` out. After ``Exec``'s ``Done`` (a command in the
workload, the SSH gateway's shell and exec): :class:`TerminalInput`,
:class:`ExecEof` (stdin ended), :class:`TerminalResize` (with a PTY),
:class:`TerminalClose` in; :class:`ExecOutput` (stdout, or stderr without
a PTY), then :class:`TerminalExit` out, once all output was sent.
``OpenFiles``' stream is the same as ``Exec``'s without a PTY: OpenSSH's
``sftp-server`` (SFTP v3 on stdin/stdout) in a short-lived sandbox over the
user's volume, for the dashboard's files page.

Binary exec frames (version 1). JSON lines with base64 cost about a third of
an scp's CPU (bench/ssh_transfer.py, issue 13), so ``Exec`` and
``OpenFiles`` may ask for ``binary: true``; an agent that speaks it answers
:class:`ExecStarted` with ``binary: true`` (``binary_version`` 1), and from
the byte after that ``Done`` line both directions carry frames instead of
JSON lines: one byte of kind, four of big-endian payload length, the
payload (:data:`FRAME_HEADER`, :func:`encode_frame`; at most
:data:`MAX_FRAME` bytes). Kinds (:class:`FrameKind`): ``STDOUT`` and
``STDERR`` (out, raw bytes), ``STDIN`` (in, raw bytes), ``EOF`` (in,
empty), ``RESIZE`` (in, rows and cols as two big-endian uint16),
``CLOSE`` (in, empty), ``EXIT`` (out, a big-endian int32 code, or empty
for none). An agent of earlier releases ignores the field and answers a
plain ``Done``, and a portal of earlier releases never asks: either pair
keeps speaking the JSON stream above. An unknown kind is skipped, as an
unknown JSON message is.

After ``ConnectPort``'s ``Done`` line (``op`` ``connect_port``, the SSH
gateway's ``ssh -L``) the connection is no longer JSON: it carries the TCP
connection's bytes both ways, a half-close (``shutdown(SHUT_WR)``) for
each side's end, until both ended. The client sends nothing before the
``Done``; the agent may send the port's first bytes right after it.

Errors. :class:`AgentError` carries an :class:`ErrorCode` across the
boundary; whether a retry can help is a property of the code, so no side
matches the other's English text. :func:`driver_error` turns one into the
driver exception that callers catch (``no_capacity`` is
:class:`~aladdin.cluster.base.NoCapacity`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import struct
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from functools import cache
from typing import Any, ClassVar, Union

from .base import DriverError, NoCapacity, WorkloadMetrics, WorkloadSpec, WorkloadStatus
from .images import ImageRecipe, ImageState


# --- errors ------------------------------------------------------------------------
class ErrorCode(StrEnum):
    """Why an operation was refused. Each code fixes whether retrying can help."""

    INVALID = "invalid"  # malformed request, unknown op, bad name or offset
    NO_CAPACITY = "no_capacity"  # no free card of the model asked for; retry when one frees
    SINGLE_USER = "single_user"  # host cannot sandbox, and serves another user already
    STILL_RUNNING = "still_running"  # forget/delete_logs of a running workload: stop it first
    USER_SPACE_BUSY = "user_space_busy"  # delete_user_space while its workloads run
    NOT_RUNNING = "not_running"  # a terminal into a workload that does not run
    CONNECTION_REFUSED = "connection_refused"  # connect_port: nothing listens on that port
    NO_DEBUGGER = "no_debugger"  # start of a GPU Debug workload: the host has no debugpy
    UNAVAILABLE = "unavailable"  # the agent failed (OS error) or cannot be reached

    @property
    def permanent(self) -> bool:
        """True when asking again cannot help; False when a later retry may succeed."""
        return self not in _TRANSIENT


_TRANSIENT = frozenset({ErrorCode.NO_CAPACITY, ErrorCode.USER_SPACE_BUSY, ErrorCode.UNAVAILABLE})


class AgentError(Exception):
    """A refused operation: a code (the meaning) and a message (for people)."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def permanent(self) -> bool:
        return self.code.permanent

    def to_wire(self) -> dict[str, Any]:
        return {
            "ok": False,
            "code": self.code.value,
            "error": self.message,
            "permanent": self.permanent,
        }


def raise_for_error(answer: dict[str, Any]) -> None:
    """Raise the :class:`AgentError` an answer carries; return if it is a success."""
    if answer.get("ok", True):
        return
    message = str(answer.get("error") or "agent error")
    try:
        code = ErrorCode(str(answer.get("code")))
    except ValueError:
        # An agent without codes (or with a newer one): keep its own verdict
        # on retrying, which is all the driver acts on.
        code = ErrorCode.INVALID if answer.get("permanent", True) else ErrorCode.UNAVAILABLE
    raise AgentError(code, message)


def driver_error(error: AgentError) -> DriverError:
    """The driver exception for a refusal (what services catch)."""
    if error.code is ErrorCode.NO_CAPACITY:
        return NoCapacity(error.message)
    return DriverError(error.message, permanent=error.permanent, code=error.code.value)


# --- names -------------------------------------------------------------------------
# A workload's name is a DNS label, as Kubernetes wants its objects' names; the
# local agent also makes it a file name (its log), so nothing else may pass.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # whole names only: fullmatch


def check_name(name: str) -> None:
    """Raise AgentError(INVALID) unless ``name`` is a valid workload name."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise AgentError(ErrorCode.INVALID, f"invalid workload name {name!r}")


def check_port(port: object) -> None:
    """Raise AgentError(INVALID) unless ``port`` is an int 1-65535 (not a bool)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise AgentError(ErrorCode.INVALID, f"invalid port {port!r}: 1-65535")


# --- records -----------------------------------------------------------------------
@dataclass(frozen=True)
class WorkloadRecord:
    """A workload as the agent reports it (and journals it): never its environment.

    ``pid``, ``sandbox_pid`` and ``pid_namespace`` are host facts for the
    agent and its tests; the driver keeps what :class:`WorkloadStatus` holds.
    """

    name: str
    phase: str
    user_id: int | None = None
    kind: str = ""
    exit_code: int | None = None
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    sandbox_pid: int | None = None
    pid_namespace: int | None = None
    sandboxed: bool = False
    image: str = ""
    gpu_devices: tuple[str, ...] = ()
    reason_id: str = ""  # aladdin.cluster.reasons; an older agent sends none
    reason_params: dict[str, Any] = field(default_factory=dict)
    # WorkerGroup.group of a grouped start, echoed; an agent older than Run
    # Task sends none, and the driver refuses to take its ungrouped start
    # for a worker (LocalDriver.start_workload).
    group: str = ""

    def to_status(self) -> WorkloadStatus:
        return WorkloadStatus(
            name=self.name,
            phase=self.phase,
            user_id=self.user_id,
            kind=self.kind,
            exit_code=self.exit_code,
            reason=self.reason,
            started_at=self.started_at,
            finished_at=self.finished_at,
            labels=dict(self.labels),
            gpu_devices=self.gpu_devices,
            reason_id=self.reason_id,
            reason_params=dict(self.reason_params),
            group=self.group,
        )


@dataclass(frozen=True)
class CardCount:
    total: int
    free: int


@dataclass(frozen=True)
class GpuSummary:
    """The host's cards by model ("40g", "80g"); ``virtual`` when none is real."""

    virtual: bool = False
    models: dict[str, CardCount] = field(default_factory=dict)


# --- requests ----------------------------------------------------------------------
@dataclass(frozen=True)
class Health:
    op: ClassVar[str] = "health"


@dataclass(frozen=True)
class EnsureUserSpace:
    """The user's volume; with ``storage_gib``, also its hard cap where project quotas are on.

    None leaves the cap as it is (an older portal sends no size).
    """

    op: ClassVar[str] = "ensure_user_space"
    user_id: int
    storage_gib: int | None = None


@dataclass(frozen=True)
class DeleteUserSpace:
    op: ClassVar[str] = "delete_user_space"
    user_id: int


@dataclass(frozen=True)
class Usage:
    op: ClassVar[str] = "usage"
    user_id: int


# --- disk (issue 14): the volumes' filesystem, for the portal's free-space reserve ---
@dataclass(frozen=True)
class DiskFree:
    op: ClassVar[str] = "disk_free"


@dataclass(frozen=True)
class DiskInfo:
    """statvfs of the volumes directory: total bytes, and bytes an unprivileged writer may use."""

    total: int
    free: int


# --- end disk ----------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    op: ClassVar[str] = "start"
    spec: WorkloadSpec


@dataclass(frozen=True)
class Stop:
    op: ClassVar[str] = "stop"
    name: str
    grace_seconds: float = 10


@dataclass(frozen=True)
class Status:
    op: ClassVar[str] = "status"
    name: str


@dataclass(frozen=True)
class Forget:
    op: ClassVar[str] = "forget"
    name: str


@dataclass(frozen=True)
class ListWorkloads:
    op: ClassVar[str] = "list"


@dataclass(frozen=True)
class Logs:
    op: ClassVar[str] = "logs"
    name: str
    offset: int = 0
    limit: int = 65536


@dataclass(frozen=True)
class DeleteLogs:
    op: ClassVar[str] = "delete_logs"
    name: str


@dataclass(frozen=True)
class Follow:
    op: ClassVar[str] = "follow"
    name: str
    offset: int = 0


@dataclass(frozen=True)
class OpenTerminal:
    op: ClassVar[str] = "terminal"
    name: str
    rows: int = 24
    cols: int = 80


@dataclass(frozen=True)
class Exec:
    """Run ``command`` (argv inside the workload; empty: a login shell) as the workload's user.

    ``env`` is added to the workload's own variables (the gateway passes
    TERM, LANG, LC_*); ``tty`` gives the process a PTY of ``rows`` x ``cols``.
    Command and variables are data for the process inside the sandbox: the
    agent hands them over through descriptors, never on a host command line.
    """

    op: ClassVar[str] = "exec"
    name: str
    command: list[str] = field(default_factory=list)
    tty: bool = False
    env: dict[str, str] = field(default_factory=dict)
    rows: int = 24
    cols: int = 80
    binary: bool = False  # ask for binary frames after Done (see the module's docstring)


@dataclass(frozen=True)
class OpenFiles:
    """SFTP over ``user_id``'s volume: ``sftp-server`` in its own sandbox, as the user's uid.

    No workload needs to run. The volume is ``/root`` and nothing else of
    the host is there but what every sandbox sees (read-only ``/usr``), so
    paths, permissions and symlinks are judged inside, as in a workshop.
    """

    op: ClassVar[str] = "files"
    user_id: int
    binary: bool = False  # ask for binary frames after Done (see the module's docstring)


@dataclass(frozen=True)
class ConnectPort:
    """A TCP connection to 127.0.0.1:``port`` inside the running workload's network namespace."""

    op: ClassVar[str] = "connect_port"
    name: str
    port: int


# --- images (issue 14) ---
@dataclass(frozen=True)
class ImageStatus:
    """Where ``recipe`` stands on this host (:meth:`ClusterDriver.image_status`)."""

    op: ClassVar[str] = "image_status"
    recipe: ImageRecipe


@dataclass(frozen=True)
class BuildImage:
    """Start building ``recipe`` unless it is ready, building or unavailable (:meth:`ClusterDriver.build_image`)."""

    op: ClassVar[str] = "build_image"
    recipe: ImageRecipe


@dataclass(frozen=True)
class ImageStateAnswer:
    state: ImageState


# --- monitor (issue 18) ---
@dataclass(frozen=True)
class Metrics:
    """``name``'s samples taken after ``since`` (all kept ones without it)."""

    op: ClassVar[str] = "metrics"
    name: str
    since: datetime | None = None


@dataclass(frozen=True)
class MetricsAnswer:
    metrics: WorkloadMetrics


# --- the tables ---
Request = (
    Health
    | EnsureUserSpace
    | DeleteUserSpace
    | Usage
    | DiskFree
    | Start
    | Stop
    | Status
    | Forget
    | ListWorkloads
    | Logs
    | DeleteLogs
    | Follow
    | OpenTerminal
    | Exec
    | OpenFiles
    | ConnectPort
    | ImageStatus
    | BuildImage
    | Metrics
)
REQUESTS: dict[str, type] = {cls.op: cls for cls in typing.get_args(Request)}


# --- answers -----------------------------------------------------------------------
@dataclass(frozen=True)
class Done:
    """Success with nothing to say."""


@dataclass(frozen=True)
class ExecStarted:
    """``Exec``/``OpenFiles`` accepted; ``binary``: the stream that follows is binary frames.

    An older agent's plain ``Done`` reads as ``binary`` False (JSON lines).
    """

    binary: bool = False
    binary_version: int = 0


@dataclass(frozen=True)
class HealthInfo:
    pid: int
    sandbox: bool
    sandbox_reason: str = ""
    insecure: bool = False
    single_user_id: int | None = None  # only while unsandboxed and not insecure
    running: int = 0
    gpus: GpuSummary | None = None
    # Per-directory hard caps on the volumes (project quotas), or why not (issue 14).
    project_quota: bool = False
    project_quota_reason: str = ""
    # How workloads are limited ("cgroup v1", "cgroup v2"), "" when they are
    # not; then limits_reason says why (aladdin.cluster.cgroups.detect).
    limits: str = ""
    limits_reason: str = ""
    # How sandboxes reach the network ("slirp4netns", with the egress deny
    # rules), "" when they have loopback only; then network_reason says why
    # (aladdin.cluster.egress.probe).
    network: str = ""
    network_reason: str = ""


@dataclass(frozen=True)
class UsageInfo:
    bytes: int


@dataclass(frozen=True)
class StatusAnswer:
    status: WorkloadRecord


@dataclass(frozen=True)
class ListAnswer:
    workloads: list[WorkloadRecord]


@dataclass(frozen=True)
class LogChunk:
    data: bytes
    offset: int  # the byte offset after ``data``
    ended: bool  # the workload has ended (or has no record): the log cannot grow


Answer = (
    Done
    | ExecStarted
    | HealthInfo
    | UsageInfo
    | DiskInfo
    | StatusAnswer
    | ListAnswer
    | LogChunk
    | ImageStateAnswer
    | MetricsAnswer
)

ANSWERS: dict[type, type] = {
    Health: HealthInfo,
    EnsureUserSpace: Done,
    DeleteUserSpace: Done,
    Usage: UsageInfo,
    DiskFree: DiskInfo,
    Start: StatusAnswer,
    Stop: StatusAnswer,
    Status: StatusAnswer,
    Forget: Done,
    ListWorkloads: ListAnswer,
    Logs: LogChunk,
    DeleteLogs: Done,
    Follow: Done,
    OpenTerminal: Done,
    Exec: ExecStarted,
    OpenFiles: ExecStarted,
    ConnectPort: Done,
    ImageStatus: ImageStateAnswer,
    BuildImage: ImageStateAnswer,
    Metrics: MetricsAnswer,
}


def encode_request(request: Request) -> dict[str, Any]:
    return {"op": request.op, **to_wire(request)}


def decode_request(message: dict[str, Any]) -> Request:
    """The typed request in ``message``. Raises AgentError(INVALID)."""
    if not isinstance(message, dict):
        raise AgentError(ErrorCode.INVALID, "bad request: not a JSON object")
    op = message.get("op")
    cls = REQUESTS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise AgentError(ErrorCode.INVALID, f"unknown operation {op!r}")
    return from_wire(cls, {k: v for k, v in message.items() if k != "op"})


def encode_answer(answer: Answer) -> dict[str, Any]:
    return {"ok": True, **to_wire(answer)}


def decode_answer(request_type: type, answer: dict[str, Any]) -> Any:
    """The typed answer to a request of ``request_type`` (success fields; see raise_for_error)."""
    return from_wire(ANSWERS[request_type], {k: v for k, v in answer.items() if k != "ok"})


# --- streams -----------------------------------------------------------------------
@dataclass(frozen=True)
class LogData:
    data: bytes
    offset: int  # the byte offset after ``data``

    def to_wire(self) -> dict[str, Any]:
        return {"data": _b64(self.data), "offset": self.offset}


@dataclass(frozen=True)
class LogEnd:
    offset: int

    def to_wire(self) -> dict[str, Any]:
        return {"end": True, "offset": self.offset}


@dataclass(frozen=True)
class TerminalInput:
    data: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"data": _b64(self.data)}


@dataclass(frozen=True)
class TerminalResize:
    rows: int
    cols: int

    def to_wire(self) -> dict[str, Any]:
        return {"resize": [self.rows, self.cols]}


@dataclass(frozen=True)
class TerminalClose:
    def to_wire(self) -> dict[str, Any]:
        return {"close": True}


@dataclass(frozen=True)
class TerminalOutput:
    data: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"data": _b64(self.data)}


@dataclass(frozen=True)
class TerminalExit:
    code: int | None

    def to_wire(self) -> dict[str, Any]:
        return {"exit": self.code}


@dataclass(frozen=True)
class ExecEof:
    """The client's stdin ended (``ssh ws cmd < file`` reached the end of the file)."""

    def to_wire(self) -> dict[str, Any]:
        return {"eof": True}


@dataclass(frozen=True)
class ExecOutput:
    """Output of an exec: ``stream`` 1 is stdout (and a PTY's output), 2 is stderr."""

    data: bytes
    stream: int = 1

    def to_wire(self) -> dict[str, Any]:
        return {"data": _b64(self.data), "stream": self.stream}


def decode_exec_input(
    message: dict[str, Any],
) -> TerminalInput | ExecEof | TerminalResize | TerminalClose:
    if message.get("eof"):
        return ExecEof()
    return decode_terminal_input(message)


def decode_exec_output(message: dict[str, Any]) -> ExecOutput | TerminalExit:
    if "exit" in message:
        return TerminalExit(code=_field(int | None, message, "exit"))
    stream = _field(int, message, "stream") if "stream" in message else 1
    if stream not in (1, 2):
        raise AgentError(ErrorCode.INVALID, f"bad exec output stream {stream}")
    return ExecOutput(data=_field(bytes, message, "data"), stream=stream)


# --- binary exec frames (version 1; see the module's docstring) ---
BINARY_VERSION = 1
FRAME_HEADER = struct.Struct(">BI")  # kind, payload length
MAX_FRAME = 16 * 1024 * 1024  # refuses a garbled length before allocating it


class FrameKind:
    STDOUT = 1
    STDERR = 2
    STDIN = 3
    EOF = 4
    RESIZE = 5
    CLOSE = 6
    EXIT = 7


_RESIZE = struct.Struct(">HH")
_EXIT = struct.Struct(">i")


def encode_frame(kind: int, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """One binary frame: header and payload as one buffer (one send, no second syscall)."""
    return FRAME_HEADER.pack(kind, len(payload)) + payload


def frame_header(header: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(kind, length)`` of a frame's header. Raises ValueError for a length over MAX_FRAME."""
    kind, length = FRAME_HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"exec frame of {length} bytes (at most {MAX_FRAME})")
    return kind, length


def exec_input_frame(message: TerminalInput | ExecEof | TerminalResize | TerminalClose) -> bytes:
    match message:
        case TerminalInput(data=data):
            return encode_frame(FrameKind.STDIN, data)
        case ExecEof():
            return encode_frame(FrameKind.EOF)
        case TerminalResize(rows=rows, cols=cols):
            return encode_frame(FrameKind.RESIZE, _RESIZE.pack(rows, cols))
        case TerminalClose():
            return encode_frame(FrameKind.CLOSE)
    raise TypeError(f"not an exec input: {message!r}")


def exec_output_frame(message: ExecOutput | TerminalExit) -> bytes:
    match message:
        case ExecOutput(data=data, stream=stream):
            return encode_frame(FrameKind.STDERR if stream == 2 else FrameKind.STDOUT, data)
        case TerminalExit(code=code):
            return encode_frame(FrameKind.EXIT, b"" if code is None else _EXIT.pack(code))
    raise TypeError(f"not an exec output: {message!r}")


def decode_exec_input_frame(
    kind: int, payload: bytes
) -> TerminalInput | ExecEof | TerminalResize | TerminalClose | None:
    """The message of an incoming frame; None for a kind this side does not know (skipped)."""
    if kind == FrameKind.STDIN:
        return TerminalInput(payload)
    if kind == FrameKind.EOF:
        return ExecEof()
    if kind == FrameKind.RESIZE:
        try:
            rows, cols = _RESIZE.unpack(payload)
        except struct.error:
            raise AgentError(ErrorCode.INVALID, "bad resize frame") from None
        return TerminalResize(rows=rows, cols=cols)
    if kind == FrameKind.CLOSE:
        return TerminalClose()
    return None


def decode_exec_output_frame(kind: int, payload: bytes) -> ExecOutput | TerminalExit | None:
    """The message of an outgoing frame; None for a kind this side does not know (skipped)."""
    if kind == FrameKind.STDOUT:
        return ExecOutput(payload, 1)
    if kind == FrameKind.STDERR:
        return ExecOutput(payload, 2)
    if kind == FrameKind.EXIT:
        if not payload:
            return TerminalExit(None)
        try:
            (code,) = _EXIT.unpack(payload)
        except struct.error:
            raise AgentError(ErrorCode.INVALID, "bad exit frame") from None
        return TerminalExit(code)
    return None


class ExecOutputReader:
    """Exec output frames decoded as their bytes arrive, for a reader that never blocks.

    :meth:`feed` takes whatever one non-blocking ``recv`` returned and
    gives back the output in it as views of those bytes: a STDOUT or
    STDERR payload is passed on piece by piece as it arrives, neither
    waiting for the frame's end nor copied (the SSH gateway's event loop
    hands it straight to its channel). :attr:`exit` is set once the EXIT
    frame is whole; what follows it is ignored. Unknown kinds are skipped.
    Raises ValueError for a length over MAX_FRAME, AgentError for a bad
    EXIT frame.
    """

    def __init__(self) -> None:
        self._header = bytearray()
        self._kind: int | None = None  # the frame whose payload is coming; None: a header is
        self._left = 0  # that payload's bytes still to come
        self._exit = bytearray()  # an EXIT payload, decoded once whole
        self.exit: TerminalExit | None = None

    def feed(self, data: bytes) -> list[tuple[int, memoryview]]:
        out: list[tuple[int, memoryview]] = []
        view = memoryview(data)
        pos, end = 0, len(view)
        size = FRAME_HEADER.size
        while self.exit is None and pos < end:
            if self._kind is None:
                take = min(size - len(self._header), end - pos)
                self._header += view[pos : pos + take]
                pos += take
                if len(self._header) < size:
                    break
                self._kind, self._left = frame_header(self._header)
                self._header.clear()
            take = min(self._left, end - pos)
            if take:
                if self._kind in (FrameKind.STDOUT, FrameKind.STDERR):
                    out.append((2 if self._kind == FrameKind.STDERR else 1, view[pos : pos + take]))
                elif self._kind == FrameKind.EXIT:
                    self._exit += view[pos : pos + take]
                pos += take
                self._left -= take
            if not self._left:
                if self._kind == FrameKind.EXIT:
                    decoded = decode_exec_output_frame(FrameKind.EXIT, bytes(self._exit))
                    assert isinstance(decoded, TerminalExit)
                    self.exit = decoded
                self._kind = None
        return out


def decode_log_message(message: dict[str, Any]) -> LogData | LogEnd:
    if message.get("end"):
        return LogEnd(offset=_field(int, message, "offset"))
    return LogData(data=_field(bytes, message, "data"), offset=_field(int, message, "offset"))


def decode_terminal_input(
    message: dict[str, Any],
) -> TerminalInput | TerminalResize | TerminalClose:
    if "data" in message:
        return TerminalInput(data=_field(bytes, message, "data"))
    if "resize" in message:
        rows, cols = _field(tuple[int, int], message, "resize")
        return TerminalResize(rows=rows, cols=cols)
    if message.get("close"):
        return TerminalClose()
    raise AgentError(ErrorCode.INVALID, f"bad terminal message: {sorted(message)}")


def decode_terminal_output(message: dict[str, Any]) -> TerminalOutput | TerminalExit:
    if "exit" in message:
        return TerminalExit(code=_field(int | None, message, "exit"))
    return TerminalOutput(data=_field(bytes, message, "data"))


def encode_line(message: dict[str, Any]) -> bytes:
    """One frame: the JSON object and its newline."""
    return json.dumps(message).encode() + b"\n"


def decode_line(line: bytes) -> dict[str, Any]:
    """One frame's object. Raises ValueError for anything but a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


# --- the codec ---------------------------------------------------------------------
def to_wire(value: Any) -> Any:
    """A message (or any part of one) as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def from_wire(tp: Any, value: Any, path: str = "") -> Any:
    """``value`` (decoded JSON) as type ``tp``; raises AgentError(INVALID) naming the bad field.

    Understands the types messages use: dataclasses (missing fields take
    their defaults; unknown ones are ignored, so either side may be newer),
    ``X | None``, ``dict``, ``list``, ``tuple``, enums, ``bytes`` (base64),
    ``datetime`` (ISO 8601), and scalars. Text fields take numbers too, as
    ``str()`` would (env values that a caller left as numbers).
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return from_wire(inner, value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _bad(path, "an object", value)
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = from_wire(hints[f.name], value[f.name], f"{path}{f.name}.")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise AgentError(ErrorCode.INVALID, f"bad request: {path}{f.name} is missing")
        return tp(**kwargs)
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(path, "an object", value)
        key_t, value_t = args
        return {
            from_wire(key_t, k, path): from_wire(value_t, v, f"{path}{k}.")
            for k, v in value.items()
        }
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _bad(path, "a list", value)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return origin(from_wire(args[0], v, path) for v in value)
        if len(value) != len(args):
            raise _bad(path, f"{len(args)} items", value)
        return tuple(from_wire(t, v, path) for t, v in zip(args, value, strict=True))
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(path, "true or false", value)
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad(path, "an integer", value)
        return value
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _bad(path, "a number", value)
        return float(value)
    if tp is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise _bad(path, "text", value)
        return value
    if tp is bytes:
        try:
            return base64.b64decode(value, validate=True)
        except (TypeError, ValueError, binascii.Error):
            raise _bad(path, "base64", value) from None
    if tp is datetime:
        try:
            return datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise _bad(path, "an ISO 8601 time", value) from None
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            raise _bad(path, f"one of {[m.value for m in tp]}", value) from None
    raise TypeError(f"the protocol cannot carry {tp!r}")  # a programming error, not a request's


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field(tp: Any, message: dict[str, Any], key: str) -> Any:
    if key not in message:
        raise AgentError(ErrorCode.INVALID, f"bad message: {key} is missing")
    return from_wire(tp, message[key], f"{key}.")


def _bad(path: str, expected: str, value: Any) -> AgentError:
    where = path.rstrip(".") or "the message"
    return AgentError(
        ErrorCode.INVALID, f"bad request: {where}: expected {expected}, got {value!r:.80}"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
