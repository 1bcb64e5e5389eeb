"""Reconciliation by trade query: what a lost notification or an abandoned cashier leaves (SPEC §5).

The official SDK makes its real HTTP calls to a loopback gateway that signs
its answers (tests/billing/alipay_gateway.py); nothing of the SDK is
patched, so the answers' signatures are verified as in production.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from billing import payments, tasks
from billing.models import Order, PaymentNotification, Subscription
from tests.billing import alipay_gateway
from tests.billing.alipay_gateway import beijing, keypair, post_form

alipay = alipay_gateway.alipay
gateway = alipay_gateway.gateway

Outcome = PaymentNotification.Outcome


def order_made(user, plan, *, minutes_ago: float, channel=Order.Channel.PAGE) -> Order:
    return payments.order_create(
        user=user, plan=plan, channel=channel, at=timezone.now() - timedelta(minutes=minutes_ago)
    )


def test_a_paid_order_whose_notification_never_came_is_fulfilled_by_query(
    client, alipay, gateway, user, plans
):
    # given a buyer who paid at Alipay three minutes ago, and no notification
    order = order_made(user, plans["basic"], minutes_ago=3)
    gateway.pay(order)

    # when beat's task runs
    counts = tasks.reconcile_orders.delay().get()

    # then the order is paid and fulfilled, from a signed, verified answer
    assert counts == {"fulfilled": 1}
    order.refresh_from_db()
    assert order.state == Order.State.PAID
    assert order.trade_no == gateway.trades[order.out_trade_no]["trade_no"]
    assert Subscription.objects.get(user=user) == order.subscription
    assert order.notifications.get().source == "query"
    [call] = gateway.calls("alipay.trade.query")
    assert call["verified"] and call["biz"] == {"out_trade_no": order.out_trade_no}

    # and the notification that finally arrives is a duplicate
    late = alipay.notification(order, trade_no=order.trade_no)
    assert post_form(client, late).content == b"success"
    assert Subscription.objects.filter(user=user).count() == 1
    assert order.notifications.filter(outcome=Outcome.DUPLICATE).count() == 1


def test_reconciling_twice_fulfils_once(alipay, gateway, user, plans):
    order = order_made(user, plans["basic"], minutes_ago=3)
    gateway.pay(order)

    assert payments.order_reconcile(order_id=order.pk) == "fulfilled"
    assert payments.order_reconcile(order_id=order.pk) == Order.State.PAID
    assert payments.orders_reconcile_due() == {}

    assert Subscription.objects.filter(user=user).count() == 1
    assert len(gateway.calls("alipay.trade.query")) == 1


def test_orders_younger_than_two_minutes_are_left_to_their_notification(
    alipay, gateway, user, plans
):
    order = order_made(user, plans["basic"], minutes_ago=1)
    gateway.pay(order)

    assert payments.orders_reconcile_due() == {}
    assert gateway.requests == []


def test_an_unpaid_order_within_its_window_stays_pending(alipay, gateway, user, plans):
    order = order_made(user, plans["basic"], minutes_ago=5)
    gateway.pay(order, status="WAIT_BUYER_PAY")

    assert payments.orders_reconcile_due() == {"pending": 1}
    order.refresh_from_db()
    assert order.state == Order.State.PENDING


def test_an_unscanned_expired_order_is_closed(alipay, gateway, user, plans):
    # Alipay answers ACQ.TRADE_NOT_EXIST: nobody ever opened the cashier.
    order = order_made(user, plans["basic"], minutes_ago=settings.ALIPAY_PAYMENT_WINDOW_MINUTES + 1)

    assert payments.orders_reconcile_due() == {"closed": 1}

    order.refresh_from_db()
    assert order.state == Order.State.CLOSED
    assert gateway.calls("alipay.trade.close") == []


def test_an_expired_waiting_trade_is_closed_at_alipay_then_here(alipay, gateway, user, plans):
    order = order_made(user, plans["basic"], minutes_ago=settings.ALIPAY_PAYMENT_WINDOW_MINUTES + 1)
    gateway.pay(order, status="WAIT_BUYER_PAY")

    assert payments.orders_reconcile_due() == {"closed": 1}

    assert gateway.trades[order.out_trade_no]["trade_status"] == "TRADE_CLOSED"
    [close] = gateway.calls("alipay.trade.close")
    assert close["verified"] and close["biz"] == {"out_trade_no": order.out_trade_no}
    order.refresh_from_db()
    assert order.state == Order.State.CLOSED


def test_an_order_paid_after_its_window_is_still_fulfilled(alipay, gateway, user, plans):
    # Money taken by Alipay is never dropped, even past our window.
    order = order_made(user, plans["basic"], minutes_ago=settings.ALIPAY_PAYMENT_WINDOW_MINUTES + 5)
    gateway.pay(order)

    assert payments.orders_reconcile_due() == {"fulfilled": 1}
    assert gateway.calls("alipay.trade.close") == []


def test_a_paid_trade_of_another_amount_fulfils_nothing(alipay, gateway, user, plans):
    order = order_made(user, plans["basic"], minutes_ago=3)
    gateway.pay(order, amount_fen=1)

    assert payments.orders_reconcile_due() == {"error": 1}

    order.refresh_from_db()
    assert order.state == Order.State.PENDING
    assert not Subscription.objects.exists()
    assert order.notifications.get().detail == "query: wrong amount"


def test_an_answer_signed_by_another_key_is_not_believed(alipay, gateway, user, plans):
    order = order_made(user, plans["basic"], minutes_ago=3)
    gateway.pay(order)
    gateway.sign_with = keypair("stranger")

    assert payments.orders_reconcile_due() == {"error": 1}

    order.refresh_from_db()
    assert order.state == Order.State.PENDING
    assert not Subscription.objects.exists()


def test_an_unreachable_gateway_leaves_the_order_for_the_next_run(alipay, gateway, user, plans):
    order = order_made(user, plans["basic"], minutes_ago=settings.ALIPAY_PAYMENT_WINDOW_MINUTES + 1)
    gateway.pay(order)
    gateway.stop()

    # Not closed while Alipay cannot say whether it was paid.
    assert payments.orders_reconcile_due() == {"error": 1}
    order.refresh_from_db()
    assert order.state == Order.State.PENDING

    gateway.start()
    alipay_gateway._use(settings, {"ALIPAY_GATEWAY": gateway.url})
    assert payments.orders_reconcile_due() == {"fulfilled": 1}


def test_a_lost_answer_is_an_error_and_the_next_run_fulfils(alipay, gateway, user, plans):
    order = order_made(user, plans["basic"], minutes_ago=3)
    gateway.pay(order)
    gateway.lose_answer["alipay.trade.query"] = 1

    assert payments.orders_reconcile_due() == {"error": 1}
    assert payments.orders_reconcile_due() == {"fulfilled": 1}


def test_requests_signed_with_another_app_key_are_refused_by_the_gateway(
    alipay, gateway, user, plans, tmp_path
):
    # The gateway really checks the portal's signatures: a wrong app key fails.
    order = order_made(user, plans["basic"], minutes_ago=3)
    gateway.pay(order)
    wrong = tmp_path / "wrong_app_private.pem"
    wrong.write_text(keypair("stranger").private_pem)
    alipay_gateway._use(settings, {"ALIPAY_APP_PRIVATE_KEY_FILE": str(wrong)})

    assert payments.orders_reconcile_due() == {"error": 1}
    assert gateway.calls("alipay.trade.query")[0]["verified"] is False


def test_a_qr_order_gets_its_code_from_precreate_once(alipay, gateway, user, plans):
    order = payments.order_create(user=user, plan=plans["basic"], channel=Order.Channel.QR)
    urls = {"return_url": "http://t/r", "notify_url": "http://t/n", "sandbox_url": "http://t/s"}

    kind, code = payments.order_payment_target(order, **urls)
    again = payments.order_payment_target(Order.objects.get(pk=order.pk), **urls)

    assert kind == "qr" and code.startswith("https://qr.alipay.com/")
    assert again == ("qr", code)
    [call] = gateway.calls("alipay.trade.precreate")
    assert call["verified"]
    assert call["biz"]["out_trade_no"] == order.out_trade_no
    assert call["biz"]["total_amount"] == "365.00"
    # Alipay refuses payment when our window closes, however late the code is scanned.
    assert call["biz"]["time_expire"] == beijing(order.expires_at)
    assert "timeout_express" not in call["biz"]


def test_the_reconcile_task_is_scheduled_every_minute():
    [entry] = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "billing.reconcile_orders"
    ]
    assert entry["schedule"] == 60.0
    assert tasks.reconcile_orders.name == "billing.reconcile_orders"
    assert tasks.reconcile_orders.acks_late
