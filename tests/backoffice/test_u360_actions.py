"""The actions of the user 360° page: a reason each, permission-checked, audited, bad input refused."""

from __future__ import annotations

import uuid

import pytest

from aladdin.accounts.models import StaffAction
from billing import selectors as billing_selectors
from billing.choices import LedgerKind
from billing.models import Grant, LedgerEntry, Refund
from gpu_jobs.choices import JobState
from storage import selectors as storage_selectors
from storage.models import StorageAllowance
from workshops.choices import WorkshopState

from .u360_fixtures import alipay_sandbox, paid_order, shown_messages, support_user  # noqa: F401

pytestmark = pytest.mark.django_db
DCU = 1_000_000


def act(client, user, name, **data):
    return client.post(f"/admin/backoffice/users/{user.pk}/act/{name}/", data, follow=True)


def audit_of(user, action) -> list[StaffAction]:
    return list(StaffAction.objects.filter(target_user=user, action=action))


# --- voucher ---------------------------------------------------------------------------


def test_a_voucher_grants_compute_once_and_is_recorded(staff_client, staff, user):
    key = str(uuid.uuid4())

    first = act(staff_client, user, "voucher", amount_dcu="2.5", reason="Outage", key=key)
    act(staff_client, user, "voucher", amount_dcu="2.5", reason="Outage", key=key)  # resent

    assert "Voucher of 2.5 DCU granted." in shown_messages(first)
    assert billing_selectors.balance_for(user).active_micro == 2_500_000
    assert Grant.objects.filter(user=user).count() == 1
    [record] = audit_of(user, "voucher")
    assert (record.actor, record.reason) == (staff, "Outage")


@pytest.mark.parametrize(
    "data, error",
    [
        ({"amount_dcu": "0", "reason": "x"}, "A voucher must be worth more than 0 DCU."),
        ({"amount_dcu": "-1", "reason": "x"}, "A voucher must be worth more than 0 DCU."),
        ({"amount_dcu": "1", "reason": "   "}, "a reason is required"),
        ({"amount_dcu": "abc", "reason": "x"}, "Amount (DCU): Enter a number."),
    ],
)
def test_a_bad_voucher_is_refused_with_nothing_changed(staff_client, user, data, error):
    response = act(staff_client, user, "voucher", key=str(uuid.uuid4()), **data)

    assert any(error in m for m in shown_messages(response))
    assert not Grant.objects.filter(user=user).exists()
    assert not audit_of(user, "voucher")


# --- refund ----------------------------------------------------------------------------


@pytest.mark.usefixtures("alipay_sandbox")
def test_a_refund_of_an_order_is_made_and_recorded(staff_client, staff, user, plans):
    order = paid_order(user, plans["trial"])

    response = act(
        staff_client,
        user,
        "refund",
        order=order.pk,
        amount_yuan="1.00",
        reason="Double payment",
        key=str(uuid.uuid4()),
    )

    assert any(m.startswith("Refunded 1.00 yuan") for m in shown_messages(response))
    order.refresh_from_db()
    assert order.refunded_fen == 100
    [record] = audit_of(user, "refund")
    assert (record.actor, record.reason) == (staff, "Double payment")
    assert record.details["amount_fen"] == 100


@pytest.mark.usefixtures("alipay_sandbox")
def test_a_refund_above_what_is_left_is_refused(staff_client, user, plans):
    order = paid_order(user, plans["trial"])
    too_much = f"{order.price_fen / 100 + 1:.2f}"

    response = act(
        staff_client,
        user,
        "refund",
        order=order.pk,
        amount_yuan=too_much,
        reason="x",
        key=str(uuid.uuid4()),
    )

    assert any("The refund must be between" in m for m in shown_messages(response))
    assert not Refund.objects.exists()
    assert not audit_of(user, "refund")


@pytest.mark.usefixtures("alipay_sandbox")
def test_another_users_order_is_404(staff_client, user, other_user, plans):
    order = paid_order(other_user, plans["trial"])

    response = staff_client.post(
        f"/admin/backoffice/users/{user.pk}/act/refund/",
        {"order": order.pk, "amount_yuan": "1", "reason": "x", "key": str(uuid.uuid4())},
    )

    assert response.status_code == 404
    assert not Refund.objects.exists()


