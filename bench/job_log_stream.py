"""Benchmark: a job's output to a websocket client, the portal's path vs. a bare websocket server.

    .venv/bin/python bench/job_log_stream.py [--rates 2000 20000] [--bursts 20000 200000]
                                             [--seconds 5] [--record]

Portal path (what a browser gets): a real local agent (``manage.py
cluster_agent``) runs the payload as a sandboxed job workload; the agent's
``follow`` op pushes its log to ``gpu_jobs.consumers.JobLogConsumer``,
served by daphne (``aladdin.asgi:application``, the Procfile's command, with
a bundled Redis, a migrated temporary SQLite database and a logged-in
session); a ``websockets`` client reads it.

Baseline: the same payload as a plain process writing the same lines to a
file, tailed by a bare ``websockets`` server (its own process, asyncio,
looking at the file every 10 ms, one frame per line), read by the same
client.

The payload writes lines of ~100 bytes, each starting with its sequence
number and ``time.time()`` at the moment it was written (unbuffered), after
a 1.5 s pause that lets the client connect. For each size, in both paths:

- paced: R lines/s for --seconds: latency of each line (its write time to
  the client's receipt of the frame that completed it): p50, p95, max;
- burst: N lines flat out: lines/s from the first line's write time to the
  last line's receipt, and the latency p95.

Targets (issue): p95 < 250 ms, and the portal ≥ 50 % of the bare server's
lines/s. One result line per size, then the growth; --record writes the
section in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PYTHON = sys.executable

# Writes `count` lines at `rate` lines/s (0: flat out), each stamped with its
# write time, unbuffered, then "END". The first line waits `pause` seconds.
PAYLOAD = r"""
import os, sys, time
count, rate, pause = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
out = sys.argv[4] if len(sys.argv) > 4 else None
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if out else 1
pad = "x" * 70
time.sleep(pause)
start = time.time()
for i in range(count):
    if rate:
        due = start + i / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
    os.write(fd, ("%08d %.6f %s\n" % (i, time.time(), pad)).encode())
