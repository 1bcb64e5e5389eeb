"""Idle workloads (issue 20): each user's policy, and how long a workload has done nothing.

Both workload apps use it: ``gpu_jobs.idle`` judges dev jobs by their cards'
utilisation, ``workshops.idle`` judges workshops by their CPU. The measure is
the Monitor's samples (:meth:`ClusterDriver.workload_metrics`), never HTTP
activity: a notebook tab left open does not keep a workload busy.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction

from aladdin import cluster
from aladdin.cluster.base import DriverError, MetricSample, WorkloadMetrics

from .models import IdlePolicy

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from aladdin.accounts.models import User

# Dev jobs bill DCU while their cards idle: warned at 30 minutes, stopped at 60.
JOB_WARN_MINUTES = 30
JOB_STOP_MINUTES = 60
JOB_THRESHOLD_PERCENT = 5
# Workshops bill no DCU: stopping one only ends the user's sessions, so never by default.
WORKSHOP_CPU_PERCENT = 5
# Samples older than this many intervals mean the Monitor stopped seeing the
# workload: its idleness is then unknown, not proven.
STALE_INTERVALS = 4


@dataclass(frozen=True)
class Policy:
    """For one kind of workload: warn after, stop after (minutes; None: never), the threshold."""

    warn_minutes: int | None
    stop_minutes: int | None
    threshold_percent: int

    @property
    def never(self) -> bool:
        return self.warn_minutes is None and self.stop_minutes is None

    @property
    def window_minutes(self) -> int:
        return max(self.warn_minutes or 0, self.stop_minutes or 0)


@dataclass(frozen=True)
class Policies:
    jobs: Policy
    workshops: Policy


DEFAULTS = Policies(
    jobs=Policy(JOB_WARN_MINUTES, JOB_STOP_MINUTES, JOB_THRESHOLD_PERCENT),
    workshops=Policy(None, None, WORKSHOP_CPU_PERCENT),
)


def policies_for(user: User) -> Policies:
    row = IdlePolicy.objects.filter(user=user).first()
    if row is None:
        return DEFAULTS
    return Policies(
        jobs=Policy(row.warn_minutes, row.stop_minutes, row.threshold_percent),
        workshops=Policy(
            row.workshop_warn_minutes, row.workshop_stop_minutes, row.workshop_cpu_percent
        ),
    )


def policies_set(*, user: User, jobs: Policy, workshops: Policy) -> IdlePolicy:
    row, _created = IdlePolicy.objects.update_or_create(
        user=user,
        defaults={
            "warn_minutes": jobs.warn_minutes,
            "stop_minutes": jobs.stop_minutes,
            "threshold_percent": jobs.threshold_percent,
            "workshop_warn_minutes": workshops.warn_minutes,
            "workshop_stop_minutes": workshops.stop_minutes,
            "workshop_cpu_percent": workshops.threshold_percent,
        },
    )
    return row


def gpus_busy(threshold: float) -> Callable[[MetricSample], bool | None]:
    """A sample is busy when any card is at or above ``threshold`` %; None without cards."""

    def busy(sample: MetricSample) -> bool | None:
        if not sample.gpus:
            return None
        return any(g.utilization_percent >= threshold for g in sample.gpus)

    return busy


def cpu_busy(threshold: float) -> Callable[[MetricSample], bool | None]:
    """A sample is busy when the CPU used at least ``threshold`` % of one core; None unmeasured."""

    def busy(sample: MetricSample) -> bool | None:
        if sample.cpu_percent is None:
            return None
        return sample.cpu_percent >= threshold

    return busy


def idle_minutes(
    metrics: WorkloadMetrics,
    *,
    now: datetime,
    busy: Callable[[MetricSample], bool | None],
    needs_gpu_metrics: bool,
) -> float | None:
    """For how long, up to ``now``, every sample was idle (minutes); None: unknown.

    Unknown without metrics (or without GPU metrics where they decide), or
    when the newest sample is stale. A busy sample ends the idle stretch; a
    sample that cannot tell (no reading) ends it too; an old, downsampled
    sample counts as its average.
    """
    if not metrics.available or not metrics.samples:
        return None
    if needs_gpu_metrics and not metrics.gpu_metrics:
        return None
    newest = metrics.samples[-1]
    stale = timedelta(seconds=max(metrics.interval_seconds, 1) * STALE_INTERVALS)
    if now - newest.at > stale:
        return None
    idle_since: datetime | None = None
    for sample in reversed(metrics.samples):
        verdict = busy(sample)
        if verdict is None:
            if idle_since is None:
                return None
            break
        if verdict:
            break
        idle_since = sample.at - timedelta(seconds=sample.period_seconds)
    if idle_since is None:
        return 0.0
    return max(0.0, (now - idle_since).total_seconds() / 60)


class IdleWalk(abc.ABC):
    """One idle check over one kind of workload row: which rows, and what warn and stop mean.

    :meth:`run` is the loop both kinds share (jobs: GPU utilisation,
    workshops: CPU); a subclass gives the rows, the user's policy for its
    kind, how a sample counts as busy, and the notice and the stop.
    ``idle_warned_at`` on the row marks a warning already sent in this idle
    stretch (set with a conditional update, so two checks at once warn once).
    """

    needs_gpu_metrics = False

    def __init__(self, *, now: datetime):
        self.now = now
        self.driver = cluster.get_driver()
        self.counts = {"warned": 0, "stopped": 0, "busy": 0, "unknown": 0}

    @abc.abstractmethod
    def rows(self) -> Iterable[Any]:
        """The running rows the check may warn about or stop, each with ``user``."""

    @abc.abstractmethod
    def policy(self, policies: Policies) -> Policy:
        """This kind's policy among the user's."""

    @abc.abstractmethod
    def busy(self, policy: Policy) -> Callable[[MetricSample], bool | None]:
        """Whether one sample shows work (None: it cannot say)."""

    @abc.abstractmethod
    def notify(self, row: Any, policy: Policy, minutes: float) -> None:
        """The warning notice (inside the transaction that marks the row warned)."""

    @abc.abstractmethod
    def stop(self, row: Any, policy: Policy) -> None:
        """Stop the row's workload with the idle reason."""

    def run(self) -> dict[str, int]:
        policies: dict[int, Policy] = {}
        for row in self.rows():
            if row.user_id not in policies:
                policies[row.user_id] = self.policy(policies_for(row.user))
            policy = policies[row.user_id]
            if policy.never:
                continue
            since = self.now - timedelta(minutes=policy.window_minutes + 1)
            try:
                metrics = self.driver.workload_metrics(name=row.workload_name, since=since)
            except DriverError:
                log.info("no metrics for %s now", row.workload_name, exc_info=True)
                self.counts["unknown"] += 1
                continue
            minutes = idle_minutes(
                metrics,
                now=self.now,
                busy=self.busy(policy),
                needs_gpu_metrics=self.needs_gpu_metrics,
            )
            if minutes is None:
                self.counts["unknown"] += 1
            elif policy.stop_minutes is not None and minutes >= policy.stop_minutes:
                self.stop(row, policy)
                self.counts["stopped"] += 1
            elif policy.warn_minutes is not None and minutes >= policy.warn_minutes:
                if self._warn(row, policy, minutes):
                    self.counts["warned"] += 1
            else:
                self.counts["busy"] += 1
                if row.idle_warned_at is not None:
                    # Working again: the next idle stretch gets its own warning.
                    type(row).objects.filter(pk=row.pk).update(idle_warned_at=None)
        return self.counts

    def _warn(self, row: Any, policy: Policy, minutes: float) -> bool:
        with transaction.atomic():
            marked = type(row).objects.filter(pk=row.pk, idle_warned_at__isnull=True)
            if not marked.update(idle_warned_at=self.now):
                return False  # warned before in this idle stretch
            self.notify(row, policy, minutes)
        return True
