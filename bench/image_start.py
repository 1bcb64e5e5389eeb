"""Benchmark: starting a workload on a built image, against starting the bare sandbox (issue 14).

    .venv/bin/python bench/image_start.py [--repeats 15] [--no-torch] [--no-record]

Starts a private agent (tests/cluster/conftest.py's ``RunningAgent``) with
a temporary images root, and has it build the tests' small image (Python
3.12 + six) and, unless --no-torch, the test torch image (Python 3.11 +
torch 2.13.0 CPU + numpy, about ten times bigger): the two sizes. Then,
alternating (the order rotated each round), --repeats times each (after
one untimed round):

- bare: ``start_workload`` of a job with no recipe (the host's userland
  only), timed from the call to the moment its command's first line reached
  a ``follow_logs`` reader;
- image: the same job on each built image (its environment bound
  read-only, its ``bin`` first on PATH).

Two commands: ``sh -c 'echo ready'`` (what the sandbox and the bind cost)
and ``python -c "print('ready')"`` (on the bare sandbox: Debian's
/usr/bin/python3, so the interpreter's own start is part of both). Each
workload is stopped and forgotten (not timed). One line per image and
command: the medians and p95 of both, and their ratio. Recorded in
docs/benchmarks.md (its own section only) unless --no-record.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from benchdocs import machine as base_machine  # noqa: E402 - bench/ as a path
from benchdocs import record_run  # noqa: E402 - bench/ as a path

sys.path.insert(0, str(REPO))  # the tests' helpers start the agent and know the test images

from aladdin.cluster.images import BuildState, ImageRecipe  # noqa: E402
from tests.cluster.conftest import (  # noqa: E402
    SMALL_RECIPE,
    TORCH_RECIPE,
    RunningAgent,
    spec,
    wait_for_image,
)

DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Images: a workload's start on a built image vs. the bare sandbox"
INTRO = f"""{SECTION}

Command:

```
make bench-image-start    # .venv/bin/python bench/image_start.py
```

