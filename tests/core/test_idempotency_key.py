"""Concurrent POSTs with one Idempotency-Key: one answers 201, every other 200 with the same body.

Real concurrency: threads, each with its own database connection, post at
once. That needs a SQLite *file* database (DESIGN "Tests and CI": the
in-memory test database uses shared cache and ignores the busy timeout, so
concurrent writers fail at once instead of waiting their turn). The suite's
database is in memory unless ALADDIN_TEST_DB names a file, so the last test
here runs this module again in a subprocess with ALADDIN_TEST_DB set; there
the concurrent tests run and the subprocess test skips itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from billing import alipay
from billing.models import Order
from gpu_jobs.models import Job

REPO = Path(__file__).resolve().parents[2]
FILE_DATABASE = bool(settings.DATABASES["default"].get("TEST", {}).get("NAME"))
THREADS = 8

needs_file_database = pytest.mark.skipif(
    not FILE_DATABASE,
    reason="needs a SQLite file database: run by the subprocess test below",
)


def post_at_once(user, url: str, body: dict, key: str) -> list:
    """``THREADS`` clients of ``user`` POST ``body`` with ``key`` at the same moment."""
    login = Client()
    login.force_login(user)
    session = login.cookies[settings.SESSION_COOKIE_NAME].value
    barrier = threading.Barrier(THREADS)

    def one(_):
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = session
        try:
            barrier.wait(timeout=30)
            return client.post(url, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


# A replay answers the job as it is now: a replay read before the first
# request's start task ran still sees it starting (and not yet what its probe
# measured inside it). All else is the same.
JOB_PROGRESS = {
    "runtime_facts",
    "state",
    "state_display",
    "active",
    "started_at",
    "gpu_devices",
    "billed_so_far_micro",
    "billed_so_far_dcu",
}


def assert_one_created_and_the_rest_replayed(responses, *, changing=frozenset()) -> dict:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (THREADS - 1) + [201], [r.content for r in responses]
    bodies = [r.json() for r in responses]
    differ = {k for body in bodies for k in body if body[k] != bodies[0][k]}
    assert differ <= changing, differ
    return bodies[0]


@pytest.fixture
def frozen():
    # Bodies carry "billed so far" and payment deadlines: one instant for all.
    with time_machine.travel(timezone.now(), tick=False):
        yield


@needs_file_database
@pytest.mark.django_db(transaction=True)
def test_concurrent_job_launches_with_one_key_start_one_job(
    user, cards, catalog, driver, subscribe, frozen
):
    subscribe(user, "basic", timezone.now())
    body = {"kind": "run", "entry": "train.py", "gpu_type": "80g", "cards_per_worker": 1}

    responses = post_at_once(user, "/api/v1/jobs", body, key="launch-once")

    job = assert_one_created_and_the_rest_replayed(responses, changing=JOB_PROGRESS)
    assert list(Job.objects.filter(user=user).values_list("pk", flat=True)) == [job["id"]]
    assert list(driver.specs) == [f"job-{job['id']}"]


@needs_file_database
@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_with_one_key_make_one_order(user, plans, frozen):
    alipay._load_keys.cache_clear()
    with override_settings(ALIPAY_SANDBOX=True, DEBUG=True, ALIPAY_APP_ID=""):
        responses = post_at_once(
            user, "/api/v1/billing/orders", {"plan": "trial", "channel": "qr"}, key="buy-once"
        )
    alipay._load_keys.cache_clear()

    order = assert_one_created_and_the_rest_replayed(responses)
    assert list(Order.objects.filter(user=user).values_list("pk", flat=True)) == [order["id"]]


@pytest.mark.skipif(FILE_DATABASE, reason="this is the subprocess with the file database")
def test_the_concurrent_cases_run_against_a_file_database(tmp_path):
    env = dict(os.environ, ALADDIN_TEST_DB=str(tmp_path / "test.sqlite3"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed, 1 skipped" in done.stdout, done.stdout[-2000:]
