"""API messages follow the request's language (Accept-Language, or the user's saved one).

zh-hans is the portal's default; the IDE plugin sends its own UI language.
An error message that is a plain string stays English whatever was asked.
"""

from __future__ import annotations

import importlib

import pytest
from django.test import override_settings
from django.utils.functional import Promise
from rest_framework import exceptions

from billing import alipay
from tests.accounts.test_ide_oauth import ide_login

API_MODULES = [
    "aladdin.accounts.api",
    "aladdin.lib.api",
    "aladdin.accounts.api_auth",
    "billing.api",
    "gpu_jobs.api",
    "storage.api",
    "workshops.api",
]


def _api_exceptions():
    for name in API_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, exceptions.APIException)
                and value.__module__ == name
            ):
                yield value


@pytest.mark.parametrize("exc_class", list(_api_exceptions()), ids=lambda c: c.__name__)
def test_every_api_error_message_is_translatable(exc_class):
    # A lazy translation is resolved when the response is rendered, in the
    # request's language; a plain string is English for everyone.
    assert isinstance(exc_class.default_detail, Promise)


@pytest.fixture
def alipay_down(monkeypatch):
    def unreachable(*args, **kwargs):
        raise alipay.AlipayError("gateway unreachable")

    monkeypatch.setattr("billing.payments.order_payment_target", unreachable)
    alipay._load_keys.cache_clear()
    with override_settings(ALIPAY_SANDBOX=True, DEBUG=True, ALIPAY_APP_ID=""):
        yield
    alipay._load_keys.cache_clear()


def test_payment_unavailable_follows_accept_language(client, user, plans, alipay_down):
    tokens = ide_login(client, user)

    response = client.post(
        "/api/v1/billing/orders",
        {"plan": "trial"},
        content_type="application/json",
        headers={
            "authorization": f"Bearer {tokens['access_token']}",
            "accept-language": "zh-hans",
        },
    )

    assert response.status_code == 503
    assert response.json()["code"] == "payment_unavailable"
    assert response.json()["detail"] == "支付宝暂时无法收款，请稍后再试。"


def test_payment_unavailable_in_english_when_asked(client, user, plans, alipay_down):
    tokens = ide_login(client, user)

    response = client.post(
        "/api/v1/billing/orders",
        {"plan": "trial"},
        content_type="application/json",
        headers={"authorization": f"Bearer {tokens['access_token']}", "accept-language": "en"},
    )

    assert (
        response.json()["detail"] == "Alipay cannot take the payment right now. Try again shortly."
    )


def test_a_token_in_the_url_is_refused_in_the_requests_language(client, db):
    response = client.get(
        "/api/v1/me", {"access_token": "x"}, headers={"accept-language": "zh-hans"}
    )

    assert response.status_code == 400
    assert "Authorization" in response.json()["detail"]
    assert "请" in response.json()["detail"]
