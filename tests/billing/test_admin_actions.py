"""Back office: the arrears review queue and the "grant voucher" action (SPEC §3.5, §8)."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from aladdin.accounts.models import StaffAction
from billing import services
from billing.choices import LedgerKind
from billing.models import Account, ArrearsReview, LedgerEntry
from tests.factories import AccountFactory

from .conftest import sh

DCU = 1_000_000


def in_arrears(user, amount_micro: int, key: str = "fee"):
    """Charge ``user`` with nothing to pay: arrears; at 10 DCU a review opens."""
    services.charge(user=user, kind="test", key=key, amount_micro=amount_micro, reason="fee")
    return user


# --- arrears review queue ----------------------------------------------------------------


def test_the_queue_lists_pending_reviews_first(staff_client, staff, make_user):
    decided = ArrearsReview.objects.create(
        user=make_user(), debt_micro_at_open=10 * DCU, opened_at=sh(2026, 5, 3)
    )
    services.arrears_review_decide(review=decided, actor=staff, decision="hold", note="paid soon")
    older = ArrearsReview.objects.create(
        user=make_user(), debt_micro_at_open=10 * DCU, opened_at=sh(2026, 5, 1)
    )
    newer = ArrearsReview.objects.create(
        user=make_user(), debt_micro_at_open=12 * DCU, opened_at=sh(2026, 5, 2)
    )

    response = staff_client.get("/admin/billing/arrearsreview/")

    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert shown == [older, newer, decided]


def test_the_queue_is_searchable_by_phone_as_staff_type_it(staff_client, make_user):
    wanted = in_arrears(make_user(phone="+8613911112222"), 10 * DCU)
    in_arrears(make_user(phone="+8613933334444"), 10 * DCU, key="other")

    response = staff_client.get("/admin/billing/arrearsreview/", {"q": "139 1111 2222"})

    assert [r.user for r in response.context["cl"].result_list] == [wanted]


def test_the_queue_shows_arrears_in_dcu(staff_client, make_user):
    in_arrears(make_user(), 12 * DCU)
    html = staff_client.get("/admin/billing/arrearsreview/").content.decode()
    # Opened at 12 DCU owed; the platform's voucher brought it back to 10.
    assert re.search(r'field-debt_at_open">12<', html)
    assert re.search(r'field-current_debt">10<', html)


def test_staff_record_a_decision_with_a_note(staff_client, staff, make_user):
    user = in_arrears(make_user(), 10 * DCU)
    review = ArrearsReview.objects.get(user=user)

    response = staff_client.post(
        f"/admin/billing/arrearsreview/{review.pk}/change/",
        {"decision": "contact", "note": "Call the student before cleaning."},
    )

    assert response.status_code == 302
    review.refresh_from_db()
    assert review.decision == "contact"
    assert review.note == "Call the student before cleaning."
    assert review.decided_by == staff
    assert review.decided_at is not None
    action = StaffAction.objects.get(action="arrears_contact")
    assert (action.actor, action.target_user, action.reason) == (
        staff,
        user,
        "Call the student before cleaning.",
    )


@pytest.mark.parametrize(
    "data",
    [
        {"decision": "", "note": "why"},
        {"decision": "pending", "note": "why"},
        {"decision": "clean", "note": "   "},
    ],
)
def test_a_decision_needs_a_choice_and_a_note(staff_client, make_user, data):
    user = in_arrears(make_user(), 10 * DCU)
    review = ArrearsReview.objects.get(user=user)

    response = staff_client.post(f"/admin/billing/arrearsreview/{review.pk}/change/", data)

    assert response.status_code == 200  # the form again, with errors
    review.refresh_from_db()
    assert review.decision == "pending"
    assert not StaffAction.objects.exists()


def test_reviews_cannot_be_added_or_deleted_by_hand(staff_client, make_user):
    user = in_arrears(make_user(), 10 * DCU)
    review = ArrearsReview.objects.get(user=user)
    assert staff_client.get("/admin/billing/arrearsreview/add/").status_code == 403
    assert staff_client.post(f"/admin/billing/arrearsreview/{review.pk}/delete/").status_code == 403


# --- grant voucher ------------------------------------------------------------------------


def voucher_action(client, accounts, **extra):
    data = {"action": "grant_voucher", ACTION_CHECKBOX_NAME: [a.pk for a in accounts], **extra}
    return client.post("/admin/billing/account/", data)


def test_grant_voucher_first_asks_amount_and_reason(staff_client, user):
    account = AccountFactory(user=user)

    response = voucher_action(staff_client, [account])

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="amount_dcu"' in html and 'name="reason"' in html
    assert user.phone in html
    assert not LedgerEntry.objects.exists()


def test_grant_voucher_gives_each_selected_user_compute_and_records_who(
    staff_client, staff, make_user
):
    alice, bob = make_user(), make_user()
    accounts = [AccountFactory(user=alice), AccountFactory(user=bob)]
    key = voucher_action(staff_client, accounts).context["form"].initial["voucher_key"]

    response = voucher_action(
        staff_client,
        accounts,
        confirm_voucher="1",
        amount_dcu="2.5",
        reason="Sorry for the outage",
        voucher_key=str(key),
    )

    assert response.status_code == 302
    for user in (alice, bob):
        entry = LedgerEntry.objects.get(user=user)
        assert (entry.kind, entry.delta_micro, entry.reason) == (
            LedgerKind.VOUCHER,
            2_500_000,
            "Sorry for the outage",
        )
    actions = StaffAction.objects.filter(action="voucher")
    assert {a.target_user for a in actions} == {alice, bob}
    assert {a.actor for a in actions} == {staff}


def test_submitting_the_same_voucher_page_twice_grants_once(staff_client, user):
    account = AccountFactory(user=user)
    key = voucher_action(staff_client, [account]).context["form"].initial["voucher_key"]
    data = {
        "confirm_voucher": "1",
        "amount_dcu": "10",
        "reason": "welcome",
        "voucher_key": str(key),
    }

    voucher_action(staff_client, [account], **data)
    voucher_action(staff_client, [account], **data)

    assert LedgerEntry.objects.filter(user=user, kind=LedgerKind.VOUCHER).count() == 1


def test_a_voucher_pays_arrears_first(staff_client, make_user):
    user = in_arrears(make_user(), 3 * DCU)
    account = Account.objects.get(user=user)
    key = voucher_action(staff_client, [account]).context["form"].initial["voucher_key"]

    voucher_action(
        staff_client,
        [account],
        confirm_voucher="1",
        amount_dcu="5",
        reason="goodwill",
        voucher_key=str(key),
    )

    account.refresh_from_db()
    assert account.debt_micro == 0


@pytest.mark.parametrize(
    ("amount", "reason"),
    [("0", "why"), ("-1", "why"), ("0.0000001", "why"), ("abc", "why"), ("5", "  ")],
)
def test_a_voucher_needs_a_positive_amount_and_a_reason(staff_client, user, amount, reason):
    account = AccountFactory(user=user)
    key = voucher_action(staff_client, [account]).context["form"].initial["voucher_key"]

    response = voucher_action(
        staff_client,
        [account],
        confirm_voucher="1",
        amount_dcu=amount,
        reason=reason,
        voucher_key=str(key),
    )

    assert response.status_code == 200  # the page again, with the error
    assert not LedgerEntry.objects.exists()


def test_staff_without_the_grant_permission_do_not_see_the_action(client, make_user):
    from django.contrib.auth.models import Permission

    viewer = make_user(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_account"))
    client.force_login(viewer)

    response = client.get("/admin/billing/account/")

    assert response.status_code == 200
    assert "grant_voucher" not in response.content.decode()


def test_the_ledger_stays_read_only(staff_client, user):
    services.voucher_grant(user=user, amount_micro=DCU, reason="r", key="k")
    entry = LedgerEntry.objects.get(user=user)
    assert staff_client.get(f"/admin/billing/ledgerentry/{entry.pk}/change/").status_code == 200
    assert staff_client.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/").status_code == 403
