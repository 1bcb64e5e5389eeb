"""Shared REST API pieces: one error format, pagination, token authentication."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, pagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _flatten(detail) -> str:
    if isinstance(detail, list):
        return " ".join(_flatten(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(_flatten(v) for v in detail.values())
    return str(detail)


def exception_handler(exc, context):
    """Every API error is ``{"code": str, "detail": str, "fields": {name: [str]}}``."""
    if isinstance(exc, DjangoValidationError):
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
