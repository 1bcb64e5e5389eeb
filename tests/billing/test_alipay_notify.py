"""Alipay's asynchronous notifications at /billing/alipay/notify/ (SPEC §5, DESIGN rule 6).

The portal trusts only RSA2 (SHA-256) signatures by the configured Alipay
public key, for its own app and seller, of the order's exact amount; it
fulfils an order once whatever arrives twice, late or out of order, and
answers exactly ``success`` to whatever it handled so Alipay stops resending.
Keys are made in the test run (tests/billing/alipay_gateway.py). The same
notification replayed 100 times, 10 of them at once, against the running
portal is in test_alipay_keys.py (concurrency needs a file database).
"""

from __future__ import annotations

import rsa
from alipay.aop.api.util.SignatureUtils import verify_with_rsa

from billing import alipay as alipay_module
from billing import payments
from billing.choices import GrantClass, SubscriptionState
from billing.models import Grant, Order, PaymentNotification, Subscription
from tests.billing import alipay_gateway
from tests.billing.alipay_gateway import keypair, post_form

alipay = alipay_gateway.alipay

Outcome = PaymentNotification.Outcome


def order_for(user, plan) -> Order:
    return payments.order_create(user=user, plan=plan)


def assert_not_fulfilled(order: Order) -> None:
    order.refresh_from_db()
    assert order.state == Order.State.PENDING
    assert order.paid_at is None and order.subscription_id is None and order.grant_id is None
    assert not Subscription.objects.filter(user=order.user).exists()
    assert not Grant.objects.filter(user=order.user).exists()


def test_a_signed_notification_fulfils_the_order_and_the_reply_is_exactly_success(
    client, alipay, user, plans
):
    order = order_for(user, plans["basic"])
    params = alipay.notification(order)

    response = post_form(client, params)

    assert response.status_code == 200
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.state == Order.State.PAID
    assert order.trade_no == params["trade_no"]
    subscription = Subscription.objects.get(user=user)
    assert order.subscription == subscription
    assert subscription.state == SubscriptionState.ACTIVE
    assert subscription.source == order.out_trade_no
    grant = Grant.objects.get(subscription=subscription)
    assert grant.granted_micro == plans["basic"].dcu_micro
    note = PaymentNotification.objects.get(order=order)
    assert note.outcome == Outcome.FULFILLED
    assert "sign" not in note.params


def test_an_extension_pack_order_grants_the_pack(client, alipay, user, plans):
    paid = order_for(user, plans["trial"])
    assert post_form(client, alipay.notification(paid)).content == b"success"
    pack = order_for(user, plans["extension"])

    assert post_form(client, alipay.notification(pack)).content == b"success"

    pack.refresh_from_db()
    assert pack.state == Order.State.PAID
    assert pack.grant.grant_class == GrantClass.EXTENSION
    assert pack.grant.granted_micro == plans["extension"].dcu_micro


