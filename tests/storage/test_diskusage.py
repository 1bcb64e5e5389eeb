from __future__ import annotations

import os
import subprocess

from aladdin.lib.diskusage import tree_bytes


def _du(path) -> int:
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def test_tree_bytes_matches_du_with_hard_links_and_symlinks(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "big").write_bytes(b"x" * 300_000)
    (tmp_path / "a" / "b" / "small").write_bytes(b"y" * 10)
    os.link(tmp_path / "a" / "big", tmp_path / "a" / "b" / "big-link")
    os.symlink("/usr", tmp_path / "a" / "usr-link")

    assert tree_bytes(tmp_path) == _du(tmp_path)
    assert tree_bytes(tmp_path) < 2 * 300_000  # the hard link counted once, /usr not walked


def test_a_missing_path_uses_nothing(tmp_path):
    assert tree_bytes(tmp_path / "nope") == 0
