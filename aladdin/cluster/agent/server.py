"""The agent's process: its main loop, the socket server, and each request's dispatch.

The socket (``LOCAL_AGENT_SOCKET``; directory 0700, socket 0600: only root,
i.e. the portal, may talk to it) carries :mod:`aladdin.cluster.protocol`.
Each connection gets a thread (:class:`_Handler`), which decodes requests
into typed messages and hands them to :meth:`Agent.handle`; ``follow`` and
``terminal`` turn the connection into a stream. The main thread beats the
heartbeat; spawner threads that live as long as the agent start the
workloads (see :mod:`.workloads` for why only they may).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import cgroups as cgroup_limits
from .. import egress, protocol, sandbox
from .. import gpus as gpu_cards
from .. import monitor as monitoring
from ..protocol import AgentError, ErrorCode
from . import execs, files, ports, projquota, pty
from .images import Images
from .journal import HEARTBEAT_SECONDS, Journal
from .monitor import Monitor
from .output import DEFAULT_MAX_BYTES, DEFAULT_USER_MAX_BYTES
from .workloads import Workloads

log = logging.getLogger("aladdin.cluster.agent")

# `follow`: how often a quiet log file is looked at again, and the most one
# message carries. 20 ms keeps a line's way to a browser well under the
# issue's 250 ms at the cost of ~50 cheap read() calls a second per follower.
FOLLOW_POLL_SECONDS = 0.02
FOLLOW_CHUNK = 65536
MAIN_LOOP_WAIT_SECONDS = 0.5
# Workloads spawned at once: a Run Task's workers (the portal sends up to 8
# together, gpu_jobs/run_task.py), or several users' starts.
SPAWNER_THREADS = 8


class Agent:
    """One per host: owns the workload processes and answers the local driver."""

    def __init__(
        self,
        *,
        socket_path: Path,
        state_dir: Path,
        volumes_dir: Path,
        uid_base: int = 20000,
        images: Images | None = None,
        insecure: bool = False,
        gpus: str = "auto",
        log_max_bytes: int = DEFAULT_MAX_BYTES,
        log_user_max_bytes: int = DEFAULT_USER_MAX_BYTES,
        cgroup_root: Path = cgroup_limits.ROOT,
        cgroup_parent: str = cgroup_limits.DEFAULT_PARENT,
        pids_max: int = 4096,
        egress_policy: egress.Policy | None = None,
        monitor_seconds: float = monitoring.DEFAULT_INTERVAL_SECONDS,
        gpu_metrics: monitoring.GpuMetrics | None = None,
        debugpy_dir: Path | None = None,
        virtual_gpu_metrics_file: str = "",
    ):
        # Development portals: what virtual cards report (monitor.FileGpuMetrics).
        self.virtual_gpu_metrics_file = virtual_gpu_metrics_file
        self.socket_path = Path(socket_path)
        self.state_dir = Path(state_dir)
        self.volumes_dir = Path(volumes_dir)
        self.logs_dir = self.state_dir / "logs"
        self.gpus_config = gpus
        self.cgroup_root = Path(cgroup_root)
        self.cgroup_parent = cgroup_parent
        self.journal = Journal(self.state_dir)
        # Without an images root (an embedding that builds none) every recipe
        # is unavailable; the portal's settings always give one.
        self.images = images or Images(
            self.state_dir / "images", pythons=[], build_uid=uid_base, has_nvidia=False
        )
        self.workloads = Workloads(
            volumes_dir=self.volumes_dir,
            logs_dir=self.logs_dir,
            journal=self.journal,
            uid_base=uid_base,
            images=self.images,
            insecure=insecure,
            log_max_bytes=log_max_bytes,
            log_user_max_bytes=log_user_max_bytes,
        )
        self.workloads.pids_max = pids_max
        self.workloads.debugpy_dir = Path(debugpy_dir) if debugpy_dir else None
        self.workloads.egress_policy = egress_policy or egress.Policy()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        # The GPU-metrics interface: given (tests' fakes), or chosen by prepare()
        # from the cards found (NVML for real ones, none for virtual ones).
        self._gpu_metrics = gpu_metrics
        self.monitor = Monitor(self.workloads, gpu_metrics, monitor_seconds)

    # --- lifecycle ---------------------------------------------------------------
    def prepare(self) -> None:
        """Directories, the sandbox probe, the GPU cards, the journal of the previous run."""
        for directory, mode in ((self.state_dir, 0o700), (self.logs_dir, 0o700)):
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, mode)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_path.parent, 0o700)
        self.volumes_dir.mkdir(parents=True, exist_ok=True)
        # Sandbox uids must traverse it to reach their own volume (bwrap binds
        # as the uid) but not list it.
        os.chmod(self.volumes_dir, 0o711)
        workloads = self.workloads
        workloads.sandbox_ok, workloads.sandbox_reason = sandbox.probe(
            workloads.uid_base, self.volumes_dir
        )
        workloads.inventory = gpu_cards.Inventory(gpu_cards.discover(self.gpus_config))
        workloads.quotas = projquota.ProjectQuotas(projquota.probe(self.volumes_dir))
        log.info(
            "per-volume hard caps: %s (%s)",
            "on" if workloads.quotas.on else "off",
            workloads.quotas.support.reason,
        )
        log.info("GPU cards: %s", workloads.inventory.summary())
        if self._gpu_metrics is None:
            self.monitor.gpu_metrics = monitoring.gpu_metrics_for(
                workloads.inventory.cards, virtual_file=self.virtual_gpu_metrics_file
            )
        if not workloads.sandbox_ok:
            log.warning("cannot sandbox: %s", workloads.sandbox_reason)
        workloads.cgroups, workloads.limits_reason = cgroup_limits.detect(
            self.cgroup_root, self.cgroup_parent
        )
        if workloads.cgroups is None:
            log.warning("resource limits are off: %s", workloads.limits_reason)
        self.images.cgroups = workloads.cgroups
        workloads.network, workloads.network_reason = egress.probe(
            workloads.egress_policy, sandboxed=workloads.sandbox_ok
        )
        if workloads.network:
            log.info("network access: %s, with the egress deny rules", workloads.network)
        else:
            log.warning("network access is off: %s", workloads.network_reason)
        workloads.load(self.journal.load())
        self.images.prepare()

    def serve_forever(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`shutdown`); spawner threads start the workloads."""
        self.prepare()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
        try:
            self._server = _Server(str(self.socket_path), _Handler)
        finally:
            os.umask(old_umask)
        self._server.agent = self
        # shutdown() below waits for the server's next poll: 0.1 s, not the default 0.5,
        # so an agent's stop (a restart, Ctrl-C) is not held up by an idle listener.
        threading.Thread(
            target=self._server.serve_forever, args=(0.1,), daemon=True, name="server"
        ).start()
        threading.Thread(
            target=self.monitor.run, args=(self._stopping,), daemon=True, name="monitor"
        ).start()
        log.info(
            "agent listening on %s (sandbox: %s)",
            self.socket_path,
            "bubblewrap"
            if self.workloads.sandbox_ok
            else f"unavailable: {self.workloads.sandbox_reason}",
        )
        # Spawner threads (workloads.py, "Threads"): they must outlive every
        # workload they started, so they run until after stop_all below.
        spawners_done = threading.Event()

        def spawner() -> None:
            while not spawners_done.is_set():
                self.workloads.run_spawns(timeout=MAIN_LOOP_WAIT_SECONDS)

        for i in range(SPAWNER_THREADS):
            threading.Thread(target=spawner, daemon=True, name=f"spawner-{i}").start()
        last_beat = 0.0
        while True:
            if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                self.journal.beat()
                last_beat = time.monotonic()
            if self._stopping.wait(MAIN_LOOP_WAIT_SECONDS):
                break
        self.workloads.refuse_spawns()
        self.images.stop()
        self.workloads.stop_all()
        spawners_done.set()
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        log.info("agent stopped")

    def shutdown(self, *_args: object) -> None:
        """Signal-handler safe: ask the main loop to stop everything and return."""
        self._stopping.set()

    # --- requests ----------------------------------------------------------------
    def handle(self, request: protocol.Request) -> protocol.Answer:
        """Answer one request (not the streams). Raises AgentError."""
        workloads = self.workloads
        match request:
            case protocol.Health():
                return self.health()
            case protocol.EnsureUserSpace(user_id=user_id, storage_gib=storage_gib):
                workloads.ensure_user_space(user_id, storage_gib)
            case protocol.DiskFree():
                total, free = workloads.disk_free()
                return protocol.DiskInfo(total=total, free=free)
            case protocol.DeleteUserSpace(user_id=user_id):
                workloads.delete_user_space(user_id)
            case protocol.Usage(user_id=user_id):
                return protocol.UsageInfo(bytes=workloads.usage(user_id))
            case protocol.Start(spec=spec):
                return protocol.StatusAnswer(workloads.start(spec))
            case protocol.Stop(name=name, grace_seconds=grace):
                return protocol.StatusAnswer(workloads.stop(name, grace))
            case protocol.Status(name=name):
                return protocol.StatusAnswer(workloads.status(name))
            case protocol.Forget(name=name):
                workloads.forget(name)
            case protocol.ListWorkloads():
                return protocol.ListAnswer(workloads.records())
            case protocol.Logs(name=name, offset=offset, limit=limit):
                return self.read_logs(name, offset, limit)
            case protocol.DeleteLogs(name=name):
                workloads.delete_logs(name)
            # --- images (issue 14) ---
            case protocol.ImageStatus(recipe=recipe):
                return protocol.ImageStateAnswer(self.images.status(recipe))
            case protocol.BuildImage(recipe=recipe):
                return protocol.ImageStateAnswer(self.images.build(recipe))
            case protocol.Metrics(name=name, since=since):
                protocol.check_name(name)
                return protocol.MetricsAnswer(self.monitor.metrics(name, since))
            case _:
                raise AgentError(ErrorCode.INVALID, f"{request.op} is a stream, not a call")
        return protocol.Done()

    def health(self) -> protocol.HealthInfo:
        workloads = self.workloads
        unsandboxed_single = not workloads.sandbox_ok and not workloads.insecure
        return protocol.HealthInfo(
            pid=os.getpid(),
            sandbox=workloads.sandbox_ok,
            sandbox_reason=workloads.sandbox_reason,
            insecure=workloads.insecure,
            single_user_id=workloads.single_user_id if unsandboxed_single else None,
            running=workloads.running_count(),
            gpus=protocol.from_wire(protocol.GpuSummary, workloads.inventory.summary()),
            project_quota=workloads.quotas.on,
            project_quota_reason=workloads.quotas.support.reason,
            limits=workloads.cgroups.label if workloads.cgroups is not None else "",
            limits_reason=workloads.limits_reason,
            network=workloads.network,
            network_reason=workloads.network_reason,
        )

    def read_logs(self, name: str, offset: int, limit: int) -> protocol.LogChunk:
        protocol.check_name(name)
        if offset < 0 or limit < 0:
            raise AgentError(ErrorCode.INVALID, "offset and limit must be >= 0")
        # Whether it had ended is read *before* the file: a workload that had
        # ended then has written everything the read finds.
        ended = self.workloads.has_ended(name)
        data = self.workloads.output.read(name, offset, limit)
        return protocol.LogChunk(data=data, offset=offset + len(data), ended=ended)

    def follow(self, peer: _Handler, request: protocol.Follow) -> None:
        """Stream ``name``'s log from ``offset`` until it ended and all was sent (see the protocol)."""
        protocol.check_name(request.name)
        offset = request.offset
        if offset < 0:
            raise AgentError(ErrorCode.INVALID, "offset must be >= 0")
        path = self.workloads.output.path(request.name)
        peer.send(protocol.encode_answer(protocol.Done()))
        logfile = None
        try:
            while True:
                if logfile is None:
                    with contextlib.suppress(FileNotFoundError):
                        logfile = path.open("rb")
                        logfile.seek(offset)
                # Whether it had ended is read *before* the file: a workload
                # that had ended then has written everything the read finds.
                ended = self.workloads.has_ended(request.name)
                data = logfile.read(FOLLOW_CHUNK) if logfile is not None else b""
                if data:
                    offset += len(data)
                    peer.send(protocol.LogData(data, offset).to_wire())
                    continue  # drain what is there before waiting
                if ended:
                    peer.send(protocol.LogEnd(offset).to_wire())
                    return
                # The wait doubles as the hang-up check: the client sends
                # nothing, so a readable socket means it closed (or broke
                # the protocol); either way this thread ends.
                readable, _, _ = select.select([peer.request], [], [], FOLLOW_POLL_SECONDS)
                if readable:
                    return
        except OSError:
            return  # the client went away mid-send
        finally:
            if logfile is not None:
                logfile.close()

    def terminal(self, peer: _Handler, request: protocol.OpenTerminal) -> None:
        """Relay a shell in the running workload (see :mod:`.pty`)."""
        workload = self.workloads.running(request.name)
        assert workload.user_id is not None
        master, proc = pty.open_shell(
            workload,
            uid=self.workloads.uid_for(workload.user_id),
            volume=self.workloads.volume_for(workload.user_id),
            rows=request.rows,
            cols=request.cols,
        )
        peer.send(protocol.encode_answer(protocol.Done()))
        pty.relay(peer, master, proc)

    def exec(self, peer: _Handler, request: protocol.Exec) -> None:
        """Run a command in the running workload and relay it (see :mod:`.execs`)."""
        workload = self.workloads.running(request.name)
        assert workload.user_id is not None
        proc, master = execs.start(
            workload,
            uid=self.workloads.uid_for(workload.user_id),
            volume=self.workloads.volume_for(workload.user_id),
            request=request,
        )
        peer.send(protocol.encode_answer(_exec_started(request.binary)))
        execs.relay(peer, proc, master, binary=request.binary)

    def files(self, peer: _Handler, request: protocol.OpenFiles) -> None:
        """Relay ``sftp-server`` over the user's volume in a sandbox of its own (see :mod:`.files`).

        Started by this connection's thread, which lives as long as the
        session: bwrap's --die-with-parent follows the forking thread.
        """
        proc = files.start(self.workloads, user_id=request.user_id)
        peer.send(protocol.encode_answer(_exec_started(request.binary)))
        execs.relay(peer, proc, None, binary=request.binary)

    def connect_port(self, peer: _Handler, request: protocol.ConnectPort) -> None:
        """Connect to a port inside the running workload and relay bytes (see :mod:`.ports`)."""
        protocol.check_name(request.name)
        protocol.check_port(request.port)
        target = ports.connect(self.workloads.running(request.name), request.port)
        try:
            peer.send(protocol.encode_answer(protocol.Done()))
        except OSError:
            target.close()
            return
        ports.relay(peer, target)


