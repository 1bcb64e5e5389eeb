"""Dashboard billing pages: plans with prices and effects, the balance widget, the ledger."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from billing import services
from billing.choices import LedgerKind
from billing.models import LedgerEntry
from tests.factories import AccountFactory

from .conftest import NOW, sh

DCU = 1_000_000
pytestmark = pytest.mark.usefixtures("frozen_now")


def card(html: str, code: str) -> str:
    """The HTML of one plan card on the plans page."""
    match = re.search(rf'data-testid="plan-{code}">(.*?)</section>', html, re.S)
    assert match, f"no card for {code}"
    return " ".join(match.group(1).split())


def entry(user, *, delta: int, kind: str = LedgerKind.CHARGE, at=NOW, key: str, reason="use"):
    return LedgerEntry(
        user=user, delta_micro=delta, kind=kind, reason=reason, idempotency_key=key, created_at=at
    )


# --- access and navigation -----------------------------------------------------------


@pytest.mark.parametrize("url", ["/billing/plans/", "/billing/ledger/"])
def test_billing_pages_ask_anonymous_visitors_to_log_in(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_billing_index_leads_to_the_plans_page(student_client):
    response = student_client.get("/billing/")
    assert response.status_code == 302
    assert response["Location"] == "/billing/plans/"


def test_the_nav_links_billing_and_ledger_for_logged_in_users(student_client):
    html = student_client.get("/overview/").content.decode()
    assert 'href="/billing/plans/"' in html
    assert 'href="/billing/ledger/"' in html


def test_the_nav_marks_the_ledger_as_the_current_page(student_client):
    html = student_client.get("/billing/ledger/").content.decode()
    assert 'href="/billing/ledger/" aria-current="page"' in html


# --- plans page ------------------------------------------------------------------------


def test_the_plans_page_lists_the_plans_for_sale_but_not_the_free_tier(student_client, plans):
    html = student_client.get("/billing/plans/").content.decode()
    for code in ("trial", "basic", "advanced", "extension"):
        assert f'data-testid="plan-{code}"' in html
    assert 'data-testid="plan-free"' not in html


def test_each_plan_shows_compute_parallelism_storage_and_price(student_client, plans):
    html = student_client.get("/billing/plans/").content.decode()
    advanced = card(html, "advanced")
    assert "500 DCU" in advanced
    assert "<dd>8</dd>" in advanced
    assert "100 GiB" in advanced and "2048 GiB" in advanced
    assert "¥3100.00" in advanced
    assert "Education price: ¥2750.00" in advanced
    # Two decimals, the exact amount on hover.
    assert '<span class="dcu" title="56.6 DCU">56.60</span> DCU' in card(html, "basic")
    assert "¥67.50" in card(html, "extension")


def test_education_users_see_the_education_price(client, make_user, plans):
    client.force_login(make_user(language="en", education_status="email"))
    html = client.get("/billing/plans/").content.decode()
    trial = card(html, "trial")
    assert 'data-testid="plan-price">¥119.00' in trial
    assert "Standard price: ¥135.00" in trial
    assert "Education prices apply to you." in html


def test_without_a_plan_every_plan_takes_effect_now_and_the_pack_needs_a_plan(
    student_client, plans
):
    html = student_client.get("/billing/plans/").content.decode()
    for code in ("trial", "basic", "advanced"):
        assert "Takes effect now." in card(html, code)
    assert "Needs an active plan: subscribe to a plan first." in card(html, "extension")
    assert "Free tier (no subscription)" in html


def test_with_a_plan_renewals_queue_upgrades_start_now_and_packs_are_added(
    student_client, student, plans
):
    services.subscription_create(user=student, plan=plans["basic"], at=sh(2026, 5, 1, 9))
    html = student_client.get("/billing/plans/").content.decode()

    assert "Starts on 2026-05-31 09:00" in card(html, "trial")
    assert "Starts on 2026-05-31 09:00" in card(html, "basic")
    assert "Takes effect now (upgrade)" in card(html, "advanced")
    assert "Added to your current plan." in card(html, "extension")
    assert "Your current plan" in card(html, "basic")
    assert "Your current plan" not in card(html, "trial")


def test_a_queued_renewal_moves_the_next_start_after_it(student_client, student, plans):
    services.subscription_create(user=student, plan=plans["basic"], at=sh(2026, 5, 1, 9))
    services.subscription_create(user=student, plan=plans["trial"], at=sh(2026, 5, 2, 9))
    html = student_client.get("/billing/plans/").content.decode()

    assert "Starts on 2026-06-30 09:00" in card(html, "basic")
    assert "Trial: from 2026-05-31 09:00 to 2026-06-30 09:00" in html


def test_the_overview_shows_active_and_carried_compute_with_expiry_dates(
    student_client, student, plans
):
    # Trial from Apr 1 to May 1 with 5 DCU spent: on May 10 its 15 DCU are
    # carried (inactive) until May 31.
    services.subscription_create(user=student, plan=plans["trial"], at=sh(2026, 4, 1, 9))
    services.charge(
        user=student, kind="test", key="a", amount_micro=5 * DCU, reason="use", at=sh(2026, 4, 13)
    )
    services.billing_process_due(as_of=NOW)

    html = student_client.get("/overview/").content.decode()

    assert 'data-testid="balance-widget"' in html
    assert 'data-testid="balance-active"><span class="dcu" title="0 DCU">0.00</span>' in html
    assert '<span class="dcu" title="15 DCU">15.00</span> DCU, expires on 2026-05-31' in html


def test_the_widget_shows_plan_period_end_and_queued_periods(student_client, student, plans):
    services.subscription_create(user=student, plan=plans["basic"], at=sh(2026, 5, 1, 9))
    services.subscription_create(user=student, plan=plans["basic"], at=sh(2026, 5, 2, 9))

    html = student_client.get("/overview/").content.decode()

    assert 'data-testid="balance-active"><span class="dcu" title="56.6 DCU">56.60</span>' in html
    assert 'data-testid="balance-plan">初级版 Basic' in html
    assert 'data-testid="balance-period-end">2026-05-31 09:00' in html
    assert "初级版 Basic: from 2026-05-31 09:00 to 2026-06-30 09:00" in html


def test_the_widget_explains_arrears(student_client, student):
    services.charge(
        user=student, kind="test", key="a", amount_micro=3 * DCU, reason="storage", at=NOW
    )

    html = student_client.get("/billing/plans/").content.decode()

    assert 'Arrears: <span class="dcu" title="3 DCU">3.00</span> DCU' in html
    assert "pays the arrears first" in html
    assert "You never owe more than 10 DCU" in html


def test_the_widget_has_no_arrears_block_without_debt(student_client, student):
    AccountFactory(user=student)
    assert 'data-testid="balance-arrears"' not in student_client.get("/overview/").content.decode()


def test_the_billing_pages_render_in_chinese(client, make_user, plans):
    client.force_login(make_user(language="zh-hans"))
    assert client.get("/billing/plans/").status_code == 200
    assert client.get("/billing/ledger/").status_code == 200


# --- ledger page ------------------------------------------------------------------------


def test_the_ledger_lists_entries_newest_first_with_signed_dcu(student_client, student):
    LedgerEntry.objects.bulk_create(
        [
            entry(
                student,
                delta=20 * DCU,
                kind=LedgerKind.GRANT,
                at=NOW - timedelta(days=2),
                key="g",
                reason="granted",
            ),
            entry(
                student, delta=-30_000, at=NOW - timedelta(days=1), key="c", reason="storage fee"
            ),
        ]
    )
    html = student_client.get("/billing/ledger/").content.decode()

    assert html.index("storage fee") < html.index("granted")
    assert '<span class="dcu" title="-0.03 DCU">-0.03</span></td>' in html
    assert '<span class="dcu" title="+20 DCU">+20.00</span></td>' in html


def test_the_ledger_is_paginated_fifty_entries_a_page(student_client, student):
    LedgerEntry.objects.bulk_create(
        entry(
            student, delta=-1, at=NOW - timedelta(minutes=i), key=f"k{i}", reason=f"reason-{i:02d}"
        )
        for i in range(60)
    )
    first = student_client.get("/billing/ledger/")
    second = student_client.get("/billing/ledger/", {"page": 2})

    assert first.content.decode().count('data-testid="ledger-entry"') == 50
    assert second.content.decode().count('data-testid="ledger-entry"') == 10
    assert "Page 1 of 2" in first.content.decode()
    # (a reason no CSRF token or other random text on the page can contain)
    assert "reason-59" in second.content.decode()
    assert "reason-59" not in first.content.decode()


def test_ledger_page_links_keep_the_filters(student_client, student):
    LedgerEntry.objects.bulk_create(
        entry(student, delta=-1, at=NOW - timedelta(minutes=i), key=f"k{i}") for i in range(60)
    )
    html = student_client.get("/billing/ledger/", {"kind": "charge"}).content.decode()
    assert 'href="?kind=charge&amp;page=2"' in html


def test_the_ledger_filters_by_kind_and_date_range(student_client, student):
    LedgerEntry.objects.bulk_create(
        [
            entry(
                student,
                delta=5,
                kind=LedgerKind.VOUCHER,
                at=sh(2026, 5, 1, 0, 0),
                key="v",
                reason="voucher-may-1",
            ),
            entry(student, delta=-1, at=sh(2026, 5, 3, 23, 59), key="c3", reason="charge-may-3"),
            entry(student, delta=-1, at=sh(2026, 5, 4, 0, 0), key="c4", reason="charge-may-4"),
            entry(student, delta=-1, at=sh(2026, 4, 30, 23, 59), key="c0", reason="charge-apr-30"),
        ]
    )

    by_kind = student_client.get("/billing/ledger/", {"kind": "voucher"}).content.decode()
    assert "voucher-may-1" in by_kind and "charge-may-3" not in by_kind

    by_days = student_client.get(
        "/billing/ledger/", {"since": "2026-05-01", "until": "2026-05-03"}
    ).content.decode()
    assert "voucher-may-1" in by_days
    assert "charge-may-3" in by_days  # the end day is included
    assert "charge-may-4" not in by_days
    assert "charge-apr-30" not in by_days


def test_a_bad_filter_shows_an_error(student_client, student):
    response = student_client.get(
        "/billing/ledger/", {"since": "2026-05-05", "until": "2026-05-01"}
    )
    assert response.status_code == 200
    assert "The end date is before the start date." in response.content.decode()


def test_the_ledger_never_shows_another_users_entries(student_client, student, other_user):
    LedgerEntry.objects.bulk_create(
        [
            entry(student, delta=-1, key="mine", reason="my-entry"),
            entry(other_user, delta=-1, key="theirs", reason="their-entry"),
        ]
    )
    html = student_client.get("/billing/ledger/").content.decode()
    assert "my-entry" in html
    assert "their-entry" not in html


def test_the_usage_chart_has_thirty_days_of_data_and_a_table_fallback(student_client, student):
    LedgerEntry.objects.bulk_create(
        [
            entry(student, delta=-1_500_000, at=sh(2026, 5, 9, 10), key="a"),
            entry(student, delta=-500_000, at=sh(2026, 5, 9, 22), key="b"),
            entry(student, delta=-1 * DCU, kind=LedgerKind.DEBT, at=sh(2026, 5, 10, 1), key="c"),
            entry(student, delta=10 * DCU, kind=LedgerKind.GRANT, at=sh(2026, 5, 10, 2), key="d"),
        ]
    )
    html = student_client.get("/billing/ledger/").content.decode()

    data = json.loads(
        re.search(
            r'<script id="usage-data" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    assert len(data["labels"]) == 30
    assert data["labels"][-1] == "2026-05-10"
    assert data["series"][0]["values"][-2:] == ["2", "1"]
    assert '<td>2026-05-09</td><td><span class="dcu" title="2 DCU">2.00</span></td>' in html
    assert 'Total: <span class="dcu" title="3 DCU">3.00</span> DCU' in html
    assert '<details id="usage-table" open>' in html
    assert "/static/vendor/chart.js/chart.umd.js" in html


def test_chart_js_is_vendored_pinned_and_licensed():
    vendor = Path(settings.BASE_DIR) / "static" / "vendor" / "chart.js"
    assert (vendor / "chart.umd.js").read_text()[:200].count("Chart.js v4.4.7") == 1
    assert "MIT" in (vendor / "LICENSE.md").read_text()
    # The bundle names its source map; collectstatic's manifest storage needs it.
    assert (vendor / "chart.umd.js.map").is_file()


def test_the_plans_page_explains_what_a_dcu_is_where_it_is_sold(student_client, plans):
    html = student_client.get("/billing/plans/").content.decode()

    explained = html.index('data-testid="dcu-explained"')
    assert "1 DCU = 312 TFLOPS·h" in html[explained:]
    assert explained < html.index('data-testid="plan-trial"')


@pytest.mark.parametrize("path", ["/overview/", "/billing/plans/"])
def test_a_page_with_the_balance_reads_the_subscription_in_force_once(
    student_client, student, plans, path
):
    # The balance card, the offers, the current period and the storage
    # warning each read it on their own: three times on the billing page.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    services.subscription_create(user=student, plan=plans["basic"], at=sh(2026, 5, 1, 9))
    with CaptureQueriesContext(connection) as queries:
        response = student_client.get(path)
    assert response.status_code == 200
    in_force = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "billing_subscription"' in q["sql"]
        and "'active'" in q["sql"]
        and "MAX(" not in q["sql"]
    ]
    assert len(in_force) == 1, in_force
    assert 'data-testid="balance-plan">初级版 Basic' in response.content.decode()
