"""Benchmark: a Run Task's submit → all N workers running, for N = 1, 2, 4, against one GPU Run.

    .venv/bin/python bench/task_start.py [--sizes 1 2 4] [--repeats 10] [--warmup 2] [--no-record]

Starts the portal as ``make run`` does (bench/job_submit.py's ``Portal``:
Procfile.dev's Redis, daphne, a celery worker, beat and the agent in a
temporary ALADDIN_VAR_DIR, with 8 virtual 40G cards), makes a user on the
Advanced plan (parallelism 8) with an IDE-plugin token, and writes
``bench.py`` and ``bench.sh`` (both wait 600 s) into the user's volume.
Then, alternating (the order rotated each round), --repeats times each
after --warmup untimed rounds:

- baseline: a GPU Run (``{"kind": "run", "entry": "bench.py"}``, one 40G
  card) through ``POST /api/v1/jobs``, polled with ``GET`` every 15 ms;
  timed from the POST's start to the first GET that says ``running``;
- Run Task with N workers (``{"kind": "task", "entry": "bench.sh",
  "workers": N}``, one 40G card each), timed the same way: the portal says
  ``running`` once every worker's workload runs (gpu_jobs.run_task). A
  shell script, so that what is measured is the workers' start, not an
  interpreter importing torch (the default image has none).

Each job is then deleted (not timed) and the next submission waits until
its workloads are gone. One line per kind and size: median and p95, the
ratio to the GPU Run's median, whether p95 < 2 s; then how the task's
start grows from the smallest N to the largest. Recorded in
docs/benchmarks.md (its own section only) unless --no-record.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from benchdocs import record_run  # noqa: E402 - bench/ as a path
from job_submit import STEP_TIMEOUT, Bench, Portal, machine, p95  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Run Task: submit → all N workers running vs. one GPU Run"
TARGET_P95 = 2.0
RUN = {"kind": "run", "entry": "bench.py", "gpu_type": "40g", "cards_per_worker": 1}
SCRIPT = b"#!/bin/bash\nexec sleep 600\n"
INTRO = f"""{SECTION}

Command:

```
make bench-task-start    # .venv/bin/python bench/task_start.py
```

