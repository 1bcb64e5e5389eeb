"""Load: a few hundred students on the production server setup, open loop, against a bare view.

    .venv/bin/pip install -r bench/requirements.txt   # locust, websocket-client
    .venv/bin/python bench/load_portal.py [--students 300] [--pacing 10] [--seconds 60]
                                          [--saturate-seconds 20] [--no-record]

Starts the portal as docs/operations.md runs it in production, on this
machine, in a temporary directory: PostgreSQL (tests/pg.py: a private
server), Redis (the bundled binary), ``migrate``, ``load_catalog``,
``collectstatic``, then the ASGI server exactly as documented (uvicorn,
``--workers 4``, the production unit's WEB_WORKERS, about two per core), one Celery worker, one beat and
the local agent, with DEBUG off. The settings module is bench/load_settings.py:
the portal's own settings with one more route, ``/bench/bare`` (a view that
returns "ok" and touches nothing), the baseline served by the same server.

It seeds --students users (the Advanced plan, a browser session, an IDE
token, an ended job for the log websocket, a small script in their volume)
and runs locust (bench/locustfile_portal.py) three times:

1. ``mix`` for --warmup seconds (not counted) then --seconds: every student acts once every --pacing seconds
   (open loop: arrivals do not wait for answers), on dashboard pages, API
   lists, a job submission and its stop, the job-log websocket, and the
   bare view at the same rate. Per kind: requests a second, p50/p95, errors,
   and p95 as a ratio to the bare view's p95 in the same run.
2. ``saturate-api``, ``saturate-floor`` then ``saturate-bare`` for
   --saturate-seconds each, closed loop without waits: the most requests a
   second for ``GET /api/v1/jobs``, for the API's floor (bench/load_urls.py:
   the API's authentication, rate limit and rendering, no rows) and for the
   bare view; the list's and the floor's ratio to the bare view (goal for the
   list: ≥ 50 %).

Prints one result line per kind and records the run in docs/benchmarks.md
(its own section) unless --no-record. The goal (issue 11): p95 < 300 ms for
pages and API at that load, 0 errors, API lists ≥ 50 % of the bare view's
throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.services_plugin import free_port  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Load: a few hundred students on the production server, against a bare view"
VENV_BIN = REPO / ".venv" / "bin"
GOAL_P95_MS = 300
# The production unit's WEB_WORKERS (deploy/systemd/aladdin-web.service): about
# two per core. Django runs a sync view on one thread per process, so a process
# waiting on PostgreSQL or Redis serves nobody: a second one per core uses the wait.
WEB_WORKERS = int(os.environ.get("WEB_WORKERS", "4"))
# Closed-loop clients for the throughput ratio: enough students that none
# reaches the API's per-user rate limit (API_THROTTLE_USER, 600/min = 10/s),
# which would measure the limit instead of the server.
SATURATE_USERS = 48
SCRIPT = b"print('load')\n"


class Stack:
    """PostgreSQL, Redis, the ASGI server, a worker, beat and the agent; ``stop`` ends them all."""

    def __init__(self, base: Path):
        self.base = base
        self.var_dir = base / "var"
        self.var_dir.mkdir(mode=0o711)
        self.port = free_port()
        self.redis_port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.pg = None
        self.env: dict[str, str] = {}

    def start(self) -> None:
        from tests import pg

        self.pg = pg.start()
        database = self.pg.create_database("aladdin")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALADDIN_", "CELERY_"))}
        for name in ("DATABASE_URL", "REDIS_URL", "PASSWORD_HASHERS", "PORT", "ALIPAY_APP_ID"):
            env.pop(name, None)
        env.update(
            {
                "DEBUG": "0",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DATABASE_URL": database,
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "ALADDIN_REDIS_PORT": str(self.redis_port),
                "ALADDIN_VAR_DIR": str(self.var_dir),
                # No TLS on loopback: the proxy would end it in production.
                "SECURE_SSL_REDIRECT": "0",
                "DJANGO_SETTINGS_MODULE": "bench.load_settings",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env
        self._spawn("redis", [sys.executable, "-m", "aladdin.lib.devredis"])
        self._wait_port(self.redis_port)
        for step in (["migrate", "--noinput"], ["load_catalog"], ["collectstatic", "--noinput"]):
            self._manage(step)
        # The production processes (docs/operations.md), with DEBUG off.
        self._spawn(
            "web",
            [
                str(VENV_BIN / "uvicorn"), "aladdin.asgi:application",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(WEB_WORKERS), "--no-proxy-headers", "--no-access-log",
                "--lifespan", "off", "--timeout-keep-alive", "75",
            ],
        )  # fmt: skip
        self._spawn(
            "worker",
            [str(VENV_BIN / "celery"), "-A", "aladdin", "worker", "--concurrency", "1",
             "--loglevel", "WARNING"],
        )  # fmt: skip
        self._spawn(
            "beat",
            [str(VENV_BIN / "celery"), "-A", "aladdin", "beat", "--loglevel", "WARNING",
             "--pidfile=", "--schedule", str(self.var_dir / "celerybeat-schedule")],
        )  # fmt: skip
        self._spawn("agent", [sys.executable, "manage.py", "cluster_agent"])
        self._wait_healthy()

    def _manage(self, step: list[str]) -> None:
        done = subprocess.run(
            [sys.executable, "manage.py", *step],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {step[0]} failed:\n{done.stdout}\n{done.stderr}")

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.base / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"processes exited: {dead}\n{self.tail()}")

    def _wait_port(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"nothing listens on {port}\n{self.tail()}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                body = json.loads(response.read())
                conn.close()
                if response.status == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"/healthz not 200: {body}\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        parts = []
        for name in self.procs:
            with contextlib.suppress(OSError):
                text = (self.base / f"{name}.log").read_text(errors="replace").splitlines()
                parts.append(f"----- {name} -----\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self.pg is not None:
            from tests import pg

            pg.stop(self.pg)


def seed(stack: Stack, students: int) -> list[dict]:
    """Users on the Advanced plan with a session, a token, an ended job and a script; as JSON."""
    os.environ.update(stack.env)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, Application

    from aladdin.accounts.models import User
    from aladdin.cluster.local import LocalDriver
    from billing import services as billing_services
    from billing.models import Plan
    from gpu_jobs.choices import JobState
    from gpu_jobs.models import GpuType, Job

    now = timezone.now()
    plan = Plan.objects.get(code="advanced")
    app = Application.objects.get(client_id=settings.OAUTH_IDE_CLIENT_ID)
    card = GpuType.objects.get(code="40g")
    driver = LocalDriver(socket_path=settings.LOCAL_AGENT_SOCKET)
    people = []
    for n in range(students):
        user = User.objects.create_user(
            phone=f"+86137{n:08d}",
            password=secrets.token_urlsafe(16),
            phone_verified=True,
            language="en",
        )
        billing_services.subscription_create(user=user, plan=plan, at=now)
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        token = secrets.token_urlsafe(32)
        AccessToken.objects.create(
            user=user, application=app, token=token, expires=now + timedelta(hours=6), scope="ide"
        )
        job = Job.objects.create(
            user=user,
            entry="load.py",
            gpu_type=card,
            state=JobState.SUCCEEDED,
            started_at=now - timedelta(minutes=5),
            ended_at=now - timedelta(minutes=4),
        )
        driver._call("ensure_user_space", user_id=user.pk)
        uid = settings.LOCAL_UID_BASE + user.pk
        entry = settings.LOCAL_VOLUMES_DIR / str(user.pk) / "load.py"
        entry.write_bytes(SCRIPT)
        os.chown(entry, uid, uid)
        people.append({"session": session.session_key, "token": token, "job": job.pk})
    return people


def settle(stack: Stack) -> None:
    """Let the seeding's aftermath pass before measuring: its queued tasks, fresh table statistics.

    Seeding 300 students queues their welcome notices and billing tasks for
    the one Celery worker, and writes thousands of rows that PostgreSQL's
    autovacuum would analyze in the middle of the run. Production tables are
    analyzed and its workers keep up; measure that, not the minute after a
    bulk load.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    import redis

    broker = redis.Redis.from_url(stack.env["REDIS_URL"])
    deadline = time.monotonic() + 300
    while broker.llen("celery") and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(5)


