"""The cluster driver interface.

The portal never talks to a cluster directly: services call a ClusterDriver,
and Celery tasks run those calls. Two backends: ``local`` (processes on the
portal's host, the embedded default) and ``kubernetes`` (a later issue).

Conventions every backend keeps (DESIGN rule 7):

- Names are deterministic (``ws-<id>``, ``job-<id>``), so a retried create
  finds its own object: "already exists" is success, "not found" on delete is
  success.
- Errors are :class:`DriverError`; ``permanent=True`` means retrying cannot
  help (bad image, invalid spec), ``False`` means try again later.
- Quota refusals are :class:`QuotaExceeded` with what was asked, used and
  allowed.
- Status is level-triggered: the reconciler lists what the cluster has
  (:meth:`ClusterDriver.list_workloads`) and converges the database to it.

This issue defines the interface and the local backend's health check; the
workshops issue fills in the workload methods.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.utils.translation import gettext as _


class DriverError(Exception):
    """A cluster operation failed. ``permanent``: retrying will not help."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Resources:
    """CPU in millicores, memory in MiB, GPU cards by model."""

    cpu_millicores: int = 0
    memory_mib: int = 0
    gpus: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        cpu = self.cpu_millicores / 1000
        cpu_text = f"{cpu:g}"
        mem_gib = self.memory_mib / 1024
        return f"limits.cpu={cpu_text},limits.memory={mem_gib:g}Gi"


class QuotaExceeded(DriverError):  # noqa: N818 - the manual's own term
    """Refused by quota: what was requested, what is used, what is allowed."""

    def __init__(self, requested: Resources, used: Resources, limit: Resources):
        self.requested = requested
        self.used = used
        self.limit = limit
        super().__init__(self.message(), permanent=True)

    def message(self) -> str:
        # The manual's wording (SPEC §4.1), so support recognises it.
        return _("exceeded quota: requested: %(requested)s, used: %(used)s, limited: %(limit)s") % {
            "requested": self.requested.describe(),
            "used": self.used.describe(),
            "limit": self.limit.describe(),
        }


@dataclass(frozen=True)
class WorkloadStatus:
    """What the cluster says about one workload."""

    name: str
    phase: str  # "pending" | "running" | "succeeded" | "failed" | "missing"
    exit_code: int | None = None
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class WorkloadSpec:
    """What to run: the image's interpreter/env, command, env vars, resources."""

    name: str
    user_id: int
    kind: str  # "workshop" | "job"
    image: str
    command: list[str]
    env: dict[str, str]
    resources: Resources
    workdir: str = "/root"
    labels: dict[str, str] = field(default_factory=dict)


class ClusterDriver(abc.ABC):
    """The small interface every backend implements. See the module docstring."""

    name: str = "base"

    @abc.abstractmethod
    def health(self) -> dict:
        """Return ``{"ok": bool, ...details}``; never raises."""

    # --- user space -------------------------------------------------------
    @abc.abstractmethod
    def ensure_user_space(self, *, user_id: int, storage_gib: int, quota: Resources) -> None:
        """Create or update the user's volume (size = allowance) and quota. Idempotent."""

    @abc.abstractmethod
    def delete_user_space(self, *, user_id: int) -> None:
        """Delete the user's volume and everything in it. Missing = success."""

    @abc.abstractmethod
    def storage_usage_bytes(self, *, user_id: int) -> int:
        """Bytes used in the user's volume now. Raises DriverError."""

    # --- workloads --------------------------------------------------------
    @abc.abstractmethod
    def start_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Start (or find already started) ``spec.name``. Raises QuotaExceeded, DriverError."""

    @abc.abstractmethod
    def stop_workload(self, *, name: str) -> WorkloadStatus:
        """Stop and release ``name``; files under /root stay. Missing = success."""

    @abc.abstractmethod
    def workload_status(self, *, name: str) -> WorkloadStatus:
        """Current status; phase "missing" when the cluster has no such workload."""

    @abc.abstractmethod
    def list_workloads(self) -> list[WorkloadStatus]:
        """Every workload this portal manages, for the reconciler."""

    @abc.abstractmethod
    def follow_logs(self, *, name: str, offset: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield ``(next_offset, chunk)`` from ``offset`` until the workload ends."""

    @abc.abstractmethod
    def exec_terminal(self, *, name: str, command: list[str]):
        """Open an interactive terminal; returns an object with read/write/resize/close."""
