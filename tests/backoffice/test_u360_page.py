"""The user 360° page: /admin/backoffice/users/<id>/ shows everything about one user."""

from __future__ import annotations

import pytest

from aladdin.accounts.models import Notification, SmsMessage
from aladdin.backoffice import audit
from billing.models import Invoice
from tests import factories

from .u360_fixtures import paid_order, support_user

pytestmark = pytest.mark.django_db
DCU = 1_000_000


def page(user) -> str:
    return f"/admin/backoffice/users/{user.pk}/"


def test_the_page_shows_plan_compute_money_workloads_storage_access_messages_and_audit(
    staff_client, staff, make_user, plans, make_job, make_workshop
):
    # given a user with a bit of everything
    user = make_user(username="carol")
    order = paid_order(user, plans["trial"])
    factories.VoucherFactory(user=user, amount_micro=1_500_000, reason="Sorry for the outage")
    Invoice.objects.create(
        order=order, title_type="personal", title="Carol", email="c@example.com", amount_fen=1
    )
    make_workshop(user, name="notebook")
    job = make_job(user, entry="train_mnist.py")
    Notification.objects.create(user=user, kind="retention", title="Your files will be deleted")
    SmsMessage.objects.create(phone=user.phone, purpose="login", backend="console")
    audit.record(actor=staff, action="note", reason="Called the user", target_user=user)

    # when
    response = staff_client.get(page(user))

    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert "Trial" in html or plans["trial"].name in html
    assert order.out_trade_no in html
    assert "Sorry for the outage" in html
    assert "+1.5" in html  # the ledger's voucher entry, formatted as the dashboard does
    assert "1500000" not in html  # never a raw µDCU integer
    assert "Carol" in html
    assert "notebook" in html
    assert f"job-{job.pk}" in html
    assert "Your files will be deleted" in html
    assert "Called the user" in html
    assert response.context["d"].balance.active_micro > 0


def test_the_ledger_is_paginated_newest_first(staff_client, make_user):
    user = make_user()
    for n in range(30):
        factories.VoucherFactory(user=user, amount_micro=(n + 1) * DCU, reason=f"voucher {n}")

    first = staff_client.get(page(user))
    second = staff_client.get(page(user), {"ledger_page": 2})

    assert [e.reason for e in first.context["d"].ledger][0] == "voucher 29"
    assert len(first.context["d"].ledger) == 25
    assert len(second.context["d"].ledger) == 5
    assert "Page 1 of 2" in first.content.decode()


def test_audit_details_show_dcu_and_yuan_not_raw_integers(staff_client, staff, make_user):
    user = make_user()
    audit.record(
        actor=staff,
        action="voucher",
        reason="Goodwill",
        target_user=user,
        before={"debt_micro": 2_500_000},
        after={"debt_micro": 0},
        details={"amount_micro": 12_340_000, "amount_fen": 1999},
    )

    html = staff_client.get(page(user)).content.decode()

    assert "2.5 DCU → 0 DCU" in html
    assert "12.34 DCU" in html and "¥19.99" in html
    assert "12340000" not in html and "2500000" not in html


def test_staff_actions_on_the_user_are_listed_newest_first(staff_client, staff, make_user):
    user = make_user()
    audit.record(actor=staff, action="first", reason="one", target_user=user)
    audit.record(actor=staff, action="second", reason="two", target_user=user)

    actions = staff_client.get(page(user)).context["d"].staff_actions

    assert [a.action for a in actions] == ["second", "first"]


def test_a_banned_user_is_marked_banned(staff_client, staff, make_user):
    from aladdin.accounts import services

    user = make_user()
    services.user_ban(user=user, actor=staff, reason="mining")

    html = staff_client.get(page(user)).content.decode()

    assert 'data-test="banned"' in html


def test_an_unknown_user_is_404(staff_client):
    assert staff_client.get("/admin/backoffice/users/999999/").status_code == 404


def test_a_student_goes_to_the_admin_login(student_client, make_user):
    response = student_client.get(page(make_user()))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_anonymous_visitor_goes_to_the_admin_login(client, make_user):
    response = client.get(page(make_user()))

    assert response["Location"].startswith("/admin/login/")


def test_staff_without_the_view_permission_are_refused(client, make_user):
    client.force_login(support_user(view=False))

    assert client.get(page(make_user())).status_code == 403


def test_support_sees_only_the_actions_they_may_take(client, make_user, make_job):
    user = make_user()
    make_job(user)
    client.force_login(support_user("gpu_jobs.change_job"))

    html = client.get(page(user)).content.decode()

    assert "/act/job_stop/" in html
    assert "/act/voucher/" not in html
    assert "/act/ban/" not in html


def test_the_user_admin_links_to_the_360_page(staff_client, make_user):
    user = make_user()

    listing = staff_client.get("/admin/accounts/user/").content.decode()
    change = staff_client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()

    assert page(user) in listing
    assert page(user) in change


def test_the_page_renders_in_chinese(staff_client, make_user, staff):
    staff.language = "zh-hans"
    staff.save()
    response = staff_client.get(page(make_user()), HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 200
