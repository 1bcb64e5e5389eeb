"""The local payment sandbox (billing/sandbox.py): development only, never trusted in production.

It stands in for Alipay on one machine: its own "Alipay" key under var/
signs the notification, which travels over real HTTP to the real notify
endpoint and meets the same checks as production. The sandbox page itself
is tested in test_sandbox_pay.py.
"""

from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from django.utils import timezone

from billing import alipay as alipay_module
from billing import payments, sandbox
from billing.models import Order, Refund, Subscription
from tests.billing import alipay_gateway
from tests.billing.alipay_gateway import NOTIFY_PATH, AlipayTester, settings_error


@pytest.fixture
def sandbox_on(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    alipay_gateway._use(
        settings,
        {
            "ALIPAY_SANDBOX": True,
            "ALIPAY_APP_ID": "",
            "ALIPAY_SELLER_ID": "",
            "ALIPAY_APP_PRIVATE_KEY_FILE": "",
            "ALIPAY_PUBLIC_KEY_FILE": "",
        },
    )
    yield settings.VAR_DIR / "alipay-sandbox"
    alipay_module._load_keys.cache_clear()


def test_the_sandbox_keys_are_made_once_and_kept_under_var(sandbox_on):
    first = alipay_module.sandbox_keys()
    second = alipay_module.sandbox_keys()

    assert first == second
    assert sorted(p.name for p in sandbox_on.iterdir()) == [
        "alipay_private.pem",
        "alipay_public.pem",
        "app_private.pem",
        "app_public.pem",
    ]
    for name in ("alipay_private.pem", "app_private.pem"):
        assert stat.S_IMODE((sandbox_on / name).stat().st_mode) == 0o600
    keys = alipay_module.keys()
    assert keys.sandbox
    assert keys.alipay_public_key_pem == first["alipay_public"]


@pytest.mark.django_db(transaction=True)
def test_a_sandbox_payment_reaches_the_real_notify_url_over_http(
    sandbox_on, live_server, user, plans
):
    order = payments.order_create(user=user, plan=plans["basic"])
    params = sandbox.notification_for(order)

    reply = sandbox.post_notification(live_server.url + NOTIFY_PATH, params)

    assert reply == "success"
    order.refresh_from_db()
    assert order.state == Order.State.PAID
    assert Subscription.objects.get(user=user) == order.subscription
    assert params["sign_type"] == "RSA2"
    assert params["total_amount"] == "365.00"


def test_a_sandbox_notification_is_refused_by_a_portal_with_real_keys(
    sandbox_on, settings, tmp_path, user, plans
):
    order = payments.order_create(user=user, plan=plans["basic"])
    params = sandbox.notification_for(order)
    tester = AlipayTester(tmp_path / "keys", app_id=params["app_id"], seller_id=params["seller_id"])
    alipay_gateway._use(settings, tester.settings())

    assert payments.payment_handle_notification(params) is False

    order.refresh_from_db()
    assert order.state == Order.State.PENDING


def test_the_sandbox_signs_nothing_when_it_is_off(alipay_off, user, plans):
    order = payments.order_create(user=user, plan=plans["basic"])

    with pytest.raises(RuntimeError):
        sandbox.notification_for(order)


@pytest.fixture
def alipay_off(settings):
    alipay_gateway._use(settings, {"ALIPAY_SANDBOX": False})
    yield
    alipay_module._load_keys.cache_clear()


def test_the_settings_refuse_the_sandbox_without_debug(tmp_path):
    error = settings_error(tmp_path, ALIPAY_SANDBOX="1", DEBUG="0")

    assert "ImproperlyConfigured" in error and "DEBUG" in error


def test_the_settings_refuse_the_sandbox_together_with_real_keys(tmp_path):
    tester = AlipayTester(tmp_path / "keys")

    error = settings_error(tmp_path, ALIPAY_SANDBOX="1", DEBUG="1", **tester.env())

    assert "ImproperlyConfigured" in error and "ALIPAY_APP_ID" in error


def test_in_the_sandbox_reconciliation_only_closes_expired_orders(sandbox_on, user, plans):
    window = timedelta(minutes=16)
    expired = payments.order_create(user=user, plan=plans["basic"], at=timezone.now() - window)
    recent = payments.order_create(
        user=user, plan=plans["basic"], at=timezone.now() - timedelta(minutes=3)
    )

    assert payments.orders_reconcile_due() == {"closed": 1, "pending": 1}

    expired.refresh_from_db()
    recent.refresh_from_db()
    assert expired.state == Order.State.CLOSED
    assert recent.state == Order.State.PENDING


def test_in_the_sandbox_a_refund_needs_no_gateway(sandbox_on, client, make_user, user, plans):
    order = payments.order_create(user=user, plan=plans["trial"])
    assert payments.payment_handle_notification(sandbox.notification_for(order))
    order.refresh_from_db()
    refund = payments.refund_create(
        order=order, amount_fen=order.price_fen, reason="r", actor=make_user(is_staff=True)
    )

    refund = payments.refund_execute(refund_id=refund.pk)

    assert refund.state == Refund.State.SUCCEEDED
    assert refund.reversed_micro == plans["trial"].dcu_micro
