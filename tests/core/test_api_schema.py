"""The OpenAPI schema (/api/schema/) says what the server does: auth, errors, shapes.

The IDE plugin is generated from and tested against the schema, so an error
the server answers must be in it, with the shared error body, and the way to
authenticate must be declared.
"""

from __future__ import annotations

import pytest

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture
def schema(client, user):
    client.force_login(user)
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def error_ref(operation, status: str) -> str | None:
    response = operation["responses"].get(status)
    if response is None:
        return None
    return response["content"]["application/json"]["schema"].get("$ref")


def test_the_bearer_token_and_the_session_cookie_are_declared(schema):
    schemes = schema["components"]["securitySchemes"]

    assert schemes["bearerAuth"]["type"] == "http"
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["cookieAuth"] == {"type": "apiKey", "in": "cookie", "name": "sessionid"}


def test_every_operation_accepts_the_bearer_token_or_the_session(schema):
    for path, method, operation in operations(schema):
        assert {"bearerAuth": []} in operation["security"], (method, path)
        assert {"cookieAuth": []} in operation["security"], (method, path)


def test_the_error_body_is_code_detail_and_fields(schema):
    error = schema["components"]["schemas"]["Error"]

    assert set(error["properties"]) == {"code", "detail", "fields"}
    assert set(error["required"]) == {"code", "detail", "fields"}


def test_every_operation_on_an_id_documents_its_404(schema):
    for path, method, operation in operations(schema):
        if "{id}" in path:
            assert error_ref(operation, "404") == ERROR_REF, (method, path)


def test_every_operation_with_a_body_documents_its_400(schema):
    for path, method, operation in operations(schema):
        if operation.get("requestBody"):
            assert error_ref(operation, "400") == ERROR_REF, (method, path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/jobs"),
        ("post", "/api/v1/jobs/{id}/stop"),
        ("post", "/api/v1/workshops"),
        ("patch", "/api/v1/workshops/{id}"),
        ("delete", "/api/v1/workshops/{id}"),
        ("post", "/api/v1/workshops/{id}/start"),
        ("post", "/api/v1/workshops/{id}/stop"),
    ],
)
def test_refusals_are_documented_as_409(schema, method, path):
    assert error_ref(schema["paths"][path][method], "409") == ERROR_REF


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/jobs"),
        ("get", "/api/v1/billing/ledger"),
        ("get", "/api/v1/jobs/{id}/logs"),
    ],
)
def test_bad_query_parameters_are_documented_as_400(schema, method, path):
    assert error_ref(schema["paths"][path][method], "400") == ERROR_REF


def test_every_documented_error_uses_the_shared_error_body(schema):
    for path, method, operation in operations(schema):
        for status in operation["responses"]:
            if int(status) >= 400:
                assert error_ref(operation, status) == ERROR_REF, (method, path, status)


# Found by schema fuzzing (tests/core/test_api_fuzz.py): the throttle's 429
# and a bad Content-Type's 415 were answered but in no operation's schema.
def test_every_operation_documents_401_and_429(schema):
    for path, method, operation in operations(schema):
        for status in ("401", "429"):
            assert error_ref(operation, status) == ERROR_REF, (method, path, status)
        assert "Retry-After" in operation["responses"]["429"]["headers"], (method, path)


def test_every_operation_documents_the_400_of_a_token_in_the_url(schema):
    for path, method, operation in operations(schema):
        assert "access token in the URL" in operation["responses"]["400"]["description"], (
            method,
            path,
        )


def test_operations_with_a_body_document_415_and_unsafe_ones_the_csrf_403(schema):
    for path, method, operation in operations(schema):
        if operation.get("requestBody"):
            assert error_ref(operation, "415") == ERROR_REF, (method, path)
        if method in ("post", "put", "patch", "delete"):
            assert error_ref(operation, "403") == ERROR_REF, (method, path)
        else:
            assert "403" not in operation["responses"], (method, path)


def test_a_throttled_call_answers_its_documented_429(client, user, schema, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    # DRF reads the rates once at import; patch the class attribute instead.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "1/min", "anon": "1/min"})
    client.get("/api/v1/storage")

    response = client.get("/api/v1/storage")

    assert response.status_code == 429
    assert "429" in schema["paths"]["/api/v1/storage"]["get"]["responses"]
    assert set(response.json()) == {"code", "detail", "fields"}
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_a_body_without_a_content_type_answers_its_documented_415(client, user, schema):
    client.force_login(user)
    response = client.generic(
        "POST", "/api/v1/storage/expand", b"allowance_gib=80", content_type=""
    )

    assert response.status_code == 415
    assert "415" in schema["paths"]["/api/v1/storage/expand"]["post"]["responses"]
    assert response.json()["code"] == "unsupported_media_type"
