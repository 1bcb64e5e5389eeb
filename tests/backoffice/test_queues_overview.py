"""The platform overview (aladdin/backoffice/overview.py) and its page /admin/backoffice/overview/."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aladdin.backoffice.overview import platform_overview
from billing import services
from billing.models import Account, ArrearsReview, Order, Refund
from gpu_jobs.choices import JobState
from storage.models import StorageAllowance, StorageCharge
from tests import factories
from tests.backoffice.queues_support import support_agent
from tests.factories import sh

pytestmark = pytest.mark.django_db

DCU = 1_000_000
AT = sh(2026, 11, 20, 12, 0)  # noon in Shanghai
TODAY = date(2026, 11, 20)
YESTERDAY = date(2026, 11, 19)


def _order(user, plan, paid_at, price_fen, state=Order.State.PAID) -> Order:
    return Order.objects.create(
        user=user,
        plan=plan,
        price_fen=price_fen,
        out_trade_no=f"OV{Order.objects.count() + 1:06d}",
        expires_at=paid_at + timedelta(minutes=30),
        created_at=paid_at - timedelta(minutes=1),
        state=state,
        paid_at=paid_at if state != Order.State.PENDING else None,
    )


@pytest.fixture
def seeded(plans, cards, make_workshop):
    buyer, spender, other = (factories.UserFactory() for _ in range(3))
    basic, pack = plans["basic"], plans["extension"]
    # money: two orders today, one late yesterday evening (still yesterday in Shanghai),
    # one 40 days ago (outside the window), one never paid
    o1 = _order(buyer, basic, sh(2026, 11, 20, 9, 0), 9900)
    _order(other, pack, sh(2026, 11, 20, 10, 0), 2000, state=Order.State.PARTLY_REFUNDED)
    _order(other, basic, sh(2026, 11, 19, 23, 30), 9900)
    _order(other, basic, sh(2026, 10, 11, 9, 0), 9900)
    _order(other, basic, sh(2026, 11, 20, 11, 0), 9900, state=Order.State.PENDING)
    Refund.objects.create(
        order=o1,
        out_request_no="RV1",
        amount_fen=500,
        reason="r",
        state=Refund.State.SUCCEEDED,
        completed_at=sh(2026, 11, 20, 11, 0),
    )
    Refund.objects.create(
        order=o1,
        out_request_no="RV2",
        amount_fen=700,
        reason="r",
        state=Refund.State.REQUESTED,
        error="refused",
    )
    # compute: a 10 DCU voucher yesterday, 12 DCU used today (10 from it, 2 into arrears)
    factories.VoucherFactory(user=spender, dcu=10, at=sh(2026, 11, 19, 8, 0))
    services.charge(
        user=spender,
        kind="test",
        key="ov-1",
        amount_micro=3 * DCU,
        reason="t",
        at=sh(2026, 11, 20, 8, 0),
    )
    services.charge(
        user=spender,
        kind="test",
        key="ov-2",
        amount_micro=9 * DCU,
        reason="t",
        at=sh(2026, 11, 20, 9, 0),
    )
    # storage: two volumes (one held), one reclaimed; a fee charged for yesterday
    StorageAllowance.objects.create(user=buyer, last_bytes=3 * 1024**3)
    StorageAllowance.objects.create(user=spender, last_bytes=1024**3, hold=True)
    StorageAllowance.objects.create(user=other, has_volume=False, last_bytes=0)
    StorageCharge.objects.create(
        user=buyer,
        day=YESTERDAY,
        peak_bytes=50 * 1024**3,
        charged_gib=20,
        free_gib=30,
        amount_micro=30_000,
        ledger_key="storage:x",
    )
    # workloads: 80g ×1, 80g 2 cards × 2 workers, 40g ×1 running; an ended and a deleted job
    factories.JobFactory(user=buyer, card="80g")
    factories.JobFactory(user=buyer, card="80g", cards_per_worker=2, workers=2)
    factories.JobFactory(user=other, card="40g", state=JobState.STARTING)
    factories.JobFactory(user=other, card="80g", state=JobState.SUCCEEDED)
    factories.JobFactory(user=other, card="80g", deleted_at=AT)
    make_workshop(spender)
    # arrears: the spender's 2 DCU, another account's 4 DCU, one review pending
    factories.AccountFactory(user=other)
    Account.objects.filter(user=other).update(debt_micro=4 * DCU)
    ArrearsReview.objects.create(user=other, debt_micro_at_open=10 * DCU)
    return {"basic": basic, "pack": pack}


def test_money_is_counted_per_shanghai_day(seeded):
    ov = platform_overview(at=AT)

    days = {d.day: d for d in ov.days}
    assert len(ov.days) == 30 and ov.start == TODAY - timedelta(days=29) and ov.end == TODAY
    assert days[TODAY].revenue_fen == 9900 + 2000
    assert days[TODAY].orders_paid == 2
    assert days[YESTERDAY].revenue_fen == 9900  # 23:30 in Shanghai is still yesterday
    assert days[TODAY].refunds_fen == 500  # the refused refund is not money back
    assert ov.totals.revenue_fen == 21800 and ov.totals.refunds_fen == 500


def test_dcu_sold_given_and_used_per_day(seeded):
    ov = platform_overview(at=AT)

    days = {d.day: d for d in ov.days}
    basic, pack = seeded["basic"], seeded["pack"]
    assert days[TODAY].sold_micro == basic.dcu_micro + pack.dcu_micro
    assert days[YESTERDAY].sold_micro == basic.dcu_micro
    assert days[YESTERDAY].vouchers_micro == 10 * DCU
    assert days[TODAY].used_micro == 12 * DCU  # 10 paid by the voucher, 2 into arrears
    assert days[YESTERDAY].storage_fees_micro == 30_000


def test_workloads_storage_and_arrears_are_counted_now(seeded):
    ov = platform_overview(at=AT)

    assert ov.running_jobs == 3
    assert {c.code: (c.jobs, c.cards) for c in ov.cards} == {"40g": (1, 1), "80g": (2, 5)}
    assert ov.cards_in_use == 6
    assert ov.running_workshops == 1
    assert (ov.volumes, ov.volumes_held, ov.storage_used_bytes) == (2, 1, 4 * 1024**3)
    assert (ov.debt_micro, ov.accounts_in_debt, ov.arrears_pending) == (6 * DCU, 2, 1)


def test_the_overview_takes_a_fixed_number_of_queries(seeded, plans):
    with CaptureQueriesContext(connection) as few:
        platform_overview(at=AT)
    for n in range(20):
        _order(factories.UserFactory(), plans["basic"], sh(2026, 11, 18, 9, n), 100)
    with CaptureQueriesContext(connection) as many:
        platform_overview(at=AT)

    assert len(many) == len(few) <= 12


def test_support_sees_the_overview_with_charts_and_the_numbers_as_a_table(seeded, client):
    client.force_login(support_agent())

    with time_machine.travel(AT, tick=False):
        response = client.get("/admin/backoffice/overview/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "vendor/chart.js/chart.umd.js" in html and 'id="overview-data"' in html
    assert 'id="chart-money"' in html and 'id="chart-compute"' in html
    # the numbers as text: yuan with two decimals, DCU as on the dashboard
    assert 'data-stat="revenue">218.00' in html
    assert 'data-stat="arrears">6 ' in html
    today = html[html.index('<tr data-day="2026-11-20">') :].split("</tr>")[0]
    assert "<td>119.00</td>" in today and "<td>5.00</td>" in today and "<td>12</td>" in today
    assert str(6 * DCU) not in html


def test_staff_without_money_permissions_get_403(seeded, client):
    agent = factories.UserFactory(staff=True)
    agent.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(agent)

    assert client.get("/admin/backoffice/overview/").status_code == 403


def test_students_are_sent_to_the_login_page(seeded, client):
    client.force_login(factories.UserFactory())

    response = client.get("/admin/backoffice/overview/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
