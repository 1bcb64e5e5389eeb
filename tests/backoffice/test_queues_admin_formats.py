"""Admin pages in DCU and yuan: plans and card prices are edited in those units, stored as integers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from aladdin.lib.units import fen_to_yuan_str, format_micro
from billing.models import LedgerEntry
from tests import factories
from tests.backoffice.queues_support import support_agent

pytestmark = pytest.mark.django_db


def _plan_form(plan, **changes) -> dict:
    form = {
        "code": plan.code,
        "name": plan.name,
        "kind": plan.kind,
        "tier": plan.tier if plan.tier is not None else "",
        "dcu": "300",
        "gpu_parallelism": plan.gpu_parallelism,
        "free_storage_gib": plan.free_storage_gib,
        "max_storage_gib": plan.max_storage_gib,
        "price_yuan": "99.00",
        "education_price_yuan": "49.00",
        "period_days": plan.period_days,
        "is_active": "on",
        "sort_order": plan.sort_order,
        "audit_reason": "new prices",  # every edit says why (audit log)
    }
    form.update(changes)
    return form


def test_the_plan_page_shows_compute_in_dcu_and_prices_in_yuan(staff_client, plans):
    plan = plans["basic"]

    response = staff_client.get(reverse("admin:billing_plan_change", args=[plan.pk]))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "dcu_micro" not in form.fields and "price_fen" not in form.fields
    assert form.initial["dcu"] == Decimal(format_micro(plan.dcu_micro))  # e.g. 56.6
    assert form.initial["price_yuan"] == Decimal(fen_to_yuan_str(plan.price_fen))


def test_support_edits_a_plan_in_dcu_and_yuan_and_the_integers_are_stored(client, plans):
    client.force_login(support_agent())
    plan = plans["basic"]

    response = client.post(
        reverse("admin:billing_plan_change", args=[plan.pk]),
        _plan_form(plan, dcu="300.5", price_yuan="99.90", education_price_yuan="49.9"),
    )

    assert response.status_code == 302, response.content
    plan.refresh_from_db()
    assert (plan.dcu_micro, plan.price_fen, plan.education_price_fen) == (300_500_000, 9990, 4990)


def test_a_price_that_is_not_a_number_is_refused_with_a_clear_error(client, plans):
    client.force_login(support_agent(language="en"))
    plan = plans["basic"]
    before = plan.price_fen

    response = client.post(
        reverse("admin:billing_plan_change", args=[plan.pk]),
        _plan_form(plan, price_yuan="ninety", dcu="0.0000001"),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "Enter a number." in errors["price_yuan"]
    assert "dcu" in errors  # finer than one µDCU
    plan.refresh_from_db()
    assert plan.price_fen == before


def test_vouchers_are_one_click_from_the_home_page(client, plans):
    student = factories.UserFactory()
    factories.VoucherFactory(user=student, dcu=5)
    client.force_login(support_agent())

    home = client.get("/admin/").content.decode()
    listing = client.get("/admin/billing/ledgerentry/?kind__exact=voucher")

    assert "/admin/billing/ledgerentry/?kind__exact=voucher" in home
    assert [e.kind for e in listing.context["cl"].result_list] == [
        LedgerEntry.objects.get(kind="voucher").kind
    ]
    assert "+5" in listing.content.decode()
