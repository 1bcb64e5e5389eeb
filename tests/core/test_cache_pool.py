"""The Redis cache keeps one connection pool per process, not one per request (issue 11, load)."""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from django.core.cache import caches


def connections_received() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).info("stats")["total_connections_received"]


def test_requests_in_threads_of_their_own_reuse_the_redis_connections():
    # given the cache warmed up in this process
    caches["default"].set("warm", 1)
    before = connections_received()

    # when 20 requests, one after the other, each use the cache from a thread
    # of their own (as ASGI runs a request's sync code: a new thread-sensitive
    # context, and so a new cache instance, each)
    def one_request(n: int):
        caches["default"].get(f"k{n}")
        caches["default"].set(f"k{n}", n)

    for n in range(20):
        thread = threading.Thread(target=one_request, args=(n,))
        thread.start()
        thread.join()

    # then they went over the pool's connection, not a new one each (the
    # counter includes this check's own connection)
    assert connections_received() - before <= 2


def test_every_cache_instance_of_one_configuration_shares_its_client():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(caches["default"]._cache))
    thread.start()
    thread.join()

    assert seen[0] is caches["default"]._cache
