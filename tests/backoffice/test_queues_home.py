"""The support queues (aladdin/backoffice/queues.py) and the admin home page that shows them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from aladdin.backoffice import queues
from billing.models import ArrearsReview, Invoice, Order, Refund
from storage.models import RetentionWarning, StorageAllowance
from tests import factories
from tests.backoffice.queues_support import pending_zh, support_agent  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def _order(user, plan, **extra) -> Order:
    now = timezone.now()
    defaults = dict(
        user=user,
        plan=plan,
        price_fen=9900,
        out_trade_no=f"T{Order.objects.count() + 1:06d}",
        expires_at=now + timedelta(minutes=30),
    )
    defaults.update(extra)
    return Order.objects.create(**defaults)


@pytest.fixture
def seeded_queues(plans):
    """Two rows in each queue and, beside each, rows that must not count."""
    now = timezone.now()
    u1, u2, u3 = factories.UserFactory(), factories.UserFactory(), factories.UserFactory()
    basic = plans["basic"]
    # arrears: two pending, one decided
    ArrearsReview.objects.create(user=u1, debt_micro_at_open=10_000_000)
    ArrearsReview.objects.create(user=u2, debt_micro_at_open=12_000_000)
    ArrearsReview.objects.create(
        user=u3, debt_micro_at_open=11_000_000, decision=ArrearsReview.Decision.HOLD
    )
    # invoices: two requested, one issued
    paid = [_order(u, basic, state=Order.State.PAID, paid_at=now) for u in (u1, u2, u3)]
    Invoice.objects.create(
        order=paid[0], title_type="personal", title="A", email="a@x.cn", amount_fen=9900
    )
    Invoice.objects.create(
        order=paid[1], title_type="personal", title="B", email="b@x.cn", amount_fen=9900
    )
    Invoice.objects.create(
        order=paid[2],
        title_type="personal",
        title="C",
        email="c@x.cn",
        amount_fen=9900,
        state=Invoice.State.ISSUED,
    )
    # payments: late money for a closed order, a paid order not fulfilled; a refunded one is done
    _order(u1, basic, state=Order.State.CLOSED, needs_support=True)
    _order(u2, basic, state=Order.State.PAID, paid_at=now, needs_support=True)
    _order(
        u3, basic, state=Order.State.REFUNDED, paid_at=now, needs_support=True, refunded_fen=9900
    )
    # refunds: two refused at Alipay, one in flight, one done
    for n, (state, error) in enumerate(
        [
            (Refund.State.REQUESTED, "ACQ.SYSTEM_ERROR"),
            (Refund.State.REQUESTED, "timeout"),
            (Refund.State.REQUESTED, ""),
            (Refund.State.SUCCEEDED, ""),
        ]
    ):
        Refund.objects.create(
            order=paid[0],
            out_request_no=f"R{n}",
            amount_fen=100,
            reason="r",
            state=state,
            error=error,
        )
    # retention: two open warnings; one moot (active since), one past, one held
    for u in (u1, u2, u3):
        StorageAllowance.objects.create(user=u)
    RetentionWarning.objects.create(user=u1, sent_at=now, reclaim_at=now + timedelta(days=3))
    RetentionWarning.objects.create(user=u2, sent_at=now, reclaim_at=now + timedelta(days=2))
    u3.last_activity_at = now + timedelta(minutes=1)
    u3.save(update_fields=["last_activity_at"])
    RetentionWarning.objects.create(user=u3, sent_at=now, reclaim_at=now + timedelta(days=3))
    RetentionWarning.objects.create(
        user=u1, sent_at=now - timedelta(days=9), reclaim_at=now - timedelta(days=6)
    )
    held = factories.UserFactory()
    StorageAllowance.objects.create(user=held, hold=True)
    RetentionWarning.objects.create(user=held, sent_at=now, reclaim_at=now + timedelta(days=3))
    return {"users": (u1, u2, u3)}


def test_each_queue_counts_exactly_what_waits_for_support(seeded_queues, staff):
    counts = {q.key: q.count for q in queues.queues_for(staff)}

    assert counts == {"arrears": 2, "invoices": 2, "payments": 2, "refunds": 2, "retention": 2}


def test_a_warned_user_who_gets_a_plan_leaves_the_retention_queue(seeded_queues, plans):
    u1 = seeded_queues["users"][0]
    factories.SubscriptionFactory(user=u1, plan_code="basic")

    assert queues.retention_warnings_open().count() == 1


@pytest.mark.parametrize("key", ["arrears", "invoices", "payments", "refunds", "retention"])
def test_each_queue_links_to_its_list_filtered_to_exactly_its_rows(
    seeded_queues, staff_client, staff, key
):
    queue = next(q for q in queues.queues_for(staff) if q.key == key)

    response = staff_client.get(queue.url)

    assert response.status_code == 200
    cl = response.context["cl"]
    assert cl.result_count == queue.count == 2


def test_support_sees_the_queues_the_search_and_the_overview_on_the_home_page(
    seeded_queues, client
):
    agent = support_agent()
    client.force_login(agent)

    response = client.get("/admin/")

    assert response.status_code == 200
    html = response.content.decode()
    for key in ("arrears", "invoices", "payments", "refunds", "retention"):
        assert f'data-queue="{key}"' in html
    assert 'name="q"' in html and 'id="bo-search"' in html
    assert "/admin/backoffice/overview/" in html
    # the queues come first, then the app list
    assert html.index('data-queue="arrears"') < html.index('id="content-main"')


def test_a_queue_is_shown_only_to_staff_who_may_open_its_list(seeded_queues, client):
    agent = factories.UserFactory(staff=True)
    from django.contrib.auth.models import Permission

    agent.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client.force_login(agent)

    html = client.get("/admin/").content.decode()

    assert 'data-queue="invoices"' in html
    assert 'data-queue="arrears"' not in html and 'data-queue="retention"' not in html


@pytest.mark.usefixtures("pending_zh")
def test_the_home_page_is_in_chinese_by_default(seeded_queues, client):
    agent = support_agent(language="zh-hans")
    client.force_login(agent)

    html = client.get("/admin/").content.decode()

    assert "Arrears cleanup" not in html
    assert "欠费清理" in html
