"""The API's per-user rate limit with one Redis round trip per call.

DRF's ``SimpleRateThrottle`` keeps each client's history (the times of its
calls in the window) as one pickled list: a GET then a SET, two round trips
on every API call, and two clients of one user racing between them can both
pass. Here the same sliding window is a Redis sorted set trimmed, counted and
appended by one Lua script: one round trip, atomic. The rule is DRF's (at most
N calls in any window of the rate's duration; a refused call is not counted;
``wait()`` is the time until the oldest call leaves the window). Without a
Redis cache (a test's local memory cache) it is DRF's own code.
"""

from __future__ import annotations

import secrets

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework import throttling

# KEYS[1]: the client's key. ARGV: now, window (s), limit, a unique member.
# Returns {1} when allowed (and counted), {0, oldest} when refused.
_SLIDING_WINDOW = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, oldest[2]}
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return {1}
"""


class _RedisSlidingWindow:
    """``allow_request``/``wait`` for a SimpleRateThrottle subclass, in one round trip."""

    _oldest: float | None = None

    def allow_request(self, request, view):
        # DRF's throttles hold django.core.cache.cache, a proxy: ask the backend.
        backend = caches[DEFAULT_CACHE_ALIAS]
        if self.rate is None or not isinstance(backend, RedisCache):
            return super().allow_request(request, view)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        client = _client(backend._cache, self.key)
        key = backend.make_and_validate_key(self.key)
        # A random member: two calls in the same microsecond are two calls.
        member = f"{self.now:.6f}:{secrets.token_hex(4)}"
        result = _script(client)(
            keys=[key], args=[self.now, self.duration, self.num_requests, member], client=client
        )
        if int(result[0]) == 1:
            return True
        self._oldest = float(result[1])
        return self.throttle_failure()

    def wait(self):
        if self._oldest is None:
            return super().wait()
        return max(self.duration - (self.now - self._oldest), 0)


_registered: list = []


def _client(cache_client, key):
    # One client per cache backend: Django's cache builds a new redis.Redis on
    # every get_client() (its table of reply handlers alone is ~170 entries),
    # a tenth of an API call's own time here. A client may be shared: each
    # command takes a connection from the backend's pool and gives it back.
    client = getattr(cache_client, "_throttle_client", None)
    if client is None:
        client = cache_client.get_client(key, write=True)
        cache_client._throttle_client = client
    return client


def _script(client):
    # One Script per process: it sends EVALSHA and loads the script into a
    # Redis that does not know it yet (a restart), through whichever client calls.
    if not _registered:
        _registered.append(client.register_script(_SLIDING_WINDOW))
    return _registered[0]


class UserRateThrottle(_RedisSlidingWindow, throttling.UserRateThrottle):
    """DRF's ``user`` rate (a signed-in user's id; the address for anonymous calls)."""


class AnonRateThrottle(_RedisSlidingWindow, throttling.AnonRateThrottle):
    """DRF's ``anon`` rate (the client's address, for calls without a user)."""
