"""Alipay: the gateway client (official alipay-sdk-python) and notification checks.

Two modes, chosen by settings:

- **Alipay** (production): ALIPAY_APP_ID, ALIPAY_APP_PRIVATE_KEY_FILE,
  ALIPAY_PUBLIC_KEY_FILE, ALIPAY_SELLER_ID, ALIPAY_GATEWAY.
- **Local payment sandbox** (development only, ALIPAY_SANDBOX=1 with DEBUG):
  keys generated once under var/alipay-sandbox/; the sandbox page signs a
  notification with the "Alipay" key and posts it to the real notify endpoint,
  so exactly the same verification runs.

Notifications are verified here, not with the SDK's ``verify_with_rsa``: that
helper accepts SHA-1 signatures too, and Alipay's RSA2 is SHA-256 only.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

import rsa
from alipay.aop.api.util.SignatureUtils import get_sign_content
from django.conf import settings
from django.utils.translation import gettext as _

from aladdin.lib.errors import DomainError
from aladdin.lib.timeutil import SHANGHAI

SIGNED_EXCLUDED = {"sign", "sign_type"}
# Alipay's times (time_expire, gmt_payment…) are Beijing time: the portal's own zone.
BEIJING = SHANGHAI


class AlipayError(DomainError):
    """The gateway could not be reached or answered with an error.

    An API answers 503 ``payment_unavailable`` with a message of its own:
    the gateway's text is for the logs, not the user.
    """

    http_status = 503
    error_code = "payment_unavailable"

    def error_detail(self) -> str:
        return _("Alipay cannot take the payment right now. Try again shortly.")

    def __init__(self, message: str, *, code: str = "", sub_code: str = ""):
        super().__init__(message)
        self.code = code
        self.sub_code = sub_code


@dataclass(frozen=True)
class AlipayKeys:
    app_id: str
    seller_id: str
    gateway: str
    app_private_key_pem: str  # PKCS#1 "RSA PRIVATE KEY", what the SDK signs with
    alipay_public_key_pem: str  # X.509 "PUBLIC KEY", what Alipay's signatures verify with
    sandbox: bool


def fen_to_amount(fen: int) -> str:
    """1350 fen -> "13.50" (Alipay's total_amount format)."""
    return f"{fen // 100}.{fen % 100:02d}"


def amount_to_fen(amount: str) -> int | None:
    """ "13.50" -> 1350; None when it is not a valid amount with at most 2 decimals."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError):
        return None
    if not value.is_finite() or value < 0:
        return None
    fen = value * 100
    if fen != fen.to_integral_value():
        return None
    return int(fen)


# --- keys -----------------------------------------------------------------------


def _to_pkcs1_private(pem: str) -> str:
    """The SDK loads PKCS#1; Alipay's tools often emit PKCS#8. Accept both."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def generate_keypair() -> tuple[str, str]:
    """A fresh RSA-2048 pair: (PKCS#1 private PEM, X.509 public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa

    key = crypto_rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def sandbox_dir() -> Path:
    return Path(settings.VAR_DIR) / "alipay-sandbox"


def sandbox_keys() -> dict[str, str]:
    """The local sandbox's keys, generated on first use and kept under var/.

    ``app_private``/``app_public``: the portal's app key pair.
    ``alipay_private``/``alipay_public``: stands in for Alipay's key pair; the
    sandbox page signs notifications with ``alipay_private``.
    """
    directory = sandbox_dir()
    directory.mkdir(parents=True, exist_ok=True)
    keys = {}
    for name in ("app", "alipay"):
        private_path = directory / f"{name}_private.pem"
        public_path = directory / f"{name}_public.pem"
        if not private_path.exists() or not public_path.exists():
            private, public = generate_keypair()
            private_path.write_text(private)
            private_path.chmod(0o600)
            public_path.write_text(public)
        keys[f"{name}_private"] = private_path.read_text()
        keys[f"{name}_public"] = public_path.read_text()
    return keys


@lru_cache(maxsize=4)
def _load_keys(
    app_id: str, seller_id: str, gateway: str, private_file: str, public_file: str, sandbox: bool
) -> AlipayKeys:
    if sandbox:
        keys = sandbox_keys()
        return AlipayKeys(
            app_id=app_id or "sandbox-app",
            seller_id=seller_id or "sandbox-seller",
            gateway=gateway,
            app_private_key_pem=keys["app_private"],
            alipay_public_key_pem=keys["alipay_public"],
            sandbox=True,
        )
    return AlipayKeys(
        app_id=app_id,
        seller_id=seller_id,
        gateway=gateway,
        app_private_key_pem=_to_pkcs1_private(Path(private_file).read_text()),
        alipay_public_key_pem=Path(public_file).read_text(),
        sandbox=False,
    )


def keys() -> AlipayKeys:
    """The configured keys (read once per process and per setting values)."""
    return _load_keys(
        settings.ALIPAY_APP_ID,
        settings.ALIPAY_SELLER_ID,
        settings.ALIPAY_GATEWAY,
        settings.ALIPAY_APP_PRIVATE_KEY_FILE,
        settings.ALIPAY_PUBLIC_KEY_FILE,
        settings.ALIPAY_SANDBOX,
    )


def is_configured() -> bool:
    return bool(settings.ALIPAY_SANDBOX or settings.ALIPAY_APP_ID)


# --- signatures ------------------------------------------------------------------


def signed_content(params: dict[str, str]) -> str:
    """What Alipay signs: every parameter but sign/sign_type, sorted, k=v&…"""
    return get_sign_content({k: v for k, v in params.items() if k not in SIGNED_EXCLUDED})


def sign_params(params: dict[str, str], private_key_pem: str) -> str:
    """RSA2 (SHA256withRSA) signature of ``params`` as Alipay makes it (tests, sandbox)."""
    key = rsa.PrivateKey.load_pkcs1(private_key_pem.encode())
    signature = rsa.sign(signed_content(params).encode("utf-8"), key, "SHA-256")
    return base64.b64encode(signature).decode()


def verify_notification(params: dict[str, str], public_key_pem: str) -> bool:
    """True when ``params`` carry a valid RSA2 signature by ``public_key_pem``.

    SHA-256 only: ``rsa.verify`` returns the hash the signature was made with,
    and anything else (SHA-1 from a downgraded signer) is refused.
    """
    sign = params.get("sign")
    if not sign or params.get("sign_type", "RSA2") != "RSA2":
        return False
    try:
        public_key = rsa.PublicKey.load_pkcs1_openssl_pem(public_key_pem.encode())
        method = rsa.verify(
            signed_content(params).encode("utf-8"), base64.b64decode(sign), public_key
        )
    except (rsa.VerificationError, ValueError, TypeError):
        return False
    return method == "SHA-256"


# --- the gateway -------------------------------------------------------------------


def _client():
    from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
    from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient

    k = keys()
    config = AlipayClientConfig()
    config.server_url = k.gateway
    config.app_id = k.app_id
    config.app_private_key = k.app_private_key_pem
    config.alipay_public_key = k.alipay_public_key_pem
    config.sign_type = "RSA2"
    config.charset = "utf-8"
    config.timeout = 15
    return DefaultAlipayClient(alipay_client_config=config)


def _execute(request) -> dict:
    """Run an API call; the SDK verifies the response's signature. Returns its JSON."""
    from http.client import HTTPException

    from alipay.aop.api.exception.Exception import (
        AopException,
        RequestException,
        ResponseException,
    )

    try:
        body = _client().execute(request)
    except (RequestException, OSError, HTTPException) as exc:
        # RequestException wraps "connect failed"; a timeout or a connection
        # dropped before the answer surfaces as OSError/HTTPException.
        raise AlipayError(f"Alipay gateway unreachable: {exc}") from exc
    except ResponseException as exc:
        # The answer's signature did not verify with Alipay's public key (or
        # its shape was not Alipay's): never trust it.
        raise AlipayError(f"Alipay's answer was refused: {exc}") from exc
    except TypeError as exc:
        # The SDK builds its "invalid http status" message by adding the
        # body's bytes to a str, so a non-200 answer raises TypeError.
        raise AlipayError(f"Alipay gateway answered with an HTTP error: {exc}") from exc
    except AopException as exc:
        # AopException.__str__ concatenates fields that may be None.
        raise AlipayError(repr(exc)) from exc
    data = json.loads(body)
    if data.get("code") != "10000":
        raise AlipayError(
            data.get("sub_msg") or data.get("msg") or "Alipay error",
            code=str(data.get("code", "")),
            sub_code=str(data.get("sub_code", "")),
        )
    return data


def _set_expiry(model, expires_at: datetime | None) -> None:
    """Alipay refuses payment after ``expires_at`` (or 15 minutes after the trade opens).

    ``timeout_express`` counts from when the buyer opens the cashier, so a
    cashier opened late would still take money for an order we closed;
    ``time_expire`` is absolute, in Beijing time, and wins when both are set.
    """
    if expires_at is not None:
        model.time_expire = expires_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    else:
        model.timeout_express = "15m"


def page_pay_url(
    *,
    out_trade_no: str,
    amount_fen: int,
    subject: str,
    return_url: str,
    notify_url: str,
    expires_at: datetime | None = None,
) -> str:
    """alipay.trade.page.pay: the URL that opens Alipay's desktop cashier."""
    from alipay.aop.api.domain.AlipayTradePagePayModel import AlipayTradePagePayModel
    from alipay.aop.api.request.AlipayTradePagePayRequest import AlipayTradePagePayRequest

    model = AlipayTradePagePayModel()
    model.out_trade_no = out_trade_no
    model.total_amount = fen_to_amount(amount_fen)
    model.subject = subject
    model.product_code = "FAST_INSTANT_TRADE_PAY"
    # Late payments are refused at the source (the issue: a 15-minute window).
    _set_expiry(model, expires_at)
    request = AlipayTradePagePayRequest(biz_model=model)
    request.return_url = return_url
    request.notify_url = notify_url
    return _client().page_execute(request, http_method="GET")


def precreate(
    *,
    out_trade_no: str,
    amount_fen: int,
    subject: str,
    notify_url: str,
    expires_at: datetime | None = None,
) -> str:
    """alipay.trade.precreate: returns the QR code content to draw."""
    from alipay.aop.api.domain.AlipayTradePrecreateModel import AlipayTradePrecreateModel
    from alipay.aop.api.request.AlipayTradePrecreateRequest import AlipayTradePrecreateRequest

    model = AlipayTradePrecreateModel()
    model.out_trade_no = out_trade_no
    model.total_amount = fen_to_amount(amount_fen)
    model.subject = subject
    _set_expiry(model, expires_at)
    request = AlipayTradePrecreateRequest(biz_model=model)
    request.notify_url = notify_url
    return _execute(request)["qr_code"]


def query(*, out_trade_no: str) -> dict:
    """alipay.trade.query: the trade as Alipay sees it (trade_status, total_amount…)."""
    from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
    from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest

    model = AlipayTradeQueryModel()
    model.out_trade_no = out_trade_no
    return _execute(AlipayTradeQueryRequest(biz_model=model))


def close(*, out_trade_no: str) -> dict:
    """alipay.trade.close."""
    from alipay.aop.api.domain.AlipayTradeCloseModel import AlipayTradeCloseModel
    from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest

    model = AlipayTradeCloseModel()
    model.out_trade_no = out_trade_no
    return _execute(AlipayTradeCloseRequest(biz_model=model))


def refund(*, out_trade_no: str, amount_fen: int, out_request_no: str, reason: str) -> dict:
    """alipay.trade.refund; the same ``out_request_no`` makes a retry the same refund."""
    from alipay.aop.api.domain.AlipayTradeRefundModel import AlipayTradeRefundModel
    from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest

    model = AlipayTradeRefundModel()
    model.out_trade_no = out_trade_no
    model.refund_amount = fen_to_amount(amount_fen)
    model.out_request_no = out_request_no
    model.refund_reason = reason[:256]
    return _execute(AlipayTradeRefundRequest(biz_model=model))
