from __future__ import annotations

from django.conf import settings

from workshops import tasks
from workshops.choices import WorkshopState


def test_tasks_have_explicit_names_and_late_acks():
    for task, name in [
        (tasks.start, "workshops.start"),
        (tasks.stop, "workshops.stop"),
        (tasks.delete, "workshops.delete"),
        (tasks.reconcile, "workshops.reconcile"),
    ]:
        assert task.name == name
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True


def test_beat_reconciles_every_30_seconds():
    entries = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "workshops.reconcile"
    ]
    assert len(entries) == 1
    assert entries[0]["schedule"] == 30.0


def test_reconcile_takes_an_as_of(user, make_workshop, driver):
    ws = make_workshop(user, run=False)
    tasks.reconcile(as_of="2999-01-01T00:00:00+08:00")
    ws.refresh_from_db()
    assert ws.state == WorkshopState.FAILED


def test_stop_task_twice_is_harmless(user, make_workshop, driver):
    from workshops import services

    ws = make_workshop(user)
    services.workshop_stop(workshop=ws)
    tasks.stop(ws.pk)
    tasks.stop(ws.pk)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.STOPPED
