"""Terminals: a shell in a PTY inside a running workload, relayed over the agent's connection.

The shell runs inside the workload's own sandbox (``nsenter`` into all its
namespaces, as its uid): it shares /tmp, processes and loopback with it.
nsenter runs as root on the host, so it is started by absolute path with
:data:`~aladdin.cluster.sandbox.HOST_ENV`; the workload's variables reach
only the shell inside, through a descriptor (:data:`~aladdin.cluster.sandbox.ENV_LOADER`).
Messages are :mod:`aladdin.cluster.protocol`'s terminal stream (base64 in
JSON costs a third more bytes and keeps one framing for data and control).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .. import protocol, sandbox
from .gate import CgroupGate
from .workloads import Workload

UID_MAP_WAIT_SECONDS = 5
HANGUP_WAIT_SECONDS = 2


class Peer(Protocol):
    """The client's end of one connection, as the relay sees it."""

    request: socket.socket
    rfile: io.BufferedIOBase  # what messages() reads; binary exec frames read it directly

    def send(self, message: dict[str, Any]) -> None: ...

    def messages(self) -> Iterator[dict[str, Any]]: ...


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))


def wait_for_uid_map(pid: int) -> None:
    """Wait (a few seconds at most) until the sandbox of ``pid`` is set up for nsenter.

    bwrap reports the child's pid before it has written the uid and gid
    maps, and with ``--disable-userns`` the child later moves into a nested
    user namespace whose maps it writes again: nsenter run in between fails
    ("setgid failed: Invalid argument", seen when a shell was opened right
    after the start). The namespaces are final once the sandbox's init has
    started its first child, the workload's command.
    """
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + UID_MAP_WAIT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            mapped = all(
                Path(f"/proc/{pid}/{name}").read_text().strip() for name in ("uid_map", "gid_map")
            )
            started = children.read_text().strip() if children.exists() else True
            if mapped and started:
                return
        time.sleep(0.05)


def open_shell(
    workload: Workload, *, uid: int, volume: Path, rows: int, cols: int
) -> tuple[int, subprocess.Popen]:
    """A login shell in ``workload`` on a new PTY: (the PTY's master fd, the process)."""
    env = dict(workload.env)
    env["TERM"] = env.get("TERM") or "xterm-256color"
    shell = ["/bin/bash", "-l"] if os.path.exists("/usr/bin/bash") else ["/bin/sh"]
    as_user: dict[str, Any] = {}
    pass_fds: tuple[int, ...]
    if workload.sandbox_pid:
        pid = workload.sandbox_pid
        wait_for_uid_map(pid)
        # nsenter runs as root on the host: by absolute path, with HOST_ENV;
        # the shell it starts inside reads the workload's variables from a
        # descriptor (sandbox.ENV_LOADER).
        loader_fd = sandbox.env_fd(env)
        argv = sandbox.nsenter_argv(pid, uid, shell, env_fd=loader_fd)
        env, cwd, pass_fds = sandbox.HOST_ENV, None, (loader_fd,)
    else:
        # No sandbox (single user or insecure): the shell is the student's
        # own process, as their uid, as the workload is.
        argv, cwd, pass_fds = shell, volume, ()
        if os.geteuid() == 0:
            as_user = {"user": uid, "group": uid, "extra_groups": []}
    master, slave = os.openpty()
    set_winsize(master, rows, cols)

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    # The shell joins the workload's cgroup before it runs: its limits hold
    # for what a student starts from a terminal too.
    gate = CgroupGate(workload.cgroups, workload.name)
    try:
        proc = subprocess.Popen(
            gate.wrap(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            pass_fds=(*pass_fds, *gate.pass_fds),
            preexec_fn=controlling_tty,  # noqa: PLW1509 - only setsid + ioctl
            **as_user,
        )
        gate.release(proc)
    except OSError:
        os.close(master)
        raise
    finally:
        gate.close()
        os.close(slave)
        for fd in pass_fds:
            os.close(fd)
    return master, proc


NSENTER_FORK_WAIT_SECONDS = 2.0


def _command_pids(proc: subprocess.Popen) -> list[int]:
    """The command's own process: under nsenter, which forks to enter the pid
    namespace, its child (the loader that execs the command) as well as nsenter."""
    pids = [proc.pid]
    args = sandbox.ungated(proc.args) if isinstance(proc.args, list | tuple) else []
    if args and args[0] == sandbox.NSENTER:
        # A hang-up right after the start can come before nsenter has forked
        # its child (the cgroup gate's release and nsenter's fork take a few
        # milliseconds, more on a loaded host): signalled alone, nsenter
        # would die and leave the command running. Wait for the child.
        deadline = time.monotonic() + NSENTER_FORK_WAIT_SECONDS
        while True:
            children: list[str] = []
            with contextlib.suppress(OSError, ValueError):
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if children or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        pids = [int(child) for child in children] + pids
    return pids


def hang_up(proc: subprocess.Popen, *, group: bool = True) -> None:
    """End ``proc`` if it still runs: SIGHUP, then SIGKILL after a grace, as sshd does.

    ``group``: its whole process group, what a terminal's hang-up reaches
    (the shell and its foreground jobs). Without a terminal sshd signals
    nothing; here the command itself only, so what it started in the
    background (an IDE's server launched by ``bash`` over ``ssh -T``)
    outlives a dropped connection, as it would under sshd.
    """
    if proc.poll() is not None:
        return

    pids = [] if group else _command_pids(proc)

    def send(signum: int) -> None:
        if group:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signum)
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    send(signal.SIGHUP)
    try:
        proc.wait(HANGUP_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


def relay(peer: Peer, master: int, proc: subprocess.Popen) -> None:
    """Carry the PTY over the connection both ways until the shell exits or the client leaves."""
    done = threading.Event()

    def pump_out() -> None:
        try:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the shell and its children closed the PTY
                    data = b""
                if not data:
                    break
                peer.send(protocol.TerminalOutput(data).to_wire())
            peer.send(protocol.TerminalExit(proc.wait()).to_wire())
        except OSError:
            pass
        finally:
            done.set()
            with contextlib.suppress(OSError):
                peer.request.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=pump_out, daemon=True, name="terminal-out").start()
    try:
        for message in peer.messages():
            try:
                decoded = protocol.decode_terminal_input(message)
            except protocol.AgentError:
                continue  # not one this agent knows (a newer client's?): ignored, as before
            match decoded:
                case protocol.TerminalInput(data=data):
                    os.write(master, data)
                case protocol.TerminalResize(rows=rows, cols=cols):
                    set_winsize(master, rows, cols)
                case protocol.TerminalClose():
                    break
    except (OSError, ValueError):  # the client went away, or stopped speaking JSON
        pass
    finally:
        # The client left: end the shell (and what it started in the
        # foreground), as sshd does when the connection drops.
        hang_up(proc)
        done.wait(5)
        os.close(master)
