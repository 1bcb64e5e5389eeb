"""Per-second metering (SPEC §4.1): exact totals, one entry per started minute, idempotent."""

from __future__ import annotations

from datetime import timedelta

import hypothesis
import pytest
import time_machine
from hypothesis import strategies as st

from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.models import LedgerEntry
from gpu_jobs.choices import JobState
from gpu_jobs.metering import meter_due, meter_job, owed
from tests.conftest import examples

from .conftest import sh

T0 = sh(2026, 3, 1, 8)
START = T0 + timedelta(minutes=5, microseconds=250_000)


@pytest.fixture(autouse=True)
def _at_t0():
    with time_machine.travel(T0, tick=False):
        yield


def charge_keys(job) -> list[str]:
    # A charge spread over several grants has one entry per grant ("key#2"):
    # count the charges by their key.
    keys = LedgerEntry.objects.filter(
        user=job.user, idempotency_key__startswith=f"gpu:job-{job.pk}:"
    ).values_list("idempotency_key", flat=True)
    return sorted({k.split("#")[0] for k in keys})


def ledger_total(job) -> int:
    rows = LedgerEntry.objects.filter(
        user=job.user, idempotency_key__startswith=f"gpu:job-{job.pk}:"
    ).values_list("delta_micro", flat=True)
    return -sum(rows)


def end(job, at, state=JobState.SUCCEEDED):
    """The job's (single) worker released its cards at ``at``, as the reconciler records it."""
    job.ended_at = at
    job.state = state
    job.save(update_fields=["ended_at", "state"])
    job.worker_rows.update(ended_at=at)


def test_owed_counts_every_started_second_with_integers(user, make_job):
    job = make_job(user, card="40g", started_at=START)
    # 1.28 DCU/h: 1 s = 355.55… µDCU, floored; a started second is a whole second.
    assert owed(job, START) == 355
    assert owed(job, START + timedelta(microseconds=1)) == 355
    assert owed(job, START + timedelta(seconds=1)) == 355
    assert owed(job, START + timedelta(seconds=1, microseconds=1)) == 711
    assert owed(job, START + timedelta(hours=1)) == 1_280_000
    assert owed(job, START - timedelta(seconds=5)) == 0
    end(job, START + timedelta(seconds=10))
    assert owed(job, START + timedelta(hours=3)) == 3555  # capped at the release


def test_a_2x80g_job_of_90_seconds_costs_exactly_its_price_with_one_entry_per_minute(
    user, subscribe, make_job
):
    # given a Basic plan and a job on 2 × 80G cards allocated at START
    subscribe(user, "basic", T0)
    balance = billing_selectors.active_balance_micro(user, T0)
    job = make_job(user, card="80g", cards_per_worker=2, started_at=START)

    # when the meter runs after the first minute and at the end (90 s)
    assert meter_job(job=job, at=START + timedelta(seconds=60)) is False
    assert job.charged_micro == 85_333  # 5.12 DCU/h × 60 s, floored
    end(job, START + timedelta(seconds=90))
    assert meter_job(job=job, at=START + timedelta(seconds=90)) is False

    # then 2 × 2.56 × 90 / 3600 DCU = 0.128 DCU in total, in two charges
    assert 2 * 2_560_000 * 90 // 3600 == 128_000
    job.refresh_from_db()
    assert job.charged_micro == 128_000 and job.metering_closed
    assert ledger_total(job) == 128_000
    assert charge_keys(job) == [f"gpu:job-{job.pk}:w0:0", f"gpu:job-{job.pk}:w0:end"]
    assert billing_selectors.active_balance_micro(user, T0) == balance - 128_000


def test_metering_twice_at_the_same_time_charges_nothing(user, subscribe, make_job):
    subscribe(user, "basic", T0)
    job = make_job(user, card="80g", cards_per_worker=2, started_at=START)
    meter_job(job=job, at=START + timedelta(seconds=61))
    meter_job(job=job, at=START + timedelta(seconds=61))
    meter_job(job=job, at=START + timedelta(seconds=119))  # same minute: nothing new
    assert ledger_total(job) == job.charged_micro == 85_333
    assert len(charge_keys(job)) == 1
    end(job, START + timedelta(seconds=119))
    meter_job(job=job, at=START + timedelta(seconds=130))
    meter_job(job=job, at=START + timedelta(seconds=200))
    assert ledger_total(job) == job.charged_micro == 5_120_000 * 119 // 3600


