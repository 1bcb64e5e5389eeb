"""SMS: provider backends and the one gate every verification code passes.

Every flow that texts a code (sign-up verification, login by code, password
reset) goes through :func:`send_code` (or :func:`send_notice`, which stands in
for a code when a number has no account), so the limits hold across flows:
1 send per 60 s and 10 per day per phone and per client IP, and a
platform-wide daily budget. :func:`consume` is the gate itself; counters live
in Redis (the Django cache's server), taken atomically by one script.
Notices that must not be missed go through :func:`send_alert`: the same
script and budget, their own per-phone daily count and no resend interval.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

logger = logging.getLogger("aladdin.sms")

DAY_SECONDS = 24 * 3600


class SmsError(Exception):
    """The provider refused or failed to send."""


@dataclass(frozen=True)
class SmsLimitExceeded(Exception):  # noqa: N818 - reads as a sentence where raised
    """A send was refused by a limit; ``retry_after`` in seconds, ``scope`` says which."""

    scope: str
    retry_after: int

    def message(self) -> str:
        if self.scope == "budget":
            return _(
                "We cannot send more verification codes today. Please try again tomorrow "
                "or log in with your password."
            )
        if self.retry_after <= 60:
            return _("Please wait %(seconds)d seconds before requesting another code.") % {
                "seconds": max(self.retry_after, 1)
            }
        return _(
            "Too many codes were requested today for this number or network. "
            "Please try again tomorrow or log in with your password."
        )


class SmsBackend(ABC):
    """A provider. ``send_code`` texts a verification code; ``send_text`` a notice."""

    name = "base"

    @abstractmethod
    def send_code(self, *, phone: str, code: str) -> None:
        """Send ``code`` to ``phone`` (E.164). Raises SmsError on failure."""

    @abstractmethod
    def send_text(self, *, phone: str, text: str) -> None:
        """Send a plain notice to ``phone``. Raises SmsError on failure."""


class ConsoleSmsBackend(SmsBackend):
    """Development backend: writes the message to the server log."""

    name = "console"

    def send_code(self, *, phone: str, code: str) -> None:
        logger.warning("SMS to %s: %s", phone, code)

    def send_text(self, *, phone: str, text: str) -> None:
        logger.warning("SMS to %s: %s", phone, text)


class AliyunSmsBackend(SmsBackend):
    """Aliyun Dysms (SendSms) with a template whose parameter is ``code``."""

    name = "aliyun"

    def _client(self):
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi import models as open_api_models

        config = open_api_models.Config(
            access_key_id=settings.ALIYUN_SMS_ACCESS_KEY_ID,
            access_key_secret=settings.ALIYUN_SMS_ACCESS_KEY_SECRET,
            endpoint=settings.ALIYUN_SMS_ENDPOINT,
        )
        return Client(config)

    def _send(self, *, phone: str, template_code: str, params: dict) -> None:
        from alibabacloud_dysmsapi20170525 import models as dysms_models

        request = dysms_models.SendSmsRequest(
            phone_numbers=phone.removeprefix("+86"),
            sign_name=settings.ALIYUN_SMS_SIGN_NAME,
            template_code=template_code,
            template_param=json.dumps(params, ensure_ascii=False),
        )
        try:
            response = self._client().send_sms(request)
        except Exception as exc:  # noqa: BLE001 - the SDK raises many kinds
            raise SmsError(str(exc)) from exc
        body = response.body
        if getattr(body, "code", None) != "OK":
            raise SmsError(f"{getattr(body, 'code', '?')}: {getattr(body, 'message', '')}")

    def send_code(self, *, phone: str, code: str) -> None:
        self._send(
            phone=phone, template_code=settings.ALIYUN_SMS_TEMPLATE_CODE, params={"code": code}
        )

    def send_text(self, *, phone: str, text: str) -> None:
        template = getattr(settings, "ALIYUN_SMS_NOTICE_TEMPLATE_CODE", "")
        if not template:
            # Aliyun only sends approved templates; without a notice template
            # the notice is logged instead of sent.
            logger.info("SMS notice to %s not sent (no notice template): %s", phone, text)
            return
        self._send(phone=phone, template_code=template, params={"text": text[:35]})


_BACKENDS = {
    "console": "aladdin.accounts.sms.ConsoleSmsBackend",
    "aliyun": "aladdin.accounts.sms.AliyunSmsBackend",
}


def get_backend() -> SmsBackend:
    return import_string(_BACKENDS[settings.SMS_BACKEND])()


def _day_key() -> str:
    # Days are Asia/Shanghai calendar days (SPEC §2).
    return timezone.localdate().isoformat()


def _seconds_to_midnight() -> int:
    now = timezone.localtime()
    midnight = (now + timezone.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(int((midnight - now).total_seconds()), 1)


def ip_subject(ip: str) -> str:
    """The per-IP counter's key: the address itself, or its /64 for IPv6.

    One IPv6 subscriber usually holds a whole /64, so counting single
    addresses would let one phone-farm rotate through 2**64 of them.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# All limits are checked and taken in one Redis script, so that a refused send
