"""Charges: idempotency, debt, settlement, the arrears cap."""

from __future__ import annotations

from datetime import timedelta

from billing import selectors, services
from billing.models import ArrearsReview, LedgerEntry

from .conftest import sh

DCU = 1_000_000


def test_the_same_charge_key_is_applied_once(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    first = services.charge(
        user=user, kind="gpu", key="job-1:0:1", amount_micro=DCU, reason="r", at=t0
    )
    again = services.charge(
        user=user, kind="gpu", key="job-1:0:1", amount_micro=DCU, reason="r", at=t0
    )
    assert not first.replayed and again.replayed
    assert again.charged_micro == first.charged_micro == DCU
    assert selectors.active_balance_micro(user, t0) == 19 * DCU
    # Keys are namespaced by kind.
    services.charge(user=user, kind="storage", key="job-1:0:1", amount_micro=DCU, reason="r", at=t0)
    assert selectors.active_balance_micro(user, t0) == 18 * DCU


def test_a_charge_beyond_the_balance_becomes_debt_and_reports_exhaustion(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    result = services.charge(
        user=user, kind="gpu", key="k", amount_micro=21 * DCU, reason="r", at=t0
    )
    assert result.charged_micro == 20 * DCU
    assert result.debt_micro == DCU
    assert result.exhausted
    assert selectors.account_for(user).debt_micro == DCU


def test_arrears_are_settled_by_the_next_grant(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.storage_fee_charge(user=user, day=t0.date(), amount_micro=3 * DCU, reason="storage")
    assert selectors.account_for(user).debt_micro == 3 * DCU
    services.subscription_create(user=user, plan=plans["trial"], at=t0 + timedelta(days=1))
    assert selectors.account_for(user).debt_micro == 0
    assert selectors.active_balance_micro(user, t0 + timedelta(days=1)) == 17 * DCU


def test_arrears_beyond_10_dcu_are_covered_by_an_automatic_voucher(user, plans):
    t0 = sh(2026, 3, 1, 8)
    for day in range(4):
        services.charge(
            user=user, kind="storage", key=f"d{day}", amount_micro=5 * DCU, reason="storage", at=t0
        )
    account = selectors.account_for(user)
    assert account.debt_micro == 10 * DCU  # the user bears 10 DCU, never more
    vouchers = LedgerEntry.objects.filter(user=user, kind="voucher")
    assert sum(v.delta_micro for v in vouchers) == 10 * DCU
    # The account entered the staff cleanup queue when arrears reached 10 DCU.
    assert ArrearsReview.objects.filter(user=user, decision="pending").count() == 1


def test_ledger_sum_equals_remaining_minus_debt(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    services.charge(user=user, kind="gpu", key="a", amount_micro=25 * DCU, reason="r", at=t0)
    services.subscription_create(user=user, plan=plans["basic"], at=t0 + timedelta(days=1))
    services.billing_process_due(as_of=t0 + timedelta(days=90))
    ledger = sum(LedgerEntry.objects.filter(user=user).values_list("delta_micro", flat=True))
    remaining = sum(g.remaining_micro for g in user.grants.all())
    assert ledger == remaining - selectors.account_for(user).debt_micro


def test_forfeit_clears_every_grant_active_or_carried(user, plans):
    t0 = sh(2026, 3, 1, 8)
    services.subscription_create(user=user, plan=plans["trial"], at=t0)
    services.billing_process_due(as_of=t0 + timedelta(days=30))
    services.subscription_create(user=user, plan=plans["trial"], at=t0 + timedelta(days=60))
    services.subscription_create(user=user, plan=plans["trial"], at=t0 + timedelta(days=61))
    cleared = services.billing_forfeit_all(
        user=user, reason="mining", at=t0 + timedelta(days=61)
    ).cleared_micro
    assert cleared == 20 * DCU  # the first period's carry-over expired on day 60
    assert selectors.active_balance_micro(user, t0 + timedelta(days=61)) == 0
    assert not user.subscriptions.filter(state__in=["active", "queued"]).exists()
