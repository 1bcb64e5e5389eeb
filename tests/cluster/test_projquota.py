"""Hard caps per volume with project quotas (aladdin/cluster/agent/projquota.py).

The kernels of these machines are built without CONFIG_QUOTA (an ext4 made
with ``-O quota,project`` does not mount), so what the kernel is asked is
checked with a recording :class:`Syscalls`; the ioctls are checked against
the real kernel where it answers them, and the whole cap is tested for real
(a loop ext4 mounted with ``prjquota``, a write past the cap refused) on a
host that can, and skipped with the kernel's reason elsewhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aladdin.cluster.agent import projquota
from aladdin.cluster.agent.projquota import FS_XFLAG_PROJINHERIT, ProjectQuotas, Support

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /srv tmpfs rw,size=65536k 0 0
/dev/vdb /srv/aladdin ext4 rw,relatime,prjquota 0 0
/dev/vdc /srv/aladdin/var\\040x xfs rw,pqnoenforce 0 0
/dev/vdd /data xfs rw,prjquota 0 0
/dev/vde /plain ext4 rw,relatime 0 0
"""


class Recorded(projquota.Syscalls):
    """Answers like a kernel with project quotas on, and records what it was asked."""

    def __init__(self, *, quota_errno: int | None = None):
        self.projects: dict[int, tuple[int, int]] = {}  # inode -> (xflags, project id)
        self.tagged: list[tuple[str, int, bool]] = []
        self.limits: list[tuple[str, int, int]] = []
        self.quota_errno = quota_errno

    def get_project(self, fd):
        return self.projects.get(os.fstat(fd).st_ino, (0, 0))

    def set_project(self, fd, *, project_id, inherit):
        st = os.fstat(fd)
        self.projects[st.st_ino] = (FS_XFLAG_PROJINHERIT if inherit else 0, project_id)
        self.tagged.append((os.readlink(f"/proc/self/fd/{fd}"), project_id, inherit))

    def quota_info(self, device):
        if self.quota_errno:
            raise OSError(self.quota_errno, os.strerror(self.quota_errno))

    def set_block_limit(self, device, project_id, blocks):
        self.limits.append((device, project_id, blocks))


@pytest.mark.parametrize(
    ("path", "device", "point"),
    [
        ("/srv/aladdin/volumes", "/dev/vdb", "/srv/aladdin"),
        ("/srv/aladdin", "/dev/vdb", "/srv/aladdin"),
        ("/srv/aladdinx", "tmpfs", "/srv"),
        ("/srv/aladdin/var x/v", "/dev/vdc", "/srv/aladdin/var x"),
        ("/home", "/dev/vda", "/"),
    ],
)
def test_the_mount_of_a_path_is_the_longest_mount_point_above_it(path, device, point):
    mount = projquota.mount_of(Path(path), MOUNTS)
    assert mount is not None and (mount.device, mount.point) == (device, point)


def test_a_later_mount_on_the_same_point_hides_the_earlier_one():
    mounts = "/dev/vdb /srv ext4 rw 0 0\ntmpfs /srv tmpfs rw 0 0\n"
    mount = projquota.mount_of(Path("/srv/v"), mounts)
    assert mount is not None and mount.fstype == "tmpfs"


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/srv/v", "tmpfs at /srv: only ext4 and XFS offer project quotas"),
        ("/plain/v", "ext4 at /plain is mounted without prjquota"),
        ("/srv/aladdin/var x/v", "is mounted without prjquota or pquota or pqenforce"),
    ],
)
def test_without_enforced_project_quotas_the_caps_are_off_and_say_why(path, says):
    support = projquota.probe(Path(path), mounts_text=MOUNTS, sys=Recorded())
    assert not support.on and says in support.reason


@pytest.mark.parametrize(
    ("path", "device"), [("/srv/aladdin/v", "/dev/vdb"), ("/data/v", "/dev/vdd")]
)
def test_ext4_with_prjquota_and_xfs_with_prjquota_get_caps(path, device):
    support = projquota.probe(Path(path), mounts_text=MOUNTS, sys=Recorded())
    assert support.on and support.device == device


def test_a_kernel_that_refuses_quotactl_leaves_the_caps_off_with_its_error():
    support = projquota.probe(
        Path("/srv/aladdin/v"), mounts_text=MOUNTS, sys=Recorded(quota_errno=errno.ENOSYS)
    )
    assert (
        not support.on and "project quotas are not on (Function not implemented)" in support.reason
    )


def test_the_host_filesystem_here_is_probed_without_error(tmp_path):
    support = projquota.probe(tmp_path)
    assert support.reason  # on or off, the agent's health says what it found
    if not support.on:
        assert not ProjectQuotas(support).on


def test_the_limit_is_the_allowance_in_kib_and_never_zero_which_means_unlimited():
    assert projquota.limit_blocks(30) == 30 * 1024 * 1024
    assert projquota.limit_blocks(0) == 1


