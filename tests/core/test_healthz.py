"""/healthz says 200 only when every component is alive, and names the one that is not.

The worker and beat heartbeats are written here with the same code the
worker's bootstep and beat's scheduler use; tests/e2e proves the real
processes write them (its portal fixture waits for a 200).
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings

from aladdin import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _agent_answers(monkeypatch):
    # The local agent is a separate process (tests/cluster and tests/e2e run
    # the real one); here it answers health like a live agent unless a test
    # says otherwise.
    from aladdin.cluster.local import LocalDriver

    def _call(self, op, **kwargs):
        assert op == "health"
        return {
            "pid": 1,
            "sandbox": True,
            "sandbox_reason": "",
            "single_user_id": None,
            "running": 0,
        }

    monkeypatch.setattr(LocalDriver, "_call", _call)


def _beat_heartbeat() -> None:
    # What HeartbeatScheduler.tick writes on every beat tick.
    cache.set(health.BEAT_KEY, {"at": time.time()}, timeout=300)


def _get(client) -> tuple[int, dict]:
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response.get("Cache-Control", "")
    return response.status_code, response.json()


def test_healthz_is_200_when_every_component_is_alive(client):
    health.record_worker_heartbeat("worker@test")
    _beat_heartbeat()

    status, body = _get(client)

    assert status == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "worker", "beat", "cluster"}
    assert all(check["ok"] for check in body["checks"].values()), body
    assert body["checks"]["worker"]["hostname"] == "worker@test"
    assert body["checks"]["cluster"]["driver"] == "local"


def test_healthz_is_503_when_no_worker_or_beat_was_ever_seen(client):
    status, body = _get(client)

    assert status == 503
    assert body["status"] == "fail"
    assert body["checks"]["worker"] == {"ok": False, "error": "never seen"}
    assert body["checks"]["beat"] == {"ok": False, "error": "never seen"}
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]


@pytest.mark.parametrize(
    ("age", "expected_status"),
    [
        (settings.HEALTH_WORKER_MAX_AGE_SECONDS - 1, 200),
        (settings.HEALTH_WORKER_MAX_AGE_SECONDS + 1, 503),
    ],
)
def test_healthz_fails_the_worker_once_its_heartbeat_is_older_than_the_limit(
    client, age, expected_status
):
    start = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        # given a worker that beat at `start` and then went silent
        health.record_worker_heartbeat("worker@test")
        traveller.shift(age)
        _beat_heartbeat()

        status, body = _get(client)

    assert status == expected_status
    worker = body["checks"]["worker"]
    assert worker["seen_seconds_ago"] == pytest.approx(age, abs=0.5)
    if expected_status == 503:
        assert worker["ok"] is False
        assert worker["error"] == (
            f"last seen {age} s ago (limit {settings.HEALTH_WORKER_MAX_AGE_SECONDS} s)"
        )
        # Only the silent component fails.
        assert [name for name, c in body["checks"].items() if not c["ok"]] == ["worker"]
    else:
        assert worker["ok"] is True


def test_healthz_fails_beat_when_its_heartbeat_is_stale(client):
    start = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        _beat_heartbeat()
        traveller.shift(settings.HEALTH_BEAT_MAX_AGE_SECONDS + 30)
        health.record_worker_heartbeat("worker@test")

        status, body = _get(client)

    assert status == 503
    assert [name for name, c in body["checks"].items() if not c["ok"]] == ["beat"]


def test_healthz_is_503_naming_redis_when_redis_is_down(client, spare_redis):
    proc, url = spare_redis
    caches = {"default": {**settings.CACHES["default"], "LOCATION": url}}
    with override_settings(REDIS_URL=url, CACHES=caches):
        # given a portal whose worker and beat were alive until Redis died
        health.record_worker_heartbeat("worker@test")
        _beat_heartbeat()
        assert _get(client)[0] == 200
        proc.kill()
        proc.wait(timeout=10)

        started = time.monotonic()
        status, body = _get(client)
        elapsed = time.monotonic() - started

    assert status == 503
    assert body["status"] == "fail"
    redis_check = body["checks"]["redis"]
    assert redis_check["ok"] is False
    assert "ConnectionError" in redis_check["error"]
    # The heartbeats live in Redis, so they cannot be read either; the
    # database and the cluster driver do not depend on Redis and stay ok.
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["beat"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["cluster"]["ok"] is True
    # A probe must answer before its own timeout even with Redis gone.
    assert elapsed < 10


def test_healthz_fails_when_the_local_agent_is_not_running(client, monkeypatch):
    from aladdin.cluster import DriverError
    from aladdin.cluster.local import LocalDriver

    def _down(self, op, **kwargs):
        raise DriverError("the local agent is not running (make run starts it)")

    monkeypatch.setattr(LocalDriver, "_call", _down)
    health.record_worker_heartbeat("worker@test")
    _beat_heartbeat()

    status, body = _get(client)

    assert status == 503
    assert body["checks"]["cluster"]["ok"] is False
    assert "agent is not running" in body["checks"]["cluster"]["error"]
