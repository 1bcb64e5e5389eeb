"""Sign-up by phone + password with SMS verification, log in by code or by
password (phone as typed, or username), and the language switch."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from aladdin.accounts.models import BannedPhone, SmsMessage, User

SMS_LINE = re.compile(r"^SMS to (?P<phone>\+86\d{11}): (?P<text>.*)$", re.S)
SIGNUP = "/accounts/signup/"
LOGIN = "/accounts/login/"
REQUEST_CODE = "/accounts/login/code/"
CONFIRM_CODE = "/accounts/login/code/confirm/"
VERIFY_PHONE = "/accounts/phone/verify/"
PASSWORD = "Very-secret-99"

pytestmark = pytest.mark.django_db


def texts_to(caplog, phone: str) -> list[str]:
    found = []
    for record in caplog.records:
        if record.name == "aladdin.sms" and (m := SMS_LINE.match(record.getMessage())):
            if m["phone"] == phone:
                found.append(m["text"])
    return found


def last_code(caplog, phone: str) -> str:
    codes = [t for t in texts_to(caplog, phone) if re.fullmatch(r"\d+", t)]
    assert codes, f"no code was texted to {phone}"
    return codes[-1]


def logged_in_as(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


def html_lang(response) -> str:
    return re.search(r'<html lang="([^"]+)"', response.content.decode())[1]


# --- sign-up ---------------------------------------------------------------------------


def test_sign_up_with_phone_and_password_then_verify_the_phone(caplog):
    client = Client(REMOTE_ADDR="10.20.0.1")

    response = client.post(
        SIGNUP, {"phone": "139 1234 5001", "username": "alice", "password1": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == VERIFY_PHONE
    user = User.objects.get(phone="+8613912345001")
    assert (user.username, user.phone_verified) == ("alice", False)
    assert logged_in_as(client) is None, "not logged in before the phone is proved"
    assert client.get("/account/").status_code == 302

    response = client.post(VERIFY_PHONE, {"code": last_code(caplog, user.phone)})

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.phone_verified is True
    assert user.check_password(PASSWORD)
    assert logged_in_as(client) == user.pk
    page = client.get("/account/", headers={"accept-language": "en"})
    assert page.status_code == 200
    # A new account is welcomed, not "back".
    # (Messages are worded when added, in the language of that request: zh-hans.)
    shown = [str(m) for m in page.context["messages"]]
    assert "欢迎来到 Aladdin：你的账号已就绪。" in shown
    assert not any("欢迎回到" in m for m in shown)


def test_a_returning_user_is_welcomed_back(make_user):
    from datetime import timedelta

    from django.utils import timezone

    user = make_user(date_joined=timezone.now() - timedelta(days=3), language="en")
    # The login page is in Chinese (the browser's language); the account's is English.
    client = Client(REMOTE_ADDR="10.21.0.9", HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.post(LOGIN, {"login": user.phone, "password": "S3cure-pass-word"})
    page = client.get("/account/")
    # The message is worded in the language of the page that shows it.
    assert html_lang(page) == "en"
    assert "Welcome back to Aladdin." in [str(m) for m in page.context["messages"]]


def test_username_is_optional_at_sign_up(caplog):
    client = Client(REMOTE_ADDR="10.20.0.2")
    client.post(SIGNUP, {"phone": "13912345002", "password1": PASSWORD})
    client.post(VERIFY_PHONE, {"code": last_code(caplog, "+8613912345002")})

    assert User.objects.get(phone="+8613912345002").username is None, "no invented username"
    assert logged_in_as(client) is not None


def test_a_wrong_verification_code_is_refused(caplog):
    client = Client(REMOTE_ADDR="10.20.0.3")
    client.post(SIGNUP, {"phone": "13912345003", "password1": PASSWORD})
    code = last_code(caplog, "+8613912345003")

    response = client.post(VERIFY_PHONE, {"code": f"{(int(code) + 1) % 10**6:06d}"})

    assert response.status_code == 200
    assert response.context["form"].errors
    assert not User.objects.get(phone="+8613912345003").phone_verified


@pytest.mark.parametrize("typed", ["12345", "02012345678", "+1 415 555 0100", "1391234500"])
def test_sign_up_needs_a_mainland_mobile_number(typed):
    response = Client(REMOTE_ADDR="10.20.0.4").post(SIGNUP, {"phone": typed, "password1": PASSWORD})

    assert response.status_code == 200
    assert response.context["form"].errors["phone"]
    assert not User.objects.exists()


def test_a_banned_number_cannot_sign_up_again(caplog, make_user):
    BannedPhone.objects.create(phone="+8613912345004", reason="mining")

    response = Client(REMOTE_ADDR="10.20.0.5", headers={"accept-language": "en"}).post(
        SIGNUP, {"phone": "13912345004", "password1": PASSWORD}
    )

    assert response.status_code == 200
    assert "blocked on Aladdin" in " ".join(response.context["form"].errors["phone"])
    assert not User.objects.filter(phone="+8613912345004").exists()
    assert texts_to(caplog, "+8613912345004") == []


def test_a_half_finished_sign_up_cannot_take_over_the_owners_account(caplog, make_user):
    # Someone signs up with a number that is not theirs and never proves it.
    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        Client(REMOTE_ADDR="10.20.0.6").post(
            SIGNUP, {"phone": "13912345005", "username": "squatter", "password1": PASSWORD}
        )
    squatted = User.objects.get(phone="+8613912345005")

    # The number's owner logs in with a texted code and so owns the account ...
    owner = Client(REMOTE_ADDR="10.20.0.7")
    owner.post(REQUEST_CODE, {"phone": "13912345005"})
    owner.post(CONFIRM_CODE, {"code": last_code(caplog, squatted.phone)})
    assert logged_in_as(owner) == squatted.pk

    # ... and the squatter's password no longer opens it.
    squatted.refresh_from_db()
    assert squatted.phone_verified
    assert not squatted.has_usable_password()
    squatter = Client(REMOTE_ADDR="10.20.0.8")
    squatter.post(LOGIN, {"login": "squatter", "password": PASSWORD})
    assert logged_in_as(squatter) is None


def test_a_verified_owner_keeps_their_password_when_logging_in_by_code(caplog, user):
    client = Client(REMOTE_ADDR="10.20.0.9")
    client.post(REQUEST_CODE, {"phone": user.phone})
    client.post(CONFIRM_CODE, {"code": last_code(caplog, user.phone)})

    user.refresh_from_db()
    assert user.check_password("S3cure-pass-word")


# --- log in ------------------------------------------------------------------------------


def test_log_in_by_sms_code(caplog, user):
    client = Client(REMOTE_ADDR="10.21.0.1")

    response = client.post(REQUEST_CODE, {"phone": user.phone.removeprefix("+86")})
    assert response["Location"] == CONFIRM_CODE
    response = client.post(CONFIRM_CODE, {"code": last_code(caplog, user.phone)})

    assert response.status_code == 302
    assert response["Location"] == "/overview/"
    assert logged_in_as(client) == user.pk
    assert SmsMessage.objects.get(phone=user.phone).purpose == "verification"


@pytest.mark.parametrize(
    "typed", ["13800138000", "+8613800138000", "+86 138 0013 8000", "0086-138-0013-8000"]
)
def test_log_in_with_the_phone_as_people_type_it(make_user, typed):
    user = make_user(phone="+8613800138000")
    client = Client(REMOTE_ADDR="10.21.0.2")

    response = client.post(LOGIN, {"login": typed, "password": "S3cure-pass-word"})

    assert response.status_code == 302
    assert logged_in_as(client) == user.pk


def test_log_in_with_the_username(make_user):
    user = make_user(username="bob")
    client = Client(REMOTE_ADDR="10.21.0.3")

    client.post(LOGIN, {"login": "bob", "password": "S3cure-pass-word"})

    assert logged_in_as(client) == user.pk


@pytest.mark.parametrize("login", ["13800138001", "carol"])
def test_a_wrong_password_is_refused(make_user, login):
    make_user(phone="+8613800138001", username="carol")
    client = Client(REMOTE_ADDR="10.21.0.4")

    response = client.post(LOGIN, {"login": login, "password": "not-the-password"})

    assert response.status_code == 200
    assert response.context["form"].errors
    assert logged_in_as(client) is None


def test_an_unverified_phone_must_be_proved_before_a_password_login(caplog, make_user):
    user = make_user(phone_verified=False, username="dora")
    client = Client(REMOTE_ADDR="10.21.0.5")

    response = client.post(LOGIN, {"login": "dora", "password": "S3cure-pass-word"})

    assert response["Location"] == VERIFY_PHONE
    assert logged_in_as(client) is None
    client.post(VERIFY_PHONE, {"code": last_code(caplog, user.phone)})
    assert logged_in_as(client) == user.pk


def test_signup_and_login_pages_render(db):
    client = Client()
    for url in (SIGNUP, LOGIN, REQUEST_CODE):
        response = client.get(url)
        assert response.status_code == 200, url
        assert 'name="phone"' in response.content.decode() or url == LOGIN


# --- language ------------------------------------------------------------------------------


def test_language_switch_is_saved_on_the_account(make_user):
    user = make_user(language="zh-hans")  # the model's default
    client = Client()
    client.force_login(user)
    assert html_lang(client.get("/account/")) == "zh-hans"

    response = client.post("/account/language/", {"language": "en", "next": "/account/"})

    assert response.status_code == 302
    assert response["Location"] == "/account/"
    user.refresh_from_db()
    assert user.language == "en"
    assert html_lang(client.get("/account/")) == "en"


def test_the_saved_language_follows_the_user_to_a_new_browser(make_user):
    user = make_user(language="en")
    client = Client(headers={"accept-language": "zh-hans"})
    client.force_login(user)

    assert html_lang(client.get("/account/")) == "en"


def test_language_switch_works_before_logging_in(db):
    client = Client()

    client.post("/account/language/", {"language": "en", "next": LOGIN})

    assert html_lang(client.get(LOGIN)) == "en"


def test_language_switch_ignores_unknown_languages_and_foreign_redirects(user):
    client = Client()
    client.force_login(user)

    response = client.post(
        "/account/language/", {"language": "xx", "next": "https://evil.example/"}
    )

    assert response["Location"] == "/"
    user.refresh_from_db()
    assert user.language == "en"  # unchanged


def test_the_code_pages_read_as_the_portal_words_them_not_as_allauth_does(db):
    # allauth's zh_Hans says "登录代码" / "请求新代码"; the portal's catalog comes first.
    from django.utils import translation
    from django.utils.translation import gettext

    with translation.override("zh-hans"):
        assert gettext("Request new code") == "重新发送验证码"
        assert gettext("Enter Sign-In Code") == "输入登录验证码"
        assert "代码" not in gettext(
            "We've sent a code to %(recipient)s. The code expires shortly, so please enter it soon."
        )
