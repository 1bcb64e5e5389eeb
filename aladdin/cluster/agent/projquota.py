"""Per-directory hard caps on the users' volumes: Linux project quotas (ext4, XFS).

SPEC §4.2 says a local directory cannot enforce the allowance; where the
volumes' filesystem offers project quotas it can, and this module does it:
each volume directory gets a project id (the user's sandbox uid, unique per
user on this host), the inherit flag (everything created under it carries
the id) and a hard block limit equal to the storage allowance. A write past
it fails with EDQUOT inside the workload; nothing is stopped for it.

When it is on. Only when ``/proc/mounts`` shows the filesystem holding the
volumes mounted with project quotas *enforced*: ext4 with ``prjquota``, XFS
with ``prjquota``/``pquota`` (``pqnoenforce`` only accounts). Anything else
(tmpfs, ext4 without the option, a kernel without CONFIG_QUOTA) leaves the
caps off, and the agent's health says why; the portal's refusals and its
free-space reserve (aladdin/workloads/disk.py) still apply.

The system calls are the kernel's own interfaces, no tools: the
``FS_IOC_FSGETXATTR``/``FS_IOC_FSSETXATTR`` ioctls (project id and inherit
flag, as ``chattr -p``/``xfs_quota project`` set them) and ``quotactl(2)``
``Q_SETQUOTA`` on ``PRJQUOTA`` (what ``setquota -P`` calls). They sit
behind :class:`Syscalls` so the tests can check what is asked of the kernel
on hosts whose kernel has no quota support.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("aladdin.cluster.agent")

# <linux/fs.h>: struct fsxattr is five __u32 and 8 pad bytes (28 bytes).
FSXATTR = struct.Struct("=5I8s")
FS_IOC_FSGETXATTR = 0x801C581F  # _IOR('X', 31, struct fsxattr)
FS_IOC_FSSETXATTR = 0x401C5820  # _IOW('X', 32, struct fsxattr)
FS_XFLAG_PROJINHERIT = 0x00000200
# <linux/quota.h>
PRJQUOTA = 2
Q_GETINFO = 0x800005
Q_SETQUOTA = 0x800008
QIF_BLIMITS = 1
QIF_DQBLKSIZE = 1024  # the unit of dqb_bhardlimit

MOUNTS = Path("/proc/mounts")
ENFORCING = {"ext4": ("prjquota",), "xfs": ("prjquota", "pquota", "pqenforce")}


def qcmd(cmd: int, kind: int) -> int:
    return (cmd << 8) | (kind & 0xFF)


class _IfDqblk(ctypes.Structure):
    _fields_ = [
        ("dqb_bhardlimit", ctypes.c_uint64),
        ("dqb_bsoftlimit", ctypes.c_uint64),
        ("dqb_curspace", ctypes.c_uint64),
        ("dqb_ihardlimit", ctypes.c_uint64),
        ("dqb_isoftlimit", ctypes.c_uint64),
        ("dqb_curinodes", ctypes.c_uint64),
        ("dqb_btime", ctypes.c_uint64),
        ("dqb_itime", ctypes.c_uint64),
        ("dqb_valid", ctypes.c_uint32),
    ]


class _IfDqinfo(ctypes.Structure):
    _fields_ = [
        ("dqi_bgrace", ctypes.c_uint64),
        ("dqi_igrace", ctypes.c_uint64),
        ("dqi_flags", ctypes.c_uint32),
        ("dqi_valid", ctypes.c_uint32),
    ]


class Syscalls:
    """The kernel calls this module makes; each raises OSError with the kernel's errno."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def get_project(self, fd: int) -> tuple[int, int]:
        """(xflags, project id) of the open file ``fd``."""
        buf = bytearray(FSXATTR.size)
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf, True)
        xflags, _extsize, _nextents, projid, _cow, _pad = FSXATTR.unpack(bytes(buf))
        return xflags, projid

    def set_project(self, fd: int, *, project_id: int, inherit: bool) -> None:
        buf = bytearray(FSXATTR.size)
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buf, True)
        fields = list(FSXATTR.unpack(bytes(buf)))
        if inherit:
            fields[0] |= FS_XFLAG_PROJINHERIT
        fields[3] = project_id
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR, FSXATTR.pack(*fields))

    def _quotactl(self, cmd: int, device: str, qid: int, addr: ctypes.Structure) -> None:
        if self._libc.quotactl(cmd, device.encode(), qid, ctypes.byref(addr)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"quotactl on {device}: {os.strerror(code)}")

    def quota_info(self, device: str) -> None:
        """Raise OSError unless project quotas are on for ``device`` (Q_GETINFO)."""
        self._quotactl(qcmd(Q_GETINFO, PRJQUOTA), device, 0, _IfDqinfo())

    def set_block_limit(self, device: str, project_id: int, blocks: int) -> None:
        """Hard block limit of ``project_id`` (in 1 KiB blocks; soft limit none)."""
        dq = _IfDqblk(dqb_bhardlimit=blocks, dqb_bsoftlimit=0, dqb_valid=QIF_BLIMITS)
        self._quotactl(qcmd(Q_SETQUOTA, PRJQUOTA), device, project_id, dq)


