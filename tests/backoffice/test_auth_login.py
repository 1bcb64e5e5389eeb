"""Staff log in at /admin/login/ with a phone number (any format) or username, then,
where required, a TOTP code (allauth.mfa). Tested through the login form itself."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.urls import reverse

from aladdin.backoffice import mfa
from tests.factories import PASSWORD, UserFactory

LOGIN = "/admin/login/"


def current_code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def log_in(client, identifier: str, password: str = PASSWORD, next_url: str = "/admin/"):
    return client.post(
        f"{LOGIN}?next={next_url}",
        {"username": identifier, "password": password, "next": next_url},
        headers={"accept-language": "en"},
    )


@pytest.fixture(autouse=True)
def _english(client):
    # The pages before the login have no user language: ask for English.
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


@pytest.fixture
def superuser(db):
    return UserFactory(admin=True, phone="+8613800138000", username="boss")


@pytest.mark.parametrize(
    "typed", ["13800138000", "138 0013 8000", "+86 138-0013-8000", "0086 13800138000", "boss"]
)
def test_staff_log_in_with_a_phone_typed_any_way_or_a_username(client, superuser, typed):
    response = log_in(client, typed)

    assert response.status_code == 302 and response["Location"] == "/admin/"
    home = client.get("/admin/")
    assert home.status_code == 200
    assert home.context["user"] == superuser


def test_the_login_form_asks_for_a_phone_number_or_username(client, db):
    page = client.get(LOGIN, headers={"accept-language": "en"}).content.decode()
    assert "Phone number or username" in page


def test_a_wrong_password_gets_the_usual_answer_and_no_session(client, superuser):
    response = log_in(client, "13800138000", "not-the-password")

    assert response.status_code == 200
    assert "correct phone number (or username) and password" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_student_with_the_right_password_is_not_let_in(client, db):
    student = UserFactory()

    response = log_in(client, student.phone)

    assert response.status_code == 200
    assert "staff account" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_wrong_passwords_are_rate_limited_per_account(client, superuser):
    for _attempt in range(5):
        log_in(client, "13800138000", "wrong")

    # Now even the right password waits: a brute force learns nothing.
    response = log_in(client, "13800138000")
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()


def test_failed_logins_for_one_phone_do_not_lock_another(client, superuser):
    # allauth keyed every phone login on one empty key: five wrong passwords
    # for any number locked every phone login on the site.
    other = UserFactory(admin=True)
    for _attempt in range(5):
        log_in(client, "13900139000", "wrong")

    assert log_in(client, other.phone)["Location"] == "/admin/"


# --- the second factor ------------------------------------------------------------------


@pytest.fixture
def mfa_required(settings):
    settings.ALADDIN_STAFF_MFA_REQUIRED = True


def test_where_required_a_first_login_enrols_an_authenticator_app(client, superuser, mfa_required):
    response = log_in(client, "13800138000", next_url="/admin/billing/plan/")

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login_setup"))
    # Not logged in yet: the password alone opens nothing.
    assert client.get("/admin/").status_code == 302

    setup = client.get(response["Location"])
    page = setup.content.decode()
    assert "<svg" in page and "authenticator app" in page
    secret = re.search(r'id="totp-secret"[^>]*>([A-Z2-7]+)<', page).group(1)

    wrong = client.post(response["Location"], {"code": "000000", "next": "/admin/billing/plan/"})
    assert "not right" in wrong.content.decode()
    assert not Authenticator.objects.filter(user=superuser).exists()

    done = client.post(
        response["Location"], {"code": current_code(secret), "next": "/admin/billing/plan/"}
    )
    assert done.status_code == 302 and done["Location"] == "/admin/billing/plan/"
    assert Authenticator.objects.filter(user=superuser, type="totp").count() == 1
    assert client.get("/admin/").status_code == 200


def test_with_an_authenticator_the_login_asks_for_its_code(client, superuser):
    # Even where not required: who enrolled gives the code.
    secret = generate_totp_secret()
    TOTP.activate(superuser, secret)

    response = log_in(client, "boss")
    assert response["Location"].startswith(reverse("admin:login_code"))
    assert client.get("/admin/").status_code == 302

    wrong = client.post(response["Location"], {"code": "123456", "next": "/admin/"})
    assert wrong.status_code == 200 and "not right" in wrong.content.decode()

    code = current_code(secret)
    assert client.post(response["Location"], {"code": code, "next": "/admin/"}).status_code == 302
    assert client.get("/admin/").status_code == 200

    # The same code cannot be replayed for a second session.
    other = client.__class__(HTTP_ACCEPT_LANGUAGE="en")
    again = log_in(other, "boss")
    reused = other.post(again["Location"], {"code": code, "next": "/admin/"})
    assert reused.status_code == 200 and "already used" in reused.content.decode()


def test_the_code_step_without_a_password_first_goes_back_to_the_login(client, db):
    assert client.get(reverse("admin:login_code")).url.startswith(LOGIN)
    assert client.get(reverse("admin:login_setup")).url.startswith(LOGIN)


def test_a_pending_login_expires(client, superuser, mfa_required, monkeypatch):
    response = log_in(client, "boss")
    monkeypatch.setattr(mfa, "PENDING_SECONDS", -1)
    assert client.get(response["Location"]).url.startswith(LOGIN)


def test_staff_logged_in_on_the_students_page_still_owe_the_second_factor(
    client, superuser, mfa_required
):
    client.force_login(superuser)

    to_login = client.get("/admin/")
    assert to_login.status_code == 302 and to_login.url.startswith(LOGIN)
    step = client.get(to_login.url)
    assert step.status_code == 302 and step.url.startswith(reverse("admin:login_setup"))
    # Every back-office page is behind the same check.
    assert client.get(reverse("backoffice:user", args=[superuser.pk])).status_code == 302


def test_the_deploy_check_warns_when_the_second_factor_is_off(settings):
    from django.core.checks import run_checks

    settings.ALADDIN_STAFF_MFA_REQUIRED = False
    ids = {m.id for m in run_checks(include_deployment_checks=True)}
    assert "backoffice.W001" in ids
    settings.ALADDIN_STAFF_MFA_REQUIRED = True
    ids = {m.id for m in run_checks(include_deployment_checks=True)}
    assert "backoffice.W001" not in ids


def test_students_are_not_offered_the_mfa_management_pages(client, db):
    client.force_login(UserFactory())
    assert client.get("/accounts/2fa/").status_code == 404
    assert client.get("/accounts/2fa/totp/activate/").status_code == 404
