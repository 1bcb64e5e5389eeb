"""A banned user who logs in with the right credentials is told the account is banned and
how to appeal; wrong credentials get the usual answer, so a ban cannot be probed."""

from __future__ import annotations

import re

import pytest
from django.test import Client, override_settings

from aladdin.backoffice.services import user_ban_for_mining
from aladdin.sshgw.server import _login_target
from tests.accounts.test_ide_oauth import ide_login, me
from tests.workshops.sshkeys import public_key
from workshops import services as workshop_services

SMS_LINE = re.compile(r"^SMS to (?P<phone>\+86\d{11}): (?P<text>.*)$", re.S)
LOGIN = "/accounts/login/"
REQUEST_CODE = "/accounts/login/code/"
CONFIRM_CODE = "/accounts/login/code/confirm/"
PASSWORD = "S3cure-pass-word"
APPEAL_TO = "appeals@aladdin.test"

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("_support_contact"),
]


@pytest.fixture
def _support_contact():
    with override_settings(ALADDIN_SUPPORT_CONTACT=APPEAL_TO):
        yield


@pytest.fixture
def miner(make_user, staff):
    user = make_user(phone="+8613900000001", username="miner")
    return user


def ban(user, staff):
    user_ban_for_mining(user=user, actor=staff, reason="mining")
    user.refresh_from_db()
    return user


def browser(ip: str, language: str = "en") -> Client:
    return Client(REMOTE_ADDR=ip, headers={"accept-language": language})


def logged_in_as(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


def form_errors(response) -> list[str]:
    form = response.context["form"]
    return sorted(str(e) for errors in form.errors.values() for e in errors)


def codes_to(caplog, phone: str) -> list[str]:
    return [
        m["text"]
        for record in caplog.records
        if record.name == "aladdin.sms"
        and (m := SMS_LINE.match(record.getMessage()))
        and m["phone"] == phone
        and re.fullmatch(r"\d+", m["text"])
    ]


@pytest.mark.parametrize("login", ["13900000001", "miner"])
def test_the_right_password_of_a_banned_account_shows_the_ban_and_how_to_appeal(
    miner, staff, login
):
    ban(miner, staff)
    client = browser(f"10.60.0.{len(login)}")

    response = client.post(LOGIN, {"login": login, "password": PASSWORD})

    assert response.status_code == 403
    page = response.content.decode()
    assert "This account is banned" in page
    assert APPEAL_TO in page
    assert logged_in_as(client) is None


def test_the_ban_page_is_in_chinese_by_default(miner, staff):
    ban(miner, staff)
    client = browser("10.60.0.20", language="zh-hans")

    response = client.post(LOGIN, {"login": "miner", "password": PASSWORD})

    assert response.status_code == 403
    assert APPEAL_TO in response.content.decode()
    assert '<html lang="zh-hans"' in response.content.decode()


@pytest.mark.parametrize("login", ["13900000001", "miner"])
def test_a_wrong_password_of_a_banned_account_gets_the_answer_of_an_unknown_account(
    miner, staff, login
):
    ban(miner, staff)

    banned = browser("10.60.1.1").post(LOGIN, {"login": login, "password": "wrong-password"})
    unknown_login = "13900000999" if login.isdigit() else "nobody"
    unknown = browser("10.60.1.2").post(
        LOGIN, {"login": unknown_login, "password": "wrong-password"}
    )

    assert banned.status_code == unknown.status_code == 200
    assert form_errors(banned) == form_errors(unknown) != []
    assert "banned" not in banned.content.decode().lower()
    assert APPEAL_TO not in banned.content.decode()


def test_the_right_sms_code_of_a_banned_account_shows_the_ban(caplog, miner, staff):
    ban(miner, staff)
    client = browser("10.60.2.1")

    asked = client.post(REQUEST_CODE, {"phone": "13900000001"})
    # Like any number: on to the code page, nothing said about a ban.
    assert asked.status_code == 302 and asked["Location"] == CONFIRM_CODE
    response = client.post(CONFIRM_CODE, {"code": codes_to(caplog, miner.phone)[-1]})

    assert response.status_code == 403
    assert APPEAL_TO in response.content.decode()
    assert logged_in_as(client) is None


def test_a_wrong_sms_code_of_a_banned_account_gets_the_usual_answer(caplog, miner, staff, user):
    ban(miner, staff)
    banned, other = browser("10.60.3.1"), browser("10.60.3.2")
    banned.post(REQUEST_CODE, {"phone": miner.phone})
    other.post(REQUEST_CODE, {"phone": user.phone})

    wrong_banned = banned.post(CONFIRM_CODE, {"code": "000000"})
    wrong_other = other.post(CONFIRM_CODE, {"code": "000000"})

    assert wrong_banned.status_code == wrong_other.status_code == 200
    assert form_errors(wrong_banned) == form_errors(wrong_other) != []
    assert APPEAL_TO not in wrong_banned.content.decode()


def test_a_banned_number_still_cannot_sign_up_again(caplog, miner, staff):
    ban(miner, staff)

    response = browser("10.60.4.1").post(
        "/accounts/signup/", {"phone": miner.phone, "password1": "Very-secret-99"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["phone"]
    assert codes_to(caplog, miner.phone) == []


def test_the_ide_token_of_a_banned_user_is_refused(client, miner, staff):
    tokens = ide_login(client, miner)
    client.logout()
    assert me(client, tokens["access_token"]).status_code == 200

    ban(miner, staff)

    assert me(client, tokens["access_token"]).status_code == 401


def test_the_ssh_key_of_a_banned_user_is_refused_even_if_reactivated(miner, staff, make_workshop):
    make_workshop(miner, name="dev")
    key = workshop_services.ssh_key_add(user=miner, public_key=public_key())
    assert _login_target("dev", key.fingerprint) is not None

    ban(miner, staff)
    assert _login_target("dev", key.fingerprint) is None

    # Someone switches the account back on and un-revokes the key by hand: the ban holds.
    miner.is_active = True
    miner.save(update_fields=["is_active"])
    type(key).objects.filter(pk=key.pk).update(revoked_at=None)
    assert _login_target("dev", key.fingerprint) is None
