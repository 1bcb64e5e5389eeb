"""SPEC §3.2–3.3: subscriptions, upgrades, queued renewals, carry-over — with time travel."""

from __future__ import annotations

from datetime import timedelta

import time_machine

from billing import selectors, services
from billing.choices import GrantClass, GrantState, SubscriptionState
from billing.models import Grant, LedgerEntry, Subscription

from .conftest import sh

DCU = 1_000_000


def balance(user, at) -> int:
    return selectors.active_balance_micro(user, at)


def carried(user) -> int:
    return sum(g.remaining_micro for g in selectors.carried_grants(user))


def spend(user, amount_micro, at, key):
    return services.charge(
        user=user, kind="test", key=key, amount_micro=amount_micro, reason="use", at=at
    )


def process(at):
    services.billing_process_due(as_of=at)


def test_manual_worked_example_carry_over_activates_then_expires(user, plans):
    # Apr 1: subscribe Trial (20 DCU).
    with time_machine.travel(sh(2026, 4, 1, 9), tick=False):
        services.subscription_create(user=user, plan=plans["trial"])
        assert balance(user, sh(2026, 4, 1, 9)) == 20 * DCU
    # Apr 30: 10 DCU left.
    spend(user, 10 * DCU, sh(2026, 4, 30, 12), "apr")
    assert balance(user, sh(2026, 4, 30, 12)) == 10 * DCU
    # May 1: the 10 DCU are carried, inactive.
    process(sh(2026, 5, 1, 10))
    assert balance(user, sh(2026, 5, 1, 10)) == 0
    assert carried(user) == 10 * DCU
    # May 15: subscribe Basic; the 10 activate: 66.6 DCU.
    services.subscription_create(user=user, plan=plans["basic"], at=sh(2026, 5, 15, 9))
    assert balance(user, sh(2026, 5, 15, 9)) == 66_600_000
    assert carried(user) == 0
    # No use until Jun 13.
    process(sh(2026, 6, 13, 23))
    assert balance(user, sh(2026, 6, 13, 23)) == 66_600_000
    # Jun 14: the 10 expire; 56.6 inactive (carried).
    process(sh(2026, 6, 14, 10))
    assert balance(user, sh(2026, 6, 14, 10)) == 0
    assert carried(user) == 56_600_000
    assert [g.carry_until for g in selectors.carried_grants(user)] == [sh(2026, 7, 14, 9)]


