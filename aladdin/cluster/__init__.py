"""The cluster driver: one interface, a backend per kind of cluster (SPEC §9)."""

from __future__ import annotations

import threading
import time
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import Capabilities, ClusterDriver, DriverError, NoCapacity, QuotaExceeded

__all__ = [
    "Capabilities",
    "ClusterDriver",
    "DriverError",
    "NoCapacity",
    "QuotaExceeded",
    "capabilities",
    "get_driver",
]

# How long a process trusts what the backend said it can do: a host gaining
# cgroup control or slirp4netns shows on the pages within this.
CAPABILITIES_TTL_SECONDS = 30
# An unknown answer (agent down) is asked again sooner.
CAPABILITIES_UNKNOWN_TTL_SECONDS = 5

_BACKENDS = {
    "local": "aladdin.cluster.local.LocalDriver",
    "kubernetes": "aladdin.cluster.kubernetes.driver.KubernetesDriver",
}


@lru_cache(maxsize=1)
def _driver_for(name: str) -> ClusterDriver:
    return import_string(_BACKENDS[name])()


def get_driver() -> ClusterDriver:
    """The configured backend (CLUSTER_DRIVER), one instance per process."""
    return _driver_for(settings.CLUSTER_DRIVER)


_capabilities_lock = threading.Lock()
# driver id -> (driver, expires at (monotonic), capabilities); the driver is
# kept so its id is not reused by another while the entry lives.
_capabilities_memo: dict[int, tuple[ClusterDriver, float, Capabilities]] = {}


def capabilities(driver: ClusterDriver | None = None) -> Capabilities:
    """The backend's :class:`Capabilities`, asked at most once per TTL in this process.

    In-process (not Django's cache): each process asks its own backend, and
    an answer is one agent round trip, cheaper than a trip to Redis and back
    would save. Pages and selectors read this; ``/healthz`` calls
    ``health()`` live.
    """
    driver = driver or get_driver()
    now = time.monotonic()
    with _capabilities_lock:
        entry = _capabilities_memo.get(id(driver))
        if entry is not None and entry[0] is driver and entry[1] > now:
            return entry[2]
    found = driver.capabilities()
    ttl = CAPABILITIES_TTL_SECONDS if found.known else CAPABILITIES_UNKNOWN_TTL_SECONDS
    with _capabilities_lock:
        # Only the live drivers' entries: a test's drivers come and go.
        for key in [k for k, (_d, until, _c) in _capabilities_memo.items() if until <= now]:
            del _capabilities_memo[key]
        _capabilities_memo[id(driver)] = (driver, now + ttl, found)
    return found


def forget_capabilities() -> None:
    """Drop every cached answer (tests; an operator's change that must show at once)."""
    with _capabilities_lock:
        _capabilities_memo.clear()
