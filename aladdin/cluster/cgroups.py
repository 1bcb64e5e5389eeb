"""Per-workload cgroups on the local backend (SPEC §9, "Decision — limits").

Each workload runs in a cgroup of its own, named after it under the
agent's parent group (``ALADDIN_LOCAL_CGROUP_PARENT``, default ``aladdin``):

- cgroup v2 (the unified hierarchy at the root, with ``memory``, ``cpu``
  and ``pids`` in ``cgroup.controllers``): ``<root>/<parent>/<name>``;
- cgroup v1 otherwise: ``<root>/{memory,cpu,pids}/<parent>/<name>``.

A workload gets a memory limit with no swap beyond it (the kernel's OOM
killer ends what exceeds it, and counts the kill), a CFS quota of its
millicores, and a process limit. A resource the spec gives as 0 is not
limited: 0 means "no preset says", not "nothing".

The agent puts the workload's first process into its cgroup *before* that
process runs anything (see :func:`aladdin.cluster.sandbox.gated`), so every
process the workload ever forks is inside: a fork bomb or a memory hog
cannot start outside the limits. Terminals and execs join the same cgroup
the same way. Removing a cgroup kills what is left in it first.

Everything here is plain file writes; :func:`detect` says whether this host
lets the agent make them (root, the controllers mounted, writable), and if
not, why, which ``/healthz`` and the workshops page then show.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from . import reasons

ROOT = Path("/sys/fs/cgroup")
DEFAULT_PARENT = "aladdin"
CONTROLLERS = ("memory", "cpu", "pids")
CFS_PERIOD_US = 100_000
CFS_MIN_QUOTA_US = 1_000  # the kernel refuses a smaller quota
REMOVE_WAIT_SECONDS = 5
PARENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Limits:
    """What one workload may use; 0 leaves that resource unlimited."""

    memory_mib: int = 0
    cpu_millicores: int = 0
    pids_max: int = 0

    @property
    def cfs_quota_us(self) -> int:
        """The CFS quota per :data:`CFS_PERIOD_US`: a thousandth of a CPU is 100 µs of it."""
        return max(CFS_MIN_QUOTA_US, self.cpu_millicores * CFS_PERIOD_US // 1000)


def oom_reason(memory_mib: int) -> str:
    """A workload's end reason (English) after the kernel killed one of its processes for memory."""
    return reasons.out_of_memory(memory_mib).text


def _write(path: Path, value: str | int) -> None:
    # One write() per value: cgroup files take a whole value per write.
    with open(path, "w") as f:
        f.write(str(value))


def _counter(text: str, key: str) -> int:
    """``key``'s number in a flat-keyed file (memory.events, memory.oom_control)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


class Cgroups(abc.ABC):
    """The workload cgroups of one agent: under ``root``, in the group ``parent``."""

    version: int

    def __init__(self, root: Path = ROOT, parent: str = DEFAULT_PARENT):
        if not PARENT_RE.match(parent):
            raise ValueError(f"invalid cgroup parent name {parent!r}")
        self.root = Path(root)
        self.parent = parent

    @property
    def label(self) -> str:
        return f"cgroup v{self.version}"

    @abc.abstractmethod
    def directories(self, name: str) -> list[Path]:
        """``name``'s cgroup directories (one per hierarchy), the memory one first."""

    @abc.abstractmethod
    def parents(self) -> list[Path]:
        """The parent group's directories, one per hierarchy."""

    @abc.abstractmethod
    def _prepare_parent(self) -> None:
        """Make the parent group (idempotent)."""

    @abc.abstractmethod
    def _set_limits(self, name: str, limits: Limits) -> None:
        """Write ``limits`` into ``name``'s freshly made cgroup."""

    @abc.abstractmethod
    def oom_kills(self, name: str) -> int:
        """How many of ``name``'s processes the kernel killed for memory (0 if unknown)."""

    def path(self, name: str, controller: str = "memory") -> Path:
        """The directory holding ``controller``'s files for ``name`` (for tests and operators)."""
        dirs = self.directories(name)
        if self.version == 2:
            return dirs[0]
        return dirs[CONTROLLERS.index(controller)]

    def create(self, name: str, limits: Limits) -> None:
        """``name``'s cgroup with ``limits`` (a leftover of the same name is replaced). Raises OSError."""
        self._prepare_parent()
        if any(d.exists() for d in self.directories(name)):
            self.remove(name)
        try:
            for directory in self.directories(name):
                directory.mkdir()
            self._set_limits(name, limits)
        except BaseException:
            self.remove(name)
            raise

    def attach(self, name: str, pid: int) -> None:
        """Move ``pid`` into ``name``'s cgroup (every hierarchy). Raises OSError."""
        for directory in self.directories(name):
            _write(directory / "cgroup.procs", pid)

    def pids(self, name: str) -> list[int]:
        pids: set[int] = set()
        for directory in self.directories(name):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return sorted(pids)

    def contains(self, name: str, pid: int) -> bool:
        """True when ``pid`` is in ``name``'s cgroup in every hierarchy."""
        for directory in self.directories(name):
            try:
                procs = (directory / "cgroup.procs").read_text().split()
            except OSError:
                return False
            if str(pid) not in procs:
                return False
        return True

    def remove(self, name: str, wait: float = REMOVE_WAIT_SECONDS) -> bool:
        """Kill what is left in ``name``'s cgroup and remove it; False if it would not go."""
        deadline = time.monotonic() + wait
        while True:
            # SIGKILL in a loop: a process may fork between the read and the kill.
            for pid in self.pids(name):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            busy = False
            for directory in self.directories(name):
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    busy = True
            if not busy:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def names(self) -> list[str]:
        """The workload cgroups that exist under the parent group (any hierarchy)."""
        found: set[str] = set()
        for parent in self.parents():
            with contextlib.suppress(OSError):
                found.update(p.name for p in parent.iterdir() if p.is_dir())
        return sorted(found)

    def remove_stale(self, keep: set[str]) -> list[str]:
        """Remove the cgroups of workloads not in ``keep`` (a previous agent's); their names."""
        stale = [n for n in self.names() if n not in keep]
        for name in stale:
            self.remove(name)
        return stale


