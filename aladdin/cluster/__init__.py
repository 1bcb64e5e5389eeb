"""The cluster driver: one interface, a backend per kind of cluster (SPEC §9)."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import ClusterDriver, DriverError, NoCapacity, QuotaExceeded

__all__ = ["ClusterDriver", "DriverError", "NoCapacity", "QuotaExceeded", "get_driver"]

_BACKENDS = {"local": "aladdin.cluster.local.LocalDriver"}


@lru_cache(maxsize=1)
def _driver_for(name: str) -> ClusterDriver:
    return import_string(_BACKENDS[name])()


def get_driver() -> ClusterDriver:
    """The configured backend (CLUSTER_DRIVER), one instance per process."""
    return _driver_for(settings.CLUSTER_DRIVER)
