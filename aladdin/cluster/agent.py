"""The local agent: the one process per host that owns workload processes (SPEC §9).

``manage.py cluster_agent`` runs it in the foreground (``agent`` in
Procfile.dev). Web and Celery processes talk to it through
:class:`aladdin.cluster.local.LocalDriver`, so restarting them leaves
workloads running; stopping the agent stops every workload (bwrap's
``--die-with-parent``), and on SIGTERM/SIGINT it first stops them gracefully
and records each end ("agent stopped", with the time) in its journal, so the
reconciler learns after the next start how and when they ended.

Protocol. A Unix socket (``LOCAL_AGENT_SOCKET``; directory 0700, socket
0600: only root, i.e. the portal, may talk to it) carrying newline-delimited
JSON. Each request is one line ``{"op": ..., ...}``, each answer one line
``{"ok": true, ...}`` or ``{"ok": false, "error": text, "permanent": bool}``.
Operations: health, ensure_user_space, delete_user_space, usage, start,
stop, status, forget, list, logs, delete_logs, follow, terminal.

Following output. ``logs`` answers one chunk (``{"data": <base64>,
"offset", "ended"}``) and is for reading what is there. ``{"op": "follow",
"name", "offset"}`` streams instead: after ``{"ok": true}`` the agent sends
``{"data": <base64>, "offset": <byte offset after it>}`` as the log file
grows (it looks every FOLLOW_POLL_SECONDS and batches what it finds, up to
64 KiB a message), and finally ``{"end": true, "offset": N}`` once the
workload has ended (or has no record) and everything was sent. The client
sends nothing more; closing its end stops the agent's thread.
``delete_logs`` removes a workload's log file (refused while it runs;
missing is success).

Terminals. After ``{"op": "terminal", "name", "rows", "cols"}`` and the
``{"ok": true}`` answer the connection carries the PTY, still as JSON
lines, both ways: the client sends ``{"data": <base64>}`` (keystrokes),
``{"resize": [rows, cols]}`` or ``{"close": true}``; the agent sends
``{"data": <base64>}`` (output) and finally ``{"exit": <code>}``. Base64 in
JSON costs a third more bytes and keeps one framing for data and control.
The shell runs inside the workload's own sandbox (``nsenter`` into all its
namespaces, as its uid): it shares /tmp, processes and loopback with it.

State. ``<state_dir>/journal.json`` holds every workload record (not its
environment, which may hold secrets) and is rewritten on each change;
``<state_dir>/heartbeat`` is touched every few seconds so that, after an
agent that was killed outright, the end of its workloads is known to within
that interval. Output goes through a pipe that the agent copies to
``<state_dir>/logs/<name>.log`` (appended), up to ``log_max_bytes``
(``ALADDIN_LOCAL_LOG_MAX_MIB``): beyond it the rest is dropped with a note,
so a job printing in a loop cannot fill the host's disk. All of one user's
logs together are bounded too (``log_user_max_bytes``,
``ALADDIN_LOCAL_LOG_USER_MAX_MIB``): a new write first makes room by
emptying that user's oldest logs of ended workloads (each keeps a one-line
note saying why), and what still does not fit is dropped. The journal
records whose each log is (``logs``), so the bound survives restarts.

Threads. ``bwrap --die-with-parent`` uses PR_SET_PDEATHSIG, which fires
when the *thread* that forked it exits; every workload is therefore spawned
by the main thread (a queue of jobs), never by a request's thread.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import queue
import re
import select
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import termios
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

from aladdin.lib.diskusage import tree_bytes

from . import gpus as gpu_cards
from . import sandbox

log = logging.getLogger("aladdin.cluster.agent")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HEARTBEAT_SECONDS = 5
DEFAULT_LOG_MAX_BYTES = 256 * 2**20  # ALADDIN_LOCAL_LOG_MAX_MIB
DEFAULT_LOG_USER_MAX_BYTES = 1024 * 2**20  # ALADDIN_LOCAL_LOG_USER_MAX_MIB
PUMP_JOIN_SECONDS = 5  # a process left outside a sandbox may hold the pipe open
TERM_RESCAN_SECONDS = 0.05  # how often a stop looks for new processes to SIGTERM
# Each workload gets this long to end on SIGTERM when the agent stops; the
# supervisors give the agent 30 s (scripts/supervise.py, the systemd unit).
SHUTDOWN_GRACE_SECONDS = 10
ENDED = {"succeeded", "failed"}
# `follow`: how often a quiet log file is looked at again, and the most one
# message carries. 20 ms keeps a line's way to a browser well under the
# issue's 250 ms at the cost of ~50 cheap read() calls a second per follower.
FOLLOW_POLL_SECONDS = 0.02
FOLLOW_CHUNK = 65536


class AgentError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _public(rec: dict) -> dict:
    keys = (
        "name", "phase", "user_id", "kind", "exit_code", "reason", "started_at",
        "finished_at", "labels", "pid", "sandbox_pid", "pid_namespace", "sandboxed", "image",
        "gpu_devices",
    )  # fmt: skip
    return {k: rec.get(k) for k in keys}


class Agent:
    def __init__(
        self,
        *,
        socket_path: Path,
        state_dir: Path,
        volumes_dir: Path,
        uid_base: int = 20000,
        image_map: dict[str, str] | None = None,
        insecure: bool = False,
        gpus: str = "auto",
        log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        log_user_max_bytes: int = DEFAULT_LOG_USER_MAX_BYTES,
    ):
        self.socket_path = Path(socket_path)
        self.state_dir = Path(state_dir)
        self.volumes_dir = Path(volumes_dir)
        self.logs_dir = self.state_dir / "logs"
        self.journal_path = self.state_dir / "journal.json"
        self.heartbeat_path = self.state_dir / "heartbeat"
        self.uid_base = uid_base
        self.image_map = image_map or {}
        self.insecure = insecure
        self.gpus_config = gpus
        self.log_max_bytes = int(log_max_bytes)
        self.log_user_max_bytes = int(log_user_max_bytes)
        # Whose each kept log is (name -> user id), and each user's total:
        # the per-user bound on output kept on the host.
        self._log_owner: dict[str, int] = {}
        self._log_bytes: dict[int, int] = {}
        self.inventory = gpu_cards.Inventory([])
        self.sandbox_ok = False
        self.sandbox_reason = ""
        self.single_user_id: int | None = None
        self._lock = threading.RLock()
        self._records: dict[str, dict] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._ended: dict[str, threading.Event] = {}
        self._env: dict[str, dict] = {}
        self._watch: dict[str, int] = {}  # write ends of each sandbox's guard pipe
        self._cards: dict[str, list] = {}  # cards each running workload holds
        self._pumps: dict[str, threading.Thread] = {}  # output copiers
        self._jobs: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    # --- lifecycle ----------------------------------------------------------
    def prepare(self) -> None:
        """Directories, the sandbox probe, the journal of the previous run."""
        for directory, mode in ((self.state_dir, 0o700), (self.logs_dir, 0o700)):
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, mode)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_path.parent, 0o700)
        self.volumes_dir.mkdir(parents=True, exist_ok=True)
        # Sandbox uids must traverse it to reach their own volume (bwrap binds
        # as the uid) but not list it.
        os.chmod(self.volumes_dir, 0o711)
        self.sandbox_ok, self.sandbox_reason = sandbox.probe(self.uid_base, self.volumes_dir)
        self.inventory = gpu_cards.Inventory(gpu_cards.discover(self.gpus_config))
        log.info("GPU cards: %s", self.inventory.summary())
        if not self.sandbox_ok:
            log.warning("cannot sandbox: %s", self.sandbox_reason)
        self._load_journal()

    def serve_forever(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`shutdown`); the main thread spawns workloads."""
        self.prepare()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
        try:
            self._server = _Server(str(self.socket_path), _Handler)
        finally:
            os.umask(old_umask)
        self._server.agent = self
        threading.Thread(target=self._server.serve_forever, daemon=True, name="server").start()
        log.info(
            "agent listening on %s (sandbox: %s)",
            self.socket_path,
            "bubblewrap" if self.sandbox_ok else f"unavailable: {self.sandbox_reason}",
        )
        last_beat = 0.0
        while not self._stopping.is_set():
            if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                self.heartbeat_path.touch()
                last_beat = time.monotonic()
            try:
                job = self._jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            job()
        self._stop_all()
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        log.info("agent stopped")

    def shutdown(self, *_args) -> None:
        """Signal-handler safe: ask the main loop to stop everything and return."""
        self._stopping.set()

    def _stop_all(self) -> None:
        with self._lock:
            running = [n for n, r in self._records.items() if r["phase"] not in ENDED]
            for name in running:
                self._records[name]["end_reason"] = "agent stopped"
        threads = [
            threading.Thread(target=self._terminate, args=(name, SHUTDOWN_GRACE_SECONDS))
            for name in running
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._save()

    # --- journal ------------------------------------------------------------
    def _load_journal(self) -> None:
        try:
            data = json.loads(self.journal_path.read_text())
        except (OSError, ValueError):
            return
        self.single_user_id = data.get("single_user_id")
        for name, user_id in (data.get("logs") or {}).items():
            if NAME_RE.match(name):
                self._log_owner[name] = int(user_id)
                size = self._log_size(name)
                self._log_bytes[int(user_id)] = self._log_bytes.get(int(user_id), 0) + size
        try:
            beat = datetime.fromtimestamp(self.heartbeat_path.stat().st_mtime, UTC).isoformat()
        except OSError:
            beat = _now()
        for name, rec in data.get("workloads", {}).items():
            if rec.get("phase") not in ENDED:
                # The previous agent died without recording the end (SIGKILL,
                # power loss): its workloads died with it, at about its last
                # heartbeat. Whatever survived it is ended now.
                self._kill_sandbox(rec)
                rec.update(
                    phase="failed",
                    reason="the agent ended unexpectedly; the workload ended with it",
                    finished_at=beat,
                )
            self._records[name] = rec
        self._save()

    def _save(self) -> None:
        with self._lock:
            data = {
                "single_user_id": self.single_user_id,
                "workloads": {n: _public(r) for n, r in self._records.items()},
                "logs": dict(self._log_owner),
            }
            tmp = self.journal_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, self.journal_path)

    # --- user space ---------------------------------------------------------
    def uid_for(self, user_id: int) -> int:
        return sandbox.sandbox_uid(self.uid_base, user_id)

    def volume_for(self, user_id: int) -> Path:
        return self.volumes_dir / str(int(user_id))

    def op_ensure_user_space(self, user_id: int, **_) -> dict:
        volume = self.volume_for(user_id)
        volume.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(volume, self.uid_for(user_id), self.uid_for(user_id))
        os.chmod(volume, 0o700)
        return {}

    def op_delete_user_space(self, user_id: int, **_) -> dict:
        with self._lock:
            busy = [
                n
                for n, r in self._records.items()
                if r["user_id"] == user_id and r["phase"] not in ENDED
            ]
        if busy:
            raise AgentError(f"user {user_id} still has running workloads: {', '.join(busy)}")
        shutil.rmtree(self.volume_for(user_id), ignore_errors=True)
        return {}

    def op_usage(self, user_id: int, **_) -> dict:
        # One scandir walk like `du -s` (hard links once, no symlinks followed);
        # bench/storage_usage_scan.py measures it against du.
        return {"bytes": tree_bytes(self.volume_for(user_id))}

    # --- workloads ----------------------------------------------------------
    def _check_single_user(self, user_id: int) -> None:
        if self.sandbox_ok or self.insecure:
            return
        if self.single_user_id is None:
            self.single_user_id = user_id
        elif self.single_user_id != user_id:
            raise AgentError(
                f"This host cannot sandbox workloads ({self.sandbox_reason}), so the local "
                f"backend serves one user only (user {self.single_user_id}). Install "
                "bubblewrap, or set ALADDIN_LOCAL_INSECURE=1 to let several users share "
                "the host without isolation.",
                permanent=True,
            )

    def op_start(self, spec: dict, **_) -> dict:
        name = spec["name"]
        if not NAME_RE.match(name):
            raise AgentError(f"invalid workload name {name!r}", permanent=True)
        user_id = int(spec["user_id"])
        with self._lock:
            if name in self._records:
                # Deterministic names: a retried create finds its own workload.
                return {"status": _public(self._records[name])}
            self._check_single_user(user_id)
            wanted = {
                str(k): int(v) for k, v in ((spec.get("resources") or {}).get("gpus") or {}).items()
            }
            cards = []
            if wanted and not spec.get("gpu_devices"):
                try:
                    cards = self.inventory.allocate(name, wanted)
                except gpu_cards.NoFreeCards as exc:
                    raise AgentError(str(exc), permanent=False) from exc
            rec = {
                "name": name,
                "user_id": user_id,
                "kind": spec.get("kind", ""),
                "image": spec.get("image", ""),
                "labels": dict(spec.get("labels") or {}),
                "phase": "pending",
                "sandboxed": self.sandbox_ok,
                "started_at": _now(),
                "finished_at": None,
                "exit_code": None,
                "reason": "",
                "pid": None,
                "sandbox_pid": None,
                "gpu_devices": [c.visible_id for c in cards],
            }
            # Device numbers (for the sandbox's device nodes) and what CUDA sees.
            self._cards[name] = cards
            self._records[name] = rec
            self._ended[name] = threading.Event()
        self.op_ensure_user_space(user_id)
        future: Future = Future()

        def job():
            try:
                future.set_result(self._spawn(rec, spec))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                future.set_exception(exc)

        self._jobs.put(job)
        try:
            future.result(timeout=30)
        except Exception as exc:
            watch = self._watch.pop(name, None)
            if watch is not None:
                os.close(watch)
            with self._lock:
                rec.update(phase="failed", reason=f"could not start: {exc}", finished_at=_now())
                self._ended[name].set()
                self._release_cards(name)
            self._save()
        return {"status": _public(rec)}

    def _spawn(self, rec: dict, spec: dict) -> None:
        name, user_id = rec["name"], rec["user_id"]
        uid = self.uid_for(user_id)
        volume = self.volume_for(user_id)
        interpreter = sandbox.interpreter_for(rec["image"], self.image_map)
        cards = self._cards.get(name) or []
        gpus = tuple(c.index for c in cards) or tuple(str(g) for g in spec.get("gpu_devices") or ())
        env = sandbox.workload_env(spec.get("env") or {}, interpreter=interpreter, gpu_devices=gpus)
        if cards:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(c.visible_id for c in cards)
            if any(c.virtual for c in cards):
                # No GPU on this host: the cards are accounted for, CUDA is absent.
                env["ALADDIN_VIRTUAL_GPUS"] = "1"
                gpus = ()  # no device nodes to bind
        command = [str(c) for c in spec["command"]]
        as_user = {"user": uid, "group": uid, "extra_groups": []} if os.geteuid() == 0 else {}
        # Output goes through a pipe that the agent copies into the log file,
        # up to log_max_bytes: a job printing in a loop cannot fill the host's
        # disk (the rest is dropped, with a note, and the job runs on).
        out_r, out_w = os.pipe()
        logfile = out_w
        to_close = [out_w]
        try:
            if self.sandbox_ok:
                info_r, info_w = os.pipe()
                watch_r, watch_w = os.pipe()  # the guard's stdin; the agent keeps watch_w
                self._watch[name] = watch_w
                etc_fds = {}
                for filename, content in sandbox.etc_files(uid).items():
                    r, w = os.pipe()
                    os.write(w, content)
                    os.close(w)
                    etc_fds[filename] = r
                options_fd = None
                try:
                    # The student's variables go to the sandboxed process
                    # only (--clearenv/--setenv, inside the --args memfd);
                    # bwrap itself runs by absolute path with HOST_ENV.
                    options_fd = sandbox.args_fd(
                        sandbox.bwrap_options(
                            volume=volume,
                            env=env,
                            workdir=spec.get("workdir") or "/root",
                            interpreter=interpreter,
                            gpu_devices=gpus,
                            etc_fds=etc_fds,
                            info_fd=info_w,
                        )
                    )
                    proc = subprocess.Popen(
                        sandbox.bwrap_argv(options_fd, sandbox.guarded(command)),
                        stdin=watch_r,
                        stdout=logfile,
                        stderr=subprocess.STDOUT,
                        env=sandbox.HOST_ENV,
                        pass_fds=(info_w, options_fd, *etc_fds.values()),
                        start_new_session=True,  # Ctrl-C reaches the agent, which stops it
                        **as_user,
                    )
                finally:
                    os.close(info_w)
                    os.close(watch_r)
                    if options_fd is not None:
                        os.close(options_fd)
                    for fd in etc_fds.values():
                        os.close(fd)
                try:
                    info = self._read_info(info_r)
                finally:
                    os.close(info_r)
                rec["sandbox_pid"] = info.get("child-pid")
                rec["pid_namespace"] = info.get("pid-namespace")
            else:
                # No sandbox (single user, or the operator's insecure flag):
                # the volume is the working directory and HOME.
                env["HOME"] = str(volume)
                proc = subprocess.Popen(
                    command,
                    cwd=volume,
                    stdin=subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    **as_user,
                )
        except BaseException:
            os.close(out_r)
            raise
        finally:
            for fd in to_close:
                os.close(fd)
        with self._lock:
            if self._log_owner.get(name) != user_id:
                self._log_owner[name] = user_id
                self._log_bytes[user_id] = self._log_bytes.get(user_id, 0) + self._log_size(name)
        pump = threading.Thread(
            target=self._copy_output,
            args=(out_r, name, user_id),
            daemon=True,
            name=f"output-{name}",
        )
        pump.start()
        with self._lock:
            self._pumps[name] = pump
            self._procs[name] = proc
            self._env[name] = env
            rec.update(phase="running", pid=proc.pid)
        self._save()
        threading.Thread(target=self._wait, args=(name, proc), daemon=True).start()

    def _release_cards(self, name: str) -> None:
        self._cards.pop(name, None)
        self.inventory.release(name)

    @staticmethod
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

    @staticmethod
    def _kill_sandbox(rec: dict) -> None:
        """SIGKILL what is left of a sandbox whose bwrap has gone (the kernel then ends its pid namespace).

        --die-with-parent normally does this, but a bwrap killed in its first
        milliseconds can leave its inner init behind. The namespace inode
        guards against a recycled pid.
        """
        pid, ns = rec.get("sandbox_pid"), rec.get("pid_namespace")
        if not pid or not ns:
            return
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/pid") == f"pid:[{ns}]":
                os.kill(pid, signal.SIGKILL)

    def _log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _log_size(self, name: str) -> int:
        try:
            return self._log_path(name).stat().st_size
        except OSError:
            return 0

    def _log_mtime(self, name: str) -> float:
        try:
            return self._log_path(name).stat().st_mtime
        except OSError:
            return 0.0

    def _user_log_room(self, user_id: int, wanted: int, writing: str) -> int:
        """Bytes ``writing`` may add now within the user's bound, emptying their oldest ended logs first.

        Called under the lock; counts what it grants as written.
        """
        total = self._log_bytes.get(user_id, 0)
        if total + wanted > self.log_user_max_bytes:
            ended = [
                n
                for n, owner in self._log_owner.items()
                if owner == user_id and n != writing and self.workload_ended(n)
            ]
            ended.sort(key=self._log_mtime)  # oldest first
            note = (
                f"[aladdin: this output was removed: the output kept for your jobs is "
                f"limited to {self.log_user_max_bytes // 2**20} MiB in all, and the oldest "
                "goes first]\n"
            ).encode()
            for name in ended:
                if total + wanted <= self.log_user_max_bytes:
                    break
                size = self._log_size(name)
                if size <= len(note):
                    continue
                with self._log_path(name).open("wb") as f:
                    f.write(note)
                # The note itself is not counted: a line per job, not output.
                total -= size
        granted = max(0, min(wanted, self.log_user_max_bytes - total))
        self._log_bytes[user_id] = total + granted
        return granted

    def _copy_output(self, fd: int, name: str, user_id: int) -> None:
        """Append what the workload writes to its log, within ``log_max_bytes`` and the user's bound."""
        try:
            with self._log_path(name).open("ab") as log_file:
                written = log_file.tell()
                dropped = False
                while True:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    room = self.log_max_bytes - written
                    if room > 0:
                        with self._lock:
                            room = self._user_log_room(user_id, min(room, len(data)), name)
                    if room > 0:
                        chunk = data[:room]
                        log_file.write(chunk)
                        log_file.flush()
                        written += len(chunk)
                    if room < len(data) and not dropped:
                        dropped = True
                        if written >= self.log_max_bytes:
                            why = f"output beyond {self.log_max_bytes // 2**20} MiB was dropped"
                        else:
                            why = (
                                "output was dropped: the output kept for your jobs reached "
                                f"{self.log_user_max_bytes // 2**20} MiB in all"
                            )
                        log_file.write(f"\n[aladdin: {why}; the job runs on]\n".encode())
                        log_file.flush()
        finally:
            os.close(fd)

    def _wait(self, name: str, proc: subprocess.Popen) -> None:
        rc = proc.wait()
        finished_at = _now()  # the release: billing ends here, not after the flush below
        with self._lock:
            rec = self._records.get(name)
            if rec is not None:
                self._kill_sandbox(rec)
            pump = self._pumps.pop(name, None)
        if pump is not None:
            # The sandbox is gone, so the pipe reaches EOF: the last output is
            # in the file before the workload reads as ended (followers rely on it).
            pump.join(PUMP_JOIN_SECONDS)
        with self._lock:
            rec = self._records.get(name)
            if rec is not None and rec.get("pid") == proc.pid:
                reason = rec.pop("end_reason", None)
                if reason:
                    phase = "failed"
                elif rc == 0:
                    phase, reason = "succeeded", ""
                else:
                    phase, reason = "failed", sandbox.describe_exit(rc)
                rec.update(phase=phase, exit_code=rc, reason=reason, finished_at=finished_at)
            self._procs.pop(name, None)
            self._env.pop(name, None)
            self._release_cards(name)
            watch = self._watch.pop(name, None)
        if watch is not None:
            os.close(watch)
        with self._lock:
            event = self._ended.get(name)
        if event:
            event.set()
        self._save()

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

    def _terminate(self, name: str, grace: float) -> None:
        """SIGTERM the workload's processes, SIGKILL after ``grace``; returns when it ended."""
        with self._lock:
            proc = self._procs.get(name)
            rec = self._records.get(name)
            event = self._ended.get(name)
        if proc is None or rec is None:
            return
        # The sandbox's init (bwrap, pid 1 inside) ignores SIGTERM from
        # outside, so the processes it runs get it directly. A workload
        # stopped in its first milliseconds may have only the guard (which
        # ignores TERM) so far: processes that appear during the grace get
        # the signal too, or the stop would wait out the whole grace.
        deadline = time.monotonic() + grace
        ended = False
        if rec.get("sandbox_pid"):
            # pid → its executable when signalled: a process caught between
            # fork and exec still has the guard's trap and shrugs TERM off,
            # so it gets TERM again once it is the command.
            signalled: dict[int, str] = {}
            while True:
                for pid in self._sandbox_members(rec["sandbox_pid"]):
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
                if event is None or remaining <= 0:
                    break
                if event.wait(min(TERM_RESCAN_SECONDS, remaining)):
                    ended = True
                    break
        else:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)
            ended = bool(event and event.wait(grace))
        if event and not ended and not event.is_set():
            with contextlib.suppress(OSError):
                if rec.get("sandbox_pid"):
                    proc.kill()  # --die-with-parent takes the whole sandbox down
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
            event.wait(10)

    def op_stop(self, name: str, grace_seconds: float = 10, **_) -> dict:
        with self._lock:
            rec = self._records.get(name)
            if rec is None:
                return {"status": {"name": name, "phase": "missing"}}
            if rec["phase"] not in ENDED:
                rec["end_reason"] = "stopped"
        self._terminate(name, float(grace_seconds))
        with self._lock:
            rec = self._records.pop(name, rec)
            self._ended.pop(name, None)
        self._save()
        return {"status": _public(rec)}

    def op_status(self, name: str, **_) -> dict:
        with self._lock:
            rec = self._records.get(name)
            return {"status": _public(rec) if rec else {"name": name, "phase": "missing"}}

    def op_forget(self, name: str, **_) -> dict:
        with self._lock:
            rec = self._records.get(name)
            if rec is not None and rec["phase"] not in ENDED:
                raise AgentError(f"{name} is still running; stop it instead", permanent=True)
            self._records.pop(name, None)
            self._ended.pop(name, None)
        self._save()
        return {}

    def op_list(self, **_) -> dict:
        with self._lock:
            return {"workloads": [_public(r) for r in self._records.values()]}

    def op_logs(self, name: str, offset: int = 0, limit: int = 65536, **_) -> dict:
        if not NAME_RE.match(name):
            raise AgentError(f"invalid workload name {name!r}", permanent=True)
        path = self.logs_dir / f"{name}.log"
        data = b""
        with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
            f.seek(int(offset))
            data = f.read(min(int(limit), 1 << 20))
        with self._lock:
            rec = self._records.get(name)
            ended = rec is None or rec["phase"] in ENDED
        return {
            "data": base64.b64encode(data).decode(),
            "offset": int(offset) + len(data),
            "ended": ended,
        }

    def workload_ended(self, name: str) -> bool:
        """True when ``name`` has ended or has no record (its log can no longer grow)."""
        with self._lock:
            rec = self._records.get(name)
            return rec is None or rec["phase"] in ENDED

    def op_delete_logs(self, name: str, **_) -> dict:
        if not NAME_RE.match(name):
            raise AgentError(f"invalid workload name {name!r}", permanent=True)
        # Under the lock: a start of the same name cannot slip in between the
        # check and the unlink (it opens a fresh file once it gets the lock).
        with self._lock:
            if not self.workload_ended(name):
                raise AgentError(f"{name} is still running; stop it first", permanent=True)
            size = self._log_size(name)
            with contextlib.suppress(FileNotFoundError):
                self._log_path(name).unlink()
            owner = self._log_owner.pop(name, None)
            if owner is not None:
                self._log_bytes[owner] = max(0, self._log_bytes.get(owner, 0) - size)
        self._save()
        return {}

    def op_health(self, **_) -> dict:
        with self._lock:
            running = sum(1 for r in self._records.values() if r["phase"] not in ENDED)
        return {
            "sandbox": self.sandbox_ok,
            "sandbox_reason": self.sandbox_reason,
            "insecure": self.insecure,
            "single_user_id": None if self.sandbox_ok or self.insecure else self.single_user_id,
            "running": running,
            "pid": os.getpid(),
            "gpus": self.inventory.summary(),
        }

    # --- terminals ----------------------------------------------------------
    def open_pty(self, name: str, rows: int, cols: int) -> tuple[int, subprocess.Popen]:
        with self._lock:
            rec = self._records.get(name)
            if rec is None or rec["phase"] != "running":
                raise AgentError(f"{name} is not running", permanent=True)
            env = dict(self._env.get(name) or {})
        uid = self.uid_for(rec["user_id"])
        shell = ["/bin/bash", "-l"] if os.path.exists("/usr/bin/bash") else ["/bin/sh"]
        as_user = {}
        if rec.get("sandbox_pid"):
            pid = rec["sandbox_pid"]
            # bwrap reports the child's pid before it has written the uid map;
            # nsenter cannot switch to the uid until then.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/uid_map").read_text().strip():
                        break
                time.sleep(0.05)
            env["TERM"] = env.get("TERM") or "xterm-256color"
            # nsenter runs as root on the host: by absolute path, with
            # HOST_ENV; the shell it starts inside reads the workload's
            # variables from a descriptor (sandbox.ENV_LOADER).
            loader_fd = sandbox.env_fd(env)
            argv = sandbox.nsenter_argv(pid, uid, shell, env_fd=loader_fd)
            env, cwd, pass_fds = sandbox.HOST_ENV, None, (loader_fd,)
        else:
            # No sandbox (single user or insecure): the shell is the
            # student's own process, as their uid, as the workload is.
            argv, cwd, pass_fds = shell, self.volume_for(rec["user_id"]), ()
            if os.geteuid() == 0:
                as_user = {"user": uid, "group": uid, "extra_groups": []}
            env["TERM"] = env.get("TERM") or "xterm-256color"
        master, slave = os.openpty()
        set_winsize(master, rows, cols)

        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        try:
            proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                cwd=cwd,
                pass_fds=pass_fds,
                preexec_fn=controlling_tty,  # noqa: PLW1509 - only setsid + ioctl
                **as_user,
            )
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)
            for fd in pass_fds:
                os.close(fd)
        return master, proc


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    agent: Agent


