from datetime import datetime, timedelta

import pytest

from billing.choices import GrantClass, GrantState
from billing.models import Account, Grant
from billing.selectors import account_for, active_balance_micro, carried_grants, spending_order

NOW = datetime.fromisoformat("2026-05-15T10:00:00+08:00")


def _grant(user, grant_class, *, remaining, until_days, tier=None, state=GrantState.ACTIVE, **kw):
    return Grant.objects.create(
        user=user,
        grant_class=grant_class,
        tier=tier,
        granted_micro=remaining,
        remaining_micro=remaining,
        state=state,
        active_until=NOW + timedelta(days=until_days),
        **kw,
    )


def test_account_for_creates_one_account_per_user(user):
    first = account_for(user)
    assert account_for(user) == first
    assert Account.objects.filter(user=user).count() == 1
    assert first.debt_micro == 0


def test_compute_is_spent_carry_over_then_extensions_then_plans_by_tier(user):
    # given grants created in an order unlike the spending order
    advanced = _grant(user, GrantClass.PLAN, tier=3, remaining=500_000_000, until_days=10)
    trial = _grant(user, GrantClass.PLAN, tier=1, remaining=20_000_000, until_days=30)
    late_pack = _grant(user, GrantClass.EXTENSION, remaining=10_000_000, until_days=25)
    early_pack = _grant(user, GrantClass.EXTENSION, remaining=10_000_000, until_days=5)
    carry_over = _grant(
        user, GrantClass.CARRY_OVER, remaining=10_000_000, until_days=30, may_carry=False
    )
    # when / then
    assert list(spending_order(user, NOW)) == [carry_over, early_pack, late_pack, trial, advanced]


def test_grants_that_expire_at_the_same_moment_are_spent_in_creation_order(user):
    first = _grant(user, GrantClass.EXTENSION, remaining=1, until_days=5)
    second = _grant(user, GrantClass.EXTENSION, remaining=1, until_days=5)
    assert list(spending_order(user, NOW)) == [first, second]


def test_spending_order_leaves_out_inactive_grants_and_other_users(user, other_user):
    spendable = _grant(user, GrantClass.PLAN, tier=2, remaining=5, until_days=5)
    _grant(user, GrantClass.PLAN, tier=1, remaining=5, until_days=-1)
    _grant(user, GrantClass.PLAN, tier=1, remaining=5, until_days=5, state=GrantState.CARRIED)
    _grant(other_user, GrantClass.EXTENSION, remaining=5, until_days=5)
    assert list(spending_order(user, NOW)) == [spendable]


def test_active_balance_excludes_carried_expired_and_lapsed_grants(user, other_user):
    _grant(user, GrantClass.PLAN, tier=2, remaining=56_600_000, until_days=30)
    _grant(user, GrantClass.EXTENSION, remaining=10_000_000, until_days=30)
    _grant(
        user,
        GrantClass.PLAN,
        tier=1,
        remaining=10_000_000,
        until_days=-1,
        state=GrantState.CARRIED,
        carry_until=NOW + timedelta(days=20),
    )
    _grant(user, GrantClass.PLAN, tier=1, remaining=3_000_000, until_days=-40, state="expired")
    # still marked active, but its active_until has passed: not spendable
    _grant(user, GrantClass.EXTENSION, remaining=7_000_000, until_days=0)
    _grant(other_user, GrantClass.PLAN, tier=3, remaining=500_000_000, until_days=30)

    assert active_balance_micro(user, NOW) == 66_600_000


def test_active_balance_is_zero_without_grants(user):
    assert active_balance_micro(user, NOW) == 0


def test_carried_grants_are_listed_by_when_they_lapse(user):
    later = _grant(
        user,
        GrantClass.PLAN,
        tier=2,
        remaining=1,
        until_days=-1,
        state=GrantState.CARRIED,
        carry_until=NOW + timedelta(days=29),
    )
    sooner = _grant(
        user,
        GrantClass.EXTENSION,
        remaining=1,
        until_days=-10,
        state=GrantState.CARRIED,
        carry_until=NOW + timedelta(days=3),
    )
    _grant(user, GrantClass.PLAN, tier=2, remaining=1, until_days=5)
    assert list(carried_grants(user)) == [sooner, later]


@pytest.mark.parametrize("at_offset_days", [0, 29])
def test_a_grant_is_spendable_until_just_before_active_until(user, at_offset_days):
    _grant(user, GrantClass.PLAN, tier=1, remaining=20_000_000, until_days=30)
    at = NOW + timedelta(days=at_offset_days)
    assert active_balance_micro(user, at) == 20_000_000
    assert active_balance_micro(user, NOW + timedelta(days=30)) == 0
