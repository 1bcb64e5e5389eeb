"""Period processing from beat (billing.process_periods) and by hand (billing_process)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing import selectors, services, tasks
from billing.choices import SubscriptionState
from billing.models import Subscription

from .conftest import sh

DCU = 1_000_000


@pytest.fixture
def ended_trial(user, plans):
    """A Trial bought on Apr 1 with 5 DCU spent; its period ends on May 1, 09:00."""
    services.subscription_create(user=user, plan=plans["trial"], at=sh(2026, 4, 1, 9))
    services.charge(
        user=user, kind="test", key="t", amount_micro=5 * DCU, reason="use", at=sh(2026, 4, 2)
    )
    return user


def carried_micro(user) -> int:
    return sum(g.remaining_micro for g in selectors.carried_grants(user))


def test_the_task_carries_over_a_period_that_ended_before_as_of(ended_trial):
    processed = tasks.process_periods(as_of="2026-05-01T10:00:00+08:00")

    assert processed == 1
    assert carried_micro(ended_trial) == 15 * DCU
    assert Subscription.objects.get(user=ended_trial).state == SubscriptionState.ENDED


def test_the_task_does_nothing_before_the_period_ends(ended_trial):
    assert tasks.process_periods(as_of="2026-04-30T23:00:00+08:00") == 0
    assert carried_micro(ended_trial) == 0


def test_the_task_run_twice_changes_nothing_the_second_time(ended_trial):
    tasks.process_periods(as_of="2026-05-01T10:00:00+08:00")
    entries = ended_trial.ledger_entries.count()

    assert tasks.process_periods(as_of="2026-05-01T10:00:00+08:00") == 0
    assert ended_trial.ledger_entries.count() == entries


def test_the_task_without_as_of_processes_up_to_now(user, plans):
    services.subscription_create(
        user=user, plan=plans["trial"], at=timezone.now() - timedelta(days=31)
    )

    assert tasks.process_periods() == 1
    assert carried_micro(user) == 20 * DCU


def test_the_task_catches_up_after_downtime(user, plans):
    # Given a period that ended, its carry-over that lapsed 30 days later,
    # all missed while beat was down...
    services.subscription_create(user=user, plan=plans["trial"], at=sh(2026, 4, 1, 9))

    # when beat comes back in July...
    tasks.process_periods(as_of="2026-07-01T00:00:00+08:00")

    # then both events happened, each at its own time.
    kinds = list(user.ledger_entries.order_by("created_at", "pk").values_list("kind", "created_at"))
    assert ("carry", sh(2026, 5, 1, 9)) in kinds
    assert ("expire", sh(2026, 5, 31, 9)) in kinds
    assert carried_micro(user) == 0


def test_the_task_is_registered_with_an_explicit_name_and_late_acks():
    assert tasks.process_periods.name == "billing.process_periods"
    assert tasks.process_periods.acks_late is True
    assert tasks.process_periods.reject_on_worker_lost is True


def test_beat_runs_the_task_every_minute():
    entries = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "billing.process_periods"
    ]
    assert len(entries) == 1
    assert entries[0]["schedule"] == 60.0


def test_a_naive_as_of_is_shanghai_time():
    assert tasks.parse_as_of("2026-05-01T10:00") == sh(2026, 5, 1, 10)
    assert tasks.parse_as_of("2026-05-01T02:00:00Z") == sh(2026, 5, 1, 10)


def test_a_bad_as_of_is_refused_with_the_text():
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        tasks.parse_as_of("yesterday")


def run_command(*args) -> str:
    out = StringIO()
    call_command("billing_process", *args, stdout=out)
    return out.getvalue()


def test_the_command_processes_what_is_due_by_as_of(ended_trial):
    output = run_command("--as-of", "2026-05-01T10:00:00+08:00")

    assert "Processed 1 user(s)" in output
    assert "2026-05-01T10:00:00+08:00" in output
    assert carried_micro(ended_trial) == 15 * DCU


def test_the_command_reads_a_naive_time_as_shanghai_time(ended_trial):
    # 08:59 Shanghai is one minute before the period ends (09:00 Shanghai).
    assert "Processed 0 user(s)" in run_command("--as-of", "2026-05-01T08:59")
    assert "Processed 1 user(s)" in run_command("--as-of", "2026-05-01T09:00")


def test_the_command_defaults_to_now(db):
    assert "Processed 0 user(s)" in run_command()


def test_the_command_explains_a_bad_time(db):
    with pytest.raises(CommandError, match="not an ISO 8601 time"):
        run_command("--as-of", "01/05/2026")
