"""Disk use of a directory tree, like ``du -s``: one os.scandir walk, no process spawned.

Counts allocated bytes (``st_blocks * 512``), never follows symlinks (a link
counts its own blocks), counts a hard-linked file once, and stays on the
tree's file system. Entries that vanish or cannot be read during the walk are
skipped: a volume in use changes while it is measured.
"""

from __future__ import annotations

import os


def tree_bytes(path: str | os.PathLike) -> int:
    """Allocated bytes of ``path`` and everything under it (0 when it does not exist)."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0
    total = top.st_blocks * 512
    if not os.path.isdir(path) or os.path.islink(path):
        return total
    device = top.st_dev
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(path)]
    while stack:
        directory = stack.pop()
        try:
            it = os.scandir(directory)
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False) and st.st_dev == device:
                    stack.append(entry.path)
    return total