def test_a_replayed_key_changes_nothing(user, subscribe, make_job):
    subscribe(user, "basic", T0)
    job = make_job(user, card="80g", started_at=START)
    # The key is already in the ledger (e.g. charged by a run whose job-row
    # update was lost): the meter leaves charged_micro as it is.
    billing_services.charge(
        user=user, kind="gpu", key=f"job-{job.pk}:w0:0", amount_micro=42_666, reason="r", at=T0
    )
    meter_job(job=job, at=START + timedelta(seconds=60))
    job.refresh_from_db()
    assert job.charged_micro == 0
    assert ledger_total(job) == 42_666


def test_after_a_worker_is_killed_mid_run_the_total_is_still_exact(user, subscribe, make_job):
    subscribe(user, "basic", T0)
    job = make_job(user, card="80g", cards_per_worker=2, started_at=START)
    meter_job(job=job, at=START + timedelta(seconds=60))
    # the meter's worker dies; nothing runs for minutes; the job keeps running
    meter_job(job=job, at=START + timedelta(seconds=185, microseconds=700_000))
    assert job.charged_micro == 5_120_000 * 180 // 3600
    # the job ended while the meter was down; the reconciler recorded its end
    end(job, START + timedelta(seconds=200, microseconds=900_000), state=JobState.FAILED)
    meter_job(job=job, at=START + timedelta(minutes=30))
    job.refresh_from_db()
    # 200.9 s: 201 started seconds
    assert job.charged_micro == ledger_total(job) == 5_120_000 * 201 // 3600 == 285_866
    assert charge_keys(job) == [
        f"gpu:job-{job.pk}:w0:0",
        f"gpu:job-{job.pk}:w0:2",
        f"gpu:job-{job.pk}:w0:end",
    ]


def test_a_run_of_0_4_seconds_bills_one_second(user, subscribe, make_job):
    # given a Run Shell whose process ran for 0.4 s on a 40G card
    subscribe(user, "basic", T0)
    job = make_job(user, card="40g", started_at=START)
    end(job, START + timedelta(milliseconds=400))

    # when the reconciler's final meter runs
    meter_job(job=job, at=START + timedelta(seconds=2))

    # then one second is billed: 1.28 DCU/h × 1 s, floored
    job.refresh_from_db()
    assert job.charged_micro == ledger_total(job) == 1_280_000 // 3600 == 355
    assert job.metering_closed
    assert charge_keys(job) == [f"gpu:job-{job.pk}:w0:end"]


def test_a_window_of_no_length_still_bills_its_started_second(user, subscribe, make_job):
    # The cards were allocated and released at the same recorded instant
    # (the release is clamped to the allocation): no run is free.
    subscribe(user, "basic", T0)
    job = make_job(user, card="40g", started_at=START)
    end(job, START)

    meter_due(at=START + timedelta(seconds=1))

    job.refresh_from_db()
    assert job.charged_micro == ledger_total(job) == 355 and job.metering_closed


def test_a_run_of_60_2_seconds_bills_61_seconds_across_two_charges(user, subscribe, make_job):
    # given a job on a 40G card, charged for its first minute while it ran
    subscribe(user, "basic", T0)
    job = make_job(user, card="40g", started_at=START)
    meter_due(at=START + timedelta(seconds=60, milliseconds=100))
    job.refresh_from_db()
    assert job.charged_micro == 1_280_000 * 60 // 3600

    # when it ends at 60.2 s and the meters run, again and again
    end(job, START + timedelta(seconds=60, milliseconds=200))
    meter_job(job=job, at=START + timedelta(seconds=61))
    for late in (61, 90, 3600):
        meter_due(at=START + timedelta(seconds=late))
        meter_job(job=job, at=START + timedelta(seconds=late))

    # then 61 seconds in all, the last started second once, under two keys
    job.refresh_from_db()
    assert job.charged_micro == ledger_total(job) == 1_280_000 * 61 // 3600 == 21_688
    assert charge_keys(job) == [f"gpu:job-{job.pk}:w0:0", f"gpu:job-{job.pk}:w0:end"]
    assert job.metering_closed


def test_a_replayed_end_charge_bills_nothing_twice(user, subscribe, make_job):
    # The end charge is in the ledger but the worker's row update was lost
    # (a crash between them cannot happen, they commit together; a replay
    # of the same key from another meter can): the ledger keeps one charge.
    subscribe(user, "basic", T0)
    job = make_job(user, card="40g", started_at=START)
    end(job, START + timedelta(milliseconds=400))
    billing_services.charge(
        user=user, kind="gpu", key=f"job-{job.pk}:w0:end", amount_micro=355, reason="r", at=T0
    )

    meter_job(job=job, at=START + timedelta(seconds=1))
    meter_due(at=START + timedelta(seconds=2))

    assert ledger_total(job) == 355
    assert charge_keys(job) == [f"gpu:job-{job.pk}:w0:end"]


