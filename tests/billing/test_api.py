"""Billing REST API: balance, plans and ledger, each scoped to the caller."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing import services
from billing.choices import LedgerKind
from billing.models import LedgerEntry

from .conftest import NOW, sh

DCU = 1_000_000
pytestmark = pytest.mark.usefixtures("frozen_now")


@pytest.fixture
def api(client, user):
    client.force_login(user)
    return client


def entry(user, *, delta: int = -1, kind: str = LedgerKind.CHARGE, at=NOW, key: str, reason="use"):
    return LedgerEntry(
        user=user, delta_micro=delta, kind=kind, reason=reason, idempotency_key=key, created_at=at
    )


# --- anonymous -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["balance", "plans", "ledger"])
def test_anonymous_calls_get_401_in_the_error_format(client, db, path):
    response = client.get(f"/api/v1/billing/{path}")

    assert response.status_code == 401
    assert response.json() == {
        "code": "not_authenticated",
        "detail": response.json()["detail"],
        "fields": {},
    }
    assert response["WWW-Authenticate"].startswith("Bearer")


# --- balance -------------------------------------------------------------------------


def test_balance_of_a_user_without_a_plan(api):
    data = api.get("/api/v1/billing/balance").json()

    assert data == {
        "active_micro": 0,
        "active_dcu": "0",
        "carried": [],
        "carried_micro": 0,
        "debt_micro": 0,
        "debt_dcu": "0",
        "plan": {
            "code": "free",
            "name": data["plan"]["name"],
            "tier": 0,
            "gpu_parallelism": 0,
            "free_storage_gib": 30,
            "max_storage_gib": 30,
        },
        "period_ends_at": None,
        "queued": [],
    }


def test_balance_shows_active_carried_debt_plan_and_queue(api, user, plans):
    # Trial Apr 1 – May 1, 5 DCU spent: 15 DCU carried until May 31.
    services.subscription_create(user=user, plan=plans["trial"], at=sh(2026, 4, 1, 9))
    services.charge(
        user=user, kind="test", key="a", amount_micro=5 * DCU, reason="use", at=sh(2026, 4, 2)
    )
    services.billing_process_due(as_of=sh(2026, 5, 2))
    # A storage fee with nothing to pay it: 0.5 DCU of arrears.
    services.charge(user=user, kind="test", key="b", amount_micro=500_000, reason="fee", at=NOW)

    data = api.get("/api/v1/billing/balance").json()

    assert data["active_micro"] == 0
    assert data["carried"] == [
        {"amount_micro": 15 * DCU, "amount_dcu": "15", "carry_until": "2026-05-31T09:00:00+08:00"}
    ]
    assert data["carried_micro"] == 15 * DCU
    assert data["debt_micro"] == 500_000
    assert data["debt_dcu"] == "0.5"
    assert data["plan"]["code"] == "free"


def test_balance_with_a_plan_and_a_queued_renewal(api, user, plans):
    services.subscription_create(user=user, plan=plans["basic"], at=sh(2026, 5, 1, 9))
    services.subscription_create(user=user, plan=plans["trial"], at=sh(2026, 5, 2, 9))

    data = api.get("/api/v1/billing/balance").json()

    assert data["active_micro"] == 56_600_000
    assert data["active_dcu"] == "56.6"
    assert data["plan"]["code"] == "basic"
    assert data["plan"]["gpu_parallelism"] == 4
    assert data["period_ends_at"] == "2026-05-31T09:00:00+08:00"
    assert data["queued"] == [
        {
            "plan": "trial",
            "plan_name": plans["trial"].name,
            "starts_at": "2026-05-31T09:00:00+08:00",
            "ends_at": "2026-06-30T09:00:00+08:00",
        }
    ]


# --- plans --------------------------------------------------------------------------------


def test_plans_list_the_plans_for_sale_with_prices_and_effects(api, plans):
    body = api.get("/api/v1/billing/plans").json()
    data = body["results"]

    assert body["count"] == 4 and body["next"] is None
    assert [p["code"] for p in data] == ["trial", "basic", "advanced", "extension"]
    trial = data[0]
    assert trial == {
        "code": "trial",
        "name": plans["trial"].name,
        "kind": "plan",
        "tier": 1,
        "dcu_micro": 20 * DCU,
        "dcu": "20",
        "gpu_parallelism": 2,
        "free_storage_gib": 30,
        "max_storage_gib": 500,
        "period_days": 30,
        "price_fen": 13_500,
        "education_price_fen": 11_900,
        "your_price_fen": 13_500,
        "effect": {"effect": "now", "starts_at": "2026-05-10T12:00:00+08:00", "allowed": True},
    }
    assert data[3]["effect"]["effect"] == "pack"
    assert data[3]["effect"]["allowed"] is False


def test_education_users_are_quoted_the_education_price(client, make_user, plans):
    client.force_login(make_user(education_status="staff"))
    data = {p["code"]: p for p in client.get("/api/v1/billing/plans").json()["results"]}

    assert data["basic"]["your_price_fen"] == 32_500
    assert data["basic"]["price_fen"] == 36_500
    assert data["extension"]["your_price_fen"] == 5_950


def test_plan_effects_follow_the_current_subscription(api, user, plans):
    services.subscription_create(user=user, plan=plans["basic"], at=sh(2026, 5, 1, 9))
    data = {p["code"]: p["effect"] for p in api.get("/api/v1/billing/plans").json()["results"]}

    assert data["trial"] == {
        "effect": "queued",
        "starts_at": "2026-05-31T09:00:00+08:00",
        "allowed": True,
    }
    assert data["basic"]["effect"] == "queued"
    assert data["advanced"]["effect"] == "now"
    assert data["extension"] == {
        "effect": "pack",
        "starts_at": "2026-05-10T12:00:00+08:00",
        "allowed": True,
    }


# --- ledger -------------------------------------------------------------------------------


def test_ledger_entries_are_newest_first_with_signed_amounts(api, user):
    LedgerEntry.objects.bulk_create(
        [
            entry(
                user,
                delta=20 * DCU,
                kind=LedgerKind.GRANT,
                at=NOW - timedelta(days=1),
                key="g",
                reason="granted",
            ),
            entry(user, delta=-30_000, key="c", reason="storage fee"),
        ]
    )
    data = api.get("/api/v1/billing/ledger").json()

    assert data["count"] == 2
    assert data["next"] is None and data["previous"] is None
    first, second = data["results"]
    assert set(first) == {
        "id",
        "created_at",
        "kind",
        "kind_display",
        "delta_micro",
        "delta_dcu",
        "reason",
        "reason_id",
        "reason_params",
    }
    assert (first["reason"], first["delta_micro"], first["delta_dcu"]) == (
        "storage fee",
        -30_000,
        "-0.03",
    )
    assert (second["kind"], second["delta_dcu"]) == ("grant", "+20")
    assert first["created_at"] == "2026-05-10T12:00:00+08:00"


def test_ledger_is_paginated_with_the_project_pagination(api, user):
    LedgerEntry.objects.bulk_create(
        entry(user, at=NOW - timedelta(minutes=i), key=f"k{i}", reason=f"r{i}") for i in range(60)
    )
    first = api.get("/api/v1/billing/ledger").json()
    second = api.get("/api/v1/billing/ledger", {"page": 2}).json()
    small = api.get("/api/v1/billing/ledger", {"page_size": 7}).json()

    assert first["count"] == 60
    assert len(first["results"]) == 50
    assert first["next"].endswith("page=2")
    assert [e["reason"] for e in second["results"]] == [f"r{i}" for i in range(50, 60)]
    assert len(small["results"]) == 7


def test_ledger_filters_by_kind(api, user):
    LedgerEntry.objects.bulk_create(
        [entry(user, key="c"), entry(user, delta=5, kind=LedgerKind.VOUCHER, key="v")]
    )
    data = api.get("/api/v1/billing/ledger", {"kind": "voucher"}).json()
    assert [e["kind"] for e in data["results"]] == ["voucher"]


def test_ledger_filters_by_dates_and_times(api, user):
    LedgerEntry.objects.bulk_create(
        [
            entry(user, at=sh(2026, 4, 30, 23, 59), key="a", reason="apr-30"),
            entry(user, at=sh(2026, 5, 1, 0, 0), key="b", reason="may-1"),
            entry(user, at=sh(2026, 5, 3, 23, 59), key="c", reason="may-3"),
            entry(user, at=sh(2026, 5, 4, 0, 0), key="d", reason="may-4"),
        ]
    )

    def reasons(**params):
        return {e["reason"] for e in api.get("/api/v1/billing/ledger", params).json()["results"]}

    # Dates are whole Asia/Shanghai days, the end day included.
    assert reasons(since="2026-05-01", until="2026-05-03") == {"may-1", "may-3"}
    # Times: since inclusive, until exclusive; without an offset, Shanghai time.
    assert reasons(since="2026-05-01T00:00:00+08:00", until="2026-05-04T00:00") == {
        "may-1",
        "may-3",
    }
    assert reasons(since="2026-04-30T16:00:00Z") == {"may-1", "may-3", "may-4"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "nonsense"}, "kind"),
        ({"since": "last week"}, "since"),
        ({"since": "2026-05-05", "until": "2026-05-01"}, "until"),
    ],
)
def test_bad_ledger_filters_are_400_in_the_error_format(api, params, field):
    response = api.get("/api/v1/billing/ledger", params)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["fields"]) == [field]


def test_a_user_never_sees_another_users_ledger(client, make_user):
    alice, bob = make_user(), make_user()
    LedgerEntry.objects.bulk_create(
        [entry(alice, key="a", reason="alice-entry"), entry(bob, key="b", reason="bob-entry")]
    )
    client.force_login(alice)

    data = client.get("/api/v1/billing/ledger").json()
    assert [e["reason"] for e in data["results"]] == ["alice-entry"]
    # No parameter names another user: even a guessed filter stays in alice's ledger.
    data = client.get("/api/v1/billing/ledger", {"user": bob.pk, "user_id": bob.pk}).json()
    assert [e["reason"] for e in data["results"]] == ["alice-entry"]


def test_a_user_never_sees_another_users_balance(client, make_user, plans):
    alice, bob = make_user(), make_user()
    services.subscription_create(user=bob, plan=plans["advanced"], at=sh(2026, 5, 1, 9))
    client.force_login(alice)

    data = client.get("/api/v1/billing/balance").json()
    assert data["active_micro"] == 0
    assert data["plan"]["code"] == "free"


def test_the_schema_describes_the_billing_endpoints(client, db):
    paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]

    assert {"/api/v1/billing/balance", "/api/v1/billing/plans", "/api/v1/billing/ledger"} <= set(
        paths
    )
    ledger_params = {p["name"] for p in paths["/api/v1/billing/ledger"]["get"]["parameters"]}
    assert {"kind", "since", "until", "page", "page_size"} <= ledger_params


def test_the_ide_plugin_reads_the_balance_with_its_bearer_token(client, user, plans):
    from tests.accounts.test_ide_oauth import ide_login

    services.subscription_create(user=user, plan=plans["trial"], at=sh(2026, 5, 1, 9))
    tokens = ide_login(client, user)

    response = client.get(
        "/api/v1/billing/balance", headers={"authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 200
    assert response.json()["active_dcu"] == "20"