# --- stops ---------------------------------------------------------------------------


def test_a_job_is_stopped_with_the_reason_shown_to_the_user(staff_client, staff, user, make_job):
    job = make_job(user)

    response = act(staff_client, user, "job_stop", job=job.pk, reason="Mining")

    assert f"Job {job.pk} is stopping." in shown_messages(response)
    job.refresh_from_db()
    assert job.stop_requested_at is not None
    assert "Mining" in job.reason
    [record] = audit_of(user, "job_stop")
    assert record.reason == "Mining" and record.subject_id == str(job.pk)


def test_an_ended_job_cannot_be_stopped(staff_client, user, make_job):
    job = make_job(user, state=JobState.SUCCEEDED)

    response = act(staff_client, user, "job_stop", job=job.pk, reason="x")

    assert "Only a starting or running job can be stopped." in shown_messages(response)
    assert not audit_of(user, "job_stop")


def test_another_users_job_is_404(staff_client, user, other_user, make_job):
    job = make_job(other_user)

    response = staff_client.post(
        f"/admin/backoffice/users/{user.pk}/act/job_stop/", {"job": job.pk, "reason": "x"}
    )

    assert response.status_code == 404


def test_a_workshop_is_stopped_and_recorded(staff_client, user, make_workshop):
    workshop = make_workshop(user)

    response = act(staff_client, user, "workshop_stop", workshop=workshop.pk, reason="Abuse")

    assert f"Workshop {workshop.name} is stopping." in shown_messages(response)
    workshop.refresh_from_db()
    assert workshop.state in (WorkshopState.STOPPING, WorkshopState.STOPPED)
    assert audit_of(user, "workshop_stop")[0].reason == "Abuse"


def test_a_stop_without_a_reason_changes_nothing(staff_client, user, make_job):
    job = make_job(user)

    response = act(staff_client, user, "job_stop", job=job.pk, reason="")

    assert any("a reason is required" in m for m in shown_messages(response))
    job.refresh_from_db()
    assert job.stop_requested_at is None


# --- storage ---------------------------------------------------------------------------


def test_storage_is_raised_with_before_and_after_recorded(staff_client, user, plans):
    before = storage_selectors.allowance_gib(user)

    response = act(staff_client, user, "storage_raise", allowance_gib=500, reason="Thesis data")

    assert storage_selectors.allowance_gib(user) == 500
    assert f"Storage allowance set to 500 GiB (was {before} GiB)." in shown_messages(response)
    [record] = audit_of(user, "storage_allowance")
    assert record.before["allowance_gib"] == before
    assert record.after["allowance_gib"] == 500


def test_storage_below_what_the_user_uses_is_refused(staff_client, user, plans):
    StorageAllowance.objects.create(user=user, last_bytes=50 * 2**30)

    response = act(staff_client, user, "storage_raise", allowance_gib=10, reason="x")

    assert any("already uses 50 GiB" in m for m in shown_messages(response))
    assert StorageAllowance.objects.get(user=user).staff_gib is None


def test_retention_is_held_and_lifted(staff_client, user):
    act(staff_client, user, "storage_hold", hold="1", reason="Court case")
    assert StorageAllowance.objects.get(user=user).hold is True

    act(staff_client, user, "storage_hold", hold="0", reason="Settled")
    assert StorageAllowance.objects.get(user=user).hold is False

    assert [a.reason for a in audit_of(user, "storage_hold")] == ["Court case"]
    assert [a.reason for a in audit_of(user, "storage_unhold")] == ["Settled"]


# --- education -------------------------------------------------------------------------


def test_education_is_approved_with_the_reason(staff_client, user):
    response = act(staff_client, user, "education", approved="1", reason="Student card seen")

    user.refresh_from_db()
    assert user.is_education
    assert "Education status approved." in shown_messages(response)
    assert audit_of(user, "education_approve")[0].reason == "Student card seen"


# --- ban -------------------------------------------------------------------------------


