from __future__ import annotations

from datetime import date

import time_machine

from billing.models import LedgerEntry
from storage import services
from storage.models import DailyPeak, StorageCharge
from tests.factories import SubscriptionFactory

from .conftest import GIB, sh


def _trial_user(make_user, plans, at):
    user = make_user()
    SubscriptionFactory(user=user, plan_code="trial", at=at)
    services.volume_register(user_id=user.pk)
    return user


def _storage_entries(user):
    return LedgerEntry.objects.filter(user=user, idempotency_key__startswith="storage:")


def test_spec_example_trial_peak_50_gib_costs_0_03_dcu(make_user, plans, driver):
    # given a Trial user (30 GiB free) whose largest use on 1 April is 50 GiB
    user = _trial_user(make_user, plans, sh(2026, 4, 1, 9))
    driver.usage[user.pk] = 20 * GIB
    with time_machine.travel(sh(2026, 4, 1, 10), tick=False):
        services.usage_sample()
    driver.usage[user.pk] = 50 * GIB
    with time_machine.travel(sh(2026, 4, 1, 15), tick=False):
        services.usage_sample()
    driver.usage[user.pk] = 10 * GIB
    with time_machine.travel(sh(2026, 4, 1, 20), tick=False):
        services.usage_sample()
    # when the night charge runs the next early morning
    with time_machine.travel(sh(2026, 4, 2, 0, 30), tick=False):
        services.nightly_charge()
    # then (50 − 30) × 0.0015 = 0.03 DCU
    charge = StorageCharge.objects.get(user=user)
    assert charge.day == date(2026, 4, 1)
    assert charge.charged_gib == 20
    assert charge.amount_micro == 30_000
    assert sum(e.delta_micro for e in _storage_entries(user)) == -30_000


def test_a_partial_gib_counts_as_a_whole_one(make_user, plans, driver):
    user = _trial_user(make_user, plans, sh(2026, 4, 1, 9))
    driver.usage[user.pk] = 30 * GIB + 1
    services.usage_sample(as_of=sh(2026, 4, 1, 12))
    services.nightly_charge(as_of=sh(2026, 4, 2, 0, 30))
    assert StorageCharge.objects.get(user=user).amount_micro == 1_500


def test_use_within_the_free_storage_costs_nothing(make_user, plans, driver):
    user = _trial_user(make_user, plans, sh(2026, 4, 1, 9))
    driver.usage[user.pk] = 30 * GIB
    services.usage_sample(as_of=sh(2026, 4, 1, 12))
    services.nightly_charge(as_of=sh(2026, 4, 2, 0, 30))
    assert not StorageCharge.objects.exists()
    assert DailyPeak.objects.get(user=user).settled


def test_the_0030_charge_covers_the_previous_shanghai_day_not_the_utc_day(make_user, plans, driver):
    # given use sampled at 07:00 Shanghai on 2 April (= 23:00 UTC on 1 April)
    user = _trial_user(make_user, plans, sh(2026, 4, 1, 9))
    driver.usage[user.pk] = 40 * GIB
    with time_machine.travel(sh(2026, 4, 2, 7), tick=False):
        services.usage_sample()
    # when the charge runs at 00:30 Shanghai on 2 April (16:30 UTC on 1 April)
    with time_machine.travel(sh(2026, 4, 2, 0, 30), tick=False):
        services.nightly_charge()
    # then nothing: the peak belongs to the Shanghai day 2 April, not yet over
    assert not StorageCharge.objects.exists()
    with time_machine.travel(sh(2026, 4, 3, 0, 30), tick=False):
        services.nightly_charge()
    assert StorageCharge.objects.get(user=user).day == date(2026, 4, 2)


def test_a_day_missed_while_beat_was_down_is_charged_once_on_catch_up(make_user, plans, driver):
    user = _trial_user(make_user, plans, sh(2026, 4, 1, 9))
    driver.usage[user.pk] = 40 * GIB
    services.usage_sample(as_of=sh(2026, 4, 1, 12))
    driver.usage[user.pk] = 35 * GIB
    services.usage_sample(as_of=sh(2026, 4, 2, 12))
    # beat was down at 00:30 on 2 April; it comes back on 3 April
    services.nightly_charge(as_of=sh(2026, 4, 3, 0, 30))
    services.nightly_charge(as_of=sh(2026, 4, 3, 0, 40))
    charges = {c.day: c.amount_micro for c in StorageCharge.objects.filter(user=user)}
    assert charges == {date(2026, 4, 1): 15_000, date(2026, 4, 2): 7_500}
    assert sum(e.delta_micro for e in _storage_entries(user)) == -22_500


def test_a_charge_into_an_empty_balance_becomes_arrears(make_user, plans, driver):
    # a free-tier user (no grant) over 30 GiB: charged anyway (SPEC §3.5)
    user = make_user()
    services.volume_register(user_id=user.pk)
    driver.usage[user.pk] = 31 * GIB
    services.usage_sample(as_of=sh(2026, 4, 1, 12))
    services.nightly_charge(as_of=sh(2026, 4, 2, 0, 30))
    assert StorageCharge.objects.get(user=user).amount_micro == 1_500
    from billing.models import Account

    assert Account.objects.get(user=user).debt_micro == 1_500


def test_the_peak_is_the_largest_sample_of_the_day(make_user, plans, driver):
    user = _trial_user(make_user, plans, sh(2026, 4, 1, 9))
    for hour, gib in ((1, 5), (2, 45), (3, 7)):
        driver.usage[user.pk] = gib * GIB
        services.usage_sample(as_of=sh(2026, 4, 1, hour))
    assert DailyPeak.objects.get(user=user).peak_bytes == 45 * GIB


def test_a_night_is_charged_in_chunks_each_user_once(make_user, plans, driver, monkeypatch):
    monkeypatch.setattr(services, "CHARGE_CHUNK", 2)
    users = [_trial_user(make_user, plans, sh(2026, 4, 1, 9)) for _ in range(5)]
    for u in users:
        driver.usage[u.pk] = 31 * GIB
    services.usage_sample(as_of=sh(2026, 4, 1, 12))

    assert services.nightly_charge(as_of=sh(2026, 4, 2, 0, 30)) == 5
    assert services.nightly_charge(as_of=sh(2026, 4, 2, 0, 31)) == 0
    assert StorageCharge.objects.count() == 5
    assert LedgerEntry.objects.filter(idempotency_key__startswith="storage:").count() == 5
