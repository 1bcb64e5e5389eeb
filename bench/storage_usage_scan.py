"""Benchmark: aladdin.lib.diskusage.tree_bytes (the os.scandir walk) against ``du -s``.

    .venv/bin/python bench/storage_usage_scan.py [--files 10000 100000] [--repeats 3]

For each size N (not timed): a temporary volume of N small files, 100 per
directory, with some hard links and symlinks. Then, alternating, --repeats
times each (timed): tree_bytes(volume) and ``du -s -B1 volume`` (a process
spawned, as a backend would). Both see a warm page cache, both must agree on
the total. One line per size with the median ratio, then the growth.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aladdin.lib.diskusage import tree_bytes  # noqa: E402


def make_volume(root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"d{i // 100:05d}"
        if i % 100 == 0:
            d.mkdir()
        path = d / f"f{i:07d}"
        path.write_bytes(b"x" * (i % 5000))
        if i % 1000 == 1:
            os.link(path, d / f"hard{i}")
        if i % 1000 == 2:
            os.symlink("/usr", d / f"sym{i}")


def du(path: Path) -> int:
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = []
    for n in args.files:
        root = Path(tempfile.mkdtemp(prefix="aladdin-scan-"))
        try:
            make_volume(root, n)
            du(root)  # warm the cache for both
            walk_times, du_times = [], []
            for _ in range(args.repeats):
                started = time.perf_counter()
                ours = tree_bytes(root)
                walk_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                theirs = du(root)
                du_times.append(time.perf_counter() - started)
                assert ours == theirs, (ours, theirs)
        finally:
            shutil.rmtree(root)
        w, d = statistics.median(walk_times), statistics.median(du_times)
        results.append((n, w, d))
        print(
            f"usage scan N={n} files: tree_bytes {w:.3f} s; du -s {d:.3f} s; ratio {w / d:.1f}x "
            f"(median of {args.repeats}: walk {[round(t, 3) for t in walk_times]}, "
            f"du {[round(t, 3) for t in du_times]})",
            flush=True,
        )
    if len(results) > 1:
        (a, wa, da), (b, wb, db) = results[0], results[-1]
        print(f"growth N={a}->{b} (x{b / a:g}): tree_bytes x{wb / wa:.1f}, du x{db / da:.1f}")


if __name__ == "__main__":
    main()