class _Handler(socketserver.StreamRequestHandler):
    def send(self, obj: dict) -> None:
        self.wfile.write(json.dumps(obj).encode() + b"\n")
        self.wfile.flush()

    def handle(self) -> None:
        agent: Agent = self.server.agent
        for line in self.rfile:
            try:
                request = json.loads(line)
                op = request.pop("op")
                if op == "terminal":
                    self.terminal(agent, **request)
                    return
                if op == "follow":
                    self.follow(agent, **request)
                    return
                method = getattr(agent, f"op_{op}", None)
                if method is None:
                    raise AgentError(f"unknown operation {op!r}", permanent=True)
                answer = {"ok": True, **method(**request)}
            except AgentError as exc:
                answer = {"ok": False, "error": str(exc), "permanent": exc.permanent}
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "error": f"bad request: {exc!r}", "permanent": True}
            except OSError as exc:
                log.exception("operation failed")
                answer = {"ok": False, "error": f"agent: {exc}", "permanent": False}
            try:
                self.send(answer)
            except OSError:
                return

    def follow(self, agent: Agent, name: str, offset: int = 0, **_) -> None:
        """Stream ``name``'s log from ``offset`` until it ended and all was sent (see the protocol)."""
        if not NAME_RE.match(name):
            raise AgentError(f"invalid workload name {name!r}", permanent=True)
        offset = int(offset)
        if offset < 0:
            raise AgentError("offset must be >= 0", permanent=True)
        path = agent.logs_dir / f"{name}.log"
        self.send({"ok": True})
        logfile = None
        try:
            while True:
                if logfile is None:
                    with contextlib.suppress(FileNotFoundError):
                        logfile = path.open("rb")
                        logfile.seek(offset)
                # Whether it had ended is read *before* the file: a workload
                # that had ended then has written everything the read finds.
                ended = agent.workload_ended(name)
                data = logfile.read(FOLLOW_CHUNK) if logfile is not None else b""
                if data:
                    offset += len(data)
                    self.send({"data": base64.b64encode(data).decode(), "offset": offset})
                    continue  # drain what is there before waiting
                if ended:
                    self.send({"end": True, "offset": offset})
                    return
                # The wait doubles as the hang-up check: the client sends
                # nothing, so a readable socket means it closed (or broke
                # the protocol); either way this thread ends.
                readable, _, _ = select.select([self.request], [], [], FOLLOW_POLL_SECONDS)
                if readable:
                    return
        except OSError:
            return  # the client went away mid-send
        finally:
            if logfile is not None:
                logfile.close()

    def terminal(self, agent: Agent, name: str, rows: int = 24, cols: int = 80, **_) -> None:
        master, proc = agent.open_pty(name, rows, cols)
        self.send({"ok": True})
        done = threading.Event()

        def pump_out():
            try:
                while True:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: the shell and its children closed the PTY
                        data = b""
                    if not data:
                        break
                    self.send({"data": base64.b64encode(data).decode()})
                rc = proc.wait()
                self.send({"exit": rc})
            except OSError:
                pass
            finally:
                done.set()
                with contextlib.suppress(OSError):
                    self.request.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump_out, daemon=True).start()
        try:
            for line in self.rfile:
                message = json.loads(line)
                if "data" in message:
                    os.write(master, base64.b64decode(message["data"]))
                elif "resize" in message:
                    rows, cols = message["resize"]
                    set_winsize(master, rows, cols)
                elif message.get("close"):
                    break
        except (OSError, ValueError):
            pass
        finally:
            if proc.poll() is None:
                # The client left: end the shell (and what it started in the
                # foreground), as sshd does when the connection drops.
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGHUP)
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(OSError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            done.wait(5)
            os.close(master)
