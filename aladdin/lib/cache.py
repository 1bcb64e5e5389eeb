"""Django's Redis cache with one connection pool per process, not one per request.

Django keeps a cache backend instance per asgiref context (``caches`` is a
context-local handler), and its Redis client builds its own connection pool
per instance. Under ASGI every request runs in a context of its own, so each
request made a new pool and a new TCP connection to Redis (connect, then
GET/SET for the API throttle) that nobody reused or closed: a connection per
API call (bench/load_portal.py, py-spy). redis-py's pools are thread-safe,
so every instance of one configuration shares one client and its pool.
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple, RedisCacheClient] = {}
_lock = threading.Lock()


class SharedPoolRedisCache(RedisCache):
    """RedisCache whose client (and connection pool) is shared by the whole process."""

    @cached_property
    def _cache(self):
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
