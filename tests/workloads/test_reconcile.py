"""The reconcile skeleton both workload apps fill in (aladdin.workloads.reconcile)."""

from __future__ import annotations

from aladdin.cluster.base import LABEL_KIND, DriverError, Phase, WorkloadStatus
from aladdin.workloads.reconcile import Reconciler, quietly


class ListingDriver:
    """``statuses`` are listed; ``late`` are known by name only (a listing a moment behind)."""

    def __init__(
        self,
        *statuses: WorkloadStatus,
        failing: set[str] = frozenset(),
        late: tuple[WorkloadStatus, ...] = (),
    ):
        self.statuses = list(statuses)
        self.late = {s.name: s for s in late}
        self.failing = failing
        self.stopped: list[str] = []
        self.asked: list[str] = []

    def list_workloads(self) -> list[WorkloadStatus]:
        return list(self.statuses)

    def workload_status(self, *, name: str) -> WorkloadStatus:
        self.asked.append(name)
        if name in self.failing:
            raise DriverError(f"{name} unreachable")
        return self.late.get(name) or WorkloadStatus(name=name, phase=Phase.MISSING)

    def stop_workload(self, *, name: str) -> None:
        if name in self.failing:
            raise DriverError(f"{name} unreachable")
        self.stopped.append(name)


class Recording(Reconciler):
    kind = "thing"
    counts = ("seen", "orphans")

    def __init__(self, rows: dict, **kwargs):
        self._rows = rows
        self.calls: list[tuple] = []
        super().__init__(**kwargs)

    def rows(self):
        return self._rows

    def converge(self, row, status):
        self.calls.append(("converge", row, status.phase))
        self.count("seen")

    def orphan(self, name, status):
        if self.stop_quietly(name):
            self.count("orphans")
        self.calls.append(("orphan", name))

    def finish(self):
        self.calls.append(("finish",))


def _status(name, phase=Phase.RUNNING, kind="thing", labelled=False):
    if labelled:
        return WorkloadStatus(name=name, phase=phase, labels={LABEL_KIND: kind})
    return WorkloadStatus(name=name, phase=phase, kind=kind)


def test_rows_meet_their_workloads_and_a_missing_one_is_missing(monkeypatch):
    driver = ListingDriver(_status("t-1"), _status("t-3", labelled=True))
    monkeypatch.setattr("aladdin.cluster.get_driver", lambda: driver)
    # when
    counts = Recording({"t-1": "row 1", "t-2": "row 2", "t-3": "row 3"}).run()
    # then
    assert counts == {"seen": 3, "orphans": 0}
    assert driver.stopped == []
    assert driver.asked == ["t-2"]  # the one the listing did not have, by name


def test_a_workload_the_listing_is_behind_on_is_asked_for_by_name_not_ended(monkeypatch):
    # given a listing (a watch cache) that has not seen t-2's new pod yet
    driver = ListingDriver(_status("t-1"), late=(_status("t-2"),), failing={"t-3"})
    monkeypatch.setattr("aladdin.cluster.get_driver", lambda: driver)
    reconciler = Recording({"t-1": "row 1", "t-2": "row 2", "t-3": "row 3"})
    # when
    reconciler.run()
    # then t-2 is converged as running, and t-3, which cannot be asked about now, waits
    assert reconciler.calls == [
        ("converge", "row 1", Phase.RUNNING),
        ("converge", "row 2", Phase.RUNNING),
        ("finish",),
    ]


def test_a_row_that_expects_no_workload_is_missing_without_asking(monkeypatch):
    driver = ListingDriver()
    monkeypatch.setattr("aladdin.cluster.get_driver", lambda: driver)

    class Stopped(Recording):
        def expects_workload(self, row):
            return False

    reconciler = Stopped({"t-1": "stopped row"})
    reconciler.run()
    assert reconciler.calls[0] == ("converge", "stopped row", Phase.MISSING)
    assert driver.asked == []


def test_workloads_without_a_row_are_orphans_and_other_kinds_are_left_alone(monkeypatch):
    driver = ListingDriver(_status("t-1"), _status("t-9"), _status("ws-1", kind="workshop"))
    monkeypatch.setattr("aladdin.cluster.get_driver", lambda: driver)
    reconciler = Recording({"t-1": "row 1"})
    # when
    counts = reconciler.run()
    # then
    assert counts == {"seen": 1, "orphans": 1}
    assert driver.stopped == ["t-9"]
    assert reconciler.calls == [
        ("converge", "row 1", Phase.RUNNING),
        ("orphan", "t-9"),
        ("finish",),
    ]


def test_one_unreachable_workload_does_not_stop_the_pass(monkeypatch):
    driver = ListingDriver(_status("t-8"), _status("t-9"), failing={"t-8"})
    monkeypatch.setattr("aladdin.cluster.get_driver", lambda: driver)
    # when
    counts = Recording({}).run()
    # then: t-8 is retried next pass, t-9 was stopped
    assert counts == {"seen": 0, "orphans": 1}
    assert driver.stopped == ["t-9"]


def test_quietly_answers_whether_the_driver_call_worked():
    def broken(**kwargs):
        raise DriverError("down")

    assert quietly(lambda **kwargs: None, name="x") is True
    assert quietly(broken, name="x") is False
