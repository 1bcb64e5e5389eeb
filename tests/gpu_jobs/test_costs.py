"""Cost reports and monthly budgets (issue 20).

The report of a month adds up to the ledger to the µDCU; a budget's 80 %
and 100 % are each announced once; with the hard stop on, a launch over
budget is refused with the numbers, and what runs is left alone.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
import time_machine
from django.urls import reverse

from aladdin.accounts.models import Notification
from aladdin.lib.said import Said
from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.models import BudgetAlert
from gpu_jobs import costs
from gpu_jobs.choices import JobKind

from .conftest import sh

T0 = sh(2026, 3, 10, 8)
DCU = 1_000_000


@pytest.fixture(autouse=True)
def _at_t0():
    with time_machine.travel(T0, tick=False):
        yield


@pytest.fixture
def spender(user, subscribe, make_job):
    """A subscribed user with two jobs and two days of storage charged this month."""
    subscribe(user, "basic", T0 - timedelta(days=5))
    run = make_job(user, card="80g", kind=JobKind.RUN)
    shell = make_job(user, card="40g", kind=JobKind.SHELL)
    for job, minutes, price in ((run, 3, 42_667), (shell, 2, 21_334)):
        for minute in range(minutes):
            billing_services.charge(
                user=user,
                kind="gpu",
                key=f"job-{job.pk}:w0:{minute}",
                amount_micro=price,
                reason=Said("job.charge", {"job": job.pk, "cards": 1, "card": job.gpu_type.name}),
                at=T0 - timedelta(days=1, minutes=-minute),
            )
    for day in (date(2026, 3, 8), date(2026, 3, 9)):
        billing_services.storage_fee_charge(
            user=user,
            day=day,
            amount_micro=33_333,
            reason=Said("ledger.storage", {"day": day.isoformat(), "gib": 1, "free": 20}),
        )
    return user, run, shell


def test_the_report_adds_up_to_the_ledger_to_the_udcu(spender):
    user, run, shell = spender
    report = costs.cost_report(user, date(2026, 3, 1))

    spent = billing_selectors.month_spend_micro(user, T0)
    assert report.total_micro == spent == 3 * 42_667 + 2 * 21_334 + 2 * 33_333
    assert {j.job_id: j.micro for j in report.jobs} == {run.pk: 3 * 42_667, shell.pk: 2 * 21_334}
    assert report.storage_micro == 2 * 33_333 and report.other_micro == 0
    assert sum(d.total_micro for d in report.days) == spent
    assert sum(report.by_kind.values()) == sum(report.by_card.values()) == spent - 2 * 33_333
    # Another month has nothing of it.
    assert costs.cost_report(user, date(2026, 2, 1)).total_micro == 0


def test_page_csv_and_api_show_the_same_numbers(spender, client):
    user, run, _shell = spender
    client.force_login(user)
    page = client.get(reverse("gpu_jobs:costs"), {"month": "2026-03"})
    assert page.status_code == 200
    html = page.content.decode()
    assert f"#{run.pk}" in html and 'data-testid="budget-form"' in html

    rows = list(csv.reader(io.StringIO(client.get(reverse("gpu_jobs:costs_csv")).content.decode())))
    total = costs.cost_report(user, date(2026, 3, 1)).total_micro
    assert rows[-1][-1] == str(total)
    assert sum(int(r[-1]) for r in rows[1:-1]) == total

    api = client.get("/api/v1/costs", {"month": "2026-03"}).json()
    assert api["total_micro"] == total
    assert api["by_kind"] == {"run": 3 * 42_667, "shell": 2 * 21_334}


def test_crossing_80_then_100_percent_alerts_once_each(spender):
    user, _run, _shell = spender
    spent = billing_selectors.month_spend_micro(user, T0)
    # A budget the month's spend is 85 % of.
    billing_services.budget_set(user=user, monthly_micro=spent * 100 // 85)

    assert billing_services.budgets_check() == 1
    assert billing_services.budgets_check() == 0  # once
    warning = Notification.objects.get(user=user, message="budget_warning")
    assert warning.params["percent"] == 80 and warning.params["spent"] == spent

    billing_services.charge(
        user=user, kind="gpu", key="extra:1", amount_micro=spent, reason="more", at=T0
    )
    assert billing_services.budgets_check() == 1
    assert billing_services.budgets_check() == 0
    assert Notification.objects.filter(user=user, message="budget_reached").count() == 1
    assert set(BudgetAlert.objects.filter(user=user).values_list("threshold", flat=True)) == {
        80,
        100,
    }


def test_with_the_hard_stop_a_launch_over_budget_is_refused_with_the_numbers(
    spender, client, cards, catalog, driver
):
    user, _run, _shell = spender
    client.force_login(user)
    client.put(
        "/api/v1/budget",
        {"monthly_micro": 2 * DCU // 10, "hard_stop": True},
        content_type="application/json",
    )
    spent = billing_selectors.month_spend_micro(user, T0)
    assert spent >= 2 * DCU // 10

    response = client.post(
        "/api/v1/jobs",
        {"kind": "run", "entry": "train.py", "gpu_type": "40g"},
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "budget"
    assert "0.2 DCU" in body["detail"] and "Raise the budget" in body["detail"]

    # Without the hard stop the same launch goes ahead (alerts only).
    client.put(
        "/api/v1/budget",
        {"monthly_micro": 2 * DCU // 10, "hard_stop": False},
        content_type="application/json",
    )
    ok = client.post(
        "/api/v1/jobs",
        {"kind": "run", "entry": "train.py", "gpu_type": "40g"},
        content_type="application/json",
    )
    assert ok.status_code == 201, ok.content
    assert client.delete("/api/v1/budget").status_code == 204
    assert client.get("/api/v1/budget").status_code == 404


def test_the_budget_form_sets_and_removes_it(user, client):
    client.force_login(user)
    response = client.post(reverse("gpu_jobs:budget"), {"monthly_dcu": "12.5", "hard_stop": "on"})
    assert response.status_code == 302
    budget = billing_selectors.budget_for(user)
    assert (budget.monthly_micro, budget.hard_stop) == (12_500_000, True)
    client.post(reverse("gpu_jobs:budget"), {"monthly_dcu": ""})
    assert billing_selectors.budget_for(user) is None