def _exec_started(binary: bool) -> protocol.ExecStarted:
    """Exec's answer: binary frames follow when the client asked for them (this agent speaks them)."""
    if binary:
        return protocol.ExecStarted(binary=True, binary_version=protocol.BINARY_VERSION)
    return protocol.ExecStarted()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    # socketserver's 5 is too few: a Run Task's later workers (up to 8 at
    # once), their polls and the reconciler connect together, and a Unix
    # socket's connect with a timeout fails with EAGAIN on a full backlog.
    request_queue_size = 64
    agent: Agent


class _Handler(socketserver.StreamRequestHandler):
    """One connection: requests in, answers out; or, after follow/terminal, a stream."""

    server: _Server

    def send(self, message: dict[str, Any]) -> None:
        self.wfile.write(protocol.encode_line(message))
        self.wfile.flush()

    def messages(self) -> Iterator[dict[str, Any]]:
        for line in self.rfile:
            yield protocol.decode_line(line)

    def handle(self) -> None:
        agent = self.server.agent
        for line in self.rfile:
            try:
                request = protocol.decode_request(protocol.decode_line(line))
                if isinstance(request, protocol.Follow):
                    agent.follow(self, request)
                    return
                if isinstance(request, protocol.OpenTerminal):
                    agent.terminal(self, request)
                    return
                if isinstance(request, protocol.Exec):
                    agent.exec(self, request)
                    return
                if isinstance(request, protocol.OpenFiles):
                    agent.files(self, request)
                    return
                if isinstance(request, protocol.ConnectPort):
                    agent.connect_port(self, request)
                    return
                answer = protocol.encode_answer(agent.handle(request))
            except AgentError as exc:
                answer = exc.to_wire()
            except (ValueError, TypeError) as exc:
                answer = AgentError(ErrorCode.INVALID, f"bad request: {exc!r}").to_wire()
            except OSError as exc:
                log.exception("operation failed")
                answer = AgentError(ErrorCode.UNAVAILABLE, f"agent: {exc}").to_wire()
            try:
                self.send(answer)
            except OSError:
                return
