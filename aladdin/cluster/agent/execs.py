"""Exec: a command (or a login shell) inside a running workload, relayed over the agent's connection.

What the SSH gateway's sessions run (``ssh ws``, ``ssh ws 'cmd'``, later
``sftp-server``). The terminal of :mod:`.pty` is the same path with a
fixed command: ``nsenter`` into every namespace of the workload's sandbox,
as its uid. The differences an SSH session needs are separate stdout and
stderr, an end of stdin, and a command of the client's choosing; the
command travels like the variables, through a descriptor read by a loader
already inside the sandbox (:data:`~aladdin.cluster.sandbox.EXEC_LOADER`),
so nothing the student typed is an argument of nsenter (root on the host).

Messages are :mod:`aladdin.cluster.protocol`'s exec stream.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import select
import socket
import subprocess
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .. import protocol, sandbox
from ..protocol import AgentError, ErrorCode
from .gate import CgroupGate
from .pty import Peer, hang_up, set_winsize, wait_for_uid_map
from .workloads import Workload

LOGIN_SHELL = ["/bin/bash", "-l"]
# Bigger reads, fewer frames: each frame costs a JSON line, base64 and a wake-up
# on both sides (bench/ssh_transfer.py: 64 KiB frames held scp to ~30 % of sshd).
READ_CHUNK = 256 * 1024


def exit_status(returncode: int) -> int:
    """A shell's number for an end: the code, or 128 + the signal that killed it."""
    return 128 - returncode if returncode < 0 else returncode


def start(
    workload: Workload,
    *,
    uid: int,
    volume: Path,
    request: protocol.Exec,
) -> tuple[subprocess.Popen, int | None]:
    """Start ``request``'s command in ``workload``: (the process, a PTY's master fd or None)."""
    command = list(request.command) or LOGIN_SHELL
    if any("\0" in arg for arg in command):
        raise AgentError(ErrorCode.INVALID, "the command contains a NUL byte")
    env = {**workload.env, **request.env}
    if request.tty:
        env["TERM"] = request.env.get("TERM") or env.get("TERM") or "xterm-256color"
    try:
        sandbox.check_env(env)
    except ValueError as exc:
        raise AgentError(ErrorCode.INVALID, str(exc)) from None
    as_user: dict[str, Any] = {}
    fds: tuple[int, ...] = ()
    if workload.sandbox_pid:
        wait_for_uid_map(workload.sandbox_pid)
        env_fd = sandbox.env_fd(env)
        argv_fd = sandbox.args_fd(command)
        fds = (env_fd, argv_fd)
        argv = sandbox.nsenter_exec_argv(workload.sandbox_pid, uid, env_fd=env_fd, argv_fd=argv_fd)
        popen_env, cwd = sandbox.HOST_ENV, None
    else:
        # No sandbox (single user or insecure): the command is the student's
        # own process, as their uid, as the workload is (see pty.open_shell).
        argv, popen_env, cwd = command, env, volume
        if os.geteuid() == 0:
            as_user = {"user": uid, "group": uid, "extra_groups": []}
    master = slave = None
    # The command joins the workload's cgroup before it runs (see pty.open_shell).
    gate = CgroupGate(workload.cgroups, workload.name)
    argv, pass_fds = gate.wrap(argv), (*fds, *gate.pass_fds)
    try:
        if request.tty:
            master, slave = os.openpty()
            set_winsize(master, request.rows, request.cols)

            def controlling_tty() -> None:
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

            proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=popen_env,
                cwd=cwd,
                pass_fds=pass_fds,
                preexec_fn=controlling_tty,  # noqa: PLW1509 - only setsid + ioctl
                **as_user,
            )
        else:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=popen_env,
                cwd=cwd,
                pass_fds=pass_fds,
                start_new_session=True,  # one group to hang up, as with a PTY
                **as_user,
            )
        gate.release(proc)
    except OSError as exc:
        if master is not None:
            os.close(master)
        raise AgentError(ErrorCode.UNAVAILABLE, f"cannot start the command: {exc}") from exc
    finally:
        gate.close()
        if slave is not None:
            os.close(slave)
        for fd in fds:
            os.close(fd)
    return proc, master


