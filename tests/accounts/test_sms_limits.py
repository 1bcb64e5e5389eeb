"""SMS limits: 1 send per 60 s and 10 per day per phone and per client IP, a
platform-wide daily budget, counters in Redis, client IPs from trusted proxies only."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client, override_settings
from django.utils import timezone

from aladdin.accounts import sms
from aladdin.accounts.models import SmsMessage, User

SMS_LINE = re.compile(r"^SMS to (?P<phone>\+86\d{11}): (?P<text>.*)$", re.S)
REQUEST_CODE = "/accounts/login/code/"
SHANGHAI = ZoneInfo("Asia/Shanghai")

pytestmark = pytest.mark.django_db


def texts_to(caplog, phone: str) -> list[str]:
    found = []
    for record in caplog.records:
        if record.name == "aladdin.sms" and (m := SMS_LINE.match(record.getMessage())):
            if m["phone"] == phone:
                found.append(m["text"])
    return found


def phone(n: int) -> str:
    return f"+86139000{n:05d}"


def ask_code(number: str, ip: str = "10.2.0.1", **headers) -> int:
    """Request a login code from a fresh browser; returns the status (302 sent, 429 refused)."""
    return Client(REMOTE_ADDR=ip, headers=headers).post(REQUEST_CODE, {"phone": number}).status_code


@pytest.fixture
def clock():
    # Noon in Shanghai, so that a few minutes of sends stay within one day.
    start = datetime(2026, 3, 2, 12, 0, tzinfo=SHANGHAI)
    with time_machine.travel(start, tick=False) as traveller:
        yield traveller


# --- 1 per 60 s ------------------------------------------------------------------


def test_one_send_per_minute_per_phone(user, clock):
    assert ask_code(user.phone, ip="10.2.0.1") == 302

    clock.shift(timedelta(seconds=59))
    response = Client(REMOTE_ADDR="10.2.0.2").post(REQUEST_CODE, {"phone": user.phone})
    assert response.status_code == 429
    assert response["Retry-After"] == "1"

    clock.shift(timedelta(seconds=1))
    assert ask_code(user.phone, ip="10.2.0.3") == 302


def test_one_send_per_minute_per_ip(make_user, clock):
    first, second = make_user(), make_user()
    assert ask_code(first.phone, ip="10.2.0.4") == 302

    clock.shift(timedelta(seconds=30))
    assert ask_code(second.phone, ip="10.2.0.4") == 429

    clock.shift(timedelta(seconds=30))
    assert ask_code(second.phone, ip="10.2.0.4") == 302


def test_the_limit_page_says_how_long_to_wait(user, clock):
    ask_code(user.phone, ip="10.2.0.5")
    clock.shift(timedelta(seconds=20))

    response = Client(REMOTE_ADDR="10.2.0.6").post(REQUEST_CODE, {"phone": user.phone})

    assert response.status_code == 429
    assert response["Retry-After"] == "40"
    assert "40" in response.content.decode()
    assert 'data-testid="sms-limited"' in response.content.decode()


def test_a_refused_send_takes_nothing_from_the_other_limits(make_user, clock):
    first, second = make_user(), make_user()
    assert ask_code(first.phone, ip="10.2.0.7") == 302

    # Refused for the phone: the new IP's slot must stay free.
    assert ask_code(first.phone, ip="10.2.0.8") == 429
    assert ask_code(second.phone, ip="10.2.0.8") == 302


def test_limits_hold_across_flows(caplog, clock):
    # A sign-up code, then a login code for the same number a moment later.
    number = phone(1)
    Client(REMOTE_ADDR="10.2.0.9").post(
        "/accounts/signup/", {"phone": number, "password1": "Very-secret-99"}
    )
    assert len(texts_to(caplog, number)) == 1

    assert ask_code(number, ip="10.2.0.10") == 429
    assert len(texts_to(caplog, number)) == 1


# --- 10 per day --------------------------------------------------------------------


def test_ten_sends_per_day_per_phone(user, clock):
    for n in range(10):
        assert ask_code(user.phone, ip=f"10.3.0.{n}") == 302, n
        clock.shift(timedelta(seconds=61))

    response = Client(REMOTE_ADDR="10.3.0.99").post(REQUEST_CODE, {"phone": user.phone})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 60

    # The next Shanghai day (midnight, not 24 hours later) starts afresh.
    clock.move_to(datetime(2026, 3, 3, 0, 0, 1, tzinfo=SHANGHAI))
    assert ask_code(user.phone, ip="10.3.0.98") == 302


def test_ten_sends_per_day_per_ip(make_user, clock):
    users = [make_user() for _ in range(11)]
    for n, u in enumerate(users[:10]):
        assert ask_code(u.phone, ip="10.4.0.1") == 302, n
        clock.shift(timedelta(seconds=61))

    assert ask_code(users[10].phone, ip="10.4.0.1") == 429
    assert ask_code(users[10].phone, ip="10.4.0.2") == 302


def test_unknown_numbers_count_like_known_ones(clock):
    for n in range(10):
        assert ask_code(phone(100 + n), ip="10.4.1.1") == 302, n
        clock.shift(timedelta(seconds=61))

    assert ask_code(phone(200), ip="10.4.1.1") == 429


# --- platform budget ------------------------------------------------------------------


@override_settings(SMS_DAILY_BUDGET=3)
def test_the_platform_stops_texting_at_its_daily_budget(make_user, clock):
    users = [make_user() for _ in range(4)]
    for n, u in enumerate(users[:3]):
        assert ask_code(u.phone, ip=f"10.5.0.{n}") == 302

    response = Client(REMOTE_ADDR="10.5.0.9", headers={"accept-language": "en"}).post(
        REQUEST_CODE, {"phone": users[3].phone}
    )
    assert response.status_code == 429
    assert "We cannot send more verification codes today" in response.content.decode()
    assert SmsMessage.objects.count() == 3

    clock.move_to(datetime(2026, 3, 3, 0, 0, 1, tzinfo=SHANGHAI))
    assert ask_code(users[3].phone, ip="10.5.0.9") == 302


@override_settings(SMS_DAILY_BUDGET=5)
def test_the_budget_holds_under_concurrent_sends(db):
    outcomes = []

    def send(n):
        try:
            sms.consume(phone=phone(300 + n), ip=f"10.6.0.{n}")
            outcomes.append("sent")
        except sms.SmsLimitExceeded as exc:
            outcomes.append(exc.scope)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert outcomes.count("sent") == 5
    assert outcomes.count("budget") == 15


def test_one_phone_gets_one_send_under_concurrent_requests(db):
    outcomes = []

    def send(n):
        try:
            sms.consume(phone=phone(400), ip=f"10.7.0.{n}")
            outcomes.append("sent")
        except sms.SmsLimitExceeded as exc:
            outcomes.append(exc.scope)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert outcomes.count("sent") == 1
    assert outcomes.count("phone") == 19


# --- counters in Redis -------------------------------------------------------------------


def test_counters_live_in_redis(db):
    sms.consume(phone=phone(500), ip="10.8.0.1")

    redis = cache._cache.get_client(write=True)
    slot = cache.make_and_validate_key(f"sms:phone:{phone(500)}:slot")
    assert 0 < redis.pttl(slot) <= 60_000
    day = timezone.localdate().isoformat()
    assert cache.get(f"sms:phone:{phone(500)}:day:{day}") == 1
    assert cache.get(f"sms:ip:10.8.0.1:day:{day}") == 1
    assert cache.get(f"sms:budget:{day}") == 1


# --- client IP: trusted proxies only -------------------------------------------------------


def test_a_forged_x_forwarded_for_is_ignored_by_default(make_user, clock):
    first, second = make_user(), make_user()
    assert ask_code(first.phone, ip="10.9.0.1", x_forwarded_for="1.1.1.1") == 302

    assert ask_code(second.phone, ip="10.9.0.1", x_forwarded_for="2.2.2.2") == 429


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_one_trusted_proxy_the_last_hop_is_the_client(make_user, clock):
    first, second, third = make_user(), make_user(), make_user()
    proxy = "10.9.0.2"
    assert ask_code(first.phone, ip=proxy, x_forwarded_for="1.1.1.1, 9.9.9.9") == 302

    # Same client behind the proxy, a forged first hop: still the same client.
    assert ask_code(second.phone, ip=proxy, x_forwarded_for="2.2.2.2, 9.9.9.9") == 429
    # Another client behind the same proxy.
    assert ask_code(third.phone, ip=proxy, x_forwarded_for="9.9.9.8") == 302


def test_ipv6_clients_are_counted_by_their_slash_64(db):
    sms.consume(phone=phone(600), ip="2001:db8:1:2::1")

    with pytest.raises(sms.SmsLimitExceeded) as refused:
        sms.consume(phone=phone(601), ip="2001:db8:1:2:ffff::9")
    assert refused.value.scope == "ip"
    sms.consume(phone=phone(602), ip="2001:db8:1:3::1")


def test_ip_subjects():
    assert sms.ip_subject("10.0.0.1") == "10.0.0.1"
    assert sms.ip_subject("2001:db8::1") == "2001:db8::/64"
    assert sms.ip_subject("::ffff:10.0.0.1") == "10.0.0.1"


def test_check_takes_nothing(db):
    sms.check(phone=phone(700), ip="10.10.0.1")
    sms.check(phone=phone(700), ip="10.10.0.1")

    sms.consume(phone=phone(700), ip="10.10.0.1")
    with pytest.raises(sms.SmsLimitExceeded):
        sms.check(phone=phone(700), ip="10.10.0.2")


def test_a_sign_up_the_limits_refuse_creates_no_account(make_user, clock):
    ask_code(make_user().phone, ip="10.10.0.3")

    response = Client(REMOTE_ADDR="10.10.0.3").post(
        "/accounts/signup/", {"phone": phone(701), "password1": "Very-secret-99"}
    )

    assert response.status_code == 429
    assert not User.objects.filter(phone=phone(701)).exists()
    # A minute later the same sign-up goes through.
    clock.shift(timedelta(seconds=60))
    response = Client(REMOTE_ADDR="10.10.0.3").post(
        "/accounts/signup/", {"phone": phone(701), "password1": "Very-secret-99"}
    )
    assert response["Location"] == "/accounts/phone/verify/"
