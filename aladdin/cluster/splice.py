"""Copy one socket's bytes into another inside the kernel (``splice(2)`` through a pipe).

A relay that reads into Python and writes back out copies every byte twice
through user space and allocates a ``bytes`` per read; with ``splice`` the
bytes move socket -> pipe -> socket as page references, each call releasing
the GIL, so a relay costs a few system calls per pipe-full instead. The port
proxy's relay (gpu_jobs/proxy.py) uses it where the driver's stream is a
plain socket (the local agent's); see docs/benchmarks.md "Port proxy".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ is Python 3.10+ but only where the headers had it
PIPE_SIZE = 1 << 20  # the default /proc/sys/fs/pipe-max-size; a smaller pipe still works


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Move bytes from ``source`` to ``sink`` until ``source`` ends (EOF or shut down).

    Raises OSError when either side breaks (reset, EPIPE); the caller passes
    the end on (a half-close) and closes. Both sockets must be blocking.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        size = PIPE_SIZE
        try:
            size = fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            size = 65536  # an unprivileged process over the user's pipe quota
        src, dst = source.fileno(), sink.fileno()
        while True:
            moved = os.splice(src, write_end, size, flags=os.SPLICE_F_MOVE)
            if moved == 0:
                return
            while moved:
                moved -= os.splice(read_end, dst, moved, flags=os.SPLICE_F_MOVE)
    finally:
        with contextlib.suppress(OSError):
            os.close(read_end)
        with contextlib.suppress(OSError):
            os.close(write_end)
