from datetime import timedelta

import pytest
from django.utils import timezone

from billing.choices import GrantClass, LedgerKind
from billing.models import Grant, LedgerEntry, Plan


@pytest.fixture
def staff_client(client, make_user):
    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


@pytest.mark.parametrize("model", ["plan", "account", "subscription", "grant", "ledgerentry"])
def test_staff_see_every_billing_list(staff_client, model):
    assert staff_client.get(f"/admin/billing/{model}/").status_code == 200


def test_staff_edit_plan_prices(staff_client):
    plan = Plan.objects.get(code="trial")
    assert staff_client.get(f"/admin/billing/plan/{plan.pk}/change/").status_code == 200


def test_ledger_entries_cannot_be_added_changed_or_deleted_in_the_admin(staff_client, user):
    grant = Grant.objects.create(
        user=user,
        grant_class=GrantClass.EXTENSION,
        granted_micro=10,
        remaining_micro=10,
        active_until=timezone.now() + timedelta(days=30),
    )
    entry = LedgerEntry.objects.create(
        user=user,
        grant=grant,
        delta_micro=10,
        kind=LedgerKind.GRANT,
        reason="test",
        idempotency_key="admin-test",
    )
    assert staff_client.get("/admin/billing/ledgerentry/add/").status_code == 403
    assert staff_client.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/").status_code == 403
    response = staff_client.post(
        f"/admin/billing/ledgerentry/{entry.pk}/change/", {"delta_micro": 99}
    )
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.delta_micro == 10
