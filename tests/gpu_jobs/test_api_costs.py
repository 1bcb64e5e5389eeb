"""What an API list costs: one query per table it reads, one Redis round trip for the rate limit.

bench/load_portal.py measured each database or Redis round trip at a
millisecond or more of a loaded machine's time; these tests keep the count
from creeping back (DOT's token check, a separate COUNT, a two-step throttle).
"""

import secrets
from datetime import timedelta

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from aladdin.accounts.models import User
from aladdin.lib.api import Pagination
from gpu_jobs.choices import JobState


@pytest.fixture
def bearer(user):
    from tests.accounts.test_ide_oauth import ensure_ide_client

    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=user,
        application=ensure_ide_client(),
        token=token,
        expires=timezone.now() + timedelta(hours=1),
        scope="ide",
    )
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_job_list_with_a_token_costs_four_queries(
    client, user, bearer, make_job, django_assert_num_queries
):
    # given two ended jobs, one of them with two workers
    now = timezone.now()
    for workers in (1, 2):
        make_job(
            user,
            workers=workers,
            state=JobState.SUCCEEDED,
            started_at=now - timedelta(hours=1),
            ended_at=now - timedelta(minutes=30),
        )
    # The first call in five minutes also notes the user's activity (one UPDATE).
    client.get("/api/v1/me", **bearer)
    # when the plugin lists them: the token with its user, the page with its
    # total, the workers of the page's jobs (their billing so far), their
    # exposed ports (the URLs)
    with django_assert_num_queries(4):
        response = client.get("/api/v1/jobs", **bearer)
    # then
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert len(response.json()["results"]) == 2


def _page(query: dict, rows):
    request = Request(APIRequestFactory().get("/api/v1/things", query))
    paginator = Pagination()
    page = paginator.paginate_queryset(rows, request)
    return paginator, page


def test_a_page_counts_its_total_in_its_own_query(make_user, django_assert_num_queries):
    for _ in range(5):
        make_user()
    rows = User.objects.order_by("pk")
    with django_assert_num_queries(1):
        paginator, page = _page({"page": 2, "page_size": 2}, rows)
        response = paginator.get_paginated_response(page)
    assert response.data["count"] == 5
    assert [u.pk for u in page] == list(rows.values_list("pk", flat=True)[2:4])
    assert response.data["next"] and response.data["previous"]


def test_an_empty_list_is_a_first_page_with_nothing(db):
    paginator, page = _page({}, User.objects.order_by("pk"))
    assert paginator.get_paginated_response(page).data["count"] == 0


def test_a_page_past_the_end_is_not_found(make_user):
    make_user()
    with pytest.raises(NotFound):
        _page({"page": 3, "page_size": 2}, User.objects.order_by("pk"))


def test_the_rate_limit_refuses_without_counting_the_refusal_and_says_when(
    client, user, bearer, monkeypatch
):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "2/min", "anon": "2/min"})
    codes = [client.get("/api/v1/me", **bearer).status_code for _ in range(4)]
    refused = client.get("/api/v1/me", **bearer)
    assert codes == [200, 200, 429, 429]
    assert 0 < int(refused["Retry-After"]) <= 60
    # Only the two allowed calls are in the window (a refusal is not counted).
    from django.core.cache import caches

    backend = caches["default"]
    keys = backend._cache.get_client().keys("*throttle_user_*")
    assert [backend._cache.get_client().zcard(k) for k in keys] == [2]


def test_the_rate_limit_reuses_one_redis_client(client, user, bearer, monkeypatch):
    # Django's cache makes a new redis.Redis (and its table of ~170 reply
    # handlers) on every get_client(): a tenth of an API call's own time.
    import redis

    client.get("/api/v1/me", **bearer)
    made = []
    real_init = redis.Redis.__init__

    def counting_init(self, *args, **kwargs):
        made.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting_init)
    codes = [client.get("/api/v1/me", **bearer).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert made == []
