"""Port connections: ``127.0.0.1:port`` inside a running workload, relayed over the agent's connection.

What the SSH gateway's ``ssh -L`` reaches (the IDE's remote server, a
debugger, Jupyter). The socket is made in the workload's own network
namespace: a short-lived thread of the agent joins it with ``setns(2)``
(the namespace is a per-thread attribute, so the agent's other threads stay
where they are), creates and connects the socket, and ends; the socket keeps
the namespace it was made in. Nothing of the request but an integer port
reaches the host: no address, path or program of the student's choosing,
and no process of theirs runs as root.

Without a sandbox (one user, or insecure) the workload shares the host's
network, so its loopback is the host's: the connection is made there, which
reaches no more than the workload's own processes already can.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading

from .. import splice
from ..protocol import AgentError, ErrorCode, check_port
from .pty import Peer
from .workloads import Workload

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT_SECONDS = 10

_libc = ctypes.CDLL(None, use_errno=True)


def connect(workload: Workload, port: int) -> socket.socket:
    """A connected socket to 127.0.0.1:``port`` in ``workload``'s network. Raises AgentError."""
    check_port(port)
    netns: int | None = None
    if workload.sandbox_pid:
        try:
            netns = os.open(f"/proc/{workload.sandbox_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise AgentError(ErrorCode.NOT_RUNNING, f"{workload.name} is not running") from exc
    outcome: list[socket.socket | BaseException] = []

    def join_and_connect() -> None:
        try:
            if netns is not None and _libc.setns(netns, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns: {os.strerror(errno)}")
            # From here on this thread is in the workload's network: it only
            # connects and ends (never goes back to serve anything else).
            outcome.append(
                socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_SECONDS)
            )
        except BaseException as exc:  # carried to the caller's thread
            outcome.append(exc)

    try:
        thread = threading.Thread(target=join_and_connect, name="port-connect", daemon=True)
        thread.start()
        thread.join()
    finally:
        if netns is not None:
            os.close(netns)
    result = outcome[0]
    if isinstance(result, ConnectionRefusedError):
        raise AgentError(
            ErrorCode.CONNECTION_REFUSED,
            f"nothing listens on port {port} in {workload.name}",
        )
    if isinstance(result, TimeoutError):
        raise AgentError(
            ErrorCode.UNAVAILABLE, f"port {port} in {workload.name} did not answer in time"
        )
    if isinstance(result, BaseException):
        raise AgentError(ErrorCode.UNAVAILABLE, f"cannot connect to port {port}: {result}")
    result.settimeout(None)
    return result


def relay(peer: Peer, target: socket.socket) -> None:
    """Carry bytes both ways, each side's end passed on as a half-close, until both ended."""
    client = peer.request

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            # In the kernel (splice): the agent is one of the two relays a
            # port URL's bytes cross, and copying them through Python halved
            # the download's throughput (docs/benchmarks.md "Port proxy").
            splice.pump(source, sink)
        except OSError:
            pass  # reset or gone: the end of this direction either way
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    back = threading.Thread(target=pipe, args=(target, client), daemon=True, name="port-out")
    back.start()
    try:
        pipe(client, target)
        back.join()
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)
        back.join(5)
        target.close()
