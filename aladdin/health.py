"""Liveness of each component, for /healthz.

The worker writes a heartbeat from a timer inside the worker process
(aladdin.celery.WorkerHeartbeat); beat writes one on every scheduler tick
(HeartbeatScheduler). Both go to Redis with a timestamp, so /healthz can say
"seen N seconds ago" for each.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django_celery_beat.schedulers import DatabaseScheduler

WORKER_KEY = "health:worker"
BEAT_KEY = "health:beat"


def record_worker_heartbeat(hostname: str) -> None:
    try:
        cache.set(WORKER_KEY, {"at": time.time(), "hostname": hostname}, timeout=300)
    except Exception:  # noqa: BLE001 - Redis down: /healthz reports Redis, not us
        pass


class HeartbeatScheduler(DatabaseScheduler):
    """django-celery-beat's scheduler that also records that beat is alive."""

    def tick(self, *args, **kwargs):
        try:
            cache.set(BEAT_KEY, {"at": time.time()}, timeout=300)
        except Exception:  # noqa: BLE001 - Redis down: beat keeps scheduling
            pass
        return super().tick(*args, **kwargs)


def _check_database() -> dict:
    from django.db import connection

    start = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {
        "ok": True,
        "vendor": connection.vendor,
        "ms": round((time.monotonic() - start) * 1000, 1),
    }


def _check_redis() -> dict:
    import redis

    start = time.monotonic()
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True, "ms": round((time.monotonic() - start) * 1000, 1)}


def _check_heartbeat(key: str, max_age: int) -> dict:
    beat = cache.get(key)
    if not beat:
        return {"ok": False, "error": "never seen"}
    age = time.time() - beat["at"]
    result = {"ok": age <= max_age, "seen_seconds_ago": round(age, 1)}
    if "hostname" in beat:
        result["hostname"] = beat["hostname"]
    if not result["ok"]:
        result["error"] = f"last seen {round(age)} s ago (limit {max_age} s)"
    return result


def _check_cluster() -> dict:
    from aladdin.cluster import get_driver

    return get_driver().health()


def check_all() -> tuple[bool, dict]:
    """Run every check; a failing one reports its error instead of raising."""
    checks = {
        "database": _check_database,
        "redis": _check_redis,
        "worker": lambda: _check_heartbeat(WORKER_KEY, settings.HEALTH_WORKER_MAX_AGE_SECONDS),
        "beat": lambda: _check_heartbeat(BEAT_KEY, settings.HEALTH_BEAT_MAX_AGE_SECONDS),
        "cluster": _check_cluster,
    }
    results: dict = {}
    for name, check in checks.items():
        if name in {"worker", "beat"} and not results["redis"].get("ok"):
            # Heartbeats live in Redis: don't wait on its timeouts twice more.
            results[name] = {"ok": False, "error": "unknown: Redis is unavailable"}
            continue
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - report, don't crash the probe
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return all(r.get("ok") for r in results.values()), results
