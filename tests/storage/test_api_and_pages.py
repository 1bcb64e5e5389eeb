from __future__ import annotations

import pytest

from aladdin.accounts.services import notification_create
from storage import services
from tests.factories import SubscriptionFactory

from .conftest import GIB


@pytest.fixture
def trial_user(make_user, plans, driver):
    user = make_user()
    SubscriptionFactory(user=user, plan_code="trial")
    services.volume_register(user_id=user.pk)
    driver.usage[user.pk] = 40 * GIB
    services.usage_sample(driver=driver)
    return user


def test_get_storage_reports_use_allowance_and_30_days(client, trial_user):
    client.force_login(trial_user)
    data = client.get("/api/v1/storage").json()
    assert data["used_gib"] == 40.0
    assert (data["allowance_gib"], data["free_gib"], data["max_gib"]) == (30, 30, 500)
    assert data["over_allowance"] is True
    assert data["can_expand"] is True
    assert len(data["days"]) == 30
    assert data["days"][-1]["peak_gib"] == 40.0


def test_expand_through_the_api(client, trial_user):
    client.force_login(trial_user)
    response = client.post(
        "/api/v1/storage/expand", {"allowance_gib": 100}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["allowance_gib"] == 100
    assert response.json()["over_allowance"] is False


def test_expand_beyond_the_plan_gives_a_clear_400(client, trial_user):
    client.force_login(trial_user)
    response = client.post(
        "/api/v1/storage/expand", {"allowance_gib": 9000}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "at most 500 GiB" in response.json()["detail"]


def test_anonymous_storage_call_is_401(client, db):
    assert client.get("/api/v1/storage").status_code == 401


def test_the_dashboard_shows_use_warnings_and_the_form(client, trial_user):
    client.force_login(trial_user)
    page = client.get("/storage/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'data-testid="storage-over"' in page
    assert 'data-testid="storage-expand"' in page
    assert "storage-chart" in page

    response = client.post("/storage/expand/", {"allowance_gib": 50})
    assert response.status_code == 302
    assert client.get("/api/v1/storage").json()["allowance_gib"] == 50


def test_the_overview_shows_unread_notices(client, user):
    notification_create(
        user=user,
        message="storage_retention_warning",
        params={"when": "2026-05-16T09:00:00+08:00"},
    )
    client.force_login(user)
    page = client.get("/overview/").content.decode()
    assert "Storage will be reclaimed" in page and "2026-05-16 09:00" in page


def test_the_admin_reclaim_queue_lists_volumes_without_a_plan(client, make_user, plans, driver):
    staff = make_user(is_staff=True, is_superuser=True)
    lapsed = make_user()
    services.volume_register(user_id=lapsed.pk)
    client.force_login(staff)
    response = client.get("/admin/storage/storageallowance/?queue=yes")
    assert response.status_code == 200
    assert lapsed.phone in response.content.decode()
    assert client.get("/admin/storage/dailypeak/").status_code == 200
    assert client.get("/admin/storage/reclamation/").status_code == 200


def test_the_schema_describes_the_storage_endpoints(client, db):
    paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]
    assert {"/api/v1/storage", "/api/v1/storage/expand"} <= set(paths)


@pytest.mark.parametrize("page", ["/overview/", "/workshops/", "/jobs/"])
def test_the_pages_that_start_workloads_warn_a_user_over_the_allowance(client, trial_user, page):
    client.force_login(trial_user)
    html = client.get(page).content.decode()
    assert 'data-testid="storage-over"' in html
    assert "You use 40.0 GiB, more than your allowance of 30 GiB." in html


def test_the_overviews_warning_takes_its_plan_from_the_balance_card(client, trial_user):
    # The overview reads the subscription in force once, for the balance card,
    # and hands the card's plan to the storage warning: the warning still
    # measures against that plan's allowance, without a read of its own.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(trial_user)
    with CaptureQueriesContext(connection) as queries:
        html = client.get("/overview/").content.decode()
    assert "You use 40.0 GiB, more than your allowance of 30 GiB." in html
    in_force = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "billing_subscription"' in q["sql"]
        and "'active'" in q["sql"]
        and "MAX(" not in q["sql"]
    ]
    assert len(in_force) == 1, in_force


@pytest.mark.parametrize("page", ["/overview/", "/workshops/", "/jobs/"])
def test_a_user_within_the_allowance_sees_no_storage_warning(client, user, driver, page):
    client.force_login(user)
    assert 'data-testid="storage-over"' not in client.get(page).content.decode()


@pytest.mark.parametrize("path", ["/api/v1/storage", "/storage/"])
def test_the_storage_summary_reads_the_plan_and_the_allowance_once(client, trial_user, path):
    # The one-figure selectors each read the plan and the allowance row: the
    # summary read them nine times (bench/load_portal.py, docs/benchmarks.md).
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(trial_user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    reads = [q["sql"] for q in queries.captured_queries]
    assert sum('FROM "billing_subscription"' in sql for sql in reads) == 1
    assert sum('FROM "storage_storageallowance"' in sql for sql in reads) == 1
