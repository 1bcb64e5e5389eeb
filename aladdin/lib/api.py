"""Shared REST API pieces: one error format (for every /api/ path), pagination."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, pagination, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import DomainError
from .pagination import CountingPaginator

API_PREFIX = "/api/"


class ErrorSerializer(serializers.Serializer):
    """The body of every API error (docs/api.md, Conventions)."""

    code = serializers.CharField(help_text='Machine-readable, e.g. "not_found", "invalid".')
    detail = serializers.CharField(help_text="Human-readable, in the request's language.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per input field (400 invalid); empty otherwise.",
    )


def _flatten(detail) -> str:
    if isinstance(detail, list):
        return " ".join(_flatten(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(_flatten(v) for v in detail.values())
    return str(detail)


def _from_domain(exc: DomainError) -> exceptions.APIException:
    api = exceptions.APIException(detail=exc.error_detail(), code=exc.error_code)
    api.status_code = exc.http_status
    return api


def exception_handler(exc, context):
    """Every API error is ``{"code": str, "detail": str, "fields": {name: [str]}}``.

    The one mapping from domain errors to API errors (aladdin.lib.errors):
    services' refusals reach here from every app's views.
    """
    if isinstance(exc, DomainError) and not hasattr(exc, "error_dict"):
        exc = _from_domain(exc)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    fields: dict = {}
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
        data = exc.detail
        if isinstance(data, dict):
            fields = {
                k: [str(m) for m in (v if isinstance(v, list) else [v])]
                for k, v in data.items()
                if k != "non_field_errors"
            }
            non_field = data.get("non_field_errors")
            detail = _flatten(non_field) if non_field else _flatten(data)
        else:
            detail = _flatten(data)
    else:
        codes = exc.get_codes() if hasattr(exc, "get_codes") else "error"
        code = codes if isinstance(codes, str) else "error"
        detail = _flatten(exc.detail) if hasattr(exc, "detail") else str(exc)
    response.data = {"code": code, "detail": detail, "fields": fields}
    return response


class Pagination(pagination.PageNumberPagination):
    django_paginator_class = CountingPaginator
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.page.paginator.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        return super().get_paginated_response_schema(schema)


def _exception_for(request, status_code: int) -> exceptions.APIException:
    # DRF's own exceptions, so codes and (translated) messages match its errors.
    known = {
        status.HTTP_400_BAD_REQUEST: exceptions.ParseError,
        status.HTTP_403_FORBIDDEN: exceptions.PermissionDenied,
        status.HTTP_404_NOT_FOUND: exceptions.NotFound,
    }
    if status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        return exceptions.MethodNotAllowed(request.method)
    return known.get(status_code, exceptions.APIException)()


def error_response(request, status_code: int) -> JsonResponse:
    """The API's error body for a bare status code, in the active language."""
    exc = _exception_for(request, status_code)
    return JsonResponse(
        {"code": exc.get_codes(), "detail": str(exc.detail), "fields": {}},
        status=status_code,
        json_dumps_params={"ensure_ascii": False},
    )


class ApiErrorMiddleware:
    """Every error under /api/ is the API's JSON, never Django's HTML page.

    DRF formats errors raised in its views (``exception_handler`` above), but
    some never reach a view: a path that no URL matches (``/api/v1/nope``,
    ``/api/v1/jobs/-1``), an unhandled exception, a bad Host header or an
    oversized body are answered by Django's 404/500/400 handlers in HTML (the
    debug pages under DEBUG), and an IDE client would have to parse a page to
    learn that an id does not exist. Django has logged the error and sent its
    signals by the time the response comes back here; only the body changes.
    Other paths keep their pages.

    Listed before CommonMiddleware (which refuses bad Host headers) so that
    its errors pass through here; the language that LocaleMiddleware chose
    is still active on the way back, so messages follow the request.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path_info.startswith(API_PREFIX)
            # DRF's own responses already carry the API's format.
            and not isinstance(response, Response)
        ):
            replaced = error_response(request, response.status_code)
            for header in ("Allow", "WWW-Authenticate", "Retry-After"):
                if header in response:
                    replaced[header] = response[header]
            return replaced
        return response
