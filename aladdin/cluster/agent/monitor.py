"""The agent's Monitor loop: one sample of every running workload every few seconds (issue 18).

A thread of its own (reading cgroup files and NVML never waits on a
request), started by :meth:`Agent.serve_forever`. Each workload's
:class:`~aladdin.cluster.monitor.SampleRing` lives on its
:class:`~.workloads.Workload`; once the workload is released (stopped or
forgotten) the ring moves to :attr:`Workloads.retired`, where the newest
:data:`~.workloads.RETIRED_MAX` stay, so an ended job's page still charts
its run (an agent restart starts afresh);
the ``metrics`` operation reads it (see :meth:`ClusterDriver.workload_metrics`
for why the portal pulls rather than stores).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from ..base import Phase, WorkloadMetrics
from ..monitor import DEFAULT_INTERVAL_SECONDS, GpuMetrics, NoGpuMetrics, read_usage
from .workloads import Workload, Workloads

log = logging.getLogger("aladdin.cluster.agent")


class Monitor:
    """Samples ``workloads`` every ``interval`` seconds; its GPU figures come from ``gpu_metrics``."""

    def __init__(
        self,
        workloads: Workloads,
        gpu_metrics: GpuMetrics | None = None,
        interval: float = DEFAULT_INTERVAL_SECONDS,
    ):
        self.workloads = workloads
        self.gpu_metrics = gpu_metrics or NoGpuMetrics()
        self.interval = max(0.1, float(interval))

    def sample_once(self) -> None:
        """One sample of each running workload (called by the loop; tests call it directly)."""
        with self.workloads.lock:
            running = [w for w in self.workloads.table() if w.phase == Phase.RUNNING]
        at, now = datetime.now(UTC), time.monotonic()
        for workload in running:
            try:
                self._sample(workload, at, now)
            except Exception:  # a sample lost is not worth the loop
                log.warning("could not sample %s", workload.name, exc_info=True)

    def _sample(self, workload: Workload, at: datetime, now: float) -> None:
        usage = read_usage(workload.cgroups, workload.name, workload.pid)
        gpus = self.gpu_metrics.sample(list(workload.cards)) if workload.cards else None
        sample = workload.sampler.sample(at, now, usage, gpus)
        if sample is not None:
            with self.workloads.lock:
                workload.ring.add(sample)

    def metrics(self, name: str, since: datetime | None) -> WorkloadMetrics:
        """``name``'s samples after ``since``; a released one's while kept; else not available."""
        with self.workloads.lock:
            workload = self.workloads.get(name)
            ring = workload.ring if workload is not None else self.workloads.retired.get(name)
            if ring is None:
                return WorkloadMetrics(name=name)
            return WorkloadMetrics(
                name=name,
                available=True,
                gpu_metrics=ring.gpu_metrics,
                interval_seconds=self.interval,
                samples=ring.since(since),
            )

    def run(self, stopping: threading.Event) -> None:
        """Sample until ``stopping`` is set, on a fixed beat (a slow round does not drift it)."""
        next_at = time.monotonic()
        while not stopping.is_set():
            self.sample_once()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a suspended host): start the beat again from now
                next_at, delay = time.monotonic(), 0
            stopping.wait(delay)
        self.gpu_metrics.close()
