"""Refunds (SPEC §5, DESIGN rule 6): staff refund all or part of an order, exactly once.

Alipay is the loopback gateway of tests/billing/alipay_gateway.py: refunds
there are idempotent by ``out_request_no`` as at Alipay, and an answer can be
lost after the money moved. The portal takes back the refunded share of the
compute the order bought, never more than is still unspent, and a fully
refunded subscription ends now.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from aladdin.accounts.models import StaffAction
from billing import payments, services
from billing.choices import GrantClass, GrantState, LedgerKind, SubscriptionState
from billing.models import Grant, LedgerEntry, Order, Refund, Subscription
from tests.billing import alipay_gateway

from .conftest import sh

alipay = alipay_gateway.alipay
gateway = alipay_gateway.gateway

DCU = 1_000_000


def bought(user, plan, gateway, *, at=None) -> Order:
    """An order paid at Alipay and fulfilled here."""
    order = payments.order_create(user=user, plan=plan, at=at)
    gateway.pay(order)
    trade_no = gateway.trades[order.out_trade_no]["trade_no"]
    assert (
        payments.order_fulfil(
            order_id=order.pk, trade_no=trade_no, params={}, source="notify", at=at
        )
        == "fulfilled"
    )
    order.refresh_from_db()
    return order


def spend(user, micro: int, *, at=None) -> None:
    services.charge(
        user=user, kind="test", key=f"spend-{micro}", amount_micro=micro, reason="use", at=at
    )


def active_micro(user) -> int:
    return (
        Grant.objects.filter(user=user, state=GrantState.ACTIVE).aggregate(
            s=Sum("remaining_micro")
        )["s"]
        or 0
    )


def refund_entries(user):
    return LedgerEntry.objects.filter(user=user, kind=LedgerKind.REFUND)


def refunded_micro(user) -> int:
    return -(refund_entries(user).aggregate(s=Sum("delta_micro"))["s"] or 0)


def test_a_full_refund_retried_ten_times_reverses_once(alipay, gateway, user, staff, plans):
    # given a Basic period (56.6 DCU) with 6.6 DCU spent
    order = bought(user, plans["basic"], gateway)
    spend(user, 6_600_000)
    refund = payments.refund_create(
        order=order, amount_fen=order.price_fen, reason="customer asked", actor=staff
    )
    # and an Alipay whose first three answers are lost after the money moved
    gateway.lose_answer["alipay.trade.refund"] = 3

    # when staff retry ten times
    errors = 0
    now = timezone.now()
    for _ in range(10):
        try:
            payments.refund_execute(refund_id=refund.pk, at=now)
        except services.BillingError:
            errors += 1

    # then the money moved once at Alipay, under one out_request_no
    assert errors == 3
    calls = gateway.calls("alipay.trade.refund")
    assert len(calls) == 4 and all(c["verified"] for c in calls)
    assert {c["biz"]["out_request_no"] for c in calls} == {refund.out_request_no}
    assert {c["biz"]["refund_amount"] for c in calls} == {"365.00"}
    assert gateway.refunded_fen(order.out_trade_no) == order.price_fen
    # and the unspent 50 DCU was taken back once
    refund.refresh_from_db()
    assert refund.state == Refund.State.SUCCEEDED
    assert refund.error == ""
    assert refund.reversed_micro == 50 * DCU
    assert refunded_micro(user) == 50 * DCU
    assert refund_entries(user).count() == 1
    assert active_micro(user) == 0
    # and the order is refunded and its subscription ends now
    order.refresh_from_db()
    assert order.state == Order.State.REFUNDED
    assert order.refunded_fen == order.price_fen
    subscription = Subscription.objects.get(pk=order.subscription_id)
    assert subscription.state == SubscriptionState.ENDED
    assert subscription.ends_at == now


def test_a_failed_attempt_records_the_error_and_changes_nothing(
    alipay, gateway, user, staff, plans
):
    order = bought(user, plans["basic"], gateway)
    refund = payments.refund_create(order=order, amount_fen=100, reason="r", actor=staff)
    del gateway.trades[order.out_trade_no]  # Alipay: ACQ.TRADE_NOT_EXIST

    with pytest.raises(services.BillingError):
        payments.refund_execute(refund_id=refund.pk)

    refund.refresh_from_db()
    assert refund.state == Refund.State.REQUESTED
    assert "交易不存在" in refund.error
    assert not refund_entries(user).exists()
    order.refresh_from_db()
    assert order.state == Order.State.PAID and order.refunded_fen == 0


def test_a_partial_refund_reverses_the_proportional_share(alipay, gateway, user, staff, plans):
    order = bought(user, plans["basic"], gateway)
    refund = payments.refund_create(order=order, amount_fen=18_250, reason="half", actor=staff)

    payments.refund_execute(refund_id=refund.pk)

    # Half the price: half of 56.6 DCU.
    assert refunded_micro(user) == 28_300_000
    assert active_micro(user) == 28_300_000
    order.refresh_from_db()
    assert order.state == Order.State.PARTLY_REFUNDED
    assert order.refunded_fen == 18_250
    assert Subscription.objects.get(pk=order.subscription_id).state == SubscriptionState.ACTIVE
    assert gateway.refunded_fen(order.out_trade_no) == 18_250


def test_a_partial_refund_takes_back_no_more_than_is_unspent(alipay, gateway, user, staff, plans):
    order = bought(user, plans["basic"], gateway)
    spend(user, 40 * DCU)
    refund = payments.refund_create(order=order, amount_fen=18_250, reason="half", actor=staff)

    refund = payments.refund_execute(refund_id=refund.pk)

    # The share is 28.3 DCU but only 16.6 DCU is left.
    assert refund.reversed_micro == 16_600_000
    assert refunded_micro(user) == 16_600_000
    assert active_micro(user) == 0


def test_partial_refunds_that_add_up_to_the_price_end_the_subscription(
    alipay, gateway, user, staff, plans
):
    order = bought(user, plans["basic"], gateway)
    first = payments.refund_create(order=order, amount_fen=10_000, reason="part", actor=staff)
    payments.refund_execute(refund_id=first.pk)
    second = payments.refund_create(order=order, amount_fen=26_500, reason="rest", actor=staff)

    payments.refund_execute(refund_id=second.pk)

    assert first.out_request_no != second.out_request_no
    order.refresh_from_db()
    assert order.state == Order.State.REFUNDED
    assert Subscription.objects.get(pk=order.subscription_id).state == SubscriptionState.ENDED
    assert active_micro(user) == 0
    assert gateway.refunded_fen(order.out_trade_no) == order.price_fen


def test_a_pack_refund_takes_back_the_pack_only(alipay, gateway, user, staff, plans):
    bought(user, plans["trial"], gateway)
    pack = bought(user, plans["extension"], gateway)
    refund = payments.refund_create(order=pack, amount_fen=pack.price_fen, reason="r", actor=staff)

    payments.refund_execute(refund_id=refund.pk)

    [entry] = refund_entries(user)
    assert entry.grant.grant_class == GrantClass.EXTENSION
    assert entry.delta_micro == -10 * DCU
    # The Trial period's 20 DCU is untouched and still running.
    assert active_micro(user) == 20 * DCU
    assert Subscription.objects.get(user=user).state == SubscriptionState.ACTIVE


def test_a_refund_follows_the_compute_into_its_carry_over(alipay, gateway, user, staff, plans):
    # Trial bought on Apr 1, 5 DCU spent; on May 1 the other 15 DCU carried over.
    order = bought(user, plans["trial"], gateway, at=sh(2026, 4, 1, 9))
    spend(user, 5 * DCU, at=sh(2026, 4, 2))
    services.billing_process_due(as_of=sh(2026, 5, 1, 10))
    assert Grant.objects.get(user=user, state=GrantState.CARRIED).remaining_micro == 15 * DCU
    refund = payments.refund_create(
        order=order, amount_fen=order.price_fen, reason="r", actor=staff
    )

    payments.refund_execute(refund_id=refund.pk, at=sh(2026, 5, 2))

    assert refunded_micro(user) == 15 * DCU
    assert Grant.objects.get(user=user, state=GrantState.CARRIED).remaining_micro == 0


def test_a_queued_period_refunded_in_full_never_starts(alipay, gateway, user, staff, plans):
    bought(user, plans["basic"], gateway)
    renewal = bought(user, plans["basic"], gateway)
    assert renewal.subscription.state == SubscriptionState.QUEUED

    with pytest.raises(services.BillingError):
        payments.refund_create(order=renewal, amount_fen=100, reason="part", actor=staff)
    refund = payments.refund_create(
        order=renewal, amount_fen=renewal.price_fen, reason="r", actor=staff
    )
    payments.refund_execute(refund_id=refund.pk)

    assert Subscription.objects.get(pk=renewal.subscription_id).state == SubscriptionState.ENDED
    services.billing_process_due(as_of=timezone.now() + timedelta(days=31))
    # After the first period only its carry-over remains; the refunded one granted nothing.
    assert Grant.objects.filter(user=user, grant_class=GrantClass.PLAN).count() == 1


def test_refunds_are_checked_before_anything_happens(alipay, gateway, user, staff, plans):
    pending = payments.order_create(user=user, plan=plans["basic"])
    with pytest.raises(services.BillingError):
        payments.refund_create(order=pending, amount_fen=100, reason="r", actor=staff)

    order = bought(user, plans["basic"], gateway)
    with pytest.raises(services.BillingError):
        payments.refund_create(order=order, amount_fen=100, reason="  ", actor=staff)
    with pytest.raises(services.BillingError):
        payments.refund_create(order=order, amount_fen=order.price_fen + 1, reason="r", actor=staff)
    with pytest.raises(services.BillingError):
        payments.refund_create(order=order, amount_fen=0, reason="r", actor=staff)
    # A requested refund counts against what is left.
    payments.refund_create(order=order, amount_fen=order.price_fen - 100, reason="r", actor=staff)
    with pytest.raises(services.BillingError):
        payments.refund_create(order=order, amount_fen=101, reason="r", actor=staff)

    assert gateway.calls("alipay.trade.refund") == []
    assert StaffAction.objects.filter(action="refund", target_user=user).count() == 1


def test_a_refund_request_repeated_with_its_key_refunds_once(alipay, gateway, user, staff, plans):
    # given a refund made with a request key (the back office's confirmation page)
    order = bought(user, plans["basic"], gateway)
    first = payments.order_refund(
        order=order, amount_fen=1_000, reason="goodwill", actor=staff, request_key="page-1"
    )

    # when the same request comes again (a double click, a resent POST)
    with pytest.raises(payments.RefundAlreadyRequested) as refused:
        payments.order_refund(
            order=order, amount_fen=1_000, reason="goodwill", actor=staff, request_key="page-1"
        )

    # then it is refused by the service, naming the first refund, and nothing moved twice
    assert refused.value.refund == first
    assert Refund.objects.filter(order=order).count() == 1
    assert len(gateway.calls("alipay.trade.refund")) == 1
    assert refund_entries(user).count() == 1
    assert StaffAction.objects.filter(action="refund", target_user=user).count() == 1
    # and another request, with another key, is a refund of its own
    payments.order_refund(
        order=order, amount_fen=1_000, reason="goodwill", actor=staff, request_key="page-2"
    )
    assert Refund.objects.filter(order=order).count() == 2