# takes nothing and concurrent requests cannot slip past a limit (a read
# followed by a write would let N parallel requests all see "9 of 10").
# Slots store the time of the last send (ms, the app's clock), not only a TTL,
# so that "60 s later" is measured by the same clock that tests travel with;
# the TTL just lets Redis forget old slots.
#   KEYS: day counters (1..n), the budget counter (n+1), slots (n+2..2n+1)
#   ARGV: n, now_ms, interval_ms, budget, day_ttl_s, dry_run (0/1), daily limits (1..n)
#   returns {status, subject index, retry ms}; a dry run takes nothing.
_GATE_SCRIPT = """
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local day_ttl = tonumber(ARGV[5])
local dry_run = ARGV[6] == '1'
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used >= tonumber(ARGV[6 + i]) then return {'day', i, 0} end
end
if tonumber(redis.call('GET', KEYS[n + 1]) or '0') >= budget then return {'budget', 0, 0} end
for i = 1, n do
  local last = redis.call('GET', KEYS[n + 1 + i])
  if last and now - tonumber(last) < interval then
    return {'slot', i, interval - (now - tonumber(last))}
  end
end
if dry_run then return {'ok', 0, 0} end
for i = 1, n do
  redis.call('SET', KEYS[n + 1 + i], now, 'PX', interval)
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], day_ttl)
end
redis.call('INCR', KEYS[n + 1])
redis.call('EXPIRE', KEYS[n + 1], day_ttl)
return {'ok', 0, 0}
"""


def _key(name: str) -> str:
    # The cache's own prefixing, so the keys sit with (and are cleared with)
    # the rest of the cache; integers are stored raw, so cache.get reads them.
    return cache.make_and_validate_key(name)


def consume(*, phone: str, ip: str | None) -> None:
    """Take one send from every limit, or raise SmsLimitExceeded and take none.

    Limits: 1 send per SMS_MIN_INTERVAL_SECONDS and SMS_DAILY_LIMIT_PER_PHONE /
    SMS_DAILY_LIMIT_PER_IP per day, per phone and per client IP, and
    SMS_DAILY_BUDGET per day for the whole platform.
    """
    _gate(phone=phone, ip=ip, dry_run=False)


def check(*, phone: str, ip: str | None) -> None:
    """Raise SmsLimitExceeded if a send would be refused now; takes nothing.

    Only a hint (another request may take the last send in between); the
    send itself still goes through :func:`consume`.
    """
    _gate(phone=phone, ip=ip, dry_run=True)


def _gate(*, phone: str, ip: str | None, dry_run: bool) -> None:
    subjects = [("phone", phone, settings.SMS_DAILY_LIMIT_PER_PHONE)]
    if ip:
        subjects.append(("ip", ip_subject(ip), settings.SMS_DAILY_LIMIT_PER_IP))
    _take(subjects, interval_ms=settings.SMS_MIN_INTERVAL_SECONDS * 1000, dry_run=dry_run)


