"""Locust users for bench/load_portal.py: students on the dashboard, the API and the log websocket.

Not run on its own: load_portal.py seeds the users and passes their
credentials in ``ALADDIN_LOAD_USERS`` (a JSON file) and the mode in
``ALADDIN_LOAD_MODE``:

- ``mix``: each locust user is one student acting on a fixed schedule
  (``on_schedule``): one action every ``ALADDIN_LOAD_PACING`` seconds,
  whether or not the last answer was quick. With U users the arrival rate
  is U / pacing, independent of the server's speed as long as an answer
  takes less than the pacing (10 s; the goal is 0.3 s), so this measures
  the portal, not a closed loop's queue. Each student starts at a random
  point of the period, so arrivals are spread evenly, not in bursts. The actions are weighted like a
  student's session: dashboard pages, API lists, a job submission (then
  its stop), a log websocket; plus ``bare``, a bare Django view served by
  the same server at the same rate, the baseline.
- ``saturate-api`` / ``saturate-floor`` / ``saturate-bare``: closed loop,
  no wait: the most requests a second the server answers for one API list,
  for the API's floor (its authentication, rate limit and rendering with no
  rows, bench/load_urls.py), or for the bare view (the throughput ratio).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time

import gevent
import websocket  # websocket-client: plain sockets, which gevent makes cooperative
from locust import FastHttpUser, constant, events, tag, task

USERS = json.loads(open(os.environ["ALADDIN_LOAD_USERS"]).read())  # noqa: SIM115
MODE = os.environ.get("ALADDIN_LOAD_MODE", "mix")
PACING = float(os.environ.get("ALADDIN_LOAD_PACING", "10"))
_next_student = itertools.count()
# Every response time from WARMUP seconds after all students are spawned,
# written at the end to ALADDIN_LOAD_TIMES: load_portal.py takes each kind's
# figures over all its requests, which locust's per-name CSV cannot give.
# The first 20-40 s of a run are slower than the rest, on a warm server too
# (new students' first connections and requests, the workers' first
# renders after a start): the run's steady state is what the goal is about.
TIMES_FILE = os.environ.get("ALADDIN_LOAD_TIMES")
WARMUP = float(os.environ.get("ALADDIN_LOAD_WARMUP", "0"))
_times: list[tuple[str, float, bool, float]] = []  # name, ms, failed, when it started
_measuring = False


def _measure():
    global _measuring
    _measuring = True


@events.spawning_complete.add_listener
def _start_measuring(**_kwargs):
    gevent.spawn_later(WARMUP, _measure)


@events.request.add_listener
def _keep_time(name, response_time, exception=None, **_kwargs):
    if _measuring:
        _times.append(
            (name, response_time, exception is not None, time.time() - response_time / 1000)
        )


@events.quitting.add_listener
def _write_times(**_kwargs):
    if TIMES_FILE:
        with open(TIMES_FILE, "w") as out:
            json.dump(_times, out)


JOB = {"kind": "run", "entry": "load.py", "gpu_type": "40g", "cards_per_worker": 1}


def on_schedule(user: Student) -> float:
    """Wait until the student's next slot: one action every PACING seconds from its start.

    Not locust's ``constant_pacing``: that one counts from the user's creation,
    so a random first delay in ``on_start`` is taken back from the first wait
    and every student acts in step with the batch it was spawned in (locust
    spawns ``--spawn-rate`` users at once each second). The run then offered
    bursts of 60 simultaneous requests every second for half of each period
    and nothing for the other half, and reported their queue (a bare view's
    p50 of 50-75 ms against 4-5 ms when the same rate is spread out).
    """
    user.next_at += PACING
    return max(0.0, user.next_at - time.monotonic())


class Student(FastHttpUser):
    wait_time = on_schedule if MODE == "mix" else constant(0)

    def on_start(self):
        if MODE == "mix":
            # Each student starts at a random point of the pacing period and
            # keeps that phase: arrivals spread evenly over the period.
            gevent.sleep(random.uniform(0, PACING))
        self.next_at = time.monotonic()
        self.me = USERS[next(_next_student) % len(USERS)]
        self.page_headers = {"Cookie": f"sessionid={self.me['session']}"}
        self.api_headers = {
            "Authorization": f"Bearer {self.me['token']}",
            "Accept": "application/json",
        }

    # --- the mix ------------------------------------------------------------------
    @tag("mix")
    @task(24)
    def page(self):
        path = ("/", "/jobs/", "/workshops/", "/billing/", "/storage/")[time.monotonic_ns() % 5]
        self.client.get(path, headers=self.page_headers, name="page " + path)

    @tag("mix")
    @task(24)
    def api_list(self):
        path = (
            "/api/v1/jobs",
            "/api/v1/workshops",
            "/api/v1/billing/ledger",
            "/api/v1/billing/plans",
            "/api/v1/images",
            "/api/v1/jobs/configurations",
        )[time.monotonic_ns() % 6]
        self.client.get(path, headers=self.api_headers, name="api " + path)

    @tag("mix")
    @task(12)
    def api_detail(self):
        self.client.get("/api/v1/billing/balance", headers=self.api_headers, name="api balance")

    @tag("mix", "submit")
    @task(3)
    def submit_job(self):
        with self.client.post(
            "/api/v1/jobs", json=JOB, headers=self.api_headers, name="api submit job",
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            job_id = response.json()["id"]
        with self.client.post(
            f"/api/v1/jobs/{job_id}/stop", headers=self.api_headers, name="api stop job",
            catch_response=True,
        ) as response:  # fmt: skip
            # 409: the one-line job had already ended by itself, the documented answer.
            if response.status_code in (200, 202, 409):
                response.success()

    @tag("mix", "ws")
    @task(3)
    def log_websocket(self):
        url = f"{self.host.replace('http', 'ws', 1)}/ws/jobs/{self.me['job']}/logs/"
        started = time.perf_counter()
        error, size = None, 0
        try:
            ws = websocket.create_connection(
                url,
                header=[f"Authorization: Bearer {self.me['token']}"],
                origin=self.host,
                timeout=10,
            )
            try:
                # An ended job: its state and whatever output it kept, then a 1000 close.
                while True:
                    opcode, data = ws.recv_data(control_frame=False)
                    size += len(data)
                    if opcode == websocket.ABNF.OPCODE_CLOSE:
                        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                        if code != 1000:
                            error = RuntimeError(f"closed with {code}")
                        break
            finally:
                ws.close()
        except websocket.WebSocketConnectionClosedException:
            pass  # closed after the close frame was read
        except Exception as exc:  # noqa: BLE001 - reported to locust as a failure
            error = exc
        events.request.fire(
            request_type="WS",
            name="ws job logs",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=size,
            exception=error,
            context={},
        )

    @tag("mix", "saturate-bare")
    @task(12)
    def bare(self):
        self.client.get("/bench/bare", name="bare view")

    # --- saturation: one API list, closed loop --------------------------------------
    @tag("saturate-api")
    @task(1)
    def saturate_api(self):
        self.client.get("/api/v1/jobs", headers=self.api_headers, name="api /api/v1/jobs")

    @tag("saturate-floor")
    @task(1)
    def saturate_floor(self):
        self.client.get("/bench/api-floor", headers=self.api_headers, name="api floor")
