"""OpenAPI pieces shared by the API modules: the error responses they document.

(The bearer scheme is declared next to its authentication class, in
aladdin.lib.api_auth.)
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
