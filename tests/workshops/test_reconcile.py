from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from aladdin.cluster.base import Phase
from aladdin.cluster.cgroups import oom_reason
from workshops import services, tasks
from workshops.choices import WorkshopState
from workshops.models import WorkshopEvent


def test_running_workshop_whose_workload_is_missing_fails_with_a_reason(
    user, make_workshop, driver
):
    ws = make_workshop(user)
    del driver.workloads[ws.workload_name]
    services.workshops_reconcile()
    ws.refresh_from_db()
    assert ws.state == WorkshopState.FAILED
    assert ws.reason == "The workshop's container is gone."


def test_failed_workload_fails_the_workshop_with_the_drivers_reason(user, make_workshop, driver):
    ws = make_workshop(user)
    driver.set_phase(ws.workload_name, Phase.FAILED, "OOMKilled")
    services.workshops_reconcile()
    ws.refresh_from_db()
    assert (ws.state, ws.reason) == (WorkshopState.FAILED, "OOMKilled")
    assert ws.workload_name not in driver.workloads


def test_workload_that_ended_cleanly_leaves_the_workshop_stopped(user, make_workshop, driver):
    ws = make_workshop(user)
    driver.set_phase(ws.workload_name, Phase.SUCCEEDED, "agent stopped")
    services.workshops_reconcile()
    ws.refresh_from_db()
    assert ws.state == WorkshopState.STOPPED


def test_orphan_workload_is_stopped_and_recorded(user, driver, db):
    driver.add_orphan("ws-999", user.pk)
    counts = tasks.reconcile()
    assert counts["orphans"] == 1
    assert driver.workloads == {}
    event = WorkshopEvent.objects.get(name="ws-999")
    assert event.workshop is None and event.kind == "orphan-removed"


def test_worker_killed_between_create_and_save_converges_to_one_running(
    user, make_workshop, driver
):
    # given the task started the workload but died before saving the row
    ws = make_workshop(user, run=False)
    driver.start_workload(services.workload_spec(ws))
    assert ws.state == WorkshopState.CREATING
    # when the reconciler runs, and the retried task runs too
    services.workshops_reconcile()
    services.workshop_start_apply(workshop_id=ws.pk)
    # then
    ws.refresh_from_db()
    assert ws.state == WorkshopState.RUNNING
    assert list(driver.workloads) == [ws.workload_name]


def test_creating_row_waits_for_its_task_then_fails_after_the_grace(user, make_workshop, driver):
    ws = make_workshop(user, run=False)
    services.workshops_reconcile()
    ws.refresh_from_db()
    assert ws.state == WorkshopState.CREATING
    services.workshops_reconcile(as_of=timezone.now() + timedelta(minutes=6))
    ws.refresh_from_db()
    assert ws.state == WorkshopState.FAILED


def test_every_change_is_recorded(user, make_workshop):
    ws = make_workshop(user)
    kinds = list(WorkshopEvent.objects.filter(workshop=ws).values_list("kind", flat=True))
    assert set(kinds) == {"created", "running"}


def test_one_unreachable_workload_does_not_stop_the_rest(user, make_workshop, driver, monkeypatch):
    from aladdin.cluster.base import DriverError

    ws = make_workshop(user)
    driver.add_orphan("ws-998", user.pk)
    driver.add_orphan("ws-999", user.pk)
    real_stop = driver.stop_workload

    def flaky_stop(*, name, grace_seconds=10):
        if name == "ws-998":
            raise DriverError("agent busy")
        return real_stop(name=name)

    monkeypatch.setattr(driver, "stop_workload", flaky_stop)
    services.workshops_reconcile()
    assert set(driver.workloads) == {ws.workload_name, "ws-998"}
    assert WorkshopEvent.objects.filter(name="ws-999", kind="orphan-removed").exists()
    assert not WorkshopEvent.objects.filter(name="ws-998").exists()


def test_a_workload_killed_for_memory_fails_the_workshop_and_its_page_says_so(
    client, user, make_workshop, driver
):
    # given a workshop on the 2C/4G preset whose workload the agent ended for memory
    ws = make_workshop(user, preset="2C/4G")
    reason = oom_reason(ws.applied_memory_mib)
    driver.set_phase(ws.workload_name, Phase.FAILED, reason)

    services.workshops_reconcile()

    ws.refresh_from_db()
    assert (ws.state, ws.reason) == (WorkshopState.FAILED, "out of memory (limit 4 GiB)")
    client.force_login(user)
    page = client.get(reverse("workshops:detail", args=[ws.pk])).content.decode()
    assert "out of memory (limit 4 GiB)" in page
