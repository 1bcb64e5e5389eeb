"""Cost of the resource limits (issue 14): payloads in the sandbox with their cgroup vs. without.

Two private agents run side by side: one limits its workloads (a cgroup each,
memory, CPU quota, pids limit, /dev/shm sized), the other has no cgroup
control (its cgroup root points at an empty directory), so the only
difference is the limits. Each payload runs as a job in the bubblewrap
sandbox and times itself (``time.perf_counter`` inside, start-up excluded):

- cpu: a pure-Python loop, calibrated on the host to take about S seconds;
- memory: ``b"\\x01" * N MiB`` (malloc + memset: every page faulted in and
  charged to the memory cgroup), freed, four times.

The limits are generous (2 CPUs, 4 GiB): the benchmark measures what the
accounting costs, not throttling. Repeats alternate the two agents (and
which goes first); the result is the median of the per-repeat ratios (the
two runs of a repeat are neighbours in time: on a shared machine they see
the same load), with the ratio of medians and of minima beside it; goal
<= 1.05x.

    .venv/bin/python bench/limits.py [--cpu-seconds 1 2] [--memory-mib 256 512] [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from aladdin.cluster.base import Phase, Resources  # noqa: E402
from tests.cluster.conftest import RunningAgent, spec  # noqa: E402

CPU_LIMIT_MILLICORES = 2000
MEMORY_LIMIT_MIB = 4096
MEMORY_ROUNDS = 4

CPU_PAYLOAD = """
import time
t, c = time.perf_counter(), time.process_time()
s = 0
for i in range({n}):
    s += i * i
print("ELAPSED", time.perf_counter() - t, time.process_time() - c)
"""

MEMORY_PAYLOAD = """
import time
t, c = time.perf_counter(), time.process_time()
for _ in range({rounds}):
    b = b"\\x01" * ({mib} * 2**20)
    del b
