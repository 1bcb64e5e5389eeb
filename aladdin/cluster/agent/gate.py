"""A process held at a gate until it is in its cgroup (workloads, their execs, image builds)."""

from __future__ import annotations

import contextlib
import os
import subprocess

from .. import cgroups as cgroup_limits
from .. import sandbox


class CgroupGate:
    """Start a process held at :data:`~aladdin.cluster.sandbox.GATE` until it is in a cgroup.

    ``wrap`` the argv and pass ``pass_fds`` on to Popen, then ``release``
    the process once started (or ``close`` if it never was). Without
    cgroups (``cgroups`` None) the argv is left as it is and the rest does
    nothing.
    """

    def __init__(self, cgroups: cgroup_limits.Cgroups | None, name: str):
        self.cgroups, self.name = cgroups, name
        self._r: int | None = None
        self._w: int | None = None
        if cgroups is not None:
            self._r, self._w = os.pipe()

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return () if self._r is None else (self._r,)

    def wrap(self, argv: list[str]) -> list[str]:
        return argv if self._r is None else sandbox.gated(self._r, argv)

    def release(self, proc: subprocess.Popen) -> None:
        """Put ``proc`` into the cgroup and let it run; if it cannot be, kill it and raise OSError."""
        if self.cgroups is None or self._w is None:
            return
        self._close_read()
        try:
            self.cgroups.attach(self.name, proc.pid)
            os.write(self._w, b"go\n")
        except OSError:
            # Never let it run unlimited: the gate sees EOF and exits, and
            # the kill covers a gate that has not reached its read yet.
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
            raise
        finally:
            self.close()

    def _close_read(self) -> None:
        fd, self._r = self._r, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self._close_read()
        fd, self._w = self._w, None
        if fd is not None:
            os.close(fd)