def _take(subjects: list[tuple[str, str, int]], *, interval_ms: int, dry_run: bool) -> None:
    """Take one send from each (scope, value, daily limit) and the budget, or raise."""
    day = _day_key()
    keys = [_key(f"sms:{scope}:{value}:day:{day}") for scope, value, _limit in subjects]
    keys.append(_key(f"sms:budget:{day}"))
    keys += [_key(f"sms:{scope}:{value}:slot") for scope, value, _limit in subjects]
    args = [
        len(subjects),
        int(timezone.now().timestamp() * 1000),
        interval_ms,
        settings.SMS_DAILY_BUDGET,
        2 * DAY_SECONDS,
        int(dry_run),
        *(limit for _scope, _value, limit in subjects),
    ]
    client = cache._cache.get_client(keys[0], write=True)
    status, index, retry_ms = client.eval(_GATE_SCRIPT, len(keys), *keys, *args)
    status = status.decode() if isinstance(status, bytes) else status
    if status == "ok":
        return
    if status == "budget":
        logger.error("SMS daily budget of %d reached", settings.SMS_DAILY_BUDGET)
        raise SmsLimitExceeded(scope="budget", retry_after=_seconds_to_midnight())
    scope = subjects[int(index) - 1][0]
    if status == "day":
        raise SmsLimitExceeded(scope=scope, retry_after=_seconds_to_midnight())
    retry = -(-int(retry_ms) // 1000)  # ceil: never tell people to retry too early
    raise SmsLimitExceeded(scope=scope, retry_after=max(min(retry, interval_ms // 1000), 1))


# Alerts have no resend interval (the Lua script needs a positive one: 1 ms).
_ALERT_INTERVAL_MS = 1


def send_alert(*, phone: str, text: str, purpose: str) -> bool:
    """Text a notice that must not be missed (balance used up, storage reclaim, order paid).

    Counted apart from verification codes (``alert`` scope: SMS_ALERT_DAILY_LIMIT_PER_PHONE
    a day), so that an alert never takes the 60 s slot or the daily count a
    person needs to log in by code; the platform's daily budget holds for both.
    Raises SmsLimitExceeded (nothing sent); False when the provider failed.
    """
    from .models import SmsMessage

    _take(
        [("alert", phone, settings.SMS_ALERT_DAILY_LIMIT_PER_PHONE)],
        interval_ms=_ALERT_INTERVAL_MS,
        dry_run=False,
    )
    backend = get_backend()
    try:
        backend.send_text(phone=phone, text=text)
    except SmsError as exc:
        logger.error("SMS to %s failed: %s", phone, exc)
        SmsMessage.objects.create(
            phone=phone, purpose=purpose, backend=backend.name, ok=False, error=str(exc)
        )
        return False
    SmsMessage.objects.create(phone=phone, purpose=purpose, backend=backend.name)
    return True


def send_code(*, phone: str, code: str, purpose: str, ip: str | None) -> None:
    """Text a verification code, within the limits. Raises SmsLimitExceeded."""
    from .models import SmsMessage

    consume(phone=phone, ip=ip)
    backend = get_backend()
    try:
        backend.send_code(phone=phone, code=code)
    except SmsError as exc:
        logger.error("SMS to %s failed: %s", phone, exc)
        SmsMessage.objects.create(
            phone=phone, purpose=purpose, backend=backend.name, ok=False, error=str(exc)
        )
        return
    SmsMessage.objects.create(phone=phone, purpose=purpose, backend=backend.name)


def send_notice(*, phone: str, text: str, purpose: str, ip: str | None) -> None:
    """Text a notice that stands in for a code (same limits, so responses match)."""
    from .models import SmsMessage

    consume(phone=phone, ip=ip)
    backend = get_backend()
    try:
        backend.send_text(phone=phone, text=text)
    except SmsError as exc:
        logger.error("SMS to %s failed: %s", phone, exc)
        SmsMessage.objects.create(
            phone=phone, purpose=purpose, backend=backend.name, ok=False, error=str(exc)
        )
        return
    SmsMessage.objects.create(phone=phone, purpose=purpose, backend=backend.name)