os.write(fd, b"END\n")
"""
PAUSE = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


# --- the client (same for both paths) -------------------------------------
class Receipts:
    """Per-line latency and the receipt time of the last line."""

    def __init__(self):
        self.latencies: list[float] = []
        self.first_stamp: float | None = None
        self.last_receipt = 0.0
        self.buffer = ""
        self.done = False

    def feed(self, text: str, now: float) -> None:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            if line == "END":
                self.done = True
                continue
            stamp = float(line[9:26])
            if self.first_stamp is None:
                self.first_stamp = stamp
            self.latencies.append(now - stamp)
            self.last_receipt = now


async def read_stream(url: str, *, portal: bool, headers=None) -> Receipts:
    import websockets

    receipts = Receipts()
    async with websockets.connect(
        url, additional_headers=headers or {}, max_size=None, compression=None
    ) as ws:
        async for message in ws:
            now = time.time()
            if portal:
                frame = json.loads(message)
                if frame["type"] == "end":
                    break
                receipts.feed(frame["data"], now)
            else:
                receipts.feed(message, now)
            if receipts.done and not portal:
                break
    return receipts


# --- the baseline server (its own process) --------------------------------
def serve_baseline(path: str, port: int, batched: bool) -> None:
    """Tail ``path`` (waiting for it to appear) until END: one frame per line, or
    (``batched``) one frame per read of up to 64 KiB, whole lines, as the portal batches."""
    from websockets.asyncio.server import serve

    async def handler(ws):
        while not os.path.exists(path):
            await asyncio.sleep(0.01)
        with open(path, encoding="utf-8", newline="") as f:
            if batched:
                await send_batches(ws, f)
                await ws.close()
                return
            partial = ""
            while True:
                line = f.readline()
                if not line:
                    await asyncio.sleep(0.01)
                    continue
                if not line.endswith("\n"):
                    partial += line
                    continue
                line, partial = partial + line, ""
                await ws.send(line)
                if line == "END\n":
                    break
        await ws.close()

    async def send_batches(ws, f):
        partial = ""
        while True:
            text = f.read(65536)
            if not text:
                await asyncio.sleep(0.01)
                continue
            text = partial + text
            cut = text.rfind("\n") + 1
            if not cut:
                partial = text
                continue
            text, partial = text[:cut], text[cut:]
            await ws.send(text)
            if text.endswith("END\n"):
                return

    async def main():
        async with serve(handler, "127.0.0.1", port, max_size=None, compression=None):
            await asyncio.Future()

    asyncio.run(main())


# --- the portal -------------------------------------------------------------
class Portal:
    """Redis, agent, database, daphne on temporary directories; a user and a session."""

    def __init__(self, base: Path):
        self.base = base
        self.procs: list[subprocess.Popen] = []
        self.var = base / "var"
        self.var.mkdir(mode=0o700)
        self.socket = base / "agent" / "agent.sock"
        self.redis_port, self.web_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "ALADDIN_VAR_DIR": str(self.var),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "DEBUG": "1",
            "SECRET_KEY": "bench-secret-key-not-for-production-0123456789",
            "DJANGO_SETTINGS_MODULE": "aladdin.settings",
            "ALADDIN_LOCAL_AGENT_SOCKET": str(self.socket),
            "ALADDIN_LOCAL_AGENT_DIR": str(base / "agent"),
            "ALADDIN_LOCAL_VOLUMES_DIR": str(base / "volumes"),
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("DATABASE_URL", "CELERY_TASK_ALWAYS_EAGER"):
            self.env.pop(name, None)

    def spawn(self, argv: list[str], log_name: str) -> subprocess.Popen:
        out = (self.base / log_name).open("ab")
        proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        from aladdin.lib.devredis import argv as redis_argv

        redis = self.spawn(redis_argv(self.redis_port, self.var / "redis"), "redis.log")
        wait_for_port(self.redis_port, redis, "redis")
        agent = self.spawn(
            [PYTHON, "manage.py", "cluster_agent", "--socket", str(self.socket),
             "--state-dir", str(self.base / "agent"), "--volumes-dir", str(self.base / "volumes")],
            "agent.log",
        )  # fmt: skip
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--no-input", "-v0"],
            cwd=REPO,
            env=self.env,
            check=True,
        )
        os.environ.update(self.env)
        import django

        django.setup()
        from django.test import Client

        from aladdin.accounts.models import User
        from aladdin.cluster.local import LocalDriver

        self.user = User.objects.create_user(phone="+8613900000001", password="bench-pass-1")
        client = Client()
        client.force_login(self.user)
        self.cookie = f"sessionid={client.cookies['sessionid'].value}"
        self.driver = LocalDriver(socket_path=self.socket)
        deadline = time.monotonic() + 30
        while True:
            if agent.poll() is not None:
                raise SystemExit("the agent exited: " + (self.base / "agent.log").read_text())
            try:
                self.health = self.driver._call("health", timeout=3)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.driver.ensure_user_space(user_id=self.user.pk, storage_gib=1, quota=None)
        web = self.spawn(
            [str(Path(PYTHON).parent / "daphne"), "-b", "127.0.0.1", "-p", str(self.web_port),
             "aladdin.asgi:application"],
            "daphne.log",
        )  # fmt: skip
        wait_for_port(self.web_port, web, "daphne")

    def run_job(self, count: int, rate: float) -> Receipts:
        from aladdin.cluster.base import (
            LABEL_KIND,
            LABEL_OWNER,
            LABEL_USER,
            Resources,
            WorkloadSpec,
        )
        from gpu_jobs.models import GpuType, Job

        job = Job.objects.create(
            user=self.user, entry="bench.py", gpu_type=GpuType.objects.first(), state="running"
        )
        name = job.workload_name
        self.driver.start_workload(
            WorkloadSpec(
                name=name,
                user_id=self.user.pk,
                kind="job",
                image="python:3.11",
                command=["python3", "-c", PAYLOAD, str(count), str(rate), str(PAUSE)],
                env={},
                resources=Resources(1000, 1024),
                labels={LABEL_USER: str(self.user.pk), LABEL_KIND: "job", LABEL_OWNER: name},
            )
        )
        url = f"ws://127.0.0.1:{self.web_port}/ws/jobs/{job.pk}/logs/"
        receipts = asyncio.run(read_stream(url, portal=True, headers={"Cookie": self.cookie}))
        # The consumer records the end before its end frame (and the
        # workload is then forgotten by the portal): read the job's state.
        job.refresh_from_db()
        if job.state != "succeeded":
            raise SystemExit(f"the payload failed: {job.state} {job.reason}")
        if len(receipts.latencies) != count:
            raise SystemExit(f"portal: {len(receipts.latencies)} lines of {count}")
        return receipts

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def run_baseline(base: Path, count: int, rate: float, *, batched: bool = False) -> Receipts:
    path = base / f"baseline-{time.monotonic_ns()}.log"
    port = free_port()
    mode = "batched" if batched else "lines"
    server = subprocess.Popen([PYTHON, __file__, "--serve-baseline", str(path), str(port), mode])
    try:
        wait_for_port(port, server, "the baseline server")
        writer = subprocess.Popen([PYTHON, "-c", PAYLOAD, str(count), str(rate), str(PAUSE), path])
        receipts = asyncio.run(read_stream(f"ws://127.0.0.1:{port}/", portal=False))
        if writer.wait(timeout=60) != 0:
            raise SystemExit("the baseline payload failed")
    finally:
        server.terminate()
        server.wait(timeout=10)
        path.unlink(missing_ok=True)
    if len(receipts.latencies) != count:
        raise SystemExit(f"baseline: {len(receipts.latencies)} lines of {count}")
    return receipts


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def lines_per_second(r: Receipts) -> float:
    return len(r.latencies) / (r.last_receipt - r.first_stamp)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def record(lines: list[str], command: str) -> None:
    doc = REPO / "docs" / "benchmarks.md"
    title = "## GPU jobs: live log stream to a websocket vs. a bare websocket server"
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    if models:
        cpu = f"{models[0]}, {len(models)} CPUs"
    body = "\n".join(
        [
            title,
            "",
            "Command:",
            "",
            "```",
            command,
            "```",
            "",
            f"Machine: {cpu}; Python {platform.python_version()}; {platform.system()} "
            f"{platform.release()}. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
            "",
            "```",
            *lines,
            "```",
            "",
        ]
    )
    text = doc.read_text()
    start = text.find(title)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(title))
        # Keep any hand-written notes after the generated block (marked by ###).
        notes = text.find("\n### ", start)
        if notes != -1 and (end == -1 or notes < end):
            end = notes
        text = text[:start] + body + ("" if end == -1 else "\n" + text[end + 1 :])
    doc.write_text(text)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-baseline":
        serve_baseline(sys.argv[2], int(sys.argv[3]), batched=sys.argv[4] == "batched")
        return
    try:
        import websockets  # noqa: F401 - the client and the baseline server
    except ImportError:
        raise SystemExit(
            "this benchmark needs the websockets package (requirements-dev.txt)"
        ) from None
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--bursts", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--record", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    if len(args.rates) != len(args.bursts):
        parser.error("give as many --rates as --bursts (one size each)")
    base = Path(tempfile.mkdtemp(prefix="aladdin-bench-logs-"))
    os.chmod(base, 0o711)  # sandbox uids traverse to their volume
    portal = Portal(base)
    out: list[str] = []
    results = []
    try:
        portal.start()
        sandbox = "bubblewrap" if portal.health["sandbox"] else "no sandbox"
        for rate, burst in zip(args.rates, args.bursts, strict=True):
            paced = int(rate * args.seconds)
            p_paced = portal.run_job(paced, rate)
            b_paced = run_baseline(base, paced, rate)
            p_burst = portal.run_job(burst, 0)
            b_burst = run_baseline(base, burst, 0)
            bb_burst = run_baseline(base, burst, 0, batched=True)
            p_rate, b_rate = lines_per_second(p_burst), lines_per_second(b_burst)
            bb_rate = lines_per_second(bb_burst)
            results.append((burst, p_rate, b_rate))
            line = (
                f"log stream paced {rate}/s x {args.seconds:g} s: p95 portal "
                f"{ms(quantile(p_paced.latencies, 0.95))} (p50 "
                f"{ms(statistics.median(p_paced.latencies))}, max {ms(max(p_paced.latencies))}) "
                f"vs bare {ms(quantile(b_paced.latencies, 0.95))} (p50 "
                f"{ms(statistics.median(b_paced.latencies))}, max {ms(max(b_paced.latencies))}); "
                f"burst N={burst}: portal {p_rate:,.0f} lines/s vs bare {b_rate:,.0f} lines/s, "
                f"ratio {p_rate / b_rate:.0%} (p95 portal {ms(quantile(p_burst.latencies, 0.95))},"
                f" bare {ms(quantile(b_burst.latencies, 0.95))}); bare batched "
                f"{bb_rate:,.0f} lines/s, portal {p_rate / bb_rate:.0%} of it [{sandbox}]"
            )
            print(line, flush=True)
            out.append(line)
        if len(results) > 1:
            (a, pa, ba), (b, pb, bb) = results[0], results[-1]
            line = (
                f"growth burst N={a}->{b} (x{b / a:g}): portal lines/s x{pb / pa:.2f}, "
                f"bare x{bb / ba:.2f}"
            )
            print(line, flush=True)
            out.append(line)
    except BaseException:
        for name in ("daphne.log", "agent.log"):
            with contextlib.suppress(OSError):
                tail = (base / name).read_text(errors="replace")[-3000:]
                print(f"----- {name} -----\n{tail}", file=sys.stderr)
        raise
    finally:
        portal.stop()
        shutil.rmtree(base, ignore_errors=True)
    if args.record:
        command = ".venv/bin/python bench/job_log_stream.py " + " ".join(sys.argv[1:])
        record(out, command.strip())


if __name__ == "__main__":
    main()
