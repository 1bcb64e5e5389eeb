"""Back office of payments: orders with the Refund action, refunds, notifications, invoices."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from aladdin.accounts.models import StaffAction
from billing import alipay, payments
from billing.models import Invoice, Order, PaymentNotification, Refund

from .conftest import sh

DCU = 1_000_000
pytestmark = pytest.mark.usefixtures("frozen_now")
PDF = b"%PDF-1.4\n% issued\n"


@pytest.fixture(autouse=True)
def _sandbox():
    # Refunds in the sandbox skip the gateway; the gateway path is tested with
    # a loopback Alipay in the refund service's own tests.
    alipay._load_keys.cache_clear()
    with override_settings(ALIPAY_SANDBOX=True, DEBUG=True, ALIPAY_APP_ID=""):
        yield
    alipay._load_keys.cache_clear()


def paid_order(user, plan) -> Order:
    order = payments.order_create(user=user, plan=plan)
    payments.order_fulfil(
        order_id=order.pk, trade_no="T" + order.out_trade_no, params={}, source="test"
    )
    order.refresh_from_db()
    return order


def refund_action(client, order, **confirm):
    data = {"action": "refund_order", ACTION_CHECKBOX_NAME: [order.pk]}
    if confirm:
        data.update(confirm_refund="1", **confirm)
    return client.post("/admin/billing/order/", data, follow=bool(confirm))


def confirmation_token(response) -> str:
    return re.search(r'name="refund_token" value="([^"]+)"', response.content.decode()).group(1)


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- orders ---------------------------------------------------------------------------------


def test_orders_are_searchable_by_number_and_by_phone_as_typed(staff_client, make_user, plans):
    wanted = payments.order_create(user=make_user(phone="+8613911112222"), plan=plans["trial"])
    other = payments.order_create(user=make_user(phone="+8613933334444"), plan=plans["trial"])

    by_number = staff_client.get("/admin/billing/order/", {"q": wanted.out_trade_no})
    by_phone = staff_client.get("/admin/billing/order/", {"q": "139 1111 2222"})

    assert list(by_number.context["cl"].result_list) == [wanted]
    assert list(by_phone.context["cl"].result_list) == [wanted]
    assert other not in by_phone.context["cl"].result_list


def test_orders_filter_by_state_and_needing_support(staff_client, user, plans):
    paid = paid_order(user, plans["trial"])
    pending = payments.order_create(user=user, plan=plans["basic"])
    Order.objects.filter(pk=pending.pk).update(needs_support=True)

    by_state = staff_client.get("/admin/billing/order/", {"state__exact": "paid"})
    flagged = staff_client.get("/admin/billing/order/", {"needs_support__exact": "1"})

    assert list(by_state.context["cl"].result_list) == [paid]
    assert list(flagged.context["cl"].result_list) == [pending]


def test_orders_cannot_be_edited_added_or_deleted(staff_client, user, plans):
    order = paid_order(user, plans["trial"])

    assert staff_client.get("/admin/billing/order/add/").status_code == 403
    page = staff_client.get(f"/admin/billing/order/{order.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert staff_client.post(f"/admin/billing/order/{order.pk}/delete/").status_code == 403


# --- the Refund action -------------------------------------------------------------------------


def test_refund_asks_the_amount_with_the_refundable_rest_as_default(staff_client, user, plans):
    order = paid_order(user, plans["trial"])

    response = refund_action(staff_client, order)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="amount_yuan" value="135.00"' in html
    assert 'name="reason"' in html
    assert not Refund.objects.exists()


def test_a_full_refund_returns_the_money_and_takes_back_the_compute(
    staff_client, staff, user, plans
):
    order = paid_order(user, plans["trial"])
    token = confirmation_token(refund_action(staff_client, order))

    response = refund_action(
        staff_client, order, amount_yuan="135.00", reason="Bought by mistake", refund_token=token
    )

    refund = Refund.objects.get(order=order)
    assert (refund.amount_fen, refund.state, refund.reversed_micro, refund.created_by) == (
        13_500,
        "succeeded",
        20 * DCU,
        staff,
    )
    order.refresh_from_db()
    assert (order.state, order.refunded_fen) == ("refunded", 13_500)
    assert StaffAction.objects.get(action="refund").reason == "Bought by mistake"
    assert shown_messages(response) == [
        f"Refunded 135.00 yuan of order {order.out_trade_no}; 20 DCU of unspent compute taken back."
    ]


def test_a_partial_refund_then_the_default_is_what_is_left(staff_client, user, plans):
    order = paid_order(user, plans["trial"])
    token = confirmation_token(refund_action(staff_client, order))
    refund_action(staff_client, order, amount_yuan="35.00", reason="Goodwill", refund_token=token)

    order.refresh_from_db()
    assert (order.state, order.refunded_fen) == ("partly_refunded", 3_500)
    html = refund_action(staff_client, order).content.decode()
    assert 'name="amount_yuan" value="100.00"' in html


def test_the_same_confirmation_page_refunds_once(staff_client, user, plans):
    order = paid_order(user, plans["trial"])
    token = confirmation_token(refund_action(staff_client, order))
    form = {"amount_yuan": "10.00", "reason": "Goodwill", "refund_token": token}

    refund_action(staff_client, order, **form)
    again = refund_action(staff_client, order, **form)

    assert Refund.objects.filter(order=order).count() == 1
    assert shown_messages(again) == ["This refund was already submitted."]


def test_refund_errors_are_shown_as_messages(staff_client, user, plans):
    order = paid_order(user, plans["trial"])
    token = confirmation_token(refund_action(staff_client, order))

    response = refund_action(
        staff_client, order, amount_yuan="200.00", reason="Too much", refund_token=token
    )

    assert not Refund.objects.exists()
    [message] = shown_messages(response)
    assert message.startswith("The refund must be between 0.01 and 135.00 yuan")


def test_an_unpaid_order_cannot_be_refunded(staff_client, user, plans):
    order = payments.order_create(user=user, plan=plans["trial"])
    token = confirmation_token(refund_action(staff_client, order))

    response = refund_action(
        staff_client, order, amount_yuan="1.00", reason="x", refund_token=token
    )

    assert shown_messages(response) == ["Only paid orders can be refunded."]
    assert not Refund.objects.exists()


def test_refund_needs_a_reason(staff_client, user, plans):
    order = paid_order(user, plans["trial"])
    token = confirmation_token(refund_action(staff_client, order))

    response = staff_client.post(
        "/admin/billing/order/",
        {
            "action": "refund_order",
            ACTION_CHECKBOX_NAME: [order.pk],
            "confirm_refund": "1",
            "amount_yuan": "1.00",
            "reason": "  ",
            "refund_token": token,
        },
    )

    assert response.status_code == 200  # the page again, with the error
    assert "This field is required." in response.content.decode()
    assert not Refund.objects.exists()


def test_refund_takes_exactly_one_order(staff_client, user, plans):
    first = paid_order(user, plans["trial"])
    second = paid_order(user, plans["basic"])

    response = staff_client.post(
        "/admin/billing/order/",
        {"action": "refund_order", ACTION_CHECKBOX_NAME: [first.pk, second.pk]},
        follow=True,
    )

    assert shown_messages(response) == ["Choose exactly one order to refund."]


def test_staff_without_the_refund_permission_do_not_get_the_action(client, make_user, plans):
    from django.contrib.auth.models import Permission

    clerk = make_user(is_staff=True, language="en")
    clerk.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(clerk)

    response = client.get("/admin/billing/order/")

    assert response.status_code == 200
    assert "refund_order" not in response.content.decode()


# --- refunds and notifications -----------------------------------------------------------------


def test_refunds_are_listed_read_only(staff_client, staff, user, plans):
    order = paid_order(user, plans["trial"])
    refund = payments.refund_create(order=order, amount_fen=1_000, reason="x", actor=staff)
    payments.refund_execute(refund_id=refund.pk)

    listing = staff_client.get("/admin/billing/refund/")

    assert list(listing.context["cl"].result_list) == [refund]
    assert staff_client.get("/admin/billing/refund/add/").status_code == 403
    page = staff_client.get(f"/admin/billing/refund/{refund.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_notifications_list_flagged_ones_first_and_filter_by_outcome(staff_client, user, plans):
    order = payments.order_create(user=user, plan=plans["trial"])
    with time_machine.travel(sh(2026, 5, 10, 11), tick=False):
        flagged = PaymentNotification.objects.create(
            order=order, out_trade_no=order.out_trade_no, outcome="flagged"
        )
    fulfilled = PaymentNotification.objects.create(
        order=order, out_trade_no=order.out_trade_no, outcome="fulfilled"
    )

    listing = staff_client.get("/admin/billing/paymentnotification/")
    only_fulfilled = staff_client.get(
        "/admin/billing/paymentnotification/", {"outcome__exact": "fulfilled"}
    )

    assert list(listing.context["cl"].result_list) == [flagged, fulfilled]
    assert list(only_fulfilled.context["cl"].result_list) == [fulfilled]
    assert staff_client.get("/admin/billing/paymentnotification/add/").status_code == 403


# --- invoices ------------------------------------------------------------------------------------


def requested_invoice(user, plans) -> Invoice:
    return payments.invoice_request(
        order=paid_order(user, plans["trial"]),
        title_type="company",
        title="某某科技有限公司",
        tax_number="91110000MA01ABCD2X",
        email="finance@example.com",
    )


def test_invoice_requests_are_listed_and_filtered_by_state(staff_client, staff, make_user, plans):
    waiting = requested_invoice(make_user(), plans)
    issued = requested_invoice(make_user(), plans)
    payments.invoice_issue(invoice=issued, pdf=ContentFile(PDF), actor=staff)

    listing = staff_client.get("/admin/billing/invoice/")
    only_requested = staff_client.get("/admin/billing/invoice/", {"state__exact": "requested"})

    assert list(listing.context["cl"].result_list) == [waiting, issued]
    assert list(only_requested.context["cl"].result_list) == [waiting]
    assert "某某科技有限公司" in listing.content.decode()


def test_staff_upload_the_pdf_to_issue_an_invoice(staff_client, staff, user, plans):
    invoice = requested_invoice(user, plans)
    form_page = staff_client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    assert 'enctype="multipart/form-data"' in form_page
    assert 'name="issued_pdf"' in form_page
    assert "技术服务费" in form_page

    response = staff_client.post(
        f"/admin/billing/invoice/{invoice.pk}/change/",
        {"issued_pdf": SimpleUploadedFile("fapiao.pdf", PDF, content_type="application/pdf")},
    )

    assert response.status_code == 302
    invoice.refresh_from_db()
    assert (invoice.state, invoice.issued_by) == ("issued", staff)
    assert invoice.pdf.read() == PDF
    assert StaffAction.objects.get(action="invoice_issued").target_user == user


def test_only_a_pdf_issues_an_invoice(staff_client, user, plans):
    invoice = requested_invoice(user, plans)

    response = staff_client.post(
        f"/admin/billing/invoice/{invoice.pk}/change/",
        {"issued_pdf": SimpleUploadedFile("fapiao.pdf", b"GIF89a", content_type="image/gif")},
    )

    assert response.status_code == 200
    assert "This is not a PDF file." in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.state == "requested"


def test_invoices_cannot_be_added_or_deleted_by_hand(staff_client, user, plans):
    invoice = requested_invoice(user, plans)

    assert staff_client.get("/admin/billing/invoice/add/").status_code == 403
    assert staff_client.post(f"/admin/billing/invoice/{invoice.pk}/delete/").status_code == 403