(default `--repeats 15`). A private agent builds the tests' two images into a
temporary images root: the small one (Python 3.12 + six, ~104 MiB) and the
test torch image (Python 3.11 + torch 2.13.0 CPU + numpy, ~1 GiB). Then,
alternating (the order rotated each round), each start is timed from `start_workload` to the moment the
command's first line reached a `follow_logs` reader: a job with no recipe
(the bare sandbox, the host's userland) against the same job on each image
(its environment bound read-only, its `bin` first on PATH). `sh` prints a
marker; `python` prints one from the image's Python, or, bare, from Debian's
`/usr/bin/python3`.
"""
MARKER = b"ready"
COMMANDS = {
    "sh": ["sh", "-c", "echo ready"],
    "python": ["sh", "-c", "exec python -c \"print('ready')\""],
}
BARE_COMMANDS = {**COMMANDS, "python": ["sh", "-c", "exec python3 -c \"print('ready')\""]}


def time_start(
    agent: RunningAgent, name: str, command: list[str], recipe: ImageRecipe | None
) -> float:
    """Seconds from start_workload to the command's output; the workload is then removed."""
    driver = agent.driver
    job = spec(name, kind="job", command=command, recipe=recipe)
    t0 = time.perf_counter()
    status = driver.start_workload(job)
    if status.phase == "failed":
        raise SystemExit(f"{name} did not start: {status.reason}")
    seen = b""
    for chunk in driver.follow_logs(name=name):
        seen += chunk
        if MARKER in seen:
            break
    elapsed = time.perf_counter() - t0
    if MARKER not in seen:
        raise SystemExit(f"{name} printed {seen!r}")
    driver.stop_workload(name=name, grace_seconds=0)
    with contextlib.suppress(Exception):
        driver.forget_workload(name=name)
    return elapsed


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def env_size(root: Path, recipe: ImageRecipe) -> str:
    total = 0
    for directory, _dirs, files in os.walk(root / "envs" / recipe.key()):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return f"{total / 2**20:.0f} MiB"


def machine() -> str:
    return base_machine()


def record(command: str, lines: list[str], notes: str) -> None:
    """Put this run at the top of this benchmark's section (bench/benchdocs.py)."""
    record_run(section=SECTION, intro=INTRO, command=command, lines=lines, notes=notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-torch", action="store_true", help="the small image only")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    recipes = [SMALL_RECIPE] if args.no_torch else [SMALL_RECIPE, TORCH_RECIPE]

    base = Path(tempfile.mkdtemp(prefix="aladdin-bench-images-"))
    os.chmod(base, 0o711)
    (base / "var").mkdir(mode=0o700)
    agent = RunningAgent(base, {})
    # The same bare start on an agent that gives sandboxes no network (loopback
    # only): what egress (slirp4netns and the deny rules) adds to each start.
    offline_base = Path(tempfile.mkdtemp(prefix="aladdin-bench-offline-"))
    os.chmod(offline_base, 0o711)
    (offline_base / "var").mkdir(mode=0o700)
    offline = RunningAgent(offline_base, {"ALADDIN_LOCAL_NETWORK": "off"})
    try:
        agent.start()
        offline.start()
        offline.driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
        if not agent.health["sandbox"]:
            raise SystemExit(f"cannot sandbox here: {agent.health['sandbox_reason']}")
        builds = {}
        for recipe in recipes:
            t0 = time.perf_counter()
            agent.driver.build_image(recipe)
            final = wait_for_image(agent.driver, recipe)[-1]
            if final.state != BuildState.READY:
                raise SystemExit(f"{recipe.ref}: {final.state} {final.reason}")
            builds[recipe.ref] = time.perf_counter() - t0
        sizes = {r.ref: env_size(agent.base / "images", r) for r in recipes}
        agent.driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
        times: dict[tuple[str, str], list[float]] = {}
        load_before = os.getloadavg()[0]
        for round_ in range(args.repeats + 1):
            for label, command in COMMANDS.items():
                runs = [("bare", BARE_COMMANDS[label], None, agent)]
                runs += [(r.ref, command, r, agent) for r in recipes]
                runs.append(("bare, no network", BARE_COMMANDS[label], None, offline))
                # Rotated each round: whichever goes first pays for what the
                # previous one left behind (its stop, the agent's journal write).
                shift = round_ % len(runs)
                runs = runs[shift:] + runs[:shift]
                for i, (what, argv, recipe, on) in enumerate(runs):
                    name = f"bench-{round_}-{label}-{i}"
                    elapsed = time_start(on, name, argv, recipe)
                    if round_:  # the first round warms the page cache, untimed
                        times.setdefault((what, label), []).append(elapsed)
        load_after = os.getloadavg()[0]
    finally:
        agent.stop()
        offline.stop()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(offline_base, ignore_errors=True)

    lines = []
    for recipe in recipes:
        for label in COMMANDS:
            bare, image = times[("bare", label)], times[(recipe.ref, label)]
            lines.append(
                f"image start {recipe.ref} ({sizes[recipe.ref]}, "
                f"built in {builds[recipe.ref]:.0f} s), {label}: "
                f"median {statistics.median(image) * 1000:.1f} ms, p95 {p95(image) * 1000:.1f} ms; "
                f"bare sandbox median {statistics.median(bare) * 1000:.1f} ms, "
                f"p95 {p95(bare) * 1000:.1f} ms; ratio {statistics.median(image) / statistics.median(bare):.2f}x (median)"
            )
    for label in COMMANDS:
        bare, offline_times = times[("bare", label)], times[("bare, no network", label)]
        lines.append(
            f"network at start, bare sandbox, {label}: with egress "
            f"({agent.health.get('network') or 'off: ' + agent.health.get('network_reason', '')}) "
            f"median {statistics.median(bare) * 1000:.1f} ms, p95 {p95(bare) * 1000:.1f} ms; "
            f"loopback only ({offline.health.get('network') or 'off'}) "
            f"median {statistics.median(offline_times) * 1000:.1f} ms, "
            f"p95 {p95(offline_times) * 1000:.1f} ms; "
            f"ratio {statistics.median(bare) / statistics.median(offline_times):.2f}x (median)"
        )
    for line in lines:
        print(line)
    if not args.no_record:
        record(
            "make bench-image-start"
            + (
                ""
                if args.repeats == 15 and not args.no_torch
                else f' ARGS="{" ".join(sys.argv[1:])}"'
            ),
            lines,
            f"Machine: {machine()}; {args.repeats} repeats; load average {load_before:.1f} before, "
            f"{load_after:.1f} after.",
        )


if __name__ == "__main__":
    main()
