"""Writes of the ops app: periodic-task heartbeats (database) and task failure counts (Redis).

Both are called from Celery's task signals and must never make a task fail:
they log and return when their store is unavailable.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from django.conf import settings
from django.db import DatabaseError, transaction

from .models import TaskHeartbeat

log = logging.getLogger(__name__)

# A Redis hash, task name -> failures since Redis started: shared by every
# worker process, so /metrics reports the platform's count, not one process's.
FAILURES_KEY = "aladdin:ops:task_failures"
ERROR_MAX_CHARS = 2000


def periodic_task_names() -> set[str]:
    """The tasks beat runs (CELERY_BEAT_SCHEDULE), the ones that get a heartbeat."""
    return {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


def redis_client(url: str | None = None) -> redis.Redis:
    """A client with short timeouts: a scrape or a task must not wait on a dead Redis."""
    return redis.Redis.from_url(
        url or settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
    )


def task_heartbeat_record(*, task: str, at: datetime, error: str | None = None) -> None:
    """Record that ``task`` finished at ``at`` (``error``: it raised that). One upsert.

    A savepoint, so that a failed write inside a caller's transaction (an
    eager run) rolls back only itself; a database that is down or locked is
    logged, never raised: the heartbeat is there to notice such trouble.
    """
    if error is None:
        row = TaskHeartbeat(task=task, last_success_at=at)
        fields = ["last_success_at"]
    else:
        row = TaskHeartbeat(task=task, last_failure_at=at, last_error=error[:ERROR_MAX_CHARS])
        fields = ["last_failure_at", "last_error"]
    try:
        with transaction.atomic():
            # INSERT … ON CONFLICT (task) DO UPDATE: two workers finishing the
            # same task at once cannot collide on the unique name.
            TaskHeartbeat.objects.bulk_create(
                [row], update_conflicts=True, unique_fields=["task"], update_fields=fields
            )
    except DatabaseError:
        log.warning("could not record the heartbeat of %s", task, exc_info=True)


def task_failure_count(*, task: str) -> None:
    """Add one to ``task``'s failure count in Redis (HINCRBY, atomic across processes)."""
    client = redis_client()
    try:
        client.hincrby(FAILURES_KEY, task, 1)
    except redis.RedisError:
        log.warning("could not count a failure of %s", task, exc_info=True)
    finally:
        client.close()