@hypothesis.settings(
    max_examples=examples(25),
    derandomize=True,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    duration_ms=st.integers(min_value=0, max_value=200_000),
    ticks_ms=st.lists(st.integers(min_value=0, max_value=260_000), max_size=6),
)
def test_whatever_the_ticks_a_run_bills_its_started_seconds_once(
    user, subscribe, make_job, duration_ms, ticks_ms
):
    # given a 40G job that ran ``duration_ms``, metered at arbitrary times
    # (while it ran and after), then by the final meter
    if not billing_selectors.active_balance_micro(user, T0):
        subscribe(user, "basic", T0)
    job = make_job(user, card="40g", started_at=START)
    released = START + timedelta(milliseconds=duration_ms)
    for tick in sorted(ticks_ms):
        at = START + timedelta(milliseconds=tick)
        if at >= released and job.ended_at is None:
            end(job, released)
        meter_due(at=at)
    if job.ended_at is None:
        end(job, released)
    meter_job(job=job, at=released + timedelta(seconds=1))

    # then exactly its started seconds (at least one) are billed
    seconds = max(1, -(-duration_ms // 1000))
    job.refresh_from_db()
    assert job.charged_micro == ledger_total(job) == 1_280_000 * seconds // 3600
    assert job.metering_closed


def test_an_exhausted_balance_is_reported(user, subscribe, make_job):
    subscribe(user, "trial", T0)  # 20 DCU
    billing_services.charge(
        user=user, kind="test", key="spend", amount_micro=20_000_000 - 10_000, reason="r", at=T0
    )
    job = make_job(user, card="80g", started_at=START)
    assert meter_job(job=job, at=START + timedelta(seconds=60)) is True  # owes 42_666
    assert job.charged_micro == 42_666
    assert billing_selectors.active_balance_micro(user, T0) == 0


def test_meter_due_charges_every_running_job_in_one_batch(
    user, other_user, subscribe, make_job, cards
):
    subscribe(user, "basic", T0)
    subscribe(other_user, "trial", T0)
    billing_services.charge(
        user=other_user, kind="test", key="spend", amount_micro=19_990_000, reason="r", at=T0
    )
    running = make_job(user, card="80g", cards_per_worker=2, started_at=START)
    ended = make_job(user, card="40g", started_at=START)
    end(ended, START + timedelta(seconds=30), state=JobState.STOPPED)
    poor = make_job(other_user, card="80g", started_at=START)
    queued = make_job(user, card="40g", state=JobState.QUEUED)

    exhausted = meter_due(at=START + timedelta(seconds=90))
    assert exhausted == {other_user.pk}
    # and again at the same time: nothing new
    assert meter_due(at=START + timedelta(seconds=90)) == set()

    for job in (running, ended, poor, queued):
        job.refresh_from_db()
    assert running.charged_micro == ledger_total(running) == 85_333
    assert ended.charged_micro == ledger_total(ended) == 1_280_000 * 30 // 3600
    assert ended.metering_closed
    assert poor.charged_micro == 42_666
    assert queued.charged_micro == 0 and ledger_total(queued) == 0


def test_each_worker_is_billed_for_its_own_window_under_its_own_keys(user, subscribe, make_job):
    # given a 2-worker job (a Run Task's shape) whose workers got their cards
    # 10 s apart and released them 30 s apart
    subscribe(user, "advanced", T0)
    job = make_job(user, card="40g", workers=2, started_at=START)
    first, second = job.worker_rows.order_by("index")
    second.started_at = START + timedelta(seconds=10)
    second.save()

    meter_due(at=START + timedelta(seconds=75))
    # (as the reconciler records ends: an update of the window only)
    job.worker_rows.filter(pk=first.pk).update(ended_at=START + timedelta(seconds=100))
    job.worker_rows.filter(pk=second.pk).update(ended_at=START + timedelta(seconds=130))
    meter_due(at=START + timedelta(seconds=131))

    # then each is billed exactly for its own seconds, with (job, worker, interval) keys
    job.refresh_from_db()
    per_second = 1_280_000
    assert (
        job.charged_micro
        == ledger_total(job)
        == (per_second * 100 // 3600 + per_second * 120 // 3600)
    )
    assert job.metering_closed
    assert charge_keys(job) == [
        f"gpu:job-{job.pk}:w0:0",
        f"gpu:job-{job.pk}:w0:end",
        f"gpu:job-{job.pk}:w1:0",
        f"gpu:job-{job.pk}:w1:end",
    ]
