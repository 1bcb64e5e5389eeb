"""Forgot password: log in with an SMS code, then choose a new password at
/account/password/new/ without the old one."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

SMS_LINE = re.compile(r"^SMS to (?P<phone>\+86\d{11}): (?P<text>.*)$", re.S)
RESET = "/accounts/password/reset/"
NEW = "/account/password/new/"
REQUEST_CODE = "/accounts/login/code/"
CONFIRM_CODE = "/accounts/login/code/confirm/"
OLD_PASSWORD = "S3cure-pass-word"
NEW_PASSWORD = "Another-g00d-one"

pytestmark = pytest.mark.django_db


def last_code(caplog, phone: str) -> str:
    codes = []
    for record in caplog.records:
        if record.name == "aladdin.sms" and (m := SMS_LINE.match(record.getMessage())):
            if m["phone"] == phone and re.fullmatch(r"\d+", m["text"]):
                codes.append(m["text"])
    assert codes, f"no code was texted to {phone}"
    return codes[-1]


def logged_in_as(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


def log_in_by_code_for_reset(client: Client, caplog, user) -> None:
    response = client.post(REQUEST_CODE, {"phone": user.phone, "next": NEW})
    assert response["Location"] == f"{CONFIRM_CODE}?next={quote(NEW, safe='')}"
    response = client.post(CONFIRM_CODE, {"code": last_code(caplog, user.phone), "next": NEW})
    assert response["Location"] == NEW


def test_the_reset_page_sends_people_to_a_code_login(db):
    response = Client().get(RESET)

    assert response.status_code == 200
    assert f'href="{REQUEST_CODE}?next={NEW}"' in response.content.decode()


def test_reset_the_password_by_sms(caplog, user):
    client = Client(REMOTE_ADDR="10.30.0.1")
    log_in_by_code_for_reset(client, caplog, user)

    assert client.get(NEW).status_code == 200
    response = client.post(NEW, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/account/"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert logged_in_as(client) == user.pk, "the browser stays logged in"

    fresh = Client(REMOTE_ADDR="10.30.0.2")
    fresh.post("/accounts/login/", {"login": user.phone, "password": OLD_PASSWORD})
    assert logged_in_as(fresh) is None
    fresh.post("/accounts/login/", {"login": user.phone, "password": NEW_PASSWORD})
    assert logged_in_as(fresh) == user.pk


def test_reset_also_works_for_an_account_without_a_password(caplog, make_user):
    user = make_user(password=None)
    client = Client(REMOTE_ADDR="10.30.0.3")
    log_in_by_code_for_reset(client, caplog, user)

    client.post(NEW, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_a_password_login_is_not_enough(user):
    client = Client(REMOTE_ADDR="10.30.0.4")
    client.post("/accounts/login/", {"login": user.phone, "password": OLD_PASSWORD})
    assert logged_in_as(client) == user.pk

    response = client.post(NEW, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response["Location"] == RESET
    user.refresh_from_db()
    assert user.check_password(OLD_PASSWORD)


def test_the_code_login_must_be_recent(caplog, user):
    client = Client(REMOTE_ADDR="10.30.0.5")
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        log_in_by_code_for_reset(client, caplog, user)
        traveller.shift(timedelta(minutes=11))

        response = client.post(NEW, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response["Location"] == RESET
    user.refresh_from_db()
    assert user.check_password(OLD_PASSWORD)


def test_anonymous_visitors_are_sent_to_log_in(db):
    response = Client().get(NEW)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("password1", "password2"),
    [(NEW_PASSWORD, NEW_PASSWORD + "x"), ("12345678", "12345678"), ("short", "short")],
)
def test_the_new_password_is_checked(caplog, user, password1, password2):
    client = Client(REMOTE_ADDR="10.30.0.6")
    log_in_by_code_for_reset(client, caplog, user)

    response = client.post(NEW, {"password1": password1, "password2": password2})

    assert response.status_code == 200
    assert response.context["form"].errors
    user.refresh_from_db()
    assert user.check_password(OLD_PASSWORD)


def test_a_logged_in_user_who_forgot_the_password_reauthenticates_by_code(caplog, user):
    client = Client(REMOTE_ADDR="10.30.0.7")
    client.force_login(user)
    page = client.get(RESET).content.decode()
    assert f'href="/accounts/reauthenticate/code/?next={NEW}"' in page

    response = client.post("/accounts/reauthenticate/code/", {"recipient": user.phone, "next": NEW})
    assert response["Location"].startswith("/accounts/reauthenticate/code/confirm/")
    response = client.post(
        "/accounts/reauthenticate/code/confirm/",
        {"code": last_code(caplog, user.phone), "next": NEW},
    )
    assert response["Location"] == NEW
    client.post(NEW, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
