"""The list pages' paginator: the page's own query counts the total (aladdin/lib/pagination.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aladdin.accounts.models import User
from aladdin.lib.pagination import CountingPaginator
from gpu_jobs.choices import JobState


@pytest.fixture
def five(make_user):
    return [make_user() for _ in range(5)]


def test_a_page_and_its_total_are_one_query(five, django_assert_num_queries):
    with django_assert_num_queries(1):
        page = CountingPaginator(User.objects.order_by("pk"), 2).get_page("2")
        assert (page.paginator.count, page.paginator.num_pages, page.number) == (5, 3, 2)
    assert [u.pk for u in page] == [u.pk for u in five[2:4]]


@pytest.mark.parametrize(("asked", "shown"), [("x", 1), (None, 1), ("0", 3), ("9", 3)])
def test_a_bad_page_number_shows_the_first_page_and_one_past_the_end_the_last(five, asked, shown):
    # As Django's get_page: not a number -> the first; out of range -> the last.
    page = CountingPaginator(User.objects.order_by("pk"), 2).get_page(asked)
    assert page.number == shown
    assert page.paginator.count == 5


def test_an_empty_list_is_an_empty_first_page(db):
    page = CountingPaginator(User.objects.order_by("pk"), 2).get_page("1")
    assert (page.number, page.paginator.count, list(page)) == (1, 0, [])


def test_values_and_distinct_rows_are_counted_apart_and_right(five):
    # A window counts the rows before DISTINCT applies; a values() row has no
    # attribute to carry it: both take Django's COUNT instead.
    rows = User.objects.order_by("pk").values("pk")
    page = CountingPaginator(rows, 2).get_page("1")
    assert page.paginator.count == 5 and list(page) == [{"pk": u.pk} for u in five[:2]]
    doubled = User.objects.filter(pk__in=[u.pk for u in five]).values("is_active").distinct()
    page = CountingPaginator(doubled.order_by("is_active"), 2).get_page("1")
    assert page.paginator.count == 1


def test_the_jobs_page_reads_its_jobs_and_their_total_in_one_query(client, user, make_job):
    now = timezone.now()
    for _ in range(3):
        make_job(user, state=JobState.SUCCEEDED, started_at=now - timedelta(hours=1), ended_at=now)
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/jobs/")
    assert response.status_code == 200
    jobs = [q["sql"] for q in queries.captured_queries if 'FROM "gpu_jobs_job"' in q["sql"]]
    assert len(jobs) == 1 and "OVER ()" in jobs[0]
    assert response.content.decode().count("data-live-job=") == 3
