"""Checkout, payment, return, orders and invoice pages (SPEC §5), each scoped to its owner."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.base import ContentFile
from django.test import override_settings

from billing import alipay, payments
from billing.models import Invoice, Order, PaymentNotification

from .conftest import NOW

pytestmark = pytest.mark.usefixtures("frozen_now")
PDF = b"%PDF-1.4\n% an issued invoice\n"


@pytest.fixture
def sandbox():
    """The local payment sandbox, as `make run` configures it (keys cached per settings)."""
    alipay._load_keys.cache_clear()
    with override_settings(ALIPAY_SANDBOX=True, DEBUG=True, ALIPAY_APP_ID=""):
        yield
    alipay._load_keys.cache_clear()


@pytest.fixture
def production(tmp_path):
    """Real Alipay settings with locally generated keys: no gateway is called for page pay."""
    app_private, _app_public = alipay.generate_keypair()
    _alipay_private, alipay_public = alipay.generate_keypair()
    (tmp_path / "app.pem").write_text(app_private)
    (tmp_path / "alipay.pem").write_text(alipay_public)
    alipay._load_keys.cache_clear()
    with override_settings(
        ALIPAY_SANDBOX=False,
        ALIPAY_APP_ID="2021000000000001",
        ALIPAY_SELLER_ID="2088000000000001",
        ALIPAY_GATEWAY="https://openapi.alipay.com/gateway.do",
        ALIPAY_APP_PRIVATE_KEY_FILE=str(tmp_path / "app.pem"),
        ALIPAY_PUBLIC_KEY_FILE=str(tmp_path / "alipay.pem"),
    ):
        yield
    alipay._load_keys.cache_clear()


def text(response) -> str:
    return " ".join(response.content.decode().split())


def buy(client, plan: str, channel: str = "page", **extra):
    return client.post("/billing/checkout/", {"plan": plan, "channel": channel, **extra})


def make_order(user, plan, *, channel="page", at=None) -> Order:
    return payments.order_create(user=user, plan=plan, channel=channel, at=at)


def pay(order: Order) -> Order:
    payments.order_fulfil(
        order_id=order.pk, trade_no="T" + order.out_trade_no, params={}, source="test"
    )
    order.refresh_from_db()
    return order


# --- the Buy forms on the plans page ------------------------------------------------------


def test_every_plan_for_sale_has_a_buy_form_with_both_channels(student_client, plans):
    html = student_client.get("/billing/plans/").content.decode()

    for code in ("trial", "basic", "advanced", "extension"):
        form = re.search(
            rf'<form class="buy"[^>]*data-testid="buy-{code}">(.*?)</form>', html, re.S
        )
        assert form, code
        assert 'name="csrfmiddlewaretoken"' in form.group(1)
        assert f'name="plan" value="{code}"' in form.group(1)
        assert 'value="page" checked' in form.group(1)
        assert 'value="qr"' in form.group(1)
    assert 'data-testid="buy-free"' not in html
    assert "Buy for ¥135.00" in html


def test_a_pack_cannot_be_bought_from_the_page_without_an_active_plan(student_client, plans):
    html = student_client.get("/billing/plans/").content.decode()
    form = re.search(r'data-testid="buy-extension">(.*?)</form>', html, re.S).group(1)
    assert 'data-testid="buy-button" disabled' in form


def test_an_education_user_sees_and_pays_the_education_price(client, make_user, plans, sandbox):
    student = make_user(language="en", education_status="staff")
    client.force_login(student)

    html = text(client.get("/billing/plans/"))
    assert "Buy for ¥119.00" in html

    response = buy(client, "trial")

    order = Order.objects.get(user=student)
    assert (order.price_fen, order.education_price) == (11_900, True)
    sandbox_page = text(client.get(response["Location"]))
    assert "¥119.00" in sandbox_page
    assert "Education price" in sandbox_page


# --- checkout -----------------------------------------------------------------------------


def test_checkout_creates_an_order_and_redirects_to_the_sandbox_in_sandbox_mode(
    student_client, student, plans, sandbox
):
    response = buy(student_client, "trial")

    order = Order.objects.get(user=student)
    assert (order.plan, order.channel, order.state, order.price_fen) == (
        plans["trial"],
        "page",
        "pending",
        13_500,
    )
    assert order.expires_at == NOW + timedelta(minutes=15)
    assert response.status_code == 302
    assert response["Location"] == f"http://testserver/billing/sandbox/{order.out_trade_no}/"


def test_checkout_in_production_redirects_to_alipays_cashier(
    student_client, student, plans, production
):
    response = buy(student_client, "basic")

    order = Order.objects.get(user=student)
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert (url.scheme, url.netloc, url.path) == ("https", "openapi.alipay.com", "/gateway.do")
    query = parse_qs(url.query)
    assert query["method"] == ["alipay.trade.page.pay"]
    assert query["return_url"] == [f"http://testserver/billing/orders/{order.out_trade_no}/return/"]
    assert query["notify_url"] == ["http://testserver/billing/alipay/notify/"]
    biz = json.loads(query["biz_content"][0])
    assert (biz["out_trade_no"], biz["total_amount"]) == (order.out_trade_no, "365.00")
    assert biz["subject"] == "技术服务费 - Aladdin 初级版 Basic"
    assert "sign" in query


def test_an_unreachable_gateway_is_a_message_not_a_server_error(
    student_client, student, plans, production, settings
):
    # Nothing listens on port 9 of the loopback: the QR code cannot be created.
    settings.ALIPAY_GATEWAY = "http://127.0.0.1:9/gateway.do"
    alipay._load_keys.cache_clear()

    response = buy(student_client, "trial", "qr")

    # The order stays, pending: "Pay again" on the orders page tries once more.
    assert response["Location"] == "/billing/orders/"
    html = text(student_client.get("/billing/orders/"))
    assert "Alipay cannot take the payment right now" in html
    assert "Pay again" in html
    again = student_client.get(f"/billing/orders/{Order.objects.get().out_trade_no}/pay/")
    assert again["Location"] == "/billing/orders/"


def test_checkout_by_qr_code_shows_the_code_with_amount_and_deadline(
    student_client, student, plans, sandbox
):
    response = buy(student_client, "trial", "qr")

    order = Order.objects.get(user=student)
    assert order.channel == "qr"
    assert response["Location"] == f"/billing/orders/{order.out_trade_no}/pay/"
    page = student_client.get(response["Location"])
    html = text(page)
    assert page.status_code == 200
    assert re.search(r'data-testid="qr-code"[^>]*><svg [^>]*viewBox="0 0 \d+ \d+"', html)
    assert "<path" in html
    assert "¥135.00" in html
    assert "技术服务费" in html
    assert "Pay within 15 minutes, before 12:15" in html
    assert '<meta http-equiv="refresh" content="3">' in html
    # In the sandbox the code is the sandbox page: a link opens it on this device.
    assert f'href="http://testserver/billing/sandbox/{order.out_trade_no}/"' in html
    assert "not real money" in html


def test_the_qr_page_turns_into_the_result_once_the_order_is_paid(
    student_client, student, plans, sandbox
):
    order = pay(make_order(student, plans["trial"], channel="qr"))

    response = student_client.get(f"/billing/orders/{order.out_trade_no}/pay/")

    assert response.status_code == 302
    assert response["Location"] == f"/billing/orders/{order.out_trade_no}/return/"


def test_a_pack_without_a_plan_comes_back_to_the_plans_page_with_a_message(
    student_client, student, plans, sandbox
):
    response = buy(student_client, "extension")

    assert response.status_code == 302
    assert response["Location"] == "/billing/plans/"
    html = text(student_client.get("/billing/plans/"))
    assert "An extension pack needs an active plan. Subscribe to a plan first." in html
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"plan": "free", "channel": "page"}, "This product is not for sale."),
        ({"plan": "nonsense", "channel": "page"}, "This product is not for sale."),
        ({"plan": "trial", "channel": "wechat"}, "Choose a plan and how to pay."),
    ],
)
def test_checkout_refuses_what_is_not_for_sale(student_client, plans, sandbox, data, message):
    response = student_client.post("/billing/checkout/", data)

    assert response["Location"] == "/billing/plans/"
    assert message in text(student_client.get("/billing/plans/"))
    assert not Order.objects.exists()


def test_submitting_the_same_plans_page_twice_makes_one_order(
    student_client, student, plans, sandbox
):
    key = "1a2b3c4d-0000-4000-8000-000000000001"

    first = buy(student_client, "trial", key=key)
    second = buy(student_client, "trial", key=key)

    assert Order.objects.filter(user=student).count() == 1
    assert first["Location"] == second["Location"]


def test_checkout_needs_a_login(client, plans):
    anonymous = buy(client, "trial")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")


def test_checkout_is_post_only(student_client, plans):
    assert student_client.get("/billing/checkout/").status_code == 405


# --- pay again ----------------------------------------------------------------------------


def test_pay_again_sends_a_page_order_back_to_its_cashier(student_client, student, plans, sandbox):
    order = make_order(student, plans["trial"])

    response = student_client.get(f"/billing/orders/{order.out_trade_no}/pay/")

    assert response["Location"] == f"http://testserver/billing/sandbox/{order.out_trade_no}/"


def test_an_expired_order_cannot_be_paid_again(student_client, student, plans, sandbox):
    order = make_order(student, plans["trial"], at=NOW - timedelta(minutes=16))

    response = student_client.get(f"/billing/orders/{order.out_trade_no}/pay/")

    assert response["Location"] == f"/billing/orders/{order.out_trade_no}/return/"
    html = text(student_client.get(response["Location"]))
    assert "The time to pay this order is over. Please buy again." in html


# --- return page ---------------------------------------------------------------------------


def test_the_return_page_waits_for_the_payment_and_never_fulfils_by_itself(
    student_client, student, plans, sandbox
):
    order = make_order(student, plans["trial"])

    # Alipay appends the trade's result to the return URL; it is not proof of payment.
    response = student_client.get(
        f"/billing/orders/{order.out_trade_no}/return/",
        {"out_trade_no": order.out_trade_no, "trade_status": "TRADE_SUCCESS", "sign": "x"},
    )

    html = text(response)
    assert response.status_code == 200
    assert "Waiting for the payment" in html
    assert '<meta http-equiv="refresh" content="3">' in html
    assert "checks again every few seconds" in html
    order.refresh_from_db()
    assert order.state == "pending"
    assert not PaymentNotification.objects.exists()


def test_the_return_page_shows_what_a_paid_order_granted(student_client, student, plans):
    order = pay(make_order(student, plans["trial"]))

    html = text(student_client.get(f"/billing/orders/{order.out_trade_no}/return/"))

    assert "Payment received" in html
    assert (
        '尝鲜版 Trial: <span class="dcu" title="20 DCU">20.00</span> DCU, from 2026-05-10 12:00 to 2026-06-09 12:00.'
        in html
    )
    assert 'href="/billing/plans/" data-testid="see-balance"' in html
    assert 'http-equiv="refresh"' not in html


def test_the_return_page_shows_a_pack_added_to_the_plan(student_client, student, plans):
    pay(make_order(student, plans["trial"]))
    order = pay(make_order(student, plans["extension"]))

    html = text(student_client.get(f"/billing/orders/{order.out_trade_no}/return/"))

    assert (
        'Extension pack: <span class="dcu" title="10 DCU">10.00</span> DCU added to your current plan.'
        in html
    )


def test_the_return_page_of_a_closed_order(student_client, student, plans):
    order = make_order(student, plans["trial"])
    payments.order_close(order_id=order.pk, reason="expired")

    html = text(student_client.get(f"/billing/orders/{order.out_trade_no}/return/"))

    assert "Order not paid" in html
    assert 'http-equiv="refresh"' not in html


def test_the_return_page_of_a_closed_order_paid_late_promises_support(
    student_client, student, plans
):
    order = make_order(student, plans["trial"])
    payments.order_close(order_id=order.pk, reason="expired")
    payments.order_fulfil(order_id=order.pk, trade_no="LATE", params={}, source="test")

    html = text(student_client.get(f"/billing/orders/{order.out_trade_no}/return/"))

    assert "Payment arrived late" in html
    assert "Nothing was charged" not in html


# --- orders page ---------------------------------------------------------------------------


def test_the_orders_page_lists_the_users_orders_with_pay_again_for_open_ones(
    student_client, student, other_user, plans
):
    paid = pay(make_order(student, plans["trial"], at=NOW - timedelta(hours=1)))
    expired = make_order(student, plans["basic"], at=NOW - timedelta(minutes=20))
    open_ = make_order(student, plans["advanced"], channel="qr")
    theirs = make_order(other_user, plans["trial"])

    response = student_client.get("/billing/orders/")
    html = text(response)

    assert response.status_code == 200
    rows = {
        no: re.search(rf'data-testid="order-{no}"(.*?)</tr>', html).group(1)
        for no in (paid.out_trade_no, expired.out_trade_no, open_.out_trade_no)
    }
    assert theirs.out_trade_no not in html
    assert "技术服务费 · 尝鲜版 Trial" in rows[paid.out_trade_no]
    assert "135.00" in rows[paid.out_trade_no]
    assert "Paid" in rows[paid.out_trade_no]
    assert "2026-05-10 11:00" in rows[paid.out_trade_no]
    assert "Request an invoice" in rows[paid.out_trade_no]
    assert "Pay again" not in rows[paid.out_trade_no]
    assert "Pay again" not in rows[expired.out_trade_no]
    assert "Awaiting payment" in rows[open_.out_trade_no]
    assert f'href="/billing/orders/{open_.out_trade_no}/pay/"' in rows[open_.out_trade_no]
    assert "Request an invoice" not in rows[open_.out_trade_no]
    # Newest first.
    assert html.index(open_.out_trade_no) < html.index(paid.out_trade_no)


def test_the_orders_page_without_orders(student_client, plans):
    assert "No orders yet." in text(student_client.get("/billing/orders/"))


def test_the_navigation_has_an_orders_link(student_client, plans):
    assert 'href="/billing/orders/"' in student_client.get("/overview/").content.decode()


# --- invoices ------------------------------------------------------------------------------


def test_a_user_requests_a_personal_invoice(student_client, student, plans):
    order = pay(make_order(student, plans["trial"]))
    url = f"/billing/orders/{order.out_trade_no}/invoice/"

    form_page = text(student_client.get(url))
    assert "技术服务费" in form_page
    assert 'name="title_type"' in form_page
    assert 'name="tax_number"' in form_page

    response = student_client.post(
        url, {"title_type": "personal", "title": "张三", "email": "zhang@example.edu.cn"}
    )

    assert response["Location"] == "/billing/orders/"
    invoice = Invoice.objects.get(order=order)
    assert (invoice.title, invoice.item_name, invoice.amount_fen, invoice.state) == (
        "张三",
        "技术服务费",
        13_500,
        "requested",
    )
    orders_page = text(student_client.get("/billing/orders/"))
    assert "Invoice requested." in orders_page
    assert "Request an invoice" not in orders_page
    request_page = text(student_client.get(url))
    assert "Requested" in request_page
    assert 'name="title"' not in request_page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"title_type": "company", "title": "某某科技有限公司", "email": "a@b.cn"},
            "tax_number",
            "A company invoice needs the company&#x27;s tax number.",
        ),
        (
            {"title_type": "company", "title": "某某科技", "tax_number": "123", "email": "a@b.cn"},
            "tax_number",
            "A tax number has 15 to 20 letters and digits.",
        ),
        ({"title_type": "personal", "title": "   ", "email": "a@b.cn"}, "title", "required"),
        ({"title_type": "personal", "title": "张三", "email": "nope"}, "email", "valid email"),
    ],
)
def test_invoice_request_errors_are_shown_at_their_fields(
    student_client, student, plans, data, field, message
):
    order = pay(make_order(student, plans["trial"]))

    response = student_client.post(f"/billing/orders/{order.out_trade_no}/invoice/", data)

    assert response.status_code == 200
    html = response.content.decode()
    block = re.search(rf'data-testid="field-{field}">(.*?)</div>', html, re.S).group(1)
    assert 'class="errorlist' in block
    assert message in block
    assert not Invoice.objects.exists()


def test_a_company_invoice_with_a_tax_number(student_client, student, plans):
    order = pay(make_order(student, plans["trial"]))

    student_client.post(
        f"/billing/orders/{order.out_trade_no}/invoice/",
        {
            "title_type": "company",
            "title": "某某科技有限公司",
            "tax_number": "91110000mA01abcd2x",
            "email": "finance@example.com",
        },
    )

    assert Invoice.objects.get(order=order).tax_number == "91110000MA01ABCD2X"


def test_an_unpaid_order_cannot_be_invoiced(student_client, student, plans):
    order = make_order(student, plans["trial"])
    url = f"/billing/orders/{order.out_trade_no}/invoice/"

    assert "Invoices are issued for paid orders only." in text(student_client.get(url))
    response = student_client.post(
        url, {"title_type": "personal", "title": "张三", "email": "a@b.cn"}
    )
    assert response["Location"] == "/billing/orders/"
    assert not Invoice.objects.exists()


def test_the_issued_invoice_is_downloaded_by_its_owner(student_client, student, make_user, plans):
    order = pay(make_order(student, plans["trial"]))
    invoice = payments.invoice_request(
        order=order, title_type="personal", title="张三", tax_number="", email="a@b.cn"
    )
    url = f"/billing/orders/{order.out_trade_no}/invoice/download/"
    assert student_client.get(url).status_code == 404  # not issued yet

    payments.invoice_issue(invoice=invoice, pdf=ContentFile(PDF), actor=make_user(is_staff=True))
    response = student_client.get(url)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="invoice-{order.out_trade_no}.pdf"'
    )
    assert b"".join(response.streaming_content) == PDF
    assert f'href="{url}"' in student_client.get("/billing/orders/").content.decode()


# --- another user's orders ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/billing/orders/{no}/pay/"),
        ("get", "/billing/orders/{no}/return/"),
        ("get", "/billing/orders/{no}/invoice/"),
        ("post", "/billing/orders/{no}/invoice/"),
        ("get", "/billing/orders/{no}/invoice/download/"),
        ("get", "/billing/sandbox/{no}/"),
        ("post", "/billing/sandbox/{no}/"),
    ],
)
def test_another_users_order_is_a_404_on_every_page(
    student_client, other_user, make_user, plans, sandbox, method, path
):
    order = pay(make_order(other_user, plans["trial"]))
    invoice = payments.invoice_request(
        order=order, title_type="personal", title="李四", tax_number="", email="l@b.cn"
    )
    payments.invoice_issue(invoice=invoice, pdf=ContentFile(PDF), actor=make_user(is_staff=True))
    pending = make_order(other_user, plans["basic"])

    for no in (order.out_trade_no, pending.out_trade_no):
        response = getattr(student_client, method)(
            path.format(no=no), {"title_type": "personal", "title": "x", "email": "x@y.cn"}
        )
        assert response.status_code == 404, (path, no)
    pending.refresh_from_db()
    assert pending.state == "pending"
    assert Invoice.objects.count() == 1
