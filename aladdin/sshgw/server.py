"""The asyncssh server: authentication, limits, and sessions relayed to the driver's exec.

Threads. asyncssh runs on one asyncio loop; the database (Django's ORM)
and the driver (blocking sockets) do not. Database calls go through
``sync_to_async`` (one thread, in order, as Django wants); each session's
driver exec gets a writer thread (the client's input, in order, to the
workload) and, for its output to the client (paused while the client's
window is full), either the loop's own reader on a descriptor the driver
offers (``ExecSession.output_fd``, reads that never wait) or, where it
offers none, a reader thread. A slow workload or client therefore never
stalls the loop, and so never another user's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from aladdin import cluster
from aladdin.cluster.base import DriverError
from aladdin.sshgw.ciphers import offered

log = logging.getLogger("aladdin.sshgw")

# Variables a client may send (OpenSSH's `SendEnv LANG LC_*`, Debian's sshd
# `AcceptEnv LANG LC_*`); TERM comes with the PTY request. Others are ignored.
ACCEPTED_ENV_PREFIXES = ("LC_",)
ACCEPTED_ENV = {"LANG"}
# Client input queued for the workload beyond this pauses reading from the client.
INPUT_QUEUE_HIGH = 64
# Queued stdin sent to the workload as one write at most (see _Session._pump_input).
INPUT_BATCH = 256 * 1024
# Output already arrived from the workload, passed to the loop as one write at most.
OUTPUT_BATCH = 1024 * 1024


def stopped_line(name: str) -> str:
    # The wording, in English like every SSH message a client prints.
    return f"workshop {name} is stopped: start it from the dashboard or the plugin\r\n"


def not_running_line(name: str, state: str) -> str:
    return (
        f"workshop {name} is not running ({state}): wait for it, or start it from the dashboard\r\n"
    )


@dataclass(frozen=True)
class LoginTarget:
    """What an accepted key opens: the key, its owner, the workshop (as the database said)."""

    key_id: int
    user_id: int
    workshop_id: int
    workshop_name: str
    workload_name: str
    state: str


# --- the database, from the loop ----------------------------------------------------


def _login_target(username: str, fingerprint: str) -> LoginTarget | None:
    from workshops.selectors import ssh_login_target

    close_old_connections()  # a long-lived process: drop connections the server closed
    found = ssh_login_target(username=username, fingerprint=fingerprint)
    if found is None:
        return None
    key, workshop = found
    return LoginTarget(
        key_id=key.pk,
        user_id=key.user_id,
        workshop_id=workshop.pk,
        workshop_name=workshop.name,
        workload_name=workshop.workload_name,
        state=workshop.state,
    )


def _login_record(key_id: int) -> None:
    from workshops.services import ssh_login_record

    close_old_connections()
    ssh_login_record(key_id=key_id)


def _job_workload(user_id: int, job_id: int) -> str | None:
    from gpu_jobs.selectors import running_job_workload

    close_old_connections()
    return running_job_workload(user_id=user_id, job_id=job_id)


login_target = sync_to_async(_login_target, thread_sensitive=True)
login_record = sync_to_async(_login_record, thread_sensitive=True)
job_workload = sync_to_async(_job_workload, thread_sensitive=True)

# ``ssh -L PORT:HOST:PORT``: HOST names the workshop the session is on, or
# one of the user's running jobs; nothing else is reachable (SPEC §6).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})
JOB_HOST = re.compile(r"job-([1-9][0-9]{0,17})")


# --- the gateway ---------------------------------------------------------------------


@dataclass
class Gateway:
    """The listening server and what its connections share (session counts)."""

    max_sessions: int = 200
    max_sessions_per_user: int = 10
    idle_timeout: float = 0
    sessions: int = 0
    sessions_by_user: dict[int, int] = field(default_factory=dict)
    server: Any = None
    # Failed authentications per client address (0: no limit), see auth_failed.
    auth_failures_per_minute: int = 0
    auth_block_seconds: float = 300
    clock: Callable[[], float] = time.monotonic
    auth_failures: dict[str, deque[float]] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)

    def auth_blocked(self, address: str) -> bool:
        """Whether ``address`` failed too often lately: its connections are refused."""
        until = self.blocked_until.get(address)
        if until is None:
            return False
        if self.clock() < until:
            return True
        del self.blocked_until[address]
        return False

    def auth_failed(self, address: str) -> None:
        """Count a refused key; past the limit within a minute, block the address."""
        if not self.auth_failures_per_minute:
            return
        now = self.clock()
        recent = self.auth_failures.setdefault(address, deque())
        recent.append(now)
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) > self.auth_failures_per_minute:
            self.blocked_until[address] = now + self.auth_block_seconds
            self.auth_failures.pop(address, None)
            log.warning(
                "ssh client %s blocked for %ss: more than %d failed authentications in a minute",
                address,
                self.auth_block_seconds,
                self.auth_failures_per_minute,
            )
        # Forget quiet addresses, so the table does not grow with every scanner.
        if len(self.auth_failures) > 10_000:
            for stale in [a for a, t in self.auth_failures.items() if t[-1] <= now - 60]:
                del self.auth_failures[stale]

    def session_open(self, user_id: int) -> str | None:
        """Count a new session; the refusal's message when a limit is reached."""
        if self.sessions >= self.max_sessions:
            return "the SSH gateway is full: try again in a minute\r\n"
        if self.sessions_by_user.get(user_id, 0) >= self.max_sessions_per_user:
            return (
                f"too many SSH sessions: {self.max_sessions_per_user} at once per user; "
                "close one first\r\n"
            )
        self.sessions += 1
        self.sessions_by_user[user_id] = self.sessions_by_user.get(user_id, 0) + 1
        return None

    def session_closed(self, user_id: int) -> None:
        self.sessions -= 1
        left = self.sessions_by_user.get(user_id, 1) - 1
        if left:
            self.sessions_by_user[user_id] = left
        else:
            self.sessions_by_user.pop(user_id, None)

    async def start(
        self, *, host: str, port: int, host_keys: list, ciphers: list[str] | None = None
    ) -> None:
        """Listen; ``ciphers`` (sshgw.ciphers.offered) None keeps asyncssh's own list."""
        options: dict[str, Any] = {} if ciphers is None else {"encryption_algs": ciphers}
        self.server = await asyncssh.create_server(
            lambda: _Connection(self),
            host,
            port,
            server_host_keys=host_keys,
            # Public keys only (SPEC §6): the other methods are not offered.
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_auth=False,
            gss_kex=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            # Sessions are raw bytes both ways: the workload's PTY does the
            # line editing, as sshd leaves it to the remote shell.
            encoding=None,
            line_editor=False,
            login_timeout=60,
            keepalive_interval=60,
            **options,
        )
        log.info(
            "SSH gateway listening on %s:%d (host keys: %s)",
            host,
            port,
            ", ".join(k.get_fingerprint("sha256") for k in host_keys),
        )

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class _Connection(asyncssh.SSHServer):
    """One client connection: authentication, then its sessions."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = ""
        self.target: LoginTarget | None = None
        self.login: tuple[str, str] = ("", "")  # (user name, key fingerprint) accepted
        self.opened = time.monotonic()
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_activity = time.monotonic()
        self._idle_task: asyncio.Task | None = None

    # --- connection ---------------------------------------------------------------
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.peer = str(peer[0])
        if self.gateway.auth_blocked(self.peer):
            log.info("ssh refused: client=%s is blocked (failed authentications)", self.peer)
            asyncio.get_running_loop().call_soon(conn.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        if self.target is not None:
            log.info(
                "ssh closed: user=%s workshop=%s client=%s duration=%.1fs in=%d out=%d",
                self.target.user_id,
                self.target.workshop_name,
                self.peer,
                time.monotonic() - self.opened,
                self.bytes_in,
                self.bytes_out,
            )

    # --- authentication: public keys only, one answer for every refusal ------------
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Called for the client's probe and again for its signed request
        # (asyncssh checks the signature); the target is the last key accepted.
        if self.gateway.auth_blocked(self.peer):
            return False
        fingerprint = key.get_fingerprint("sha256")
        target = await login_target(username, fingerprint)
        self.target = target
        self.login = (username, fingerprint)
        if target is None:
            log.info("ssh refused: client=%s user-name=%r", self.peer, username[:64])
            self.gateway.auth_failed(self.peer)
        return target is not None

    def auth_completed(self) -> None:
        assert self.target is not None
        log.info(
            "ssh login: user=%s workshop=%s key=%s client=%s",
            self.target.user_id,
            self.target.workshop_name,
            self.target.key_id,
            self.peer,
        )
        asyncio.ensure_future(self._record_login(self.target.key_id))
        if self.gateway.idle_timeout:
            self._idle_task = asyncio.ensure_future(self._close_when_idle())

    async def _record_login(self, key_id: int) -> None:
        try:
            await login_record(key_id)
        except Exception:  # a failed write must not end the session
            log.exception("recording the SSH login failed")

    async def _close_when_idle(self) -> None:
        timeout = self.gateway.idle_timeout
        while True:
            await asyncio.sleep(max(1.0, timeout - (time.monotonic() - self.last_activity)))
            if time.monotonic() - self.last_activity >= timeout:
                log.info("ssh idle for %ss: closing (client=%s)", timeout, self.peer)
                assert self.conn is not None
                self.conn.close()
                return

    def activity(self, *, received: int = 0, sent: int = 0) -> None:
        self.bytes_in += received
        self.bytes_out += sent
        self.last_activity = time.monotonic()

    # --- channels -------------------------------------------------------------------
    def session_requested(self) -> asyncssh.SSHServerSession:
        return _Session(self)

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        """``ssh -L`` (direct-tcpip): a port of this workshop or of one of the user's running jobs.

        Refused at once for any other host name and for a bad port; the rest
        (whose job, running or not, anything listening) is decided by
        :meth:`_forward`, which asyncssh awaits before answering the client.
        """
        host = dest_host.lower()
        job = JOB_HOST.fullmatch(host)
        if (host not in LOCAL_HOSTS and job is None) or not 1 <= dest_port <= 65535:
            log.info(
                "ssh forward refused: client=%s to=%r:%s", self.peer, dest_host[:64], dest_port
            )
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                "forwarding reaches only localhost (this workshop) or job-<id> (your running job)",
            )
        return self._forward(int(job.group(1)) if job else None, dest_port)

    async def _forward(self, job_id: int | None, port: int) -> asyncssh.SSHTCPSession:
        def refuse(reason: str) -> asyncssh.ChannelOpenError:
            log.info(
                "ssh forward refused: client=%s job=%s port=%s: %s", self.peer, job_id, port, reason
            )
            return asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, reason)

        # Again now, as for a session: the key may be revoked or the workshop stopped.
        target = await login_target(*self.login)
        if target is None:
            raise refuse("access to this workshop was revoked")
        if job_id is None:
            if target.state != "running":
                raise refuse(f"workshop {target.workshop_name} is not running")
            name = target.workload_name
        else:
            found = await job_workload(target.user_id, job_id)
            if found is None:
                raise refuse(f"job-{job_id} is not one of your running jobs")
            name = found
        loop = asyncio.get_running_loop()
        try:
            stream = await loop.run_in_executor(
                None, lambda: cluster.get_driver().connect_port(name=name, port=port)
            )
        except DriverError as exc:
            if exc.code == "connection_refused":
                raise refuse(f"nothing listens on port {port} there") from None
            log.warning("ssh forward to %s:%s failed: %s", name, port, exc)
            raise refuse("the workload cannot be reached now") from None
        log.info("ssh forward: user=%s to=%s:%s client=%s", target.user_id, name, port, self.peer)
        return _Forward(self, stream)

    def server_requested(self, listen_host: str, listen_port: int):
        return False  # remote forwarding is refused (SPEC §6)


class _Session(asyncssh.SSHServerSession):
    """One session channel: a shell or a command, relayed to the workload's exec."""

    def __init__(self, connection: _Connection):
        self.connection = connection
        self.chan: asyncssh.SSHServerChannel | None = None
        self.loop = asyncio.get_running_loop()
        self.command: str | None = None
        self.command_argv: list[str] | None = None  # a subsystem's own argv
        self.tty = False
        self.term = ""
        self.size = (24, 80)
        self.exec = None
        # The exec's output descriptor while the loop reads it (see _output_ready).
        self.output_fd: int | None = None
        self.counted_user: int | None = None
        # The client's input, EOF and resizes, kept in order from the first
        # byte: a client sends stdin right after its exec request, before the
        # workload's exec is open.
        # Bytes are stdin (batched by _pump_input), callables everything else.
        self.inputs: queue.Queue[bytes | Callable[[Any], None] | None] = queue.Queue()
        self.writable = threading.Event()
        self.writable.set()
        self.reading_paused = False  # set on the loop, cleared by _pump_input
        self.closed = False
        self.refused = False

    # --- requests before the start ----------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self.chan = chan
        # asyncssh pauses writing above 64 KiB queued: with OUTPUT_BATCH
        # writes that stopped the output thread after every one of them.
        chan.set_write_buffer_limits(high=2 * OUTPUT_BATCH, low=OUTPUT_BATCH // 2)

    def pty_requested(self, term_type: str, term_size, term_modes) -> bool:
        self.tty = True
        self.term = term_type or "xterm-256color"
        width, height = term_size[0], term_size[1]
        self.size = (height or 24, width or 80)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        # SFTP (and scp, which speaks SFTP since OpenSSH 9) is OpenSSH's own
        # sftp-server run inside the workload as its user: the sandbox, not
        # this process, judges every path, permission and symlink.
        if subsystem != "sftp":
            return False
        self.command_argv = [settings.SSH_SFTP_SERVER]
        return True

    def session_started(self) -> None:
        asyncio.ensure_future(self._start())

    # --- the start: check the workshop, count the session, open the exec ------------
    async def _start(self) -> None:
        chan = self.chan
        assert chan is not None
        # Again now: the key may have been revoked or the workshop stopped
        # since the login (a connection may carry many sessions).
        target = await login_target(*self.connection.login)
        if target is None:
            return self._refuse("access to this workshop was revoked\r\n")
        if target.state == "stopped":
            return self._refuse(stopped_line(target.workshop_name))
        if target.state != "running":
            return self._refuse(not_running_line(target.workshop_name, target.state))
        refusal = self.connection.gateway.session_open(target.user_id)
        if refusal:
            return self._refuse(refusal)
        self.counted_user = target.user_id
        env = {"TERM": self.term} if self.tty else {}
        for name, value in chan.get_environment().items():
            if name in ACCEPTED_ENV or name.startswith(ACCEPTED_ENV_PREFIXES):
                env[name] = value
        # sshd runs an exec request as `$SHELL -c COMMAND`; the shell runs in the workload.
        command = self.command_argv or (
            ["/bin/bash", "-c", self.command] if self.command is not None else None
        )
        rows, cols = self.size
        try:
            self.exec = await self.loop.run_in_executor(
                None,
                lambda: cluster.get_driver().exec_in_workload(
                    name=target.workload_name,
                    command=command,
                    tty=self.tty,
                    env=env,
                    rows=rows,
                    cols=cols,
                ),
            )
        except DriverError as exc:
            log.warning("ssh exec in %s failed: %s", target.workload_name, exc)
            if exc.code == "not_running":
                return self._refuse(not_running_line(target.workshop_name, "not running"))
            return self._refuse("the workshop cannot be reached now: try again in a minute\r\n")
        if self.closed:  # the client left while the exec was being opened
            self.exec.close()
            return
        self.output_fd = self.exec.output_fd()
        if self.output_fd is None:
            threading.Thread(target=self._pump_output, daemon=True, name="ssh-out").start()
        elif self.writable.is_set():
            self.loop.add_reader(self.output_fd, self._output_ready)
        threading.Thread(target=self._pump_input, daemon=True, name="ssh-in").start()

    def _refuse(self, line: str) -> None:
        assert self.chan is not None
        self.chan.write_stderr(line.encode())
        self.refused = True
        # One line, then the connection closes (the stopped-workshop
        # case): once the channel is closed (connection_lost below), so the
        # line and the exit status reach the client before the disconnect.
        self.chan.exit(1)

    # --- the relay ----------------------------------------------------------------
    def _output_ready(self) -> None:
        """The loop's reader (output_fd): what arrived goes to the client, then the exit status.

        Read on the loop itself: a reader thread cost a hand-off
        (call_soon_threadsafe, a wake-up of the loop through its
        self-pipe) per batch and the two threads' turns at the GIL. A
        full channel (pause_writing) stops the reading, so the agent's
        socket, then the command, wait.
        """
        session = self.exec
        assert session is not None
        # One channel write per run of a stream, not one per frame or
        # piece: asyncssh cuts each write into packets of its own (32 KiB,
        # the client's maximum), so every write ends in a short packet,
        # with the crypto and the send() of a full one.
        pieces: list[bytes | memoryview] = []
        current = 0
        for stream, data in session.read_available(OUTPUT_BATCH):
            if stream != current and pieces:
                self._write(current, pieces[0] if len(pieces) == 1 else b"".join(pieces))
                pieces = []
            current = stream
            if not stream:
                self._stop_reading_output()
                code = session.exit_code
                self._exit(255 if code is None else code)
                return
            pieces.append(data)
        # What was read is written even once pause_writing came: at most
        # one read (OUTPUT_BATCH) above the channel's high mark.
        if pieces:
            self._write(current, pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def _stop_reading_output(self) -> None:
        if self.output_fd is not None:
            self.loop.remove_reader(self.output_fd)
            self.output_fd = None

    def _pump_output(self) -> None:
        """Reader thread: the workload's output to the client, then its exit status."""
        session = self.exec
        assert session is not None
        while True:
            self.writable.wait()
            try:
                stream, data = session.read()
            except (OSError, DriverError):
                stream, data = 0, b""
            if not stream:
                break
            # Output that already arrived leaves with this one: one wake-up
            # of the loop and one channel write instead of one per frame.
            chunks, size, ended = [data], len(data), False
            while size < OUTPUT_BATCH and session.ready():
                try:
                    more_stream, more = session.read()
                except (OSError, DriverError):
                    more_stream, more = 0, b""
                if not more_stream:
                    ended = True  # what was gathered goes first
                    break
                if more_stream != stream:
                    self.loop.call_soon_threadsafe(self._write, stream, b"".join(chunks))
                    chunks, size, stream = [], 0, more_stream
                chunks.append(more)
                size += len(more)
            joined = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.loop.call_soon_threadsafe(self._write, stream, joined)
            if ended:
                break
        code = session.exit_code
        self.loop.call_soon_threadsafe(self._exit, 255 if code is None else code)

    def _write(self, stream: int, data: bytes | memoryview) -> None:
        if self.chan is None or self.closed:
            return
        self.connection.activity(sent=len(data))
        if stream == 2:
            self.chan.write_stderr(data)
        else:
            self.chan.write(data)

    def _exit(self, code: int) -> None:
        if self.chan is not None and not self.closed:
            self.chan.exit(code)

    def _pump_input(self) -> None:
        """Writer thread: the client's input, EOF and resizes, in order, to the workload.

        Data that queued up while the last write went out leaves as one
        write (up to INPUT_BATCH): asyncssh hands over a channel packet (32
        KiB) at a time, and each write costs a frame and a wake-up of the
        agent's thread, which held uploads to a third of sshd's speed.
        Nothing waits for more: a keystroke alone in the queue goes at once.
        """
        session = self.exec
        assert session is not None
        # What a batch took from the queue that was not data: the next item.
        pending: list[bytes | Callable[[Any], None] | None] = []
        while True:
            item = pending.pop() if pending else self.inputs.get()
            if item is None:
                return
            try:
                if isinstance(item, bytes):
                    chunks, size = [item], len(item)
                    while size < INPUT_BATCH:
                        try:
                            following = self.inputs.get_nowait()
                        except queue.Empty:
                            break
                        if not isinstance(following, bytes):
                            pending.append(following)  # EOF, a resize or the end: after this data
                            break
                        chunks.append(following)
                        size += len(following)
                    session.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                else:
                    item(session)
            except DriverError:
                return  # the session ended; the reader reports how
            # Only once reading was paused: a wake-up of the loop per write
            # was a tenth of the gateway's time in an upload.
            if self.reading_paused and self.inputs.qsize() < INPUT_QUEUE_HIGH // 2:
                self.reading_paused = False
                self.loop.call_soon_threadsafe(self._resume_reading)

    def _resume_reading(self) -> None:
        if self.chan is not None and not self.closed:
            self.chan.resume_reading()

    def _queue(self, action: bytes | Callable[[Any], None]) -> None:
        self.inputs.put(action)
        if self.inputs.qsize() > INPUT_QUEUE_HIGH and self.chan is not None:
            self.reading_paused = True
            self.chan.pause_reading()

    # --- the client's side ----------------------------------------------------------
    def data_received(self, data: bytes, datatype) -> None:
        self.connection.activity(received=len(data))
        self._queue(bytes(data))

    def eof_received(self) -> bool:
        self._queue(lambda session: session.close_stdin())
        return True  # half-closed: the command's output still comes back

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int):
        if width and height:
            self.size = (height, width)  # before the exec opens: its initial size
            self._queue(lambda session: session.resize(rows=height, cols=width))

    def pause_writing(self) -> None:
        self.writable.clear()
        if self.output_fd is not None:
            self.loop.remove_reader(self.output_fd)

    def resume_writing(self) -> None:
        self.writable.set()
        if self.output_fd is not None and not self.closed:
            self.loop.add_reader(self.output_fd, self._output_ready)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        self.inputs.put(None)
        # Before the close below: the loop must not watch a descriptor
        # that the socket's collection may close.
        self._stop_reading_output()
        if self.exec is not None:
            with contextlib.suppress(DriverError, OSError):
                self.exec.close()
        if self.counted_user is not None:
            self.connection.gateway.session_closed(self.counted_user)
            self.counted_user = None
        if self.refused and self.connection.conn is not None:
            self.connection.conn.close()


class _Forward(asyncssh.SSHTCPSession):
    """One ``ssh -L`` connection: the channel's bytes to and from the driver's port stream.

    As :class:`_Session`: a reader thread (the port's bytes to the client,
    paused while the client's window is full) and a writer thread (the
    client's bytes, in order, to the port), so the loop never blocks.
    """

    def __init__(self, connection: _Connection, stream: Any):
        self.connection = connection
        self.stream = stream
        self.chan: Any = None
        self.loop = asyncio.get_running_loop()
        # Bytes are stdin (batched by _pump_input), callables everything else.
        self.inputs: queue.Queue[bytes | Callable[[Any], None] | None] = queue.Queue()
        self.writable = threading.Event()
        self.writable.set()
        self.closed = False

    def connection_made(self, chan: Any) -> None:
        self.chan = chan
        threading.Thread(target=self._pump_output, daemon=True, name="ssh-fwd-out").start()
        threading.Thread(target=self._pump_input, daemon=True, name="ssh-fwd-in").start()

    def _pump_output(self) -> None:
        while True:
            self.writable.wait()
            try:
                data = self.stream.read()
            except DriverError:
                # A refusal that arrives after the connect (a pod's port
                # forward reports it late): the client sees the end, not a hang.
                log.info("port forward ended by the cluster", exc_info=True)
                data = b""
            if not data or self.closed:
                break
            self.loop.call_soon_threadsafe(self._write, data)
        self.loop.call_soon_threadsafe(self._eof)

    def _write(self, data: bytes) -> None:
        if self.chan is not None and not self.closed:
            self.connection.activity(sent=len(data))
            self.chan.write(data)

    def _eof(self) -> None:
        if self.chan is not None and not self.closed:
            with contextlib.suppress(OSError, asyncssh.Error):
                self.chan.write_eof()

    def _pump_input(self) -> None:
        while True:
            action = self.inputs.get()
            if action is None:
                return
            try:
                action(self.stream)
            except DriverError:
                return
            if self.inputs.qsize() < INPUT_QUEUE_HIGH // 2:
                self.loop.call_soon_threadsafe(self._resume_reading)

    def _resume_reading(self) -> None:
        if self.chan is not None and not self.closed:
            self.chan.resume_reading()

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.connection.activity(received=len(data))
        self.inputs.put(lambda stream: stream.write(data))
        if self.inputs.qsize() > INPUT_QUEUE_HIGH and self.chan is not None:
            self.chan.pause_reading()

    def eof_received(self) -> bool:
        self.inputs.put(lambda stream: stream.close_write())
        return True  # half-closed: the port's answer still comes back

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        self.inputs.put(None)
        with contextlib.suppress(DriverError, OSError):
            self.stream.close()


def serve(*, host: str | None = None, port: int | None = None) -> None:
    """Run the gateway until SIGTERM or SIGINT (``manage.py ssh_gateway``)."""
    import signal

    from aladdin.lib.ssh_host_keys import load_or_create

    async def main() -> None:
        gateway = Gateway(
            max_sessions=settings.SSH_MAX_SESSIONS,
            max_sessions_per_user=settings.SSH_MAX_SESSIONS_PER_USER,
            idle_timeout=settings.SSH_IDLE_TIMEOUT_SECONDS,
            auth_failures_per_minute=settings.SSH_AUTH_FAILURES_PER_MINUTE,
            auth_block_seconds=settings.SSH_AUTH_BLOCK_SECONDS,
        )
        host_keys = load_or_create(settings.SSH_HOST_KEYS_DIR)
        ciphers = offered(settings.SSH_CIPHERS)
        log.info(
            "SSH gateway ciphers: %s", ", ".join(ciphers) if ciphers else "asyncssh's defaults"
        )
        await gateway.start(
            host=host or settings.SSH_BIND,
            port=port or settings.SSH_PORT,
            host_keys=host_keys,
            ciphers=ciphers,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        gateway.close()
        log.info("SSH gateway stopped")

    asyncio.run(main())
