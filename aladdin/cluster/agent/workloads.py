"""Starting, stopping and tracking workloads: one :class:`Workload` each, in one table.

Threads. ``bwrap --die-with-parent`` uses PR_SET_PDEATHSIG, which fires
when the *thread* that forked it exits, not the process; a workload spawned
by a request's thread would be killed as soon as that request was answered.
Every workload is therefore spawned by one of the agent's spawner threads,
which run the queue of :meth:`Workloads.run_spawns` and live as long as the
agent (they outlive :meth:`Workloads.stop_all`), never by a request's
thread. There are several, so that the workers of a Run Task, which the
portal sends together, start together.

Ends. A workload ends when its main process does (bwrap, or the command
itself without a sandbox): :meth:`Workloads._wait` records the phase, exit
code, reason and time, after the last of its output reached the log, and
sets :attr:`Workload.ended`. A stop sends SIGTERM to every process in the
sandbox, SIGKILL after the grace.

Limits. Where the host lets the agent make cgroups (:mod:`..cgroups`),
each workload runs in its own, with its memory, CPU and a process limit;
its first process enters it before it runs anything (:class:`CgroupGate`),
and it is removed, with whatever is left in it, when the workload ends. A
workload whose processes the kernel killed for memory ends failed with
"out of memory (limit N GiB)".

Network. Where the host can (:mod:`..egress`), each sandbox's network
namespace gets its deny rules and a slirp4netns before the workload's
command runs (the guard waits for the agent's "go"); slirp4netns runs in
the workload's cgroup and ends with the workload.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aladdin.lib.diskusage import tree_bytes

from .. import cgroups as cgroup_limits
from .. import debugger, egress, monitor, reasons, sandbox
from .. import gpus as gpu_cards
from ..base import Phase, WorkloadSpec
from ..protocol import AgentError, ErrorCode, WorkloadRecord, check_name
from .gate import CgroupGate
from .images import BuildError, ImageEnv, Images
from .journal import Journal, JournalState
from .output import OutputStore
from .projquota import ProjectQuotas, Support

log = logging.getLogger("aladdin.cluster.agent")

ENDED = frozenset({Phase.SUCCEEDED, Phase.FAILED})
PUMP_JOIN_SECONDS = 5  # a process left outside a sandbox may hold the pipe open
TERM_RESCAN_SECONDS = 0.05  # how often a stop looks for new processes to SIGTERM
# Each workload gets this long to end on SIGTERM when the agent stops; the
# supervisors give the agent 30 s (scripts/supervise.py, the systemd unit).
SHUTDOWN_GRACE_SECONDS = 10
SPAWN_TIMEOUT_SECONDS = 30
# How long bwrap may take to set a sandbox up before its network is attached.
SETUP_TIMEOUT_SECONDS = 20
# A later worker of a Run Task whose worker 0 has not arrived waits this long
# for it (the portal sends them together), polling at the second figure.
LEADER_APPEAR_SECONDS = 2.0
LEADER_POLL_SECONDS = 0.005
READY = b"ready\n"  # what the guard says once bwrap has set the sandbox up (sandbox.GUARD)
# Released workloads whose Monitor samples are kept (a ring is at most ~100 KB).
RETIRED_MAX = 200


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)  # identity: a stopped workload and a new one of its name differ
class Workload:
    """One workload of this agent: its record, and while it runs, what runs it.

    The fields up to ``gpu_devices`` are its :class:`WorkloadRecord`
    (journaled, reported; :meth:`record` copies them by that class's field
    names, so a field added there without its twin here fails every test);
    the rest live only as long as this agent does. Change them under
    :attr:`Workloads.lock`.
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
    pid: int | None = None  # bwrap's (or, unsandboxed, the command's) host pid
    sandbox_pid: int | None = None  # the sandbox's init, as the host sees it
    pid_namespace: int | None = None  # its inode: guards against a recycled pid
    sandboxed: bool = False
    image: str = ""
    gpu_devices: tuple[str, ...] = ()  # what CUDA_VISIBLE_DEVICES names
    reason_id: str = ""  # ``reason`` as a message (aladdin.cluster.reasons)
    reason_params: dict[str, Any] = field(default_factory=dict)
    group: str = ""  # WorkerGroup.group of a Run Task's worker
    # --- this run only -----------------------------------------------------------
    cards: list[gpu_cards.Card] = field(default_factory=list)  # held while it runs
    env: dict[str, str] = field(default_factory=dict, repr=False)  # secrets: never journaled
    proc: subprocess.Popen | None = None  # until it ended
    watch_fd: int | None = None  # the write end of the sandbox guard's stdin
    pump: threading.Thread | None = None  # copies its output to the log
    ended: threading.Event = field(default_factory=threading.Event)
    # A Run Task's worker 0: its network namespace exists (later workers may
    # join it), and its network is attached and filtered (they may run).
    netns_ready: threading.Event = field(default_factory=threading.Event)
    network_ready: threading.Event = field(default_factory=threading.Event)
    end_reason: reasons.EndReason | None = (
        None  # why the agent is ending it: stopped, agent stopped
    )
    cgroups: cgroup_limits.Cgroups | None = None  # set while its cgroup exists
    memory_mib: int = 0  # its memory limit (0: none), for the out-of-memory reason
    network: egress.Attachment | None = None  # its slirp4netns while it runs
    # Its Monitor samples (agent/monitor.py): kept until it is forgotten.
    sampler: monitor.Sampler = field(default_factory=monitor.Sampler, repr=False)
    ring: monitor.SampleRing = field(default_factory=monitor.SampleRing, repr=False)

    @property
    def has_ended(self) -> bool:
        return self.phase in ENDED

    def set_reason(self, reason: reasons.EndReason | None) -> None:
        if reason is None:
            self.reason, self.reason_id, self.reason_params = "", "", {}
        else:
            self.reason, self.reason_id, self.reason_params = (
                reason.text,
                reason.id,
                dict(reason.params),
            )

    def record(self) -> WorkloadRecord:
        return WorkloadRecord(**{f.name: getattr(self, f.name) for f in fields(WorkloadRecord)})

    @classmethod
    def from_record(cls, record: WorkloadRecord) -> Workload:
        workload = cls(**{f.name: getattr(record, f.name) for f in fields(WorkloadRecord)})
        workload.labels = dict(record.labels)
        workload.reason_params = dict(record.reason_params)
        if workload.has_ended:
            workload.ended.set()
        elif workload.phase == Phase.RUNNING and workload.sandbox_pid:
            workload.netns_ready.set()
            workload.network_ready.set()
        return workload