class CgroupsV1(Cgroups):
    """cgroup v1: one hierarchy per controller, each with its own copy of the group."""

    version = 1

    def parents(self) -> list[Path]:
        return [self.root / c / self.parent for c in CONTROLLERS]

    def directories(self, name: str) -> list[Path]:
        return [p / name for p in self.parents()]

    def _prepare_parent(self) -> None:
        for parent in self.parents():
            parent.mkdir(exist_ok=True)

    def _set_limits(self, name: str, limits: Limits) -> None:
        memory, cpu, pids = self.directories(name)
        if limits.memory_mib:
            limit = limits.memory_mib * 2**20
            _write(memory / "memory.limit_in_bytes", limit)
            # No swap beyond the limit: memory+swap capped at the same value
            # where the kernel accounts swap, else swapping discouraged.
            memsw = memory / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                _write(memsw, limit)
            else:
                with contextlib.suppress(OSError):
                    _write(memory / "memory.swappiness", 0)
        if limits.cpu_millicores:
            _write(cpu / "cpu.cfs_period_us", CFS_PERIOD_US)
            _write(cpu / "cpu.cfs_quota_us", limits.cfs_quota_us)
        if limits.pids_max:
            _write(pids / "pids.max", limits.pids_max)

    def oom_kills(self, name: str) -> int:
        try:
            text = (self.directories(name)[0] / "memory.oom_control").read_text()
        except OSError:
            return 0
        return _counter(text, "oom_kill")


class CgroupsV2(Cgroups):
    """cgroup v2: one unified directory per group, controllers enabled from above."""

    version = 2

    def parents(self) -> list[Path]:
        return [self.root / self.parent]

    def directories(self, name: str) -> list[Path]:
        return [self.root / self.parent / name]

    def _prepare_parent(self) -> None:
        parent = self.parents()[0]
        enable = " ".join(f"+{c}" for c in CONTROLLERS)
        _write(self.root / "cgroup.subtree_control", enable)
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", enable)

    def _set_limits(self, name: str, limits: Limits) -> None:
        (directory,) = self.directories(name)
        if limits.memory_mib:
            _write(directory / "memory.max", limits.memory_mib * 2**20)
            swap = directory / "memory.swap.max"
            if swap.exists():
                _write(swap, 0)
        if limits.cpu_millicores:
            _write(directory / "cpu.max", f"{limits.cfs_quota_us} {CFS_PERIOD_US}")
        if limits.pids_max:
            _write(directory / "pids.max", limits.pids_max)

    def oom_kills(self, name: str) -> int:
        try:
            text = (self.directories(name)[0] / "memory.events").read_text()
        except OSError:
            return 0
        return _counter(text, "oom_kill")

    def remove(self, name: str, wait: float = REMOVE_WAIT_SECONDS) -> bool:
        # cgroup.kill (Linux 5.14) ends every process at once, forks included.
        with contextlib.suppress(OSError):
            _write(self.directories(name)[0] / "cgroup.kill", 1)
        return super().remove(name, wait)


def _v2_ready(root: Path) -> bool:
    try:
        available = (root / "cgroup.controllers").read_text().split()
    except OSError:
        return False
    return all(c in available for c in CONTROLLERS)


def _v1_ready(root: Path) -> list[str]:
    """The controllers missing as v1 hierarchies under ``root`` (none: ready)."""
    files = {"memory": "memory.limit_in_bytes", "cpu": "cpu.cfs_quota_us", "pids": "pids.max"}
    missing = []
    for controller in CONTROLLERS:
        hierarchy = root / controller
        # The hierarchy's root has no pids.max: look for it in any group, or trust cgroup.procs.
        if not (hierarchy / "cgroup.procs").exists():
            missing.append(controller)
        elif controller != "pids" and not (hierarchy / files[controller]).exists():
            missing.append(controller)
    return missing


def detect(
    root: Path = ROOT, parent: str = DEFAULT_PARENT, *, euid: int | None = None
) -> tuple[Cgroups | None, str]:
    """This agent's cgroups and "" if it can limit workloads, else (None, why not).

    The probe makes (and removes) a group with every limit set, so a
    read-only mount or a controller the kernel refuses shows here, at
    start, not at a student's first workload.
    """
    root = Path(root)
    if (os.geteuid() if euid is None else euid) != 0:
        return None, "the agent is not root, so it cannot create cgroups"
    cgroups: Cgroups
    if _v2_ready(root):
        cgroups = CgroupsV2(root, parent)
    else:
        missing = _v1_ready(root)
        if missing:
            return None, (
                f"no cgroup v2 with memory, cpu and pids at {root}, and no cgroup v1 "
                f"{', '.join(missing)} hierarchy there"
            )
        cgroups = CgroupsV1(root, parent)
    probe = f"probe-{os.getpid()}"
    try:
        cgroups.create(probe, Limits(memory_mib=64, cpu_millicores=100, pids_max=16))
    except OSError as exc:
        return None, f"cannot create {cgroups.label} groups under {root}: {exc}"
    if not cgroups.remove(probe):
        return None, f"cannot remove {cgroups.label} groups under {root}"
    return cgroups, ""
