"""The reconcile pass every workload app runs: level-triggered, one skeleton (DESIGN rule 7).

A pass lists the cluster's workloads of one kind, brings each of the app's
rows toward what the cluster says about its workload (a workload the
cluster does not know is ``Phase.MISSING``), then deals with the workloads
no row answers for (orphans). It compares states, never events: a pass
after downtime, or two passes at once, converge to the same rows, because
every change the apps make is a conditional update.

What differs per app is what a row is and what each phase means for it;
a subclass says that (:class:`Reconciler`). One unreachable workload never
stops the pass: driver calls made while converging go through
:func:`quietly` and the next pass tries again.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from aladdin import cluster
from aladdin.cluster.base import LABEL_KIND, DriverError, Phase, WorkloadStatus

log = logging.getLogger(__name__)


def quietly(func: Callable[..., object], **kwargs: Any) -> bool:
    """Call ``func(**kwargs)``; a DriverError is logged and answered False, not raised."""
    # One unreachable workload must not stop the reconciler converging the
    # rest; the next pass tries again.
    try:
        func(**kwargs)
    except DriverError:
        log.warning("reconcile: %s(%s) failed", func.__name__, kwargs, exc_info=True)
        return False
    return True


class Reconciler(abc.ABC):
    """One pass over one workload kind. Subclasses set ``kind`` and ``counts`` and supply:

    - :meth:`rows`: ``{workload name: row}`` for every row the app answers for;
    - :meth:`converge`: one row and its workload's status (MISSING when the
      cluster has none);
    - :meth:`orphan`: a workload of this kind that no row answers for;
    - :meth:`finish` (optional): work after both loops (batched updates);
    - :meth:`expects_workload` (optional): whether a row should have a
      workload now; a row that should, but is not in the listing, is asked
      about by name before it is converged as missing.

    They count what they did with :meth:`count`; :meth:`run` returns the counts.
    ``self.now`` is the pass's time (``as_of``), ``self.driver`` the driver.
    """

    kind: str = ""
    counts: tuple[str, ...] = ()

    def __init__(self, *, as_of: datetime | None = None):
        self.now = as_of or timezone.now()
        self.driver = cluster.get_driver()
        self.counted = dict.fromkeys(self.counts, 0)

    def run(self) -> dict[str, int]:
        statuses = {s.name: s for s in self.driver.list_workloads() if self._owns(s)}
        # Rows are read after the listing: a row is saved before its workload
        # starts, so a workload started during the pass is never an orphan.
        rows = self.rows()
        for name, row in rows.items():
            status = statuses.get(name) or self._missing(name, row)
            if status is not None:
                self.converge(row, status)
        for name, status in statuses.items():
            if name not in rows:
                self.orphan(name, status)
        self.finish()
        return self.counted

    def _missing(self, name: str, row: Any) -> WorkloadStatus | None:
        """The status of a row's workload the listing did not have; None: ask next pass.

        A listing may be a moment behind the cluster (the Kubernetes backend
        lists from its watch cache): a workload created just before the pass
        can be absent from it. Ending a row for that would end a job that
        runs, so a row that expects a workload asks the driver by name, which
        reads the cluster itself when its cache has no such workload. A
        missing workload is the rare case (it ended behind the portal's back,
        or has not been created yet), so this costs nothing in a normal pass.
        """
        if not self.expects_workload(row):
            return WorkloadStatus(name=name, phase=Phase.MISSING)
        try:
            return self.driver.workload_status(name=name)
        except DriverError:
            log.warning("reconcile: the status of %s is unknown now", name, exc_info=True)
            return None

    def expects_workload(self, row: Any) -> bool:
        """Whether ``row`` should have a workload now (default: every row the app answers for)."""
        return True

    def _owns(self, status: WorkloadStatus) -> bool:
        return (status.kind or status.labels.get(LABEL_KIND)) == self.kind

    def count(self, key: str) -> None:
        self.counted[key] += 1

    def stop_quietly(self, name: str) -> bool:
        """Stop a workload; False (logged) when the driver failed."""
        return quietly(self.driver.stop_workload, name=name)

    # --- what each app supplies ---------------------------------------------------

    @abc.abstractmethod
    def rows(self) -> dict[str, Any]:
        """Supplied by each app (see the class docstring)."""

    @abc.abstractmethod
    def converge(self, row: Any, status: WorkloadStatus) -> None:
        """Supplied by each app (see the class docstring)."""

    @abc.abstractmethod
    def orphan(self, name: str, status: WorkloadStatus) -> None:
        """Supplied by each app (see the class docstring)."""

    def finish(self) -> None:  # noqa: B027 - optional: only apps that batch override it
        """Nothing by default."""
