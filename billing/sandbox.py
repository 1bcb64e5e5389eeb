"""The local payment sandbox: development only, never real money (SPEC §5, issue 4).

It plays Alipay's part for one machine: it signs a TRADE_SUCCESS notification
with the sandbox's own "Alipay" key (generated under var/) and posts it to the
portal's notify endpoint, where the same verification as production runs.
Settings refuse ALIPAY_SANDBOX without DEBUG.
"""

from __future__ import annotations

import secrets
import urllib.parse
import urllib.request

from django.conf import settings
from django.utils import timezone

from . import alipay
from .models import Order


def notification_for(order: Order, *, trade_status: str = "TRADE_SUCCESS") -> dict[str, str]:
    """A notification as Alipay sends it for ``order``, signed with the sandbox key."""
    if not settings.ALIPAY_SANDBOX:
        raise RuntimeError("the payment sandbox is off")
    keys = alipay.keys()
    now = timezone.localtime().strftime("%Y-%m-%d %H:%M:%S")
    params = {
        "notify_time": now,
        "notify_type": "trade_status_sync",
        "notify_id": secrets.token_hex(16),
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "app_id": keys.app_id,
        "seller_id": keys.seller_id,
        "out_trade_no": order.out_trade_no,
        "trade_no": "SANDBOX" + secrets.token_hex(8).upper(),
        "trade_status": trade_status,
        "total_amount": alipay.fen_to_amount(order.price_fen),
        "receipt_amount": alipay.fen_to_amount(order.price_fen),
        "subject": "sandbox",
        "gmt_payment": now,
    }
    params["sign"] = alipay.sign_params(params, alipay.sandbox_keys()["alipay_private"])
    return params


def post_notification(url: str, params: dict[str, str], timeout: float = 15) -> str:
    """POST the notification like Alipay does; returns the portal's reply text."""
    body = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own URL
        return response.read().decode().strip()