print("ELAPSED", time.perf_counter() - t, time.process_time() - c)
"""


def calibrate(seconds: float) -> int:
    """Loop iterations that take about ``seconds`` on this host, outside any sandbox."""
    n = 200_000
    while True:
        t = time.perf_counter()
        exec(CPU_PAYLOAD.format(n=n).replace("print(", "(lambda *a: None)("))  # noqa: S102
        took = time.perf_counter() - t
        if took > 0.2:
            return int(n * seconds / took)
        n *= 2


class Runner:
    def __init__(self, agent: RunningAgent):
        self.agent = agent
        self.count = 0

    def run(self, code: str) -> tuple[float, float]:
        """Run ``python3 -c code`` as a job; the (wall, CPU) seconds it reported."""
        self.count += 1
        name = f"job-{self.count}"
        driver = self.agent.driver
        job = replace(
            spec(name, user_id=1, kind="job", command=["python3", "-c", code]),
            resources=Resources(cpu_millicores=CPU_LIMIT_MILLICORES, memory_mib=MEMORY_LIMIT_MIB),
        )
        status = driver.start_workload(job)
        if status.phase != Phase.RUNNING:
            raise SystemExit(f"{name} did not start: {status}")
        output = b"".join(driver.follow_logs(name=name)).decode(errors="replace")
        deadline = time.monotonic() + 30
        while (status := driver.workload_status(name=name)).phase == Phase.RUNNING:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not end")
            time.sleep(0.05)
        if status.phase != Phase.SUCCEEDED or "ELAPSED" not in output:
            raise SystemExit(f"{name} failed: {status.reason}\n{output}")
        driver.forget_workload(name=name)
        driver.delete_logs(name=name)
        wall, cpu = output.split("ELAPSED", 1)[1].split()[:2]
        return float(wall), float(cpu)


def measure(limited: Runner, plain: Runner, code: str, repeats: int) -> tuple[list, list]:
    with_limits, without = [], []
    for i in range(repeats):
        pair = [(limited, with_limits), (plain, without)]
        for runner, results in pair if i % 2 == 0 else reversed(pair):
            results.append(runner.run(code))
    return with_limits, without


def line(label: str, with_limits: list, without: list) -> str:
    """Wall time: medians, and the median of each repeat's ratio (its two runs were
    neighbours in time, so they share the machine's load); CPU time likewise."""
    wall_a, wall_b = [w for w, _ in with_limits], [w for w, _ in without]
    cpu_a, cpu_b = [c for _, c in with_limits], [c for _, c in without]
    pair = statistics.median(a / b for a, b in zip(wall_a, wall_b, strict=True))
    cpu_pair = statistics.median(a / b for a, b in zip(cpu_a, cpu_b, strict=True))
    a, b = statistics.median(wall_a), statistics.median(wall_b)
    return (
        f"limits {label}: with limits median {a:.3f} s, without {b:.3f} s; "
        f"ratio {pair:.3f}x (median of {len(wall_a)} paired ratios; of medians {a / b:.3f}x, "
        f"of minima {min(wall_a) / min(wall_b):.3f}x; CPU time {cpu_pair:.3f}x); goal <= 1.05x\n"
        f"  wall with {[round(x, 3) for x in wall_a]}, without {[round(x, 3) for x in wall_b]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-seconds", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--memory-mib", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    bases = []
    agents = []
    try:
        for with_limits in (True, False):
            base = Path(tempfile.mkdtemp(prefix="aladdin-bench-limits-"))
            os.chmod(base, 0o711)
            (base / "var").mkdir(mode=0o700)
            bases.append(base)
            env = {}
            if not with_limits:
                # An empty directory as the cgroup root: the agent finds no controllers.
                (base / "no-cgroups").mkdir()
                env = {"ALADDIN_LOCAL_CGROUP_ROOT": str(base / "no-cgroups")}
            agent = RunningAgent(base, env)
            agent.start()
            agents.append(agent)
            if not agent.health["sandbox"]:
                raise SystemExit(f"cannot sandbox here: {agent.health['sandbox_reason']}")
            agent.driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
        limited_agent, plain_agent = agents
        if not limited_agent.health.get("limits"):
            raise SystemExit(f"no cgroup control here: {limited_agent.health['limits_reason']}")
        if plain_agent.health.get("limits"):
            raise SystemExit("the baseline agent limits its workloads")
        limited, plain = Runner(limited_agent), Runner(plain_agent)

        print(
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
            f"limits: {limited_agent.health['limits']}, cpu {CPU_LIMIT_MILLICORES}m, "
            f"memory {MEMORY_LIMIT_MIB} MiB. Command: python bench/limits.py "
            + " ".join(sys.argv[1:]),
            flush=True,
        )
        results = {}
        for seconds in args.cpu_seconds:
            n = calibrate(seconds)
            code = CPU_PAYLOAD.format(n=n)
            limited.run(code)  # warm-up, not counted: page cache, the first sandbox
            plain.run(code)
            results[f"cpu {seconds:g} s"] = measure(limited, plain, code, args.repeats)
            label = f"cpu loop n={n / 1e6:.1f}M (aimed at {seconds:g} s on the host)"
            print(line(label, *results[f"cpu {seconds:g} s"]), flush=True)
        for mib in args.memory_mib:
            code = MEMORY_PAYLOAD.format(mib=mib, rounds=MEMORY_ROUNDS)
            results[f"memory {mib}"] = measure(limited, plain, code, args.repeats)
            label = f"memory {mib} MiB x {MEMORY_ROUNDS}"
            print(line(label, *results[f"memory {mib}"]), flush=True)
        cpu = [statistics.median(w for w, _ in results[k][0]) for k in results if "cpu" in k]
        mem = [statistics.median(w for w, _ in results[k][0]) for k in results if "memory" in k]
        if len(cpu) == 2 and len(mem) == 2:
            print(
                f"growth: cpu x{cpu[1] / cpu[0]:.2f} for x{args.cpu_seconds[1] / args.cpu_seconds[0]:g} "
                f"work, memory x{mem[1] / mem[0]:.2f} for x{args.memory_mib[1] / args.memory_mib[0]:g}"
            )
    finally:
        for agent in agents:
            agent.stop()
        for agent in agents[:1]:
            cgroups = agent.cgroups()
            if cgroups is not None:
                for parent in cgroups.parents():
                    if parent.exists():
                        parent.rmdir()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
