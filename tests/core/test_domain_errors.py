"""One mapping from domain errors to API errors (aladdin.lib.errors, aladdin.lib.api).

Services raise; DRF's exception handler answers every app's refusals the
same way, whatever view they come from.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from aladdin.cluster.base import DriverError, QuotaExceeded, Resources
from aladdin.lib.errors import DomainError
from billing.alipay import AlipayError
from gpu_jobs.admission import JobRefused
from gpu_jobs.validation import JobError
from workshops.services import WorkshopError


class Teapot(DomainError):
    http_status = 418
    error_code = "teapot"


def _answer(exc: Exception):
    class Raising(APIView):
        authentication_classes: list = []
        permission_classes: list = []

        def get(self, request):
            raise exc

    response = Raising.as_view()(APIRequestFactory().get("/api/v1/raising"))
    return response.status_code, response.data


def test_a_domain_error_says_its_own_status_code_and_detail():
    assert _answer(Teapot("short and stout")) == (
        418,
        {"code": "teapot", "detail": "short and stout", "fields": {}},
    )


def test_refusals_of_every_app_are_409_with_their_codes():
    quota = QuotaExceeded(Resources(1000, 1024), Resources(), Resources(500, 512))
    assert _answer(quota) == (409, {"code": "quota_exceeded", "detail": str(quota), "fields": {}})
    assert _answer(DriverError("no"))[1]["code"] == "state_conflict"
    assert _answer(WorkshopError("busy"))[1] == {
        "code": "state_conflict",
        "detail": "busy",
        "fields": {},
    }
    assert _answer(JobRefused("no cards", code="parallelism")) == (
        409,
        {"code": "parallelism", "detail": "no cards", "fields": {}},
    )
    assert _answer(JobError("not now"))[1]["code"] == "state_conflict"


def test_a_domain_error_with_fields_is_bad_input():
    status, body = _answer(JobError({"entry": "Give a file."}))
    assert status == 400
    assert body == {
        "code": "invalid",
        "detail": "Give a file.",
        "fields": {"entry": ["Give a file."]},
    }


def test_a_plain_validation_error_is_still_bad_input():
    assert _answer(ValidationError("bad"))[:1] == (400,)


def test_the_gateways_own_text_never_reaches_the_user():
    status, body = _answer(AlipayError("Alipay gateway unreachable: 10.0.0.1 refused"))
    assert status == 503 and body["code"] == "payment_unavailable"
    assert "10.0.0.1" not in body["detail"]
