"""The local payment sandbox page: clearly not real money, and it pays through the notify endpoint.

The page POSTs a signed notification over real HTTP to the portal's own
notify URL, which the Django test client cannot serve. These unit tests
replace ``billing.sandbox.post_notification`` with a call of the notify view
through the test client, so the same signature checks and fulfilment run;
the real HTTP path is covered by tests/e2e/test_purchase.py.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from billing import alipay, payments, sandbox
from billing.models import Order, PaymentNotification

pytestmark = pytest.mark.usefixtures("frozen_now")


@pytest.fixture
def sandbox_on():
    alipay._load_keys.cache_clear()
    with override_settings(ALIPAY_SANDBOX=True, DEBUG=True, ALIPAY_APP_ID=""):
        yield
    alipay._load_keys.cache_clear()


@pytest.fixture
def notify_through_test_client(monkeypatch):
    """post_notification, served by the test client instead of a socket (see the module doc)."""
    posted = []

    def post(url: str, params: dict[str, str], timeout: float = 15) -> str:
        posted.append((url, params))
        path = url.removeprefix("http://testserver")
        return Client().post(path, params).content.decode().strip()

    monkeypatch.setattr(sandbox, "post_notification", post)
    return posted


def text(response) -> str:
    return " ".join(response.content.decode().split())


def test_the_sandbox_page_says_it_is_not_real_money(student_client, student, plans, sandbox_on):
    order = payments.order_create(user=student, plan=plans["trial"])

    response = student_client.get(f"/billing/sandbox/{order.out_trade_no}/")

    html = text(response)
    assert response.status_code == 200
    assert 'role="alert" data-testid="sandbox-banner"' in html
    assert "Local payment sandbox — not real money" in html
    assert order.out_trade_no in html
    assert "¥135.00" in html
    assert '<button type="submit" data-testid="sandbox-pay">Pay (simulated)</button>' in html
    assert 'href="/billing/orders/" data-testid="back-to-orders">Back to orders' in html


def test_paying_in_the_sandbox_fulfils_through_the_notify_endpoint(
    student_client, student, plans, sandbox_on, notify_through_test_client
):
    order = payments.order_create(user=student, plan=plans["trial"])

    response = student_client.post(f"/billing/sandbox/{order.out_trade_no}/")

    assert response.status_code == 302
    assert response["Location"] == f"/billing/orders/{order.out_trade_no}/return/"
    [(url, params)] = notify_through_test_client
    assert url == "http://testserver/billing/alipay/notify/"
    assert params["trade_status"] == "TRADE_SUCCESS"
    assert params["sign_type"] == "RSA2"
    order.refresh_from_db()
    assert order.state == "paid"
    assert order.subscription.plan == plans["trial"]
    notice = PaymentNotification.objects.get(order=order)
    assert (notice.source, notice.outcome) == ("notify", "fulfilled")
    assert "Payment received" in text(student_client.get(response["Location"]))


def test_paying_twice_in_the_sandbox_fulfils_once(
    student_client, student, plans, sandbox_on, notify_through_test_client
):
    order = payments.order_create(user=student, plan=plans["trial"])

    student_client.post(f"/billing/sandbox/{order.out_trade_no}/")
    again = student_client.post(f"/billing/sandbox/{order.out_trade_no}/")

    # The order is no longer pending: nothing is posted the second time.
    assert again.status_code == 200
    assert "This order is no longer awaiting payment." in text(again)
    assert len(notify_through_test_client) == 1
    assert Order.objects.get(pk=order.pk).state == "paid"


def test_a_refused_notification_shows_the_portals_answer(
    student_client, student, plans, sandbox_on, monkeypatch
):
    monkeypatch.setattr(sandbox, "post_notification", lambda url, params, timeout=15: "failure")
    order = payments.order_create(user=student, plan=plans["trial"])

    response = student_client.post(f"/billing/sandbox/{order.out_trade_no}/")

    assert response.status_code == 200
    assert "The portal did not accept the simulated payment: failure" in text(response)
    assert Order.objects.get(pk=order.pk).state == "pending"


def test_an_unreachable_notify_endpoint_is_shown_not_a_server_error(
    student_client, student, plans, sandbox_on, monkeypatch
):
    def unreachable(url, params, timeout=15):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(sandbox, "post_notification", unreachable)
    order = payments.order_create(user=student, plan=plans["trial"])

    response = student_client.post(f"/billing/sandbox/{order.out_trade_no}/")

    assert response.status_code == 200
    assert "Connection refused" in text(response)


def test_the_sandbox_is_a_404_when_it_is_off(student_client, student, plans):
    order = payments.order_create(user=student, plan=plans["trial"])

    assert student_client.get(f"/billing/sandbox/{order.out_trade_no}/").status_code == 404
    assert student_client.post(f"/billing/sandbox/{order.out_trade_no}/").status_code == 404