class Prober(threading.Thread):
    """One keep-alive client at a fixed rate beside locust: latency without a loaded client.

    Locust runs hundreds of users in one gevent loop on the same two cores as
    the server; its response times include that loop's own delays. This
    thread asks for the bare view and one API list alternately, ``rate`` times
    a second, on one connection, and keeps the latencies.
    """

    def __init__(self, port: int, token: str, rate: float, measure_after: float = 0):
        super().__init__(daemon=True)
        self.port, self.token, self.rate = port, token, rate
        # Like locust's counts: after its ramp and warm-up (seconds from now).
        self.measure_from = time.perf_counter() + measure_after
        self.latencies: dict[str, list[float]] = {"bare": [], "api": []}
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = None
        n = 0
        start = time.perf_counter()
        while not self.stopping.is_set():
            delay = start + n / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            kind = ("bare", "api")[n % 2]
            n += 1
            path, headers = "/bench/bare", {}
            if kind == "api":
                path, headers = "/api/v1/jobs", {"Authorization": f"Bearer {self.token}"}
            began = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn = None
                continue
            if began >= self.measure_from:
                self.latencies[kind].append((time.perf_counter() - began) * 1000)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def locust(
    stack: Stack,
    users_file: Path,
    mode: str,
    users: int,
    seconds: int,
    pacing: float,
    warmup: int = 0,
):
    """Run locust headless: every response time, and its failures (the CSV).

    All after the ramp (``--reset-stats``; the locustfile keeps the times from then on).
    """
    prefix = stack.base / f"locust-{mode}"
    times_file = stack.base / f"locust-{mode}-times.json"
    env = {
        **os.environ,
        "ALADDIN_LOAD_USERS": str(users_file),
        "ALADDIN_LOAD_MODE": mode,
        "ALADDIN_LOAD_PACING": str(pacing),
        "ALADDIN_LOAD_TIMES": str(times_file),
        "ALADDIN_LOAD_WARMUP": str(warmup),
    }
    done = subprocess.run(
        [
            str(VENV_BIN / "locust"), "-f", str(REPO / "bench" / "locustfile_portal.py"),
            "--headless", "--host", f"http://127.0.0.1:{stack.port}",
            "--users", str(users), "--spawn-rate", str(max(users // 5, 1)),
            "--run-time", f"{seconds + warmup}s", "--tags", mode, "--reset-stats",
            "--csv", str(prefix), "--only-summary", "--stop-timeout", "15",
            "--exit-code-on-error", "0", "--loglevel", "WARNING",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=seconds + warmup + 180,
    )  # fmt: skip
    stats = Path(f"{prefix}_stats.csv")
    if not (stats.exists() and times_file.exists()):
        raise RuntimeError(f"locust failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    failures = Path(f"{prefix}_failures.csv")
    with failures.open() as f:
        failed = [f"{r['Name']}: {r['Error']} ×{r['Occurrences']}" for r in csv.DictReader(f)]
    return json.loads(times_file.read_text()), failed


def kind_of(name: str) -> str:
    if name == "bare view":
        return "bare"
    if name.startswith("page "):
        return "pages"
    if name.startswith("ws "):
        return "websocket"
    if name in ("api submit job", "api stop job"):
        return "submissions"
    return "api"


def summarise(times: list, seconds: int) -> dict[str, dict]:
    """Per kind: requests, rps, failures, p50/p95 over all its requests, and its slowest name.

    The goal is per kind (pages, API): its percentiles are taken over every
    request of the kind. The slowest name (the highest p95 among the kind's
    URLs) is shown beside it: with ~100 requests a name, its p95 rests on
    its five slowest answers.
    """
    by_name: dict[str, list[float]] = {}
    failures: dict[str, int] = {}
    for name, response_time, failed, _started in times:
        by_name.setdefault(name, []).append(response_time)
        failures[name] = failures.get(name, 0) + int(failed)
    kinds: dict[str, dict] = {}
    for name, values in by_name.items():
        k = kinds.setdefault(
            kind_of(name), {"failures": 0, "worst_p95": 0.0, "worst": "", "times": []}
        )
        k["times"] += values
        k["failures"] += failures[name]
        if percentile(values, 0.95) >= k["worst_p95"]:
            k["worst_p95"], k["worst"] = percentile(values, 0.95), name
    for k in kinds.values():
        k["requests"] = len(k["times"])
        k["rps"] = k["requests"] / seconds
        k["p50"] = percentile(k["times"], 0.5)
        k["p95"] = percentile(k["times"], 0.95)
    return kinds


READING = """Reading the figures (2026-12-03; the earlier sessions' figures are in git history):

- p95: met, with room, in both runs today (pages / API, ms: 87 / 55
  before the page changes below, 99 / 64 after them, the run above: the
  difference is within this mix's run-to-run spread). On
  2026-12-02 the same mix was at the edge of the goal (runs of 227-543 /
  170-380 ms): that machine ran the same code about 1.5 times slower (the
  bare view's saturation 301-552 req/s there, 440-715 today) and its own
  p50 varied from 6 to 19 ms between runs. The goal holds where the web
  workers are less than about half busy; see the CPU bullet below. Two
  runs without a warm-up saw 20-40 s of answers taking seconds at their
  start, hence the warm-up. 0 errors in all. The kind's p95 is over all its requests; the slowest single
  URL's, shown beside it, rests on about five answers.
- What locust's "own delay" was (2026-12-01 found no cause): the schedule,
  not locust. Locust's ``constant_pacing`` counts from the user's creation,
  so the random first delay was taken back from the first wait and every
  student acted in step with its spawn batch: 60 requests at once, each
  second, for half of each period. With the same server and the same 30/s,
  a bare view measured p50 74 ms in those bursts and p50 5 ms, p95 11 ms
  spread out (``on_schedule`` in the locustfile). The bursts had made every
  kind miss its goal by 2-3 times.
- Where the mix's CPU goes (2026-12-02, 60 s of it, /proc): the four web
  workers 54 s, the Celery worker 7 s, PostgreSQL 6 s, locust 5.5 s, the
  agent and its sandboxes 4 s, of 150 s on two cores. A page costs 15-40
  ms of CPU there and reads 7-15 queries, an API call 10-17 ms: at 30
  requests a second the web alone keeps one of the two cores busy, and a
  p95 of a few hundred ms is that queue. Two thirds of a page is Django's
  template rendering (the jobs page's two filter selects alone 15 %).
- Throughput: missed, and out of reach for an API list of this stack on
  this machine. Closed loop with wrk (C, 16 connections) on the same
  production server, requests a second, 2026-12-03: bare view 642-700; the
  API's floor (the bearer token, the rate limit, DRF's request and JSON
  response, no rows) 287 (43 %); ``GET /api/v1/jobs`` 108 (16 %). On
  2026-12-02: bare 552, one raw ``SELECT 1`` through the pool 480 (87 %),
  one ORM query 354 (64 %), floor 207 (38 %), list 76-85 (14-16 %).
  Locust's figures above agree (floor 42-44 %, list 15-16 %). An empty
  authenticated answer is already under half the bare view's rate before a
  list reads a row, so no list can reach 50 % while every call checks its
  token in the database (revocation takes effect at once) and counts its
  rate in Redis; only lists answered from a cache could, which we do not
  do: a job's billing so far changes every second it runs, and a stale bill
  is worse than a slower one.
- Where a list's time goes, in-process (Django's test client, SQLite,
  2026-12-03): the bare view 0.6 ms, the floor 2.4 ms (the token's query
  about half of it), ``GET /api/v1/jobs`` with three jobs 9.9 ms. Of the
  list: compiling its four queries' SQL is about a third (Django compiles
  each queryset anew), the workers and ports of the page's jobs (two
  prefetches) a quarter, serializing the 41 fields of each job a fifth.
  A full page of 50 jobs took 62 ms, 43 ms since the state and kind labels
  are mapped once per field (DRF inspected ``get_state_display``'s
  signature on every row and Django rebuilt the choices on every call).
- Found and fixed by this benchmark: the burst schedule above; PostgreSQL
  connections leaked under ASGI (persistent connections per request thread),
  fixed with psycopg's pool; a new Redis connection per request, fixed with
  one pool per process, and a new Redis client per API call (its table of
  ~170 reply handlers: 8 % of the floor), now one per process; an UPDATE of
  last activity on every API call, now skipped when recent; an API list's
  queries and Redis calls (5 and 2, now 4 and 1:
  tests/gpu_jobs/test_api_costs.py); the overview and billing pages read
  the subscription in force two and three times (now once: 7 % and 17 % of
  those pages); list pages counted their rows in a query of their own (now
  in the page's query, tests/core/test_pagination.py); the storage page
  read the plan and the allowance nine times (now once each).
"""


def record(lines: list[str], command: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"{SECTION}\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{stamp}. Command: `{command}`.\n"
        f"Server: uvicorn `--workers {WEB_WORKERS}` (DEBUG off), PostgreSQL, Redis, one Celery worker, beat "
        "and the agent, all on this machine with locust itself (2 cores in all).\n\n"
        "```\n" + "\n".join(lines) + "\n```\n\n" + READING
    )
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    DOCS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--pacing", type=float, default=10.0)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument(
        "--warmup", type=int, default=40, help="seconds of the mix run first and not counted"
    )
    parser.add_argument("--saturate-seconds", type=int, default=20)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--keep", action="store_true", help="leave the stack running after the run (debugging)"
    )
    args = parser.parse_args()
    if not (VENV_BIN / "locust").exists():
        raise SystemExit("locust is missing: .venv/bin/pip install -r bench/requirements.txt")

    base = Path(tempfile.mkdtemp(prefix="aladdin-load-"))
    os.chmod(base, 0o711)  # sandbox uids traverse it to their volumes
    stack = Stack(base)
    try:
        stack.start()
        users_file = base / "users.json"
        users_file.write_text(json.dumps(seed(stack, args.students)))
        settle(stack)
        people = json.loads(users_file.read_text())
        # locust's start, its ramp (--spawn-rate: five seconds) and the warm-up
        prober = Prober(stack.port, people[0]["token"], rate=4, measure_after=7 + args.warmup)
        prober.start()
        times, failed = locust(
            stack, users_file, "mix", args.students, args.seconds, args.pacing, args.warmup
        )
        prober.stopping.set()
        mix = summarise(times, args.seconds)
        sat = {}
        for mode in ("saturate-api", "saturate-floor", "saturate-bare"):
            sat_times, sat_failed = locust(
                stack, users_file, mode, SATURATE_USERS, args.saturate_seconds, 0, 5
            )
            failed += sat_failed
            sat[mode] = summarise(sat_times, args.saturate_seconds)
    finally:
        if args.keep:
            print(f"kept: {base} (logs, users.json), http://127.0.0.1:{stack.port}/", flush=True)
        else:
            stack.stop()
            shutil.rmtree(base, ignore_errors=True)

    bare = mix["bare"]
    rate = args.students / args.pacing
    lines = [
        f"open loop: {args.students} students, one action each every {args.pacing:g} s "
        f"(~{rate:.0f}/s offered), {args.seconds} s measured after the ramp and a {args.warmup} s warm-up",
    ]
    for kind in ("pages", "api", "submissions", "websocket", "bare"):
        k = mix.get(kind)
        if not k:
            continue
        ratio = k["p95"] / bare["p95"] if bare["p95"] else float("nan")
        goal = ""
        if kind in ("pages", "api"):
            goal = "  (goal < 300 ms: " + ("met" if k["p95"] < GOAL_P95_MS else "MISSED") + ")"
        lines.append(
            f"{kind:<12} {k['rps']:6.1f} req/s  p50 {k['p50']:6.0f} ms  p95 {k['p95']:6.0f} ms "
            f"({ratio:4.1f}x bare; slowest {k['worst']}: p95 {k['worst_p95']:.0f} ms)  "
            f"errors {k['failures']}{goal}"
        )
    for kind, values in prober.latencies.items():
        lines.append(
            f"prober ({kind}, one keep-alive client, 2/s during the mix): p50 "
            f"{percentile(values, 0.5):.0f} ms  p95 {percentile(values, 0.95):.0f} ms  "
            f"(n={len(values)})"
        )
    api_rps = sat["saturate-api"]["api"]["rps"]
    floor_rps = sat["saturate-floor"]["api"]["rps"]
    bare_rps = sat["saturate-bare"]["bare"]["rps"]
    share = api_rps / bare_rps if bare_rps else float("nan")
    floor_share = floor_rps / bare_rps if bare_rps else float("nan")
    lines.append(
        f"throughput, closed loop ({SATURATE_USERS} users, no wait, {args.saturate_seconds} s "
        f"each): GET /api/v1/jobs {api_rps:.0f} req/s, bare view {bare_rps:.0f} req/s = "
        f"{share:.0%} of the bare view (goal ≥ 50 %: {'met' if share >= 0.5 else 'MISSED'}); "
        f"the API's floor (token, rate limit, no rows) {floor_rps:.0f} req/s = "
        f"{floor_share:.0%} of the bare view"
    )
    total_errors = sum(k["failures"] for k in mix.values())
    lines.append(f"errors in all: {total_errors}" + (f"  {failed[:5]}" if failed else ""))
    print("\n".join(lines))
    if not args.no_record:
        record(lines, " ".join(["python bench/load_portal.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