def test_a_volume_is_tagged_once_with_what_it_holds_and_capped_each_time(tmp_path):
    volume = tmp_path / "7"
    (volume / "data").mkdir(parents=True)
    (volume / "data" / "a.bin").write_bytes(b"x" * 10)
    (volume / "notes.txt").write_text("hi")
    (volume / "escape").symlink_to("/etc")
    os.mkfifo(volume / "pipe")
    kernel = Recorded()
    quotas = ProjectQuotas(Support(True, "test", "/dev/vdb"), kernel)

    quotas.apply(volume, project_id=20007, storage_gib=30)

    tagged = {
        (Path(p).relative_to(tmp_path).as_posix(), pid, inherit)
        for p, pid, inherit in kernel.tagged
    }
    assert tagged == {
        ("7", 20007, True),
        ("7/data", 20007, True),
        ("7/data/a.bin", 20007, False),
        ("7/notes.txt", 20007, False),
    }  # never the symlink (nor /etc behind it), nor the fifo
    assert kernel.limits == [("/dev/vdb", 20007, 30 * 1024 * 1024)]

    # when: the allowance grows; the tree is already tagged
    kernel.tagged.clear()
    quotas.apply(volume, project_id=20007, storage_gib=50)
    assert kernel.tagged == []
    assert kernel.limits[-1] == ("/dev/vdb", 20007, 50 * 1024 * 1024)


def test_without_support_nothing_is_asked_of_the_kernel(tmp_path):
    kernel = Recorded()
    ProjectQuotas(Support(False, "tmpfs"), kernel).apply(tmp_path, project_id=1, storage_gib=1)
    assert kernel.tagged == [] and kernel.limits == []


def test_the_kernel_answers_the_project_ioctl(tmp_path):
    # FS_IOC_FSGETXATTR with a 28-byte fsxattr: a wrong number or size would be ENOTTY/EINVAL.
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        xflags, project = projquota.Syscalls().get_project(fd)
    except OSError as exc:
        pytest.skip(f"this filesystem has no FS_IOC_FSGETXATTR: {exc}")
    finally:
        os.close(fd)
    assert project == 0 and not xflags & FS_XFLAG_PROJINHERIT


# --- for real, where the kernel has project quotas ------------------------------------


@pytest.fixture
def prjquota_ext4():
    """A 64 MiB ext4 on a loop device, mounted with prjquota; skipped where it cannot be."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("needs root and mkfs.ext4")
    base = Path(tempfile.mkdtemp(prefix="aladdin-prjquota-"))
    os.chmod(base, 0o711)
    image, point = base / "fs.img", base / "mnt"
    point.mkdir()
    with image.open("wb") as f:
        f.truncate(64 * 2**20)
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-O", "quota,project", str(image)], capture_output=True, text=True
    )
    mounted = made.returncode == 0 and (
        subprocess.run(
            ["mount", "-o", "loop,prjquota", str(image), str(point)],
            capture_output=True,
            text=True,
        ).returncode
        == 0
    )
    if not mounted:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip("no ext4 with prjquota here (kernel without CONFIG_QUOTA, or no loop devices)")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_a_write_past_the_cap_is_refused_for_real(prjquota_ext4):
    support = projquota.probe(prjquota_ext4)
    assert support.on, support.reason
    volume = prjquota_ext4 / "5"
    volume.mkdir()
    uid = 20005
    os.chown(volume, uid, uid)
    quotas = ProjectQuotas(support)
    quotas.apply(volume, project_id=uid, storage_gib=1)
    # A 1 MiB cap (the kernel's unit; allowances are whole GiB) to fill it quickly.
    quotas.sys.set_block_limit(support.device, uid, 1024)

    # The writer is the sandbox uid: root (CAP_SYS_RESOURCE) is exempt from quotas.
    writer = (
        "import os, sys\n"
        "os.setgid(20005); os.setuid(20005)\n"
        "try:\n"
        "    with open(sys.argv[1], 'wb') as f:\n"
        "        f.write(b'x' * (4 << 20)); f.flush(); os.fsync(f.fileno())\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", writer, str(volume / "big")], capture_output=True, text=True
    )
    assert run.stdout.strip() == str(errno.EDQUOT), run.stdout + run.stderr


# --- the agent's user space -------------------------------------------------------------


@pytest.fixture
def workloads(tmp_path):
    from aladdin.cluster.agent.images import Images
    from aladdin.cluster.agent.journal import Journal
    from aladdin.cluster.agent.workloads import Workloads

    (tmp_path / "volumes").mkdir()
    return Workloads(
        volumes_dir=tmp_path / "volumes",
        logs_dir=tmp_path / "logs",
        journal=Journal(tmp_path / "state"),
        uid_base=20000,
        images=Images(tmp_path / "images", pythons=[], build_uid=20000, has_nvidia=False),
        insecure=False,
        log_max_bytes=2**20,
        log_user_max_bytes=2**20,
    )


def test_the_user_space_is_capped_at_the_allowance_with_the_sandbox_uid_as_project(workloads):
    kernel = Recorded()
    workloads.quotas = ProjectQuotas(Support(True, "test", "/dev/vdb"), kernel)

    workloads.ensure_user_space(7, 30)
    workloads.ensure_user_space(7)  # the agent's own start path: the cap stays as it is

    assert kernel.limits == [("/dev/vdb", 20007, 30 * 1024 * 1024)]
    assert (workloads.volumes_dir / "7").is_dir()


def test_a_cap_the_kernel_refuses_does_not_refuse_the_user_space(workloads, caplog):
    class Refusing(Recorded):
        def set_block_limit(self, device, project_id, blocks):
            raise OSError(errno.EIO, "I/O error")

    workloads.quotas = ProjectQuotas(Support(True, "test", "/dev/vdb"), Refusing())

    workloads.ensure_user_space(8, 30)

    assert (workloads.volumes_dir / "8").is_dir()
    assert "hard cap of user 8's volume" in caplog.text
