"""OpenAPI pieces shared by the API modules: the error responses they document.

(The bearer scheme is declared next to its authentication class, in
aladdin.accounts.api_auth.)
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

from aladdin.lib.api import ErrorSerializer

NOT_FOUND = "No such id, another user's, or deleted."
PAGE_NOT_FOUND = "No such page (past the last one)."


def error_responses(descriptions: dict[int, str]) -> dict[int, OpenApiResponse]:
    """``{status: description}`` as responses with the API's error body."""
    return {
        status: OpenApiResponse(ErrorSerializer, description=text)
        for status, text in descriptions.items()
    }


# The 404 of every paginated list (a page past the end).
LIST_ERRORS = error_responses({404: PAGE_NOT_FOUND})

ERROR_REF = "#/components/schemas/Error"
TOKEN_OUTSIDE_HEADER = (
    "invalid_request: an access token in the URL or a form field (send it in the "
    "Authorization header only)."
)
# Answers that no view decides: authentication, CSRF, parsing and throttling
# happen before the view's code runs. status -> (description, response headers)
UNAUTHENTICATED = (
    "not_authenticated, invalid_token or account_disabled: no token or session, or a "
    "token that is invalid, expired or revoked.",
    {"WWW-Authenticate": "How to authenticate: Bearer."},
)
THROTTLED = (
    "throttled: too many requests (600 a minute per user by default).",
    {"Retry-After": "Seconds to wait before the next request."},
)
CSRF_FAILED = (
    "permission_denied: a request with the session cookie but without its CSRF token "
    "(the bearer token needs none).",
    {},
)
UNSUPPORTED_MEDIA_TYPE = (
    "unsupported_media_type: a body that is not JSON, a form or multipart, or has no Content-Type.",
    {},
)
UNSAFE_METHODS = {"post", "put", "patch", "delete"}


def _common_errors(method: str, operation: dict) -> dict[str, tuple[str, dict[str, str]]]:
    errors = {"401": UNAUTHENTICATED, "429": THROTTLED}
    if method in UNSAFE_METHODS:
        errors["403"] = CSRF_FAILED
    if "requestBody" in operation:
        errors["415"] = UNSUPPORTED_MEDIA_TYPE
    return errors


def _error_response(description: str, headers: dict[str, str], media_types) -> dict:
    response = {
        "content": {media: {"schema": {"$ref": ERROR_REF}} for media in media_types},
        "description": description,
    }
    if headers:
        response["headers"] = {
            name: {"schema": {"type": "string"}, "description": text}
            for name, text in headers.items()
        }
    return response


def document_common_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation lists the errors any request may get.

    The views document what they decide (400, 404, 409, 503); the answers of
    the layers in front of them were missing, so a client generated from the
    schema met a 401, 429 or 415 that it was never told of (schema fuzzing,
    tests/core/test_api_fuzz.py, found the 429 and the 415). Each comes in the
    API's error body, in the media types of the operation's own errors.
    """
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            media_types = next(
                (
                    list(response["content"])
                    for status, response in responses.items()
                    if status.isdigit() and int(status) >= 400 and "content" in response
                ),
                ["application/json"],
            )
            for status, (description, headers) in _common_errors(method, operation).items():
                responses.setdefault(status, _error_response(description, headers, media_types))
            # Any operation refuses a token outside the header (aladdin.accounts.api_auth).
            bad_request = responses.get("400")
            if bad_request is None:
                responses["400"] = _error_response(TOKEN_OUTSIDE_HEADER, {}, media_types)
            elif TOKEN_OUTSIDE_HEADER not in bad_request.get("description", ""):
                bad_request["description"] = (
                    f"{bad_request.get('description', '')} Or {TOKEN_OUTSIDE_HEADER}".strip()
                )
            # In status order, as drf-spectacular writes them.
            operation["responses"] = dict(sorted(responses.items()))
    return result
