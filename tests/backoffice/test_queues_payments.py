"""The "payments flagged for support" queue: staff mark an order handled, with what they did."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from aladdin.accounts.models import StaffAction
from aladdin.backoffice import queues
from billing import payments, services
from billing.models import Order
from tests import factories
from tests.backoffice.queues_support import support_agent

pytestmark = pytest.mark.django_db

URL = "/admin/billing/order/"


@pytest.fixture
def flagged(plans):
    student = factories.UserFactory()
    return Order.objects.create(
        user=student,
        plan=plans["basic"],
        price_fen=9900,
        out_trade_no="FLAG000001",
        expires_at=timezone.now() - timedelta(minutes=1),
        state=Order.State.CLOSED,
        needs_support=True,
        support_note="Payment 2026 arrived after the order was closed; refund or fulfil by hand.",
    )


def _post(client, order, **extra):
    return client.post(
        URL, {"action": "resolve_support", "_selected_action": [order.pk], **extra}, follow=False
    )


def test_marking_a_flagged_payment_handled_asks_what_was_done_first(client, flagged):
    client.force_login(support_agent())

    response = _post(client, flagged)

    assert response.status_code == 200
    assert b'name="reason"' in response.content and b"FLAG000001" in response.content
    flagged.refresh_from_db()
    assert flagged.needs_support


def test_with_a_reason_the_order_leaves_the_queue_and_the_action_is_recorded(client, flagged):
    agent = support_agent()
    client.force_login(agent)
    assert queues.orders_flagged().count() == 1

    response = _post(client, flagged, confirm_resolve="1", reason="Refunded at Alipay by hand")

    assert response.status_code == 302
    flagged.refresh_from_db()
    assert not flagged.needs_support
    assert "Refunded at Alipay by hand" in flagged.support_note
    assert queues.orders_flagged().count() == 0
    record = StaffAction.objects.get(action="order_support_resolved")
    assert (record.actor, record.target_user, record.reason) == (
        agent,
        flagged.user,
        "Refunded at Alipay by hand",
    )
    assert record.before["needs_support"] is True and record.after["needs_support"] is False


def test_an_empty_reason_is_refused_with_a_clear_error(client, flagged):
    client.force_login(support_agent())

    response = _post(client, flagged, confirm_resolve="1", reason="   ")

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    flagged.refresh_from_db()
    assert flagged.needs_support and not StaffAction.objects.exists()


def test_staff_who_may_not_refund_cannot_mark_payments_handled(client, flagged):
    viewer = factories.UserFactory(staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(viewer)

    _post(client, flagged, confirm_resolve="1", reason="trying")

    flagged.refresh_from_db()
    assert flagged.needs_support and not StaffAction.objects.exists()


def test_the_service_refuses_an_order_that_is_not_flagged(flagged, staff):
    flagged.needs_support = False
    flagged.save()

    with pytest.raises(services.BillingError):
        payments.order_support_resolve(order=flagged, actor=staff, reason="again")
