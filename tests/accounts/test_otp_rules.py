"""The OTP rules of the accounts issue, against allauth's real flows.

Codes are read from the console SMS backend's log line "SMS to <phone>: <code>".
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import resolve
from django.utils import timezone

from aladdin.accounts import views
from aladdin.accounts.adapter import AccountAdapter
from aladdin.accounts.models import SmsMessage, User

SMS_LINE = re.compile(r"^SMS to (?P<phone>\+86\d{11}): (?P<text>.*)$", re.S)
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


def client_from(ip: str) -> Client:
    return Client(REMOTE_ADDR=ip)


def logged_in_as(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def mask_volatile(html: str, phone: str) -> str:
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", html)
    national = phone.removeprefix("+86")
    return html.replace(phone, "PHONE").replace(national, "PHONE")


# --- 6 digits from a CSPRNG ---------------------------------------------------


def test_login_code_is_six_digits(caplog, user):
    client_from("10.1.0.1").post(REQUEST_CODE, {"phone": user.phone})

    assert re.fullmatch(r"\d{6}", last_code(caplog, user.phone))


def test_codes_come_from_the_os_csprng(monkeypatch, user):
    calls = []
    real = secrets.randbelow

    def spy(n):
        calls.append(n)
        return real(n)

    monkeypatch.setattr(secrets, "randbelow", spy)

    code = AccountAdapter().generate_phone_verification_code(user=user, phone=user.phone)

    assert calls == [10**6]
    assert re.fullmatch(r"\d{6}", code)


def test_codes_keep_leading_zeros(monkeypatch, user):
    monkeypatch.setattr(secrets, "randbelow", lambda n: 42)

    assert AccountAdapter().generate_phone_verification_code(user=user, phone=user.phone) == (
        "000042"
    )


def test_codes_are_not_repeated(user):
    adapter = AccountAdapter()
    codes = {
        adapter.generate_phone_verification_code(user=user, phone=user.phone) for _ in range(200)
    }

    # 200 draws from 10**6: a repeat is possible but one in ~50; many would mean no randomness.
    assert len(codes) >= 195


def test_signup_verification_code_is_six_digits(caplog, db):
    client_from("10.1.0.2").post(
        "/accounts/signup/", {"phone": "13912340001", "password1": PASSWORD}
    )

    assert re.fullmatch(r"\d{6}", last_code(caplog, "+8613912340001"))


# --- valid for at most 10 minutes ---------------------------------------------


@pytest.mark.parametrize(
    ("after", "works"),
    [(timedelta(minutes=9, seconds=59), True), (timedelta(minutes=10, seconds=2), False)],
)
def test_login_code_is_valid_for_ten_minutes(caplog, user, after, works):
    client = client_from("10.1.0.3")
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        client.post(REQUEST_CODE, {"phone": user.phone})
        code = last_code(caplog, user.phone)
        traveller.shift(after)

        response = client.post(CONFIRM_CODE, {"code": code})

    assert (logged_in_as(client) == user.pk) is works
    if not works:
        assert response.status_code == 302
        assert response["Location"] == REQUEST_CODE


@pytest.mark.parametrize(
    ("after", "works"),
    [(timedelta(minutes=9, seconds=59), True), (timedelta(minutes=10, seconds=2), False)],
)
def test_signup_verification_code_is_valid_for_ten_minutes(caplog, db, after, works):
    client = client_from("10.1.0.4")
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        client.post("/accounts/signup/", {"phone": "13912340002", "password1": PASSWORD})
        code = last_code(caplog, "+8613912340002")
        traveller.shift(after)

        client.post(VERIFY_PHONE, {"code": code})

    assert User.objects.get(phone="+8613912340002").phone_verified is works
    assert (logged_in_as(client) is not None) is works


# --- single use ----------------------------------------------------------------


def test_login_code_works_only_once(caplog, user):
    client = client_from("10.1.0.5")
    client.post(REQUEST_CODE, {"phone": user.phone})
    code = last_code(caplog, user.phone)
    client.post(CONFIRM_CODE, {"code": code})
    assert logged_in_as(client) == user.pk
    client.post("/accounts/logout/")

    response = client.post(CONFIRM_CODE, {"code": code})

    assert logged_in_as(client) is None
    assert response["Location"] == REQUEST_CODE


def test_login_code_is_bound_to_the_browser_that_asked(caplog, user):
    client_from("10.1.0.6").post(REQUEST_CODE, {"phone": user.phone})
    code = last_code(caplog, user.phone)
    other = client_from("10.1.0.7")

    other.post(CONFIRM_CODE, {"code": code})

    assert logged_in_as(other) is None


def test_a_resent_code_replaces_the_previous_one(caplog, user):
    client = client_from("10.1.0.8")
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        client.post(REQUEST_CODE, {"phone": user.phone})
        first = last_code(caplog, user.phone)
        traveller.shift(timedelta(seconds=61))
        client.post(CONFIRM_CODE, {"action": "resend"})
        second = last_code(caplog, user.phone)
        assert len(texts_to(caplog, user.phone)) == 2
        if first == second:
            pytest.skip("the two random codes happen to be equal")

        client.post(CONFIRM_CODE, {"code": first})
        assert logged_in_as(client) is None
        client.post(CONFIRM_CODE, {"code": second})

    assert logged_in_as(client) == user.pk


def test_a_refused_resend_keeps_the_code_that_was_sent(caplog, user):
    client = client_from("10.1.0.12")
    client.post(REQUEST_CODE, {"phone": user.phone})
    code = last_code(caplog, user.phone)

    assert client.post(CONFIRM_CODE, {"action": "resend"}).status_code == 429
    client.post(CONFIRM_CODE, {"code": code})

    assert logged_in_as(client) == user.pk


# --- invalid after 5 wrong attempts ----------------------------------------------


def test_login_code_survives_four_wrong_attempts(caplog, user):
    client = client_from("10.1.0.9")
    client.post(REQUEST_CODE, {"phone": user.phone})
    code = last_code(caplog, user.phone)
    for _ in range(4):
        response = client.post(CONFIRM_CODE, {"code": wrong(code)})
        assert response.status_code == 200

    client.post(CONFIRM_CODE, {"code": code})

    assert logged_in_as(client) == user.pk


def test_login_code_is_dead_after_five_wrong_attempts(caplog, user):
    client = client_from("10.1.0.10")
    client.post(REQUEST_CODE, {"phone": user.phone})
    code = last_code(caplog, user.phone)
    for _ in range(5):
        response = client.post(CONFIRM_CODE, {"code": wrong(code)})
    assert response.status_code == 302

    response = client.post(CONFIRM_CODE, {"code": code})

    assert logged_in_as(client) is None
    assert response["Location"] == REQUEST_CODE


def test_signup_verification_code_is_dead_after_five_wrong_attempts(caplog, db):
    client = client_from("10.1.0.11")
    client.post("/accounts/signup/", {"phone": "13912340003", "password1": PASSWORD})
    code = last_code(caplog, "+8613912340003")
    for _ in range(4):
        assert client.post(VERIFY_PHONE, {"code": wrong(code)}).status_code == 200
    assert client.post(VERIFY_PHONE, {"code": wrong(code)}).status_code == 302

    client.post(VERIFY_PHONE, {"code": code})

    assert User.objects.get(phone="+8613912340003").phone_verified is False
    assert logged_in_as(client) is None


# --- known and unknown numbers look the same -------------------------------------


def test_login_code_request_looks_the_same_for_unknown_numbers(caplog, user):
    known, unknown = client_from("10.1.1.1"), client_from("10.1.1.2")
    unknown_phone = "+8613912340004"

    r_known = known.post(REQUEST_CODE, {"phone": user.phone})
    r_unknown = unknown.post(REQUEST_CODE, {"phone": unknown_phone})

    assert (r_known.status_code, r_known["Location"]) == (302, CONFIRM_CODE)
    assert (r_unknown.status_code, r_unknown["Location"]) == (302, CONFIRM_CODE)
    page_known = known.get(CONFIRM_CODE)
    page_unknown = unknown.get(CONFIRM_CODE)
    assert page_known.status_code == page_unknown.status_code == 200
    assert mask_volatile(page_known.content.decode(), user.phone) == mask_volatile(
        page_unknown.content.decode(), unknown_phone
    )
    # The unknown number is told that it has no account, not given a code.
    assert texts_to(caplog, unknown_phone) and not re.fullmatch(
        r"\d+", texts_to(caplog, unknown_phone)[-1]
    )


def test_wrong_codes_look_the_same_for_unknown_numbers(user):
    known, unknown = client_from("10.1.1.3"), client_from("10.1.1.4")
    unknown_phone = "+8613912340005"
    known.post(REQUEST_CODE, {"phone": user.phone})
    unknown.post(REQUEST_CODE, {"phone": unknown_phone})

    for attempt in range(5):
        r_known = known.post(CONFIRM_CODE, {"code": "123456"})
        r_unknown = unknown.post(CONFIRM_CODE, {"code": "123456"})
        assert r_known.status_code == r_unknown.status_code, attempt
        assert r_known.get("Location") == r_unknown.get("Location")
        if r_known.status_code == 200:
            assert mask_volatile(r_known.content.decode(), user.phone) == mask_volatile(
                r_unknown.content.decode(), unknown_phone
            )


def test_sms_limit_looks_the_same_for_unknown_numbers(user):
    unknown_phone = "+8613912340006"
    with time_machine.travel(timezone.now(), tick=False):
        client_from("10.1.1.5").post(REQUEST_CODE, {"phone": user.phone})
        client_from("10.1.1.10").post(REQUEST_CODE, {"phone": unknown_phone})
        r_known = client_from("10.1.1.6").post(REQUEST_CODE, {"phone": user.phone})
        r_unknown = client_from("10.1.1.7").post(REQUEST_CODE, {"phone": unknown_phone})

    assert r_known.status_code == r_unknown.status_code == 429
    assert r_known["Retry-After"] == r_unknown["Retry-After"]
    assert mask_volatile(r_known.content.decode(), user.phone) == mask_volatile(
        r_unknown.content.decode(), unknown_phone
    )


@pytest.fixture
def code_pages_routed(request):
    # Two gaps of allauth's code pages are closed in aladdin.accounts.views
    # (resend for numbers without an account; wrong attempts counted in the
    # session, so parallel guesses all pass). Until aladdin/accounts/urls.py
    # routes the two pages there, these tests are expected to fail, and fail
    # loudly once routed.
    routed = (
        resolve(CONFIRM_CODE).func is views.confirm_login_code
        and resolve(VERIFY_PHONE).func is views.verify_phone
    )
    if not routed:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="route accounts/login/code/confirm/ and accounts/phone/verify/ "
                "to aladdin.accounts.views in aladdin/accounts/urls.py",
            )
        )


def _resend_responses(client: Client, url: str, times: int, step: timedelta, traveller):
    responses = []
    for _ in range(times):
        response = client.post(url, {"action": "resend"})
        responses.append((response.status_code, response.get("Location")))
        traveller.shift(step)
    return responses


def test_resending_a_login_code_looks_the_same_for_unknown_numbers(caplog, user, code_pages_routed):
    known, unknown = client_from("10.1.1.8"), client_from("10.1.1.9")
    unknown_phone = "+8613912340007"
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        known.post(REQUEST_CODE, {"phone": user.phone})
        unknown.post(REQUEST_CODE, {"phone": unknown_phone})
        # At once (refused by the 60 s limit), then 61 s later (allowed).
        steps = [timedelta(seconds=61), timedelta(seconds=1)]
        r_known = [_resend_responses(known, CONFIRM_CODE, 1, s, traveller)[0] for s in steps]
        traveller.shift(-sum(steps, timedelta()))
        r_unknown = [_resend_responses(unknown, CONFIRM_CODE, 1, s, traveller)[0] for s in steps]

    assert r_known == r_unknown == [(429, None), (302, CONFIRM_CODE)]
    # The known number got a fresh code; the unknown one got nothing more.
    assert len(texts_to(caplog, user.phone)) == 2
    assert len(texts_to(caplog, unknown_phone)) == 1


def test_signup_with_a_taken_number_looks_the_same(caplog, user):
    new, taken = client_from("10.1.2.1"), client_from("10.1.2.2")
    new_phone = "+8613912340008"

    r_new = new.post("/accounts/signup/", {"phone": new_phone, "password1": PASSWORD})
    r_taken = taken.post("/accounts/signup/", {"phone": user.phone, "password1": PASSWORD})

    assert (r_new.status_code, r_new["Location"]) == (302, VERIFY_PHONE)
    assert (r_taken.status_code, r_taken["Location"]) == (302, VERIFY_PHONE)
    page_new, page_taken = new.get(VERIFY_PHONE), taken.get(VERIFY_PHONE)
    assert page_new.status_code == page_taken.status_code == 200
    assert mask_volatile(page_new.content.decode(), new_phone) == mask_volatile(
        page_taken.content.decode(), user.phone
    )
    assert User.objects.filter(phone=user.phone).count() == 1
    assert len(texts_to(caplog, user.phone)) == 1
    assert SmsMessage.objects.get(phone=user.phone).purpose == "already_exists"


def test_resending_a_signup_code_looks_the_same_for_taken_numbers(caplog, user, code_pages_routed):
    new, taken = client_from("10.1.2.3"), client_from("10.1.2.4")
    new_phone = "+8613912340009"
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        new.post("/accounts/signup/", {"phone": new_phone, "password1": PASSWORD})
        taken.post("/accounts/signup/", {"phone": user.phone, "password1": PASSWORD})
        steps = [timedelta(seconds=61), timedelta(seconds=1)]
        r_new = [_resend_responses(new, VERIFY_PHONE, 1, s, traveller)[0] for s in steps]
        traveller.shift(-sum(steps, timedelta()))
        r_taken = [_resend_responses(taken, VERIFY_PHONE, 1, s, traveller)[0] for s in steps]

    assert r_new == r_taken == [(429, None), (302, VERIFY_PHONE)]
    assert len(texts_to(caplog, new_phone)) == 2
    assert len(texts_to(caplog, user.phone)) == 1


def _replay_parallel_guesses(client: Client, url: str, guesses: int, code: str) -> None:
    """Wrong guesses that all start from the same session, as parallel requests do."""
    before = dict(client.session.items())
    for _ in range(guesses):
        client.post(url, {"code": wrong(code)})
        session = client.session
        session.clear()
        session.update(before)
        session.save()


def test_parallel_wrong_login_codes_count_too(caplog, user, code_pages_routed):
    client = client_from("10.1.3.1")
    client.post(REQUEST_CODE, {"phone": user.phone})
    code = last_code(caplog, user.phone)

    _replay_parallel_guesses(client, CONFIRM_CODE, 5, code)
    response = client.post(CONFIRM_CODE, {"code": code})

    assert logged_in_as(client) is None
    assert response["Location"] == REQUEST_CODE


def test_parallel_wrong_signup_codes_count_too(caplog, db, code_pages_routed):
    client = client_from("10.1.3.2")
    client.post("/accounts/signup/", {"phone": "13912340010", "password1": PASSWORD})
    code = last_code(caplog, "+8613912340010")

    _replay_parallel_guesses(client, VERIFY_PHONE, 5, code)
    client.post(VERIFY_PHONE, {"code": code})

    assert User.objects.get(phone="+8613912340010").phone_verified is False
    assert logged_in_as(client) is None