@dataclass(frozen=True)
class Mount:
    device: str
    point: str
    fstype: str
    options: tuple[str, ...]


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def mount_of(path: Path, mounts_text: str) -> Mount | None:
    """The mount that holds ``path``: the longest mount point above it, the last listed winning."""
    target = os.path.realpath(path)
    best: Mount | None = None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        point = _unescape(parts[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(_unescape(parts[0]), point, parts[2], tuple(parts[3].split(",")))
    return best


@dataclass(frozen=True)
class Support:
    """Whether the volumes get hard caps, and the reason (shown by /healthz when off)."""

    on: bool
    reason: str
    device: str = ""


def probe(
    volumes_dir: Path, *, mounts_text: str | None = None, sys: Syscalls | None = None
) -> Support:
    """Whether project quotas are enforced on the filesystem of ``volumes_dir``, and why not."""
    try:
        text = mounts_text if mounts_text is not None else MOUNTS.read_text()
    except OSError as exc:
        return Support(False, f"cannot read {MOUNTS}: {exc.strerror}")
    mount = mount_of(volumes_dir, text)
    if mount is None:
        return Support(False, f"no mount holds {volumes_dir}")
    where = f"{mount.fstype} at {mount.point}"
    wanted = ENFORCING.get(mount.fstype)
    if wanted is None:
        return Support(False, f"{where}: only ext4 and XFS offer project quotas")
    if not any(option in mount.options for option in wanted):
        return Support(
            False, f"{where} is mounted without {' or '.join(wanted)} (see docs/operations.md)"
        )
    try:
        (sys or Syscalls()).quota_info(mount.device)
    except OSError as exc:
        return Support(False, f"{where}: project quotas are not on ({exc.strerror})")
    return Support(True, f"{where} ({mount.device}), project quotas enforced", mount.device)


def limit_blocks(storage_gib: int) -> int:
    """The hard limit for an allowance, in 1 KiB blocks; at least one block.

    A limit of 0 means "no limit" to the kernel; an allowance of 0 GiB means
    nothing may be written, which one block is the closest to.
    """
    return max(1, int(storage_gib) * (2**30 // QIF_DQBLKSIZE))


def _tag_tree(volume: Path, project_id: int, sys: Syscalls) -> None:
    """Give everything already in ``volume`` the project id (files made before the cap was on).

    Inheritance covers only what is created later. ``os.fwalk`` never
    follows symlinks and opens each name relative to its directory's fd
    with O_NOFOLLOW, so a user swapping a directory for a symlink mid-walk
    cannot make root tag (or open) something outside the volume.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    for _root, dirs, files, root_fd in os.fwalk(volume, follow_symlinks=False):
        for name in [*dirs, *files]:
            try:
                mode = os.lstat(name, dir_fd=root_fd).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    continue  # symlinks, fifos, sockets hold no blocks worth counting
                fd = os.open(name, flags, dir_fd=root_fd)
            except OSError:
                continue  # gone, or swapped for a symlink: nothing to tag
            try:
                sys.set_project(fd, project_id=project_id, inherit=stat.S_ISDIR(mode))
            except OSError as exc:
                log.warning("project id of %s/%s: %s", volume, name, exc)
            finally:
                os.close(fd)


class ProjectQuotas:
    """Applies the caps when :attr:`support` is on; does nothing (and says why) otherwise."""

    def __init__(self, support: Support, sys: Syscalls | None = None):
        self.support = support
        self.sys = sys or (Syscalls() if support.on else None)

    @property
    def on(self) -> bool:
        return self.support.on

    def apply(self, volume: Path, *, project_id: int, storage_gib: int) -> None:
        """Tag ``volume`` with ``project_id`` (inherited) and cap it at ``storage_gib``. Idempotent.

        Raises OSError (the kernel refused); the caller logs it and goes on.
        """
        if not self.support.on or self.sys is None:
            return
        fd = os.open(volume, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            xflags, current = self.sys.get_project(fd)
            fresh = current != project_id or not xflags & FS_XFLAG_PROJINHERIT
            if fresh:
                self.sys.set_project(fd, project_id=project_id, inherit=True)
        finally:
            os.close(fd)
        if fresh:
            _tag_tree(volume, project_id, self.sys)
        self.sys.set_block_limit(self.support.device, project_id, limit_blocks(storage_gib))
