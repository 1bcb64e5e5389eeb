"""Banning for mining: the account is disabled for good, its sessions end, the
phone number is blocked, and the action is recorded."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from aladdin.accounts import services
from aladdin.accounts.models import BannedPhone, StaffAction

SMS_LINE = re.compile(r"^SMS to (?P<phone>\+86\d{11}): (?P<text>.*)$", re.S)
PASSWORD = "S3cure-pass-word"

pytestmark = pytest.mark.django_db


def texts_to(caplog, phone: str) -> list[str]:
    return [
        m["text"]
        for record in caplog.records
        if record.name == "aladdin.sms"
        and (m := SMS_LINE.match(record.getMessage()))
        and m["phone"] == phone
    ]


def logged_in_as(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


@pytest.fixture
def miner(make_user):
    return make_user(username="miner")


def test_ban_disables_the_account_and_records_why(miner, staff):
    services.user_ban(user=miner, actor=staff, reason="ran a miner on 8 GPUs")

    miner.refresh_from_db()
    assert miner.is_active is False
    assert miner.is_banned
    assert miner.ban_reason == "ran a miner on 8 GPUs"
    banned = BannedPhone.objects.get(phone=miner.phone)
    assert (banned.user, banned.banned_by, banned.reason) == (
        miner,
        staff,
        "ran a miner on 8 GPUs",
    )
    action = StaffAction.objects.get(target_user=miner)
    assert (action.actor, action.action, action.reason) == (staff, "ban", "ran a miner on 8 GPUs")


def test_a_ban_needs_a_reason(miner, staff):
    with pytest.raises(ValidationError):
        services.user_ban(user=miner, actor=staff, reason="  ")

    miner.refresh_from_db()
    assert miner.is_active
    assert not BannedPhone.objects.exists()


def test_banning_twice_keeps_the_first_date(miner, staff):
    first = services.user_ban(user=miner, actor=staff, reason="mining").banned_at

    again = services.user_ban(user=miner, actor=staff, reason="mining, again")

    assert again.banned_at == first
    assert BannedPhone.objects.count() == 1


def test_the_banned_users_sessions_end(miner, staff, other_user):
    client, bystander = Client(), Client()
    client.force_login(miner)
    bystander.force_login(other_user)
    assert client.get("/account/").status_code == 200

    services.user_ban(user=miner, actor=staff, reason="mining")

    assert client.get("/account/").status_code == 302
    assert bystander.get("/account/").status_code == 200


def test_a_banned_user_cannot_log_in_with_username_and_password(miner, staff):
    services.user_ban(user=miner, actor=staff, reason="mining")
    client = Client(REMOTE_ADDR="10.40.0.1")

    response = client.post("/accounts/login/", {"login": "miner", "password": PASSWORD})

    assert response.status_code == 403
    assert "accounts/banned.html" in [t.name for t in response.templates]
    assert logged_in_as(client) is None


def test_a_banned_user_cannot_log_in_with_phone_and_password(miner, staff):
    services.user_ban(user=miner, actor=staff, reason="mining")
    client = Client(REMOTE_ADDR="10.40.0.2")

    client.post(
        "/accounts/login/", {"login": miner.phone.removeprefix("+86"), "password": PASSWORD}
    )

    assert logged_in_as(client) is None


def test_a_banned_user_cannot_log_in_by_code(caplog, miner, staff):
    # The login page treats a banned number like any other (a ban cannot be
    # probed); the owner, with the texted code, is told of the ban.
    services.user_ban(user=miner, actor=staff, reason="mining")
    client = Client(REMOTE_ADDR="10.40.0.3", headers={"accept-language": "en"})

    response = client.post("/accounts/login/code/", {"phone": miner.phone})
    assert response.status_code == 302
    response = client.post(
        "/accounts/login/code/confirm/", {"code": texts_to(caplog, miner.phone)[-1]}
    )

    assert response.status_code == 403
    assert "accounts/banned.html" in [t.name for t in response.templates]
    assert logged_in_as(client) is None


def test_a_banned_number_cannot_sign_up_again(caplog, miner, staff):
    services.user_ban(user=miner, actor=staff, reason="mining")

    response = Client(REMOTE_ADDR="10.40.0.4").post(
        "/accounts/signup/", {"phone": miner.phone, "password1": "Very-secret-99"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["phone"]
    assert texts_to(caplog, miner.phone) == []


def test_a_banned_user_is_stopped_even_if_the_account_was_reactivated(miner, staff):
    # Someone flips "active" back on in the admin: the ban still holds.
    services.user_ban(user=miner, actor=staff, reason="mining")
    miner.refresh_from_db()
    miner.is_active = True
    miner.save(update_fields=["is_active"])
    client = Client(REMOTE_ADDR="10.40.0.5")

    response = client.post("/accounts/login/", {"login": "miner", "password": PASSWORD})

    assert response.status_code == 403
    assert logged_in_as(client) is None