def test_a_ban_stops_everything_and_forfeits_compute(staff_client, user, make_job, make_workshop):
    workshop = make_workshop(user)  # first: a running job's cards leave no room in the quota
    job = make_job(user)
    from tests import factories

    factories.VoucherFactory(user=user, dcu=5)

    act(staff_client, user, "ban", reason="Mining Monero", confirm="on")

    user.refresh_from_db()
    job.refresh_from_db()
    workshop.refresh_from_db()
    assert user.is_banned and not user.is_active
    assert job.stop_requested_at is not None or job.state == JobState.STOPPED
    assert workshop.state in (WorkshopState.STOPPING, WorkshopState.STOPPED)
    assert billing_selectors.balance_for(user).active_micro == 0
    assert LedgerEntry.objects.filter(user=user, kind=LedgerKind.FORFEIT).exists()
    assert audit_of(user, "ban")[0].reason == "Mining Monero"


def test_a_ban_needs_the_confirmation_box(staff_client, user):
    response = act(staff_client, user, "ban", reason="Mining")

    user.refresh_from_db()
    assert not user.is_banned
    assert "Tick the box to confirm the ban." in shown_messages(response)


def test_staff_cannot_ban_themselves(staff_client, staff):
    act(staff_client, staff, "ban", reason="oops", confirm="on")

    staff.refresh_from_db()
    assert not staff.is_banned


# --- permissions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, data",
    [
        ("voucher", {"amount_dcu": "1", "reason": "x", "key": str(uuid.uuid4())}),
        ("job_stop", {"job": 1, "reason": "x"}),
        ("workshop_stop", {"workshop": 1, "reason": "x"}),
        ("storage_raise", {"allowance_gib": 100, "reason": "x"}),
        ("storage_hold", {"hold": "1", "reason": "x"}),
        ("education", {"approved": "1", "reason": "x"}),
        ("ban", {"reason": "x", "confirm": "on"}),
        ("refund", {"order": 1, "amount_yuan": "1", "reason": "x", "key": str(uuid.uuid4())}),
    ],
)
def test_support_without_the_actions_permission_gets_403(client, user, name, data):
    client.force_login(support_user())  # may view, may not act

    response = client.post(f"/admin/backoffice/users/{user.pk}/act/{name}/", data)

    assert response.status_code == 403
    assert not StaffAction.objects.exists()
    user.refresh_from_db()
    assert not user.is_banned


def test_support_with_the_permission_may_act(client, user):
    agent = support_user("billing.add_grant")
    client.force_login(agent)

    act(client, user, "voucher", amount_dcu="1", reason="Goodwill", key=str(uuid.uuid4()))

    assert audit_of(user, "voucher")[0].actor == agent


def test_a_student_posting_an_action_goes_to_the_admin_login(student_client, user):
    response = student_client.post(
        f"/admin/backoffice/users/{user.pk}/act/ban/", {"reason": "x", "confirm": "on"}
    )

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    user.refresh_from_db()
    assert not user.is_banned


def test_an_action_on_an_unknown_user_is_404(staff_client):
    response = staff_client.post(
        "/admin/backoffice/users/999999/act/education/", {"approved": "1", "reason": "x"}
    )

    assert response.status_code == 404


def test_an_unknown_action_is_404(staff_client, user):
    assert staff_client.post(f"/admin/backoffice/users/{user.pk}/act/nope/", {}).status_code == 404


def test_a_get_is_not_an_action(staff_client, user):
    assert staff_client.get(f"/admin/backoffice/users/{user.pk}/act/ban/").status_code == 405


def test_a_banned_account_is_offered_no_voucher_education_or_storage(
    staff_client, staff, make_user
):
    from aladdin.backoffice.services import user_ban_for_mining

    miner = make_user()
    user_ban_for_mining(user=miner, actor=staff, reason="mining")

    page = staff_client.get(f"/admin/backoffice/users/{miner.pk}/").content.decode()
    for action in ("voucher", "education", "storage_raise"):
        assert f"/act/{action}/" not in page
    assert "/act/storage_hold/" in page  # kept, e.g. for an appeal

    response = act(staff_client, miner, "voucher", amount_dcu="5", reason="sorry", key="k1")
    assert any("The account is banned" in m for m in shown_messages(response))
    assert not Grant.objects.filter(user=miner).exists()
