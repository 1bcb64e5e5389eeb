"""SMS: provider backends and the one gate every verification code passes.

Every flow that texts a code (sign-up verification, login by code, password
reset) goes through :func:`send_code`, so the limits hold across flows:
1 send per 60 s and 10 per day per phone and per client IP, and a
platform-wide daily budget. Counters live in Redis (the Django cache).
"""

from __future__ import annotations

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


def _consume(phone: str, ip: str | None) -> None:
    """Take one send from every limit, or raise SmsLimitExceeded and take none."""
    interval = settings.SMS_MIN_INTERVAL_SECONDS
    day = _day_key()
    subjects = [("phone", phone, settings.SMS_DAILY_LIMIT_PER_PHONE)]
    if ip:
        subjects.append(("ip", ip, settings.SMS_DAILY_LIMIT_PER_IP))

    # Daily counters first, read-only, so a refused send consumes nothing.
    for scope, value, limit in subjects:
        if (cache.get(f"sms:{scope}:{value}:day:{day}") or 0) >= limit:
            raise SmsLimitExceeded(scope=scope, retry_after=_seconds_to_midnight())
    if (cache.get(f"sms:budget:{day}") or 0) >= settings.SMS_DAILY_BUDGET:
        raise SmsLimitExceeded(scope="budget", retry_after=_seconds_to_midnight())

    # The 60 s slots are taken atomically (SET NX), so two requests racing
    # for the same phone cannot both pass.
    taken: list[str] = []
    for scope, value, _limit in subjects:
        key = f"sms:{scope}:{value}:slot"
        if not cache.add(key, timezone.now().timestamp(), timeout=interval):
            for k in taken:
                cache.delete(k)
            started = cache.get(key) or timezone.now().timestamp()
            retry = int(interval - (timezone.now().timestamp() - float(started))) + 1
            raise SmsLimitExceeded(scope=scope, retry_after=max(min(retry, interval), 1))
        taken.append(key)

    for scope, value, _limit in subjects:
        _incr(f"sms:{scope}:{value}:day:{day}")
    _incr(f"sms:budget:{day}")


def _incr(key: str) -> int:
    cache.add(key, 0, timeout=2 * DAY_SECONDS)
    return cache.incr(key)


def send_code(*, phone: str, code: str, purpose: str, ip: str | None) -> None:
    """Text a verification code, within the limits. Raises SmsLimitExceeded."""
    from .models import SmsMessage

    _consume(phone, ip)
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

    _consume(phone, ip)
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