def relay(peer: Peer, proc: subprocess.Popen, master: int | None, *, binary: bool = False) -> None:
    """Carry the exec stream both ways until the command ended and its output was sent.

    ``binary``: the client asked for binary frames and was told yes (the
    protocol's version 1 frames); otherwise JSON lines, as older portals speak.
    """
    send_lock = threading.Lock()

    def send(message: protocol.ExecOutput | protocol.TerminalExit) -> None:
        # Two pumps (stdout, stderr) share the connection: one frame at a time.
        if binary:
            # Header and payload in one buffer and one sendall: no base64, no JSON.
            frame = protocol.exec_output_frame(message)
            with send_lock:
                peer.request.sendall(frame)
            return
        wire = message.to_wire()
        with send_lock:
            peer.send(wire)

    def pump(read: Callable[[int], bytes], stream: int) -> None:
        while True:
            try:
                data = read(READ_CHUNK)
            except OSError:  # EIO: every process closed the PTY
                data = b""
            if not data:
                return
            send(protocol.ExecOutput(data, stream))

    if master is not None:
        pumps = [threading.Thread(target=pump, args=(lambda n: os.read(master, n), 1))]
    else:
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            threading.Thread(target=pump, args=(_reader(proc.stdout), 1)),
            threading.Thread(target=pump, args=(_reader(proc.stderr), 2)),
        ]

    def finish() -> None:
        try:
            for thread in pumps:
                thread.start()
            for thread in pumps:
                thread.join()
            send(protocol.TerminalExit(exit_status(proc.wait())))
        except OSError:
            pass  # the client went away
        finally:
            with contextlib.suppress(OSError):
                peer.request.shutdown(socket.SHUT_RDWR)

    done = threading.Thread(target=finish, daemon=True, name="exec-out")
    done.start()
    stdin: IO[bytes] | None = proc.stdin
    try:
        for decoded in _binary_inputs(peer.rfile) if binary else _json_inputs(peer):
            match decoded:
                case protocol.TerminalInput(data=data):
                    if master is not None:
                        _write_all(master, data)
                    elif stdin is not None:
                        with contextlib.suppress(BrokenPipeError):
                            _write_all(stdin.fileno(), data)
                case protocol.ExecEof():
                    if stdin is not None:
                        with contextlib.suppress(OSError):
                            stdin.close()
                        stdin = None
                case protocol.TerminalResize(rows=rows, cols=cols):
                    if master is not None:
                        set_winsize(master, rows, cols)
                case protocol.TerminalClose():
                    break
    except (
        OSError,
        ValueError,
        AgentError,
    ):  # the client went away, or stopped speaking the protocol
        pass
    finally:
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        # The client may have hung up before the command ended: with a
        # terminal the session's whole group goes, without one the command only.
        hang_up(proc, group=master is not None)
        done.join(5)
        if master is not None:
            os.close(master)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


ExecInput = (
    protocol.TerminalInput | protocol.ExecEof | protocol.TerminalResize | protocol.TerminalClose
)


def _json_inputs(peer: Peer) -> Iterator[ExecInput]:
    for message in peer.messages():
        try:
            yield protocol.decode_exec_input(message)
        except AgentError:
            continue  # a message this agent does not know: ignored


def _binary_inputs(rfile: io.BufferedIOBase) -> Iterator[ExecInput]:
    """The client's frames until it closes its end. Raises ValueError, AgentError on garbage."""
    size = protocol.FRAME_HEADER.size
    while True:
        header = rfile.read(size)
        if len(header) < size:
            return
        kind, length = protocol.frame_header(header)
        # A buffered reader hands a large read straight to the socket (no copy via its buffer).
        payload = rfile.read(length) if length else b""
        if len(payload) < length:
            return
        decoded = protocol.decode_exec_input_frame(kind, payload)
        if decoded is not None:  # an unknown kind is skipped
            yield decoded


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to a pipe or PTY: os.write straight away, no BufferedWriter copy and flush."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _reader(pipe: IO[bytes]) -> Callable[[int], bytes]:
    fd = pipe.fileno()
    return lambda n: _read_ready(fd, n)


def _read_ready(fd: int, size: int) -> bytes:
    """One read, plus whatever more the pipe already holds (up to ``size``), without waiting.

    sftp-server writes one SFTP reply (~32 KiB) at a time: a frame per reply
    was the download's cost in the gateway (a frame, a wake-up of its loop).
    """
    data = os.read(fd, size)
    if not data or len(data) >= size:
        return data
    chunks = [data]
    total = len(data)
    while total < size and select.select([fd], [], [], 0)[0]:
        more = os.read(fd, size - total)
        if not more:
            break  # the end: the next read returns b"" again
        chunks.append(more)
        total += len(more)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