def missing(name: str) -> WorkloadRecord:
    return WorkloadRecord(name=name, phase=Phase.MISSING)


class Workloads:
    """The table of workloads by name, the user spaces, and the cards they hold."""

    def __init__(
        self,
        *,
        volumes_dir: Path,
        logs_dir: Path,
        journal: Journal,
        uid_base: int,
        images: Images,
        insecure: bool,
        log_max_bytes: int,
        log_user_max_bytes: int,
    ):
        self.volumes_dir = volumes_dir
        self.journal = journal
        self.uid_base = uid_base
        self.images = images
        self.insecure = insecure
        # Set by the agent's prepare(): what the host can do.
        self.sandbox_ok = False
        self.sandbox_reason = ""
        # Set by prepare() too: the cgroups of workloads, or None and why not.
        self.cgroups: cgroup_limits.Cgroups | None = None
        self.limits_reason = "not probed"
        # Set by prepare() too: the egress policy, and how sandboxes reach the
        # network ("slirp4netns") or "" and why not (loopback only then).
        self.egress_policy = egress.Policy()
        self.network = ""
        self.network_reason = "not probed"
        self.pids_max = 0
        # The platform's debugpy (aladdin.cluster.debugger), set by the agent.
        self.debugpy_dir: Path | None = None
        self.inventory = gpu_cards.Inventory([])
        # Hard caps per volume where the filesystem has project quotas (issue 14).
        self.quotas = ProjectQuotas(Support(False, "not probed yet"))
        # The one user an unsandboxed host serves (unless insecure); journaled.
        self.single_user_id: int | None = None
        self.lock = threading.RLock()
        self._table: dict[str, Workload] = {}
        # The Monitor samples of released workloads (stopped or forgotten), newest
        # last: a job's page still charts its run after the end (agent/monitor.py).
        self.retired: OrderedDict[str, monitor.SampleRing] = OrderedDict()
        self._spawns: queue.Queue[tuple[Callable[[], None], Future[None]]] = queue.Queue()
        self._refusing = False  # the agent is stopping: no more spawns
        self._spawning = 0  # spawns queued or under way (refuse_spawns waits for them)
        self._spawns_idle = threading.Condition()
        self.output = OutputStore(
            logs_dir,
            max_bytes=log_max_bytes,
            user_max_bytes=log_user_max_bytes,
            lock=self.lock,
            has_ended=self.has_ended,
        )

    # --- the journal -------------------------------------------------------------
    def load(self, state: JournalState | None) -> None:
        """Take over the previous run's records: what it left running ended with it."""
        self.remove_stale_cgroups()
        if state is None:
            return
        self.single_user_id = state.single_user_id
        self.output.adopt(state.logs)
        beat = self.journal.last_beat()
        for name, record in state.workloads.items():
            workload = Workload.from_record(record)
            if not workload.has_ended:
                # The previous agent died without recording the end (SIGKILL,
                # power loss): its workloads died with it, at about its last
                # heartbeat. Whatever survived it is ended now.
                self._kill_sandbox(workload)
                workload.phase = Phase.FAILED
                workload.set_reason(reasons.agent_died())
                workload.finished_at = beat
                workload.ended.set()
            self._table[name] = workload
        self.save()

    def remove_stale_cgroups(self) -> None:
        """Remove the cgroups of workloads that do not run here (a previous agent's, with what is left in them)."""
        if self.cgroups is None:
            return
        with self.lock:
            keep = {n for n, w in self._table.items() if not w.has_ended}
        for name in self.cgroups.remove_stale(keep):
            log.info("removed the stale cgroup of %s", name)

    def save(self) -> None:
        with self.lock:
            state = JournalState(
                single_user_id=self.single_user_id,
                workloads={n: w.record() for n, w in self._table.items()},
                logs=dict(self.output.owners),
            )
            self.journal.save(state)

    # --- reading -----------------------------------------------------------------
    def has_ended(self, name: str) -> bool:
        """True when ``name`` has ended or has no record (its log can no longer grow)."""
        with self.lock:
            workload = self._table.get(name)
            return workload is None or workload.has_ended

    def status(self, name: str) -> WorkloadRecord:
        with self.lock:
            workload = self._table.get(name)
            return workload.record() if workload else missing(name)

    def get(self, name: str) -> Workload | None:
        """``name``'s workload, running or ended; None when it has no record. Hold :attr:`lock`."""
        return self._table.get(name)

    def table(self) -> list[Workload]:
        """Every workload with a record. Hold :attr:`lock` while reading their fields."""
        return list(self._table.values())

    def records(self) -> list[WorkloadRecord]:
        with self.lock:
            return [w.record() for w in self._table.values()]

    def running_count(self) -> int:
        with self.lock:
            return sum(1 for w in self._table.values() if not w.has_ended)

    def running(self, name: str) -> Workload:
        """``name`` if it runs now; raises AgentError(NOT_RUNNING)."""
        with self.lock:
            workload = self._table.get(name)
            if workload is None or workload.phase != Phase.RUNNING:
                raise AgentError(ErrorCode.NOT_RUNNING, f"{name} is not running")
            return workload

    # --- user space --------------------------------------------------------------
    def uid_for(self, user_id: int) -> int:
        return sandbox.sandbox_uid(self.uid_base, user_id)

    def volume_for(self, user_id: int) -> Path:
        return self.volumes_dir / str(int(user_id))

    def ensure_user_space(self, user_id: int, storage_gib: int | None = None) -> None:
        volume = self.volume_for(user_id)
        volume.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(volume, self.uid_for(user_id), self.uid_for(user_id))
        os.chmod(volume, 0o700)
        if storage_gib is not None and self.quotas.on:
            try:
                # The project id is the sandbox uid: one per user on this host.
                self.quotas.apply(volume, project_id=self.uid_for(user_id), storage_gib=storage_gib)
            except OSError as exc:
                # The user's work goes on without the cap; the portal's refusals
                # and its free-space reserve still hold (SPEC §4.2).
                log.warning("hard cap of user %s's volume: %s", user_id, exc)

    def delete_user_space(self, user_id: int) -> None:
        with self.lock:
            busy = [
                w.name for w in self._table.values() if w.user_id == user_id and not w.has_ended
            ]
        if busy:
            raise AgentError(
                ErrorCode.USER_SPACE_BUSY,
                f"user {user_id} still has running workloads: {', '.join(busy)}",
            )
        shutil.rmtree(self.volume_for(user_id), ignore_errors=True)

    def disk_free(self) -> tuple[int, int]:
        """(total, free) bytes of the volumes' filesystem; free as an unprivileged writer sees it."""
        st = os.statvfs(self.volumes_dir)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def usage(self, user_id: int) -> int:
        # One scandir walk like `du -s` (hard links once, no symlinks followed);
        # bench/storage_usage_scan.py measures it against du.
        return tree_bytes(self.volume_for(user_id))

    # --- starting ----------------------------------------------------------------
    def _check_single_user(self, user_id: int) -> None:
        if self.sandbox_ok or self.insecure:
            return
        if self.single_user_id is None:
            self.single_user_id = user_id
        elif self.single_user_id != user_id:
            raise AgentError(
                ErrorCode.SINGLE_USER,
                f"This host cannot sandbox workloads ({self.sandbox_reason}), so the local "
                f"backend serves one user only (user {self.single_user_id}). Install "
                "bubblewrap, or set ALADDIN_LOCAL_INSECURE=1 to let several users share "
                "the host without isolation.",
            )

    def _group_leader(self, spec: WorkloadSpec) -> Workload | None:
        """Worker 0 of ``spec``'s group when ``spec`` is a later worker that must join it.

        The portal sends a task's workers together (LocalDriver
        ``starts_workers_together``): a later worker waits here for worker
        0's network namespace, up to LEADER_APPEAR_SECONDS for its start to
        arrive and SPAWN_TIMEOUT_SECONDS for its sandbox. Raises AgentError:
        worker 0 did not come or ended (``not_running``), or the agent
        cannot make a sandbox join another's network (not root).
        """
        group = spec.group
        if group is None or group.index == 0 or not self.sandbox_ok:
            return None  # unsandboxed workloads share the host's loopback already
        leader_name = f"{group.group}-0"
        check_name(leader_name)
        if not spec.name == f"{group.group}-{group.index}":
            raise AgentError(ErrorCode.INVALID, f"{spec.name} is not worker {group.index}")
        if os.geteuid() != 0:
            raise AgentError(
                ErrorCode.UNAVAILABLE,
                "the workers of a Run Task share a network namespace, which needs the agent "
                "to run as root",
            )
        began = time.monotonic()
        while True:
            with self.lock:
                leader = self._table.get(leader_name)
            waited = time.monotonic() - began
            if leader is None:
                if waited >= LEADER_APPEAR_SECONDS:
                    raise AgentError(ErrorCode.NOT_RUNNING, f"{leader_name} is not running")
                time.sleep(LEADER_POLL_SECONDS)
                continue
            if leader.has_ended or waited >= SPAWN_TIMEOUT_SECONDS:
                raise AgentError(ErrorCode.NOT_RUNNING, f"{leader_name} is not running")
            if leader.netns_ready.wait(LEADER_POLL_SECONDS) and leader.sandbox_pid:
                return leader

    def start(self, spec: WorkloadSpec) -> WorkloadRecord:
        """Start ``spec`` (or report the one of its name: a retried create finds its own).

        A Run Task's worker ``i > 0`` (``spec.group``) runs in worker 0's
        network namespace; worker 0 must run (:meth:`_group_leader`).
        """
        check_name(spec.name)
        with self.lock:
            existing = self._table.get(spec.name)
            if existing is not None:
                return existing.record()
            self._check_single_user(spec.user_id)
        if spec.debugger and (missing_debugger := debugger.problem(self.debugpy_dir)):
            # Refused before any record or card: the job is never billed.
            raise AgentError(ErrorCode.NO_DEBUGGER, missing_debugger)
        self._group_leader(spec)
        # The volume before the record: if it cannot be made (disk, permissions)
        # the caller gets an error worth retrying, and no record or card is
        # left behind to make the retry find a start that never happened.
        self.ensure_user_space(spec.user_id)
        # The image's environment, or why there is none: the start is then
        # accepted and fails at once with that reason, as a pod whose image
        # cannot be pulled. Never another interpreter in its place.
        try:
            image_env: ImageEnv | None = self.images.env_for(spec.recipe)
            unready: reasons.EndReason | None = None
        except BuildError as exc:
            image_env, unready = None, reasons.image_not_ready(str(exc))
        with self.lock:
            existing = self._table.get(spec.name)  # a concurrent start of the name won
            if existing is not None:
                return existing.record()
            if unready is not None:
                now = _now()
                failed = Workload(
                    name=spec.name,
                    phase=Phase.FAILED,
                    user_id=spec.user_id,
                    kind=spec.kind,
                    image=spec.image,
                    labels=dict(spec.labels),
                    reason=unready.text,
                    reason_id=unready.id,
                    reason_params=dict(unready.params),
                    group=spec.group.group if spec.group else "",
                    started_at=now,
                    finished_at=now,
                )
                failed.ended.set()
                self._table[spec.name] = failed
        if image_env is None:
            self.save()
            return failed.record()
        with self.lock:
            existing = self._table.get(spec.name)
            if existing is not None:
                return existing.record()
            wanted = {model: n for model, n in spec.resources.gpus.items() if n > 0}
            cards: list[gpu_cards.Card] = []
            if wanted and not spec.gpu_devices:
                try:
                    cards = self.inventory.allocate(spec.name, wanted)
                except gpu_cards.NoFreeCards as exc:
                    raise AgentError(ErrorCode.NO_CAPACITY, str(exc)) from exc
            workload = Workload(
                name=spec.name,
                phase=Phase.PENDING,
                user_id=spec.user_id,
                kind=spec.kind,
                image=spec.image,
                labels=dict(spec.labels),
                sandboxed=self.sandbox_ok,
                group=spec.group.group if spec.group else "",
                started_at=_now(),
                gpu_devices=tuple(c.visible_id for c in cards),
                cards=cards,
            )
            self._table[spec.name] = workload
        future: Future[None] = Future()

        def spawn() -> None:
            try:
                self._spawn(workload, spec, image_env)
                future.set_result(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                future.set_exception(exc)

        try:
            with self.lock:
                if self._refusing:
                    raise AgentError(ErrorCode.UNAVAILABLE, "the agent is stopping")
                with self._spawns_idle:
                    self._spawning += 1  # until run (run_spawns) or refused (refuse_spawns)
                self._spawns.put((spawn, future))
            future.result(timeout=SPAWN_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - reported as the workload's failure
            with self.lock:
                self._close_watch(workload)
                workload.phase = Phase.FAILED
                workload.set_reason(reasons.could_not_start(str(exc)))
                workload.finished_at = _now()
                workload.ended.set()
                self._release_cards(workload)
            self.save()
        return workload.record()

    def run_spawns(self, timeout: float) -> None:
        """Run one spawn queued within ``timeout``: the spawner threads' loop calls this."""
        try:
            spawn, _future = self._spawns.get(timeout=timeout)
        except queue.Empty:
            return
        try:
            spawn()
        finally:
            self._spawn_done()

    def _spawn_done(self) -> None:
        with self._spawns_idle:
            self._spawning -= 1
            self._spawns_idle.notify_all()

    def refuse_spawns(self, timeout: float = SPAWN_TIMEOUT_SECONDS) -> None:
        """The agent is stopping: fail the spawns not yet taken, refuse new ones, wait for the rest.

        Returns once no spawn is under way (or after ``timeout``), so that
        :meth:`stop_all` sees every workload that will run and stops it.
        """
        with self.lock:
            self._refusing = True
        while True:
            try:
                _spawn, future = self._spawns.get_nowait()
            except queue.Empty:
                break
            future.set_exception(AgentError(ErrorCode.UNAVAILABLE, "the agent is stopping"))
            self._spawn_done()
        with self._spawns_idle:
            self._spawns_idle.wait_for(lambda: self._spawning == 0, timeout)

    def _spawn(self, workload: Workload, spec: WorkloadSpec, image_env: ImageEnv) -> None:
        name, user_id = workload.name, int(spec.user_id)
        uid = self.uid_for(user_id)
        volume = self.volume_for(user_id)
        cards = workload.cards
        # Device numbers (for the sandbox's device nodes) and what CUDA sees.
        gpus = tuple(c.index for c in cards) or spec.gpu_devices
        env = sandbox.workload_env(spec.env, bin_dirs=image_env.bin_dirs, gpu_devices=gpus)
        if spec.group is not None:
            # The workers meet on the loopback they share (MASTER_ADDR
            # 127.0.0.1): gloo and NCCL must not pick another interface.
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
            env.setdefault("NCCL_SOCKET_IFNAME", "lo")
        if cards:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(c.visible_id for c in cards)
            if any(c.virtual for c in cards):
                # No GPU on this host: the cards are accounted for, CUDA is absent.
                env["ALADDIN_VIRTUAL_GPUS"] = "1"
                gpus = ()  # no device nodes to bind
        command = list(spec.command)
        if spec.debugger and not self.sandbox_ok and self.debugpy_dir is not None:
            # No sandbox to mount it in: the host's copy by its own path.
            command = [
                str(self.debugpy_dir / "debugpy") if arg == debugger.ENTRY else arg
                for arg in command
            ]
        as_user: dict[str, Any] = (
            {"user": uid, "group": uid, "extra_groups": []} if os.geteuid() == 0 else {}
        )
        gate = self._make_cgroup(workload, spec)
        # Output goes through a pipe that the agent copies into the log file,
        # up to its bounds: a job printing in a loop cannot fill the host's
        # disk (the rest is dropped, with a note, and the job runs on).
        out_r, out_w = os.pipe()
        try:
            if self.sandbox_ok:
                proc = self._spawn_sandboxed(
                    workload, spec, env, command, volume, image_env, gpus, uid, out_w, as_user,
                    gate,
                )  # fmt: skip
            else:
                # No sandbox (single user, or the operator's insecure flag):
                # the volume is the working directory and HOME.
                env["HOME"] = str(volume)
                proc = subprocess.Popen(
                    gate.wrap(command),
                    cwd=volume,
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=subprocess.STDOUT,
                    env=env,
                    pass_fds=gate.pass_fds,
                    start_new_session=True,
                    **as_user,
                )
                gate.release(proc)
        except BaseException:
            os.close(out_r)
            gate.close()
            self._remove_cgroup(workload)
            raise
        finally:
            os.close(out_w)
        self.output.claim(name, user_id)
        pump = threading.Thread(
            target=self.output.copy,
            args=(out_r, name, user_id),
            daemon=True,
            name=f"output-{name}",
        )
        pump.start()
        with self.lock:
            workload.pump = pump
            workload.proc = proc
            workload.env = env
            workload.phase = Phase.RUNNING
            workload.pid = proc.pid
        self.save()
        threading.Thread(target=self._wait, args=(workload,), daemon=True).start()

    def _spawn_sandboxed(
        self,
        workload: Workload,
        spec: WorkloadSpec,
        env: dict[str, str],
        command: list[str],
        volume: Path,
        image_env: ImageEnv,
        gpus: tuple[str, ...],
        uid: int,
        out_w: int,
        as_user: dict[str, Any],
        gate: CgroupGate,
    ) -> subprocess.Popen:
        # A Run Task's later worker joins worker 0's network namespace (with
        # its slirp4netns and rules) instead of getting one of its own. Asked
        # before any descriptor is opened: a refusal leaks none.
        leader = self._group_leader(spec)
        info_r, info_w = os.pipe()
        # The guard's stdin; the agent keeps watch_w. A socket pair, not a
        # pipe: the guard answers "ready" on it (sandbox.GUARD).
        agent_end, guard_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        watch_w, watch_r = agent_end.detach(), guard_end.detach()
        workload.watch_fd = watch_w
        etc_fds: dict[str, int] = {}
        files = sandbox.etc_files(uid)
        if self.network:
            files["resolv.conf"] = self.egress_policy.resolv_conf()
        for filename, content in files.items():
            r, w = os.pipe()
            os.write(w, content)
            os.close(w)
            etc_fds[filename] = r
        options_fd = None
        try:
            # The student's variables go to the sandboxed process only
            # (--clearenv/--setenv, inside the --args memfd); bwrap itself
            # runs by absolute path with HOST_ENV.
            options_fd = sandbox.args_fd(
                sandbox.bwrap_options(
                    volume=volume,
                    env=env,
                    workdir=spec.workdir or "/root",
                    image_dirs=(image_env.path,) if image_env.path else (),
                    userland=image_env.userland,
                    gpu_devices=gpus,
                    etc_fds=etc_fds,
                    info_fd=info_w,
                    shm_mib=spec.resources.memory_mib,
                    ro_binds=(
                        ((self.debugpy_dir, debugger.MOUNT),)
                        if spec.debugger and self.debugpy_dir is not None
                        else ()
                    ),
                    share_net=leader is not None,
                )
            )
            argv = sandbox.bwrap_argv(options_fd, sandbox.guarded(command))
            if leader is not None:
                assert leader.sandbox_pid is not None  # _group_leader checked it
                # nsenter (root) enters the network only, then drops to the uid.
                argv, as_user = sandbox.joined_net_argv(leader.sandbox_pid, uid, argv), {}
            # The gate holds bwrap (same pid once released) until it is in
            # the workload's cgroup; its argv carries no student data.
            proc = subprocess.Popen(
                gate.wrap(argv),
                stdin=watch_r,
                stdout=out_w,
                stderr=subprocess.STDOUT,
                env=sandbox.HOST_ENV,
                pass_fds=(info_w, options_fd, *etc_fds.values(), *gate.pass_fds),
                start_new_session=True,  # Ctrl-C reaches the agent, which stops it
                **as_user,
            )
            gate.release(proc)
        except BaseException:
            os.close(info_r)
            raise
        finally:
            os.close(info_w)
            os.close(watch_r)
            if options_fd is not None:
                os.close(options_fd)
            for fd in etc_fds.values():
                os.close(fd)
        try:
            info = _read_info(info_r)
        finally:
            os.close(info_r)
        workload.sandbox_pid = info.get("child-pid")
        workload.pid_namespace = info.get("pid-namespace")
        if workload.sandbox_pid and leader is None:
            workload.netns_ready.set()  # later workers of its group may join it now
        try:
            if self.network and leader is None:
                if not workload.sandbox_pid:
                    raise OSError("bwrap did not report the sandbox's pid")
                # Not before bwrap has set up the sandbox's loopback (GUARD).
                _await_ready(watch_w, SETUP_TIMEOUT_SECONDS)
                workload.network = egress.attach(
                    workload.sandbox_pid, info.get("net-namespace"), self.egress_policy
                )
                if workload.cgroups is not None:
                    # Its CPU and memory are the workload's traffic: charged
                    # to its limits, not to the host's spare capacity.
                    workload.cgroups.attach(workload.name, workload.network.proc.pid)
            if leader is not None:
                # Worker 0's rules and slirp4netns are this worker's too.
                _await_leader_network(leader, SETUP_TIMEOUT_SECONDS)
            # The guard runs the command only now, rules and network in place.
            os.write(watch_w, b"go\n")
            workload.network_ready.set()
        except BaseException:
            # Never run it unfiltered: EOF ends the guard, the kill the rest.
            self._close_network(workload)
            self._close_watch(workload)
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
            raise
        return proc

    # --- limits ------------------------------------------------------------------
    def _make_cgroup(self, workload: Workload, spec: WorkloadSpec) -> CgroupGate:
        """The workload's cgroup with its limits, and the gate its first process waits at.

        A resource the spec gives as 0 is left unlimited (no preset says how
        much); the process limit is the agent's own (ALADDIN_LOCAL_PIDS_MAX).
        """
        if self.cgroups is None:
            return CgroupGate(None, workload.name)
        limits = cgroup_limits.Limits(
            memory_mib=max(0, spec.resources.memory_mib),
            cpu_millicores=max(0, spec.resources.cpu_millicores),
            pids_max=self.pids_max,
        )
        self.cgroups.create(workload.name, limits)
        with self.lock:
            workload.cgroups = self.cgroups
            workload.memory_mib = limits.memory_mib
        return CgroupGate(self.cgroups, workload.name)

    @staticmethod
    def _remove_cgroup(workload: Workload) -> None:
        cgroups, workload.cgroups = workload.cgroups, None
        if cgroups is not None and not cgroups.remove(workload.name):
            log.warning("could not remove the cgroup of %s", workload.name)

    # --- ending ------------------------------------------------------------------
    def _release_cards(self, workload: Workload) -> None:
        if workload.cards:
            workload.cards = []
            self.inventory.release(workload.name)

    @staticmethod
    def _close_network(workload: Workload) -> None:
        network, workload.network = workload.network, None
        if network is not None:
            network.close()

    def _close_watch(self, workload: Workload) -> None:
        fd, workload.watch_fd = workload.watch_fd, None
        if fd is not None:
            os.close(fd)

    @staticmethod
    def _kill_sandbox(workload: Workload) -> None:
        """SIGKILL what is left of a sandbox whose bwrap has gone (the kernel then ends its pid namespace).

        --die-with-parent normally does this, but a bwrap killed in its first
        milliseconds can leave its inner init behind. The namespace inode
        guards against a recycled pid.
        """
        pid, ns = workload.sandbox_pid, workload.pid_namespace
        if not pid or not ns:
            return
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/pid") == f"pid:[{ns}]":
                os.kill(pid, signal.SIGKILL)

    def _wait(self, workload: Workload) -> None:
        proc = workload.proc
        assert proc is not None
        rc = proc.wait()
        finished_at = _now()  # the release: billing ends here, not after the flush below
        with self.lock:
            self._kill_sandbox(workload)
            pump, workload.pump = workload.pump, None
        # Read before the removal, which kills what is left (and the counter with it).
        cgroups = workload.cgroups
        oom_kills = cgroups.oom_kills(workload.name) if cgroups is not None else 0
        self._remove_cgroup(workload)
        if pump is not None:
            # The sandbox is gone, so the pipe reaches EOF: the last output is
            # in the file before the workload reads as ended (followers rely on it).
            pump.join(PUMP_JOIN_SECONDS)
        with self.lock:
            reason: reasons.EndReason | None
            if workload.end_reason is not None:
                phase, reason = Phase.FAILED, workload.end_reason
            elif rc == 0:
                # A command that survived the OOM kill of one of its children
                # and exited 0 succeeded: its own status is the verdict.
                phase, reason = Phase.SUCCEEDED, None
            elif oom_kills:
                phase, reason = Phase.FAILED, reasons.out_of_memory(workload.memory_mib)
            else:
                phase, reason = Phase.FAILED, reasons.exited(rc)
            workload.phase, workload.end_reason = phase, None
            workload.set_reason(reason)
            workload.exit_code = rc
            workload.finished_at = finished_at
            workload.proc = None
            workload.env = {}
            self._release_cards(workload)
            self._close_watch(workload)
        self._close_network(workload)
        workload.ended.set()
        self.save()

    def _sandbox_members(self, sandbox_pid: int) -> list[int]:
        """Host pids of every process in the sandbox's pid namespace but its init."""
        try:
            ns = os.readlink(f"/proc/{sandbox_pid}/ns/pid")
        except OSError:
            return []
        members = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != sandbox_pid:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                        members.append(int(entry))
        return members

    def _terminate(self, workload: Workload, grace: float) -> None:
        """SIGTERM the workload's processes, SIGKILL after ``grace``; returns when it ended."""
        with self.lock:
            proc = workload.proc
        if proc is None:
            return
        event = workload.ended
        # The sandbox's init (bwrap, pid 1 inside) ignores SIGTERM from
        # outside, so the processes it runs get it directly. A workload
        # stopped in its first milliseconds may have only the guard (which
        # ignores TERM) so far: processes that appear during the grace get
        # the signal too, or the stop would wait out the whole grace.
        deadline = time.monotonic() + grace
        ended = False
        if workload.sandbox_pid:
            # pid → its executable when signalled: a process caught between
            # fork and exec still has the guard's trap and shrugs TERM off,
            # so it gets TERM again once it is the command.
            signalled: dict[int, str] = {}
            while True:
                for pid in self._sandbox_members(workload.sandbox_pid):
                    try:
                        exe = os.readlink(f"/proc/{pid}/exe")
                    except OSError:
                        exe = ""
                    if signalled.get(pid) == exe:
                        continue
                    signalled[pid] = exe
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGTERM)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if event.wait(min(TERM_RESCAN_SECONDS, remaining)):
                    ended = True
                    break
        else:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)
            ended = event.wait(grace)
        if not ended and not event.is_set():
            with contextlib.suppress(OSError):
                if workload.sandbox_pid:
                    proc.kill()  # --die-with-parent takes the whole sandbox down
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
            event.wait(10)

    def stop(self, name: str, grace_seconds: float) -> WorkloadRecord:
        """End ``name`` (gracefully, then not) and release it; its record as it ended."""
        with self.lock:
            workload = self._table.get(name)
            if workload is None:
                return missing(name)
            if not workload.has_ended:
                workload.end_reason = reasons.stopped()
        self._terminate(workload, grace_seconds)
        with self.lock:
            if self._table.get(name) is workload:
                del self._table[name]
                self._retire(workload)
        self.save()
        return workload.record()

    def forget(self, name: str) -> None:
        with self.lock:
            workload = self._table.get(name)
            if workload is not None and not workload.has_ended:
                raise AgentError(
                    ErrorCode.STILL_RUNNING, f"{name} is still running; stop it instead"
                )
            if workload is not None:
                del self._table[name]
                self._retire(workload)
        self.save()

    def _retire(self, workload: Workload) -> None:
        """Keep a released workload's Monitor samples for its page (the newest RETIRED_MAX). Hold the lock."""
        self.retired.pop(workload.name, None)
        self.retired[workload.name] = workload.ring
        while len(self.retired) > RETIRED_MAX:
            self.retired.popitem(last=False)

    def stop_all(self) -> None:
        """The agent is stopping: end every running workload gracefully, journaling why."""
        with self.lock:
            running = [w for w in self._table.values() if not w.has_ended]
            for workload in running:
                workload.end_reason = reasons.agent_stopped()
        threads = [
            threading.Thread(target=self._terminate, args=(w, SHUTDOWN_GRACE_SECONDS))
            for w in running
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.save()

    # --- output ------------------------------------------------------------------
    def delete_logs(self, name: str) -> None:
        check_name(name)
        # Under the lock: a start of the same name cannot slip in between the
        # check and the unlink (it opens a fresh file once it gets the lock).
        with self.lock:
            if not self.has_ended(name):
                raise AgentError(ErrorCode.STILL_RUNNING, f"{name} is still running; stop it first")
            self.output.delete(name)
        self.save()


def _await_leader_network(leader: Workload, timeout: float) -> None:
    """Wait until worker 0's network is attached and filtered. Raises OSError if it ended first."""
    deadline = time.monotonic() + timeout
    while not leader.network_ready.wait(LEADER_POLL_SECONDS):
        if leader.ended.is_set():
            raise OSError(f"{leader.name} ended before its network was ready")
        if time.monotonic() > deadline:
            raise OSError(f"the network of {leader.name} was not ready within {timeout:g} s")


def _await_ready(fd: int, timeout: float) -> None:
    """Wait for the guard's "ready": bwrap has set the sandbox up and runs the guard. Raises OSError."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < len(READY) and b"\n" not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise OSError(f"the sandbox was not set up within {timeout:g} s")
        chunk = os.read(fd, len(READY) - len(data))
        if not chunk:
            # bwrap said why in the workload's output (e.g. a mount it could not make).
            raise OSError("the sandbox could not be set up (see the output)")
        data += chunk
    if data != READY:
        raise OSError(f"the sandbox's guard said {data!r}, not ready")


def _read_info(fd: int) -> dict:
    """bwrap's --info-fd JSON (the sandbox's host pid and namespaces); {} if it failed early."""
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            return json.loads(data)
    return {}
