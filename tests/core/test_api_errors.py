"""Every /api/ error is the API's JSON ``{"code", "detail", "fields"}``, never an HTML page.

Errors raised in DRF views were always formatted; these are the ones Django
answers itself: no URL matched (an unknown path, a negative or non-numeric
id), an unhandled exception, a bad Host header. Pages outside /api/ keep HTML.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import path

from aladdin import urls as project_urls


def assert_api_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "detail", "fields"}
    assert body["code"] == code
    assert body["fields"] == {}
    return body


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/nope",
        "/api/v1/jobs/-1",
        "/api/v1/jobs/abc",
        "/api/v1/jobs/1/nope",
        "/api/v1/workshops/-7/start",
        "/api/v1/billing/orders/x1",
        "/api/v1/me/",
        "/api/v2/me",
        "/api/",
    ],
)
def test_an_unknown_api_url_is_a_json_404(client, user, url):
    client.force_login(user)

    body = assert_api_error(client.get(url), 404, "not_found")

    assert body["detail"] == "Not found."


def test_an_unknown_api_url_is_a_json_404_for_any_method_and_anonymous(client, db):
    assert_api_error(client.post("/api/v1/jobs/-1/stop"), 404, "not_found")
    assert_api_error(client.delete("/api/v1/nope"), 404, "not_found")


def test_a_huge_id_is_a_json_404(client, user):
    client.force_login(user)

    assert_api_error(client.get("/api/v1/jobs/99999999999999999999999"), 404, "not_found")


def test_the_404_message_follows_the_request_language(client, db):
    response = client.get("/api/v1/nope", headers={"accept-language": "zh-hans"})

    body = assert_api_error(response, 404, "not_found")
    assert body["detail"] == "未找到。"


def test_a_page_outside_the_api_keeps_its_html_404(client, db):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def _explode(request):
    raise RuntimeError("boom")


urlpatterns = [
    path("api/v1/explode", _explode),
    path("explode", _explode),
    *project_urls.urlpatterns,
]


@override_settings(ROOT_URLCONF=__name__)
def test_an_unhandled_error_under_the_api_is_a_json_500(db):
    client = Client(raise_request_exception=False)

    body = assert_api_error(client.get("/api/v1/explode"), 500, "error")

    assert "boom" not in body["detail"]


@override_settings(ROOT_URLCONF=__name__)
def test_an_unhandled_error_outside_the_api_keeps_its_html_page(db):
    response = Client(raise_request_exception=False).get("/explode")

    assert response.status_code == 500
    assert not response["Content-Type"].startswith("application/json")


@override_settings(ALLOWED_HOSTS=["portal.example"])
def test_a_bad_host_header_under_the_api_is_a_json_400(client, db):
    response = client.get("/api/v1/me", headers={"host": "evil.example"})

    assert_api_error(response, 400, "parse_error")


def test_errors_from_api_views_keep_their_own_codes(client, db):
    # Formatted by DRF's handler, untouched on the way out.
    assert_api_error(client.get("/api/v1/me"), 401, "not_authenticated")
