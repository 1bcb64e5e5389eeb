"""``rsync -e ssh`` through the gateway with Debian's rsync and OpenSSH client (issue 13).

rsync runs ``rsync --server`` as an exec request; the gateway runs it in the
workshop's sandbox (the host's /usr, read-only, holds the binary), so what
it writes belongs to the workload's uid.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.usefixtures("portal")

RSYNC = "/usr/bin/rsync"


def make_tree(root: Path) -> None:
    """Nested folders, a relative symlink, an executable script and a bigger file."""
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "top.txt").write_text("top\n")
    (root / "a" / "b" / "c" / "deep.txt").write_text("deep\n")
    (root / "a" / "data.bin").write_bytes(os.urandom(300_000))
    script = root / "a" / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    (root / "link-to-deep").symlink_to("a/b/c/deep.txt")
    (root / "empty").mkdir()


def snapshot(root: Path) -> dict[str, tuple]:
    """What rsync -a keeps: each path's kind, executable bits, content or link target."""
    seen: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            seen[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            seen[rel] = ("dir",)
        else:
            seen[rel] = ("file", info.st_mode & 0o111, path.read_bytes())
    return seen


def rsync(portal, *paths: str) -> subprocess.CompletedProcess:
    ssh = shlex.join(portal.ssh_argv("dev", "a")[:-1])  # without user@host: rsync adds it
    return subprocess.run([RSYNC, "-a", "-e", ssh, *paths], capture_output=True, timeout=120)


def test_rsync_copies_a_tree_into_the_workshop_as_the_workloads_uid_and_back(portal, tmp_path):
    # given a tree with nested folders, a symlink and an executable
    user_id = portal.seeded["a"]["id"]
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)

    # when rsync copies it in
    up = rsync(portal, f"{src}/", "dev@127.0.0.1:synced/")

    # then it is there, owned by the workload's uid, symlink and modes kept
    assert up.returncode == 0, up.stderr
    inside = portal.ssh(
        "dev",
        "a",
        "cd synced && stat -c '%u %A %n' top.txt a/run.sh a/b/c/deep.txt"
        " && readlink link-to-deep && ./a/run.sh && cat link-to-deep",
    )
    assert inside.returncode == 0, inside.stderr
    lines = inside.stdout.decode().splitlines()
    owners = {line.split()[0] for line in lines[:3]}
    assert owners == {str(settings.LOCAL_UID_BASE + user_id)}
    assert lines[1].split()[1] == "-rwxr-xr-x"
    assert lines[3:] == ["a/b/c/deep.txt", "ran", "deep"]
    volume = portal.agent.volumes_dir / str(user_id)
    assert (
        volume / "synced" / "a" / "b" / "c" / "deep.txt"
    ).stat().st_uid == settings.LOCAL_UID_BASE + user_id
    assert (volume / "synced" / "link-to-deep").lstat().st_uid == settings.LOCAL_UID_BASE + user_id

    # when a file changes inside and rsync copies the tree back
    portal.ssh("dev", "a", "echo changed >> synced/a/b/c/deep.txt")
    back = tmp_path / "back"
    down = rsync(portal, "dev@127.0.0.1:synced/", f"{back}/")

    # then the copy back is the same tree, with the change
    assert down.returncode == 0, down.stderr
    expected = snapshot(src)
    expected["a/b/c/deep.txt"] = ("file", 0, b"deep\nchanged\n")
    assert snapshot(back) == expected


def test_a_second_rsync_sends_only_what_changed(portal, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    assert rsync(portal, f"{src}/", "dev@127.0.0.1:again/").returncode == 0
    (src / "top.txt").write_text("top, edited\n")

    again = rsync(portal, "--itemize-changes", f"{src}/", "dev@127.0.0.1:again/")

    assert again.returncode == 0, again.stderr
    changed = [line.split(maxsplit=1)[1] for line in again.stdout.decode().splitlines()]
    assert changed == ["top.txt"], again.stdout
    assert portal.ssh("dev", "a", "cat again/top.txt").stdout == b"top, edited\n"