def test_replays_fulfil_once_and_every_reply_is_success(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    params = alipay.notification(order)

    replies = [post_form(client, params).content for _ in range(20)]

    assert replies == [b"success"] * 20
    assert Subscription.objects.filter(user=user).count() == 1
    assert Grant.objects.filter(user=user).count() == 1
    outcomes = list(order.notifications.values_list("outcome", flat=True))
    assert sorted(outcomes) == sorted([Outcome.FULFILLED] + [Outcome.DUPLICATE] * 19)


def test_trade_success_then_trade_finished_fulfils_once(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    success = alipay.notification(order, trade_status="TRADE_SUCCESS")
    # Alipay sends TRADE_FINISHED when the refund period is over, same trade.
    finished = alipay.notification(
        order, trade_status="TRADE_FINISHED", trade_no=success["trade_no"]
    )

    assert post_form(client, success).content == b"success"
    assert post_form(client, finished).content == b"success"

    assert Subscription.objects.filter(user=user).count() == 1
    assert Grant.objects.filter(user=user).count() == 1
    assert order.notifications.get(trade_status="TRADE_FINISHED").outcome == Outcome.DUPLICATE


def test_trade_finished_alone_fulfils(client, alipay, user, plans):
    order = order_for(user, plans["trial"])

    assert post_form(client, alipay.notification(order, trade_status="TRADE_FINISHED")).content == (
        b"success"
    )

    order.refresh_from_db()
    assert order.state == Order.State.PAID


def test_a_waiting_notification_is_acknowledged_and_changes_nothing(client, alipay, user, plans):
    order = order_for(user, plans["basic"])

    response = post_form(client, alipay.notification(order, trade_status="WAIT_BUYER_PAY"))

    assert response.content == b"success"
    assert_not_fulfilled(order)
    assert order.notifications.get().outcome == Outcome.IGNORED


def test_a_trade_closed_notification_closes_the_pending_order(client, alipay, user, plans):
    order = order_for(user, plans["basic"])

    response = post_form(client, alipay.notification(order, trade_status="TRADE_CLOSED"))

    assert response.content == b"success"
    order.refresh_from_db()
    assert order.state == Order.State.CLOSED
    assert order.closed_at is not None


def test_a_payment_after_close_is_flagged_for_support_and_fulfils_nothing(
    client, alipay, user, plans
):
    order = order_for(user, plans["basic"])
    assert payments.order_close(order_id=order.pk, reason="expired")
    params = alipay.notification(order)

    response = post_form(client, params)

    # Handled (Alipay must stop resending), but nothing granted: support decides.
    assert response.content == b"success"
    order.refresh_from_db()
    assert order.state == Order.State.CLOSED
    assert order.needs_support
    assert params["trade_no"] in order.support_note
    assert not Subscription.objects.filter(user=user).exists()
    assert order.notifications.get().outcome == Outcome.FLAGGED


def test_a_refund_notice_after_payment_grants_nothing_again(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    paid = alipay.notification(order)
    assert post_form(client, paid).content == b"success"
    refund_notice = alipay.notification(
        order,
        trade_no=paid["trade_no"],
        refund_fee="365.00",
        gmt_refund="2026-04-01 10:00:00.000",
        out_biz_no=order.out_trade_no + "R1",
    )

    assert post_form(client, refund_notice).content == b"success"

    assert Grant.objects.filter(user=user).count() == 1
    assert order.notifications.filter(outcome=Outcome.IGNORED).count() == 1


# --- what is refused: nothing fulfilled, and the reply is not "success" ------------------


def _refused(client, order, params, detail: str) -> None:
    response = post_form(client, params)
    assert response.status_code == 200
    assert response.content != b"success"
    assert_not_fulfilled(order)
    note = PaymentNotification.objects.latest("pk")
    assert note.outcome == Outcome.REJECTED
    assert note.detail == detail


def test_a_tampered_amount_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    params = alipay.notification(order, total_amount="0.01")
    params["total_amount"] = "365.00"  # "fixed" after signing

    _refused(client, order, params, "bad signature")


def test_a_tampered_status_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    params = alipay.notification(order, trade_status="WAIT_BUYER_PAY")
    params["trade_status"] = "TRADE_SUCCESS"

    _refused(client, order, params, "bad signature")


def test_a_notification_moved_to_another_order_is_refused(client, alipay, user, plans):
    cheap = order_for(user, plans["trial"])
    dear = order_for(user, plans["advanced"])
    params = alipay.notification(cheap, amount_fen=dear.price_fen)
    params["out_trade_no"] = dear.out_trade_no

    _refused(client, dear, params, "bad signature")


def test_an_added_parameter_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    params = alipay.notification(order)
    params["passback_params"] = "x"

    _refused(client, order, params, "bad signature")


def test_the_wrong_amount_is_refused_even_when_signed(client, alipay, user, plans):
    order = order_for(user, plans["basic"])

    _refused(client, order, alipay.notification(order, amount_fen=1), "wrong amount")


def test_another_app_id_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])

    _refused(client, order, alipay.notification(order, app_id="2021999999999999"), "wrong app_id")


def test_another_seller_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])

    _refused(
        client, order, alipay.notification(order, seller_id="2088999999999999"), "wrong seller_id"
    )


def test_a_sha1_signature_is_refused_though_the_sdk_would_accept_it(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    params = alipay.notification(order, hash_method="SHA-1")
    # Why we verify ourselves (DESIGN, note on RSA2): the SDK's helper takes it.
    assert verify_with_rsa(
        alipay.alipay.public_pem,
        alipay_module.signed_content(params).encode(),
        params["sign"],
    )

    _refused(client, order, params, "bad signature")


def test_an_rsa_sign_type_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])

    _refused(client, order, alipay.notification(order, sign_type="RSA"), "bad signature")


def test_a_signature_by_another_key_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])

    _refused(client, order, alipay.notification(order, key=keypair("stranger")), "bad signature")


def test_a_missing_or_garbled_signature_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    unsigned = alipay.notification(order)
    del unsigned["sign"]
    _refused(client, order, unsigned, "bad signature")

    garbled = alipay.notification(order)
    garbled["sign"] = "not base64!"
    _refused(client, order, garbled, "bad signature")


def test_an_unknown_order_is_refused(client, alipay, user, plans):
    order = order_for(user, plans["basic"])
    params = alipay.notification(out_trade_no="ALD20260401" + "0" * 20, amount_fen=order.price_fen)

    response = post_form(client, params)

    assert response.content != b"success"
    note = PaymentNotification.objects.get()
    assert note.outcome == Outcome.REJECTED and note.detail == "unknown order"
    assert not Subscription.objects.exists()


def test_the_signed_text_is_utf8_of_the_sorted_parameters(alipay):
    # A subject in Chinese and a JSON-valued parameter: the bytes signed must
    # be exactly Alipay's, or real notifications would all be refused.
    params = {"subject": "技术服务费", "b": '[{"a":"1"}]', "sign_type": "RSA2"}
    expected = 'b=[{"a":"1"}]&subject=技术服务费'.encode()
    signature = alipay.sign(params)

    assert rsa.verify(expected, alipay_module.base64.b64decode(signature), alipay.alipay.public)
    assert alipay_module.verify_notification(
        {**params, "sign": signature}, alipay.alipay.public_pem
    )


def test_the_notify_url_takes_only_post(client):
    assert client.get("/billing/alipay/notify/").status_code == 405