(defaults: `--sizes 1 2 4 --repeats 10 --warmup 2`). The portal runs as
`make run` starts it (bench/job_submit.py's `Portal`: its own Redis, daphne,
a celery worker with concurrency 2, beat, the agent with 8 virtual 40G
cards) in a temporary var directory; a user on the Advanced plan
(parallelism 8) with an IDE-plugin token. Alternating, the order rotated
each round: a GPU Run (`bench.py`, one 40G card) and a Run Task of N
workers (`bench.sh`, `exec sleep 600`, one 40G card per worker), each
through `POST /api/v1/jobs` and polled with `GET /api/v1/jobs/{{id}}` every
15 ms, timed from the POST to the first GET that says `running` (for the
task: every worker's workload runs). Each job is deleted (not timed)
before the next. Goal (issue 18): flat in N, p95 < {TARGET_P95:g} s.
"""


class TaskBench(Bench):
    """job_submit's Bench with a shell script too, and jobs of any body."""

    def _make_user(self):
        from django.conf import settings

        user = super()._make_user()
        uid = settings.LOCAL_UID_BASE + user.pk
        script = settings.LOCAL_VOLUMES_DIR / str(user.pk) / "bench.sh"
        script.write_bytes(SCRIPT)
        os.chown(script, uid, uid)
        return user

    def _base_spec(self):
        return None  # job_submit's driver baseline; here the baseline is a GPU Run

    def submit(self, body: dict) -> float:
        started = time.perf_counter()
        code, answer = self.api.call("POST", "/api/v1/jobs", body)
        if code != 201 or answer is None:
            raise RuntimeError(f"POST /api/v1/jobs answered {code}: {answer}")
        job_id, state = answer["id"], answer["state"]
        deadline = started + STEP_TIMEOUT
        while state != "running":
            if state not in ("starting", "queued"):
                raise RuntimeError(f"job {job_id} went {state}: {answer.get('reason')}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"job {job_id} not running after {STEP_TIMEOUT} s: {answer}")
            time.sleep(self.poll_s)
            code, answer = self.api.call("GET", f"/api/v1/jobs/{job_id}")
            if code != 200 or answer is None:
                raise RuntimeError(f"GET /api/v1/jobs/{job_id} answered {code}: {answer}")
            state = answer["state"]
        elapsed = time.perf_counter() - started
        self.remove(job_id)
        return elapsed

    def remove(self, job_id: int) -> None:
        from gpu_jobs.choices import ACTIVE_STATES
        from gpu_jobs.models import Job

        code, answer = self.api.call("DELETE", f"/api/v1/jobs/{job_id}")
        if code != 204:
            raise RuntimeError(f"DELETE /api/v1/jobs/{job_id} answered {code}: {answer}")
        prefix = f"job-{job_id}"
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            state, gone = Job.objects.filter(pk=job_id).values_list("state", "logs_deleted")[0]
            if state not in ACTIVE_STATES and gone:
                names = [w.name for w in self.driver.list_workloads()]
                if not any(n == prefix or n.startswith(prefix + "-") for n in names):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"job {job_id} still holds its cards {STEP_TIMEOUT} s after DELETE")


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--poll-ms", type=float, default=15.0)
    parser.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    command = (".venv/bin/python bench/task_start.py " + " ".join(sys.argv[1:])).strip()

    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    var_dir = Path(tempfile.mkdtemp(prefix="aladdin-bench-tasks-"))
    var_dir.chmod(0o755)
    portal = Portal(var_dir, None)
    portal.env["ALADDIN_LOCAL_GPUS"] = "virtual:40g=8,80g=4"
    bench = None
    load_before = os.getloadavg()
    kinds: list[tuple[str, dict]] = [("GPU Run", RUN)]
    kinds += [
        (f"Run Task N={n}", {**RUN, "kind": "task", "entry": "bench.sh", "workers": n})
        for n in args.sizes
    ]
    times: dict[str, list[float]] = {label: [] for label, _ in kinds}
    try:
        portal.start()
        for key, value in portal.env.items():
            os.environ[key] = value
        import django

        django.setup()
        bench = TaskBench(portal, args.poll_ms / 1000)
        for round_ in range(args.warmup + args.repeats):
            shift = round_ % len(kinds)
            for label, body in kinds[shift:] + kinds[:shift]:
                elapsed = bench.submit(body)
                if round_ >= args.warmup:
                    times[label].append(elapsed)
    except BaseException:
        print(portal.tail(), file=sys.stderr)
        raise
    finally:
        if bench is not None:
            bench.close()
        portal.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
    load_after = os.getloadavg()

    base = statistics.median(times["GPU Run"])
    lines = []
    for label, _body in kinds:
        values = times[label]
        median, high = statistics.median(values), p95(values)
        lines.append(
            f"{label}: submit->all running median {median:.3f} s, p95 {high:.3f} s "
            f"(max {max(values):.3f}); ratio to GPU Run {median / base:.2f}x (median); "
            f"p95 < {TARGET_P95:g} s: {'yes' if high < TARGET_P95 else 'NO'}"
        )
    first, last = f"Run Task N={args.sizes[0]}", f"Run Task N={args.sizes[-1]}"
    lines.append(
        f"growth {first} -> N={args.sizes[-1]} (x{args.sizes[-1] / args.sizes[0]:g} workers): "
        f"median x{statistics.median(times[last]) / statistics.median(times[first]):.2f}, "
        f"p95 x{p95(times[last]) / p95(times[first]):.2f}"
    )
    for line in lines:
        print(line, flush=True)
    notes = (
        f"Machine: {machine()}; worker concurrency 2 (Procfile default); load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after."
    )
    print(notes)
    if not args.no_record:
        record_run(section=SECTION, intro=INTRO, command=command, lines=lines, notes=notes)
        print(f"recorded in {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
