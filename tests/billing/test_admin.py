import pytest

from billing.models import LedgerEntry, Plan
from tests.factories import VoucherFactory


@pytest.mark.parametrize("model", ["plan", "account", "subscription", "grant", "ledgerentry"])
def test_staff_see_every_billing_list(staff_client, model):
    assert staff_client.get(f"/admin/billing/{model}/").status_code == 200


def test_staff_edit_plan_prices(staff_client):
    plan = Plan.objects.get(code="trial")
    assert staff_client.get(f"/admin/billing/plan/{plan.pk}/change/").status_code == 200


def test_ledger_entries_cannot_be_added_changed_or_deleted_in_the_admin(staff_client, user):
    grant = VoucherFactory(user=user, amount_micro=10, key="admin-test")
    entry = LedgerEntry.objects.get(grant=grant)
    assert staff_client.get("/admin/billing/ledgerentry/add/").status_code == 403
    assert staff_client.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/").status_code == 403
    response = staff_client.post(
        f"/admin/billing/ledgerentry/{entry.pk}/change/", {"delta_micro": 99}
    )
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.delta_micro == 10
