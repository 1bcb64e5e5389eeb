"""The REST API skeleton: schema, docs without a CDN, one error format, pagination."""

from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from aladdin.lib.api import Pagination, exception_handler


def test_openapi_schema_describes_the_me_endpoint(client, db):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert "/api/v1/me" in response.json()["paths"]


def test_interactive_docs_load_their_assets_from_the_portal_not_a_cdn(client, user):
    client.force_login(user)
    response = client.get("/api/docs/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "cdn.jsdelivr.net" not in body
    assert "/static/drf_spectacular_sidecar/" in body


def test_anonymous_api_call_gets_the_error_format(client, db):
    response = client.get("/api/v1/me")
    assert response.status_code in (401, 403)
    assert set(response.json()) == {"code", "detail", "fields"}
    assert response.json()["code"] == "not_authenticated"


def test_validation_errors_list_fields_in_the_error_format():
    exc = serializers.ValidationError({"name": ["This field is required."]})
    response = exception_handler(exc, {})
    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert response.data["fields"] == {"name": ["This field is required."]}
    assert "required" in response.data["detail"]


def test_me_with_a_session_shows_the_masked_phone(client, make_user):
    user = make_user(phone="+8613812345678", username="alice")
    client.force_login(user)
    data = client.get("/api/v1/me").json()
    assert data["phone"] == "+86 138****5678"
    assert data["username"] == "alice"
    assert data["education"] is False


def test_pagination_wraps_results_with_count_and_links():
    factory = APIRequestFactory()
    from rest_framework.request import Request

    request = Request(factory.get("/api/v1/things", {"page": 2, "page_size": 2}))
    paginator = Pagination()
    page = paginator.paginate_queryset(list(range(5)), request)
    response = paginator.get_paginated_response(page)
    assert response.data["count"] == 5
    assert response.data["results"] == [2, 3]
    assert response.data["next"] and response.data["previous"]


def test_api_calls_are_throttled(client, user, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    # DRF reads the rates once at import; patch the class attribute instead.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "2/min", "anon": "2/min"})
    client.force_login(user)
    codes = [client.get("/api/v1/me").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert set(client.get("/api/v1/me").json()) == {"code", "detail", "fields"}


def test_a_page_number_past_any_table_is_not_found_not_a_server_error(client, user):
    # SQLite reads an OFFSET beyond 2**63 as a float ("datatype mismatch"):
    # the fuzzer found this as a 500 on every list.
    client.force_login(user)
    response = client.get("/api/v1/gpu-types", {"page": str(10**18)})
    assert response.status_code == 404
    assert set(response.json()) == {"code", "detail", "fields"}