def test_upgrade_mid_period_refreshes_earlier_compute_and_spends_lower_tier_first(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    spend(user, 5 * DCU, t0 + timedelta(days=3), "a")
    t1 = t0 + timedelta(days=10)

    sub = services.subscription_create(user=user, plan=plans["advanced"], at=t1)

    assert sub.state == SubscriptionState.ACTIVE
    assert sub.ends_at == t1 + timedelta(days=30)
    trial_grant = Grant.objects.get(user=user, tier=1)
    assert trial_grant.active_until == sub.ends_at  # refreshed
    assert trial_grant.may_carry  # may still carry
    assert balance(user, t1) == 515 * DCU
    # The lower tier's compute is spent first.
    spend(user, 16 * DCU, t1 + timedelta(hours=1), "b")
    trial_grant.refresh_from_db()
    assert trial_grant.remaining_micro == 0
    assert Grant.objects.get(user=user, tier=3).remaining_micro == 499 * DCU
    # GPU parallelism and storage follow the highest tier active now.
    assert selectors.gpu_parallelism(user, t1) == 8


def test_queued_renewal_cannot_be_used_before_it_starts(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    renewal = services.subscription_create(
        user=user, plan=plans["trial"], at=t0 + timedelta(days=5)
    )
    assert renewal.state == SubscriptionState.QUEUED
    assert renewal.starts_at == t0 + timedelta(days=30)
    assert balance(user, t0 + timedelta(days=5)) == 20 * DCU
    # Spending 25 DCU now leaves 5 DCU of debt, not 15 of the future period spent.
    result = spend(user, 25 * DCU, t0 + timedelta(days=6), "x")
    assert result.charged_micro == 20 * DCU
    assert result.debt_micro == 5 * DCU
    # When it starts, its grant pays the debt first.
    process(renewal.starts_at)
    assert balance(user, renewal.starts_at) == 15 * DCU
    assert selectors.account_for(user).debt_micro == 0


def test_queued_downgrade_starts_after_the_current_period(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["basic"], at=t0)
    spend(user, 50 * DCU, t0 + timedelta(days=1), "x")
    down = services.subscription_create(user=user, plan=plans["trial"], at=t0 + timedelta(days=2))
    assert down.state == SubscriptionState.QUEUED
    assert down.starts_at == t0 + timedelta(days=30)
    assert selectors.gpu_parallelism(user, t0 + timedelta(days=2)) == 4

    # At the handover the 6.6 left carry and are reactivated at once.
    process(down.starts_at)
    at = down.starts_at
    assert balance(user, at) == 26_600_000
    assert selectors.gpu_parallelism(user, at) == 2
    reactivated = Grant.objects.get(user=user, grant_class=GrantClass.CARRY_OVER)
    assert reactivated.state == GrantState.ACTIVE
    assert reactivated.may_carry is False
    assert reactivated.active_until == down.ends_at
    # ...and since it may not carry again, it expires when that period ends.
    process(down.ends_at)
    reactivated.refresh_from_db()
    assert reactivated.state == GrantState.EXPIRED
    assert carried(user) == 20 * DCU  # only the Trial grant carries


def test_upgrade_shifts_queued_periods_behind_the_new_one(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["basic"], at=t0)
    queued = services.subscription_create(user=user, plan=plans["trial"], at=t0)
    t1 = t0 + timedelta(days=7)
    new = services.subscription_create(user=user, plan=plans["advanced"], at=t1)
    queued.refresh_from_db()
    assert queued.starts_at == new.ends_at
    assert queued.ends_at == new.ends_at + timedelta(days=30)


def test_spending_order_carry_over_then_packs_then_plan(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    spend(user, 12 * DCU, t0 + timedelta(days=1), "a")  # 8 left
    process(t0 + timedelta(days=31))  # 8 carried
    t1 = t0 + timedelta(days=35)
    services.subscription_create(user=user, plan=plans["trial"], at=t1)  # 8 activated
    services.extension_pack_buy(user=user, plan=plans["extension"], source="o1", at=t1)
    spend(user, 9 * DCU, t1 + timedelta(hours=1), "b")
    by_class = {
        g.grant_class: g.remaining_micro for g in Grant.objects.filter(user=user, state="active")
    }
    assert by_class[GrantClass.CARRY_OVER] == 0
    assert by_class[GrantClass.EXTENSION] == 9 * DCU
    assert by_class[GrantClass.PLAN] == 20 * DCU


def test_carry_over_that_was_activated_never_carries_again(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    spend(user, 15 * DCU, t0 + timedelta(days=1), "a")  # 5 left
    process(t0 + timedelta(days=30))
    t1 = t0 + timedelta(days=40)
    services.subscription_create(user=user, plan=plans["trial"], at=t1)  # 5 active again
    process(t1 + timedelta(days=30))
    # Only the second Trial's 20 DCU carry; the activated 5 expired.
    assert carried(user) == 20 * DCU
    assert LedgerEntry.objects.filter(user=user, kind="expire", delta_micro=-5 * DCU).count() == 1


def test_carried_compute_expires_after_30_days_without_a_new_plan(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    process(t0 + timedelta(days=30))
    assert carried(user) == 20 * DCU
    process(t0 + timedelta(days=60) - timedelta(seconds=1))
    assert carried(user) == 20 * DCU
    process(t0 + timedelta(days=60))
    assert carried(user) == 0
    assert Grant.objects.filter(user=user, state=GrantState.EXPIRED).count() == 2


def test_extension_pack_needs_an_active_plan(user, plans):
    import pytest

    with pytest.raises(services.BillingError, match="needs an active plan"):
        services.extension_pack_buy(user=user, plan=plans["extension"], source="o1")


def test_processing_catches_up_after_days_down_and_is_idempotent(user, plans):
    t0 = sh(2026, 1, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    services.subscription_create(user=user, plan=plans["basic"], at=t0 + timedelta(days=1))
    # Beat was down for 100 days.
    late = t0 + timedelta(days=100)
    process(late)
    snapshot = list(
        LedgerEntry.objects.order_by("pk").values_list(
            "idempotency_key", "delta_micro", "created_at"
        )
    )
    process(late)
    process(late + timedelta(seconds=1))
    assert (
        list(
            LedgerEntry.objects.order_by("pk").values_list(
                "idempotency_key", "delta_micro", "created_at"
            )
        )
        == snapshot
    )
    # Entries carry the events' own times, not the catch-up time.
    assert max(e[2] for e in snapshot) < late
    assert not Subscription.objects.filter(user=user, state__in=["active", "queued"]).exists()
    assert selectors.active_balance_micro(user, late) == 0
