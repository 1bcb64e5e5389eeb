"""Orders API: POST /api/v1/billing/orders (Idempotency-Key) and GET /api/v1/billing/orders/{id}."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from billing import alipay, payments
from billing.models import Order

from .conftest import NOW

pytestmark = pytest.mark.usefixtures("frozen_now")


@pytest.fixture(autouse=True)
def _sandbox():
    alipay._load_keys.cache_clear()
    with override_settings(ALIPAY_SANDBOX=True, DEBUG=True, ALIPAY_APP_ID=""):
        yield
    alipay._load_keys.cache_clear()


@pytest.fixture
def api(client, user):
    # Messages are asserted in English: the user reads the portal in English.
    user.language = "en"
    user.save(update_fields=["language"])
    client.force_login(user)
    return client


def create(api, body: dict, key: str | None = None):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.post(
        "/api/v1/billing/orders", body, content_type="application/json", headers=headers
    )


def test_anonymous_calls_get_401(client, db):
    assert create(client, {"plan": "trial"}).status_code == 401
    assert client.get("/api/v1/billing/orders/1").status_code == 401


def test_a_page_order_is_created_with_its_pay_url(api, user, plans):
    response = create(api, {"plan": "trial", "channel": "page"})

    assert response.status_code == 201
    order = Order.objects.get(user=user)
    assert response.json() == {
        "id": order.pk,
        "out_trade_no": order.out_trade_no,
        "plan": "trial",
        "plan_name": "尝鲜版 Trial",
        "channel": "page",
        "price_fen": 13_500,
        "education_price": False,
        "state": "pending",
        "expires_at": "2026-05-10T12:15:00+08:00",
        "pay_url": f"http://testserver/billing/sandbox/{order.out_trade_no}/",
        "qr_code": None,
        "created_at": "2026-05-10T12:00:00+08:00",
        "paid_at": None,
    }


def test_a_qr_order_carries_the_code_to_draw(api, user, plans):
    data = create(api, {"plan": "basic", "channel": "qr"}).json()

    assert data["channel"] == "qr"
    assert data["pay_url"] is None
    # In the sandbox the code opens the sandbox page; with Alipay it is Alipay's qr_code.
    assert data["qr_code"] == f"http://testserver/billing/sandbox/{data['out_trade_no']}/"


def test_the_channel_defaults_to_the_page(api, plans):
    assert create(api, {"plan": "trial"}).json()["channel"] == "page"


def test_an_education_user_is_charged_the_education_price(client, make_user, plans):
    client.force_login(make_user(education_status="email"))

    data = create(client, {"plan": "trial"}).json()

    assert (data["price_fen"], data["education_price"]) == (11_900, True)


def test_a_retry_with_the_same_idempotency_key_returns_the_same_order(api, user, plans):
    first = create(api, {"plan": "trial", "channel": "qr"}, key="retry-7f3a")
    second = create(api, {"plan": "trial", "channel": "qr"}, key="retry-7f3a")
    other = create(api, {"plan": "trial", "channel": "qr"}, key="another-key")

    assert (first.status_code, second.status_code, other.status_code) == (201, 200, 201)
    assert second.json() == first.json()
    assert other.json()["id"] != first.json()["id"]
    assert Order.objects.filter(user=user).count() == 2


def test_without_a_key_every_post_is_a_new_order(api, user, plans):
    create(api, {"plan": "trial"})
    create(api, {"plan": "trial"})

    assert Order.objects.filter(user=user).count() == 2


def test_the_same_key_of_another_user_is_their_own(api, client, make_user, plans):
    mine = create(api, {"plan": "trial"}, key="shared-key").json()
    client.force_login(make_user())

    theirs = create(client, {"plan": "trial"}, key="shared-key")

    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine["id"]


def test_a_key_reused_for_another_product_is_refused(api, plans):
    create(api, {"plan": "trial"}, key="k1")

    response = create(api, {"plan": "basic"}, key="k1")

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "detail": "This Idempotency-Key was already used for another product.",
        "fields": {},
    }


def test_an_overlong_key_is_refused(api, plans):
    response = create(api, {"plan": "trial"}, key="k" * 101)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan": "free"}, "plan"),
        ({"plan": "nope"}, "plan"),
        ({}, "plan"),
        ({"plan": "trial", "channel": "wechat"}, "channel"),
    ],
)
def test_invalid_bodies_name_the_field(api, plans, body, field):
    response = create(api, body)

    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "invalid"
    assert list(data["fields"]) == [field]
    assert not Order.objects.exists()


def test_a_pack_without_a_plan_is_refused_with_the_reason(api, plans):
    response = create(api, {"plan": "extension"})

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "detail": "An extension pack needs an active plan. Subscribe to a plan first.",
        "fields": {},
    }


def test_get_shows_a_paid_order_without_a_pay_url(api, user, plans):
    order = payments.order_create(user=user, plan=plans["trial"])
    payments.order_fulfil(order_id=order.pk, trade_no="T1", params={}, source="test")

    data = api.get(f"/api/v1/billing/orders/{order.pk}").json()

    assert (data["state"], data["pay_url"], data["qr_code"]) == ("paid", None, None)
    assert data["paid_at"] == "2026-05-10T12:00:00+08:00"


def test_get_shows_no_pay_url_once_the_time_to_pay_is_over(api, user, plans):
    order = payments.order_create(user=user, plan=plans["trial"], at=NOW - timedelta(minutes=15))

    data = api.get(f"/api/v1/billing/orders/{order.pk}").json()

    assert (data["state"], data["pay_url"]) == ("pending", None)


def test_another_users_order_is_a_404(api, other_user, plans):
    theirs = payments.order_create(user=other_user, plan=plans["trial"])

    response = api.get(f"/api/v1/billing/orders/{theirs.pk}")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert api.get("/api/v1/billing/orders/999999").status_code == 404


def test_the_schema_documents_the_order_endpoints(client, db):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    post = schema["paths"]["/api/v1/billing/orders"]["post"]
    assert post["operationId"] == "billing_order_create"
    assert {"201", "200", "400", "503"} <= set(post["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"])
    get = schema["paths"]["/api/v1/billing/orders/{id}"]["get"]
    assert get["operationId"] == "billing_order"
    order = schema["components"]["schemas"]["Order"]["properties"]
    assert {"id", "out_trade_no", "plan", "price_fen", "state", "expires_at", "pay_url"} <= set(
        order
    )
    assert {"qr_code", "created_at"} <= set(order)
