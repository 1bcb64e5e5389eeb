"""Alipay without Alipay (DESIGN "Tests and CI"): keys, signed notifications, a loopback gateway.

- :class:`AlipayTester` holds two RSA-2048 key pairs made in the test run:
  the portal's app key pair and the pair that stands in for Alipay's. It
  signs notifications exactly as Alipay does (RSA2 over the sorted
  ``k=v&…`` of every parameter but ``sign`` and ``sign_type``).
- :class:`FakeAlipayGateway` is an HTTP server on port 80 of a loopback
  address that answers ``alipay.trade.*`` calls like Alipay's openapi
  gateway: it checks the request's RSA2 signature with the app public key
  and signs every answer with the "Alipay" private key, so the official SDK
  runs unpatched over a real socket and verifies what it receives.

Why port 80: the SDK's ``WebUtils.get_http_connection`` connects to port 80
(http) or 443 whatever port the gateway URL names (and crashes adding a port
to the URL), so the fake gateway takes port 80 of its own 127.x.y.z
address. Binding it needs root or CAP_NET_BIND_SERVICE; without them the
fixtures skip with that reason.

Test modules take the fixtures by assignment (``alipay = alipay_gateway.alipay``)
as tests/billing/test_concurrency.py does with tests/pg.py.
"""

from __future__ import annotations

import base64
import errno
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import rsa
from alipay.aop.api.util.SignatureUtils import get_sign_content
from django.utils import timezone

from billing import alipay as alipay_module
from billing.models import Order

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"
NOTIFY_PATH = "/billing/alipay/notify/"


# --- keys and notifications -------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    private_pem: str  # PKCS#1 "RSA PRIVATE KEY"
    public_pem: str  # X.509 "PUBLIC KEY"

    @property
    def private(self) -> rsa.PrivateKey:
        return rsa.PrivateKey.load_pkcs1(self.private_pem.encode())

    @property
    def public(self) -> rsa.PublicKey:
        return rsa.PublicKey.load_pkcs1_openssl_pem(self.public_pem.encode())


@lru_cache(maxsize=8)
def keypair(name: str) -> KeyPair:
    """A fresh RSA-2048 key pair, made once per test run and name."""
    return KeyPair(*alipay_module.generate_keypair())


def beijing(moment) -> str:
    """A time as Alipay writes it: Beijing time, yyyy-MM-dd HH:mm:ss."""
    return moment.astimezone(alipay_module.BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def rsa_sign(message: str, key: KeyPair, hash_method: str = "SHA-256") -> str:
    return base64.b64encode(rsa.sign(message.encode("utf-8"), key.private, hash_method)).decode()


@dataclass
class AlipayTester:
    """The tester's own "Alipay": key files the portal is configured with, and a signer."""

    directory: Path
    app: KeyPair = field(default_factory=lambda: keypair("app"))
    alipay: KeyPair = field(default_factory=lambda: keypair("alipay"))
    app_id: str = APP_ID
    seller_id: str = SELLER_ID

    def __post_init__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.app_private_file = self.directory / "app_private.pem"
        self.app_private_file.write_text(self.app.private_pem)
        self.alipay_public_file = self.directory / "alipay_public.pem"
        self.alipay_public_file.write_text(self.alipay.public_pem)

    def settings(self, gateway: str = "http://127.0.0.1/gateway.do") -> dict[str, object]:
        return {
            "ALIPAY_APP_ID": self.app_id,
            "ALIPAY_SELLER_ID": self.seller_id,
            "ALIPAY_APP_PRIVATE_KEY_FILE": str(self.app_private_file),
            "ALIPAY_PUBLIC_KEY_FILE": str(self.alipay_public_file),
            "ALIPAY_GATEWAY": gateway,
            "ALIPAY_SANDBOX": False,
        }

    def env(self, gateway: str = "http://127.0.0.1/gateway.do") -> dict[str, str]:
        """The same settings as environment variables, for a portal in a subprocess."""
        return {k: str(v) for k, v in self.settings(gateway).items() if k != "ALIPAY_SANDBOX"}

    def notification(
        self,
        order: Order | None = None,
        *,
        out_trade_no: str = "",
        amount_fen: int = 0,
        trade_status: str = "TRADE_SUCCESS",
        key: KeyPair | None = None,
        hash_method: str = "SHA-256",
        **overrides: str,
    ) -> dict[str, str]:
        """A notification for ``order`` as Alipay posts it, signed (RSA2 unless told otherwise).

        ``overrides`` replace or add parameters before signing; pass ``None``
        as a value to drop one.
        """
        out_trade_no = out_trade_no or order.out_trade_no
        amount = alipay_module.fen_to_amount(amount_fen or order.price_fen)
        now = timezone.localtime().strftime("%Y-%m-%d %H:%M:%S")
        params = {
            "gmt_create": now,
            "charset": "utf-8",
            "seller_email": "pay@example.com",
            "subject": "技术服务费 - Aladdin",
            "buyer_id": "2088102177846880",
            "invoice_amount": amount,
            "notify_id": secrets.token_hex(16),
            "fund_bill_list": json.dumps(
                [{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
            ),
            "notify_type": "trade_status_sync",
            "trade_status": trade_status,
            "receipt_amount": amount,
            "buyer_pay_amount": amount,
            "app_id": self.app_id,
            "sign_type": "RSA2",
            "seller_id": self.seller_id,
            "gmt_payment": now,
            "notify_time": now,
            "version": "1.0",
            "out_trade_no": out_trade_no,
            "total_amount": amount,
            "trade_no": "2026" + secrets.token_hex(10),
            "auth_app_id": self.app_id,
            "buyer_logon_id": "tes***@example.com",
            "point_amount": "0.00",
        }
        params.update(overrides)
        params = {k: v for k, v in params.items() if v is not None}
        params["sign"] = self.sign(params, key=key, hash_method=hash_method)
        return params

    def sign(
        self, params: dict[str, str], *, key: KeyPair | None = None, hash_method: str = "SHA-256"
    ) -> str:
        return rsa_sign(alipay_module.signed_content(params), key or self.alipay, hash_method)


def post_form(client, params: dict[str, str], path: str = NOTIFY_PATH):
    """POST like Alipay does: application/x-www-form-urlencoded, UTF-8."""
    return client.post(
        path,
        data=urllib.parse.urlencode(params),
        content_type="application/x-www-form-urlencoded; charset=utf-8",
    )


# --- the loopback gateway -------------------------------------------------------------


class GatewayUnavailable(Exception):
    pass


_addresses = itertools.count(1)


def _bind_port_80() -> socket.socket:
    """A listening socket on port 80 of a loopback address of its own."""
    second = 57
    third = os.getpid() % 250
    for _ in range(250):
        host = f"127.{second}.{third}.{next(_addresses) % 250 + 1}"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, 80))
        except PermissionError as exc:
            sock.close()
            raise GatewayUnavailable(
                "the loopback Alipay gateway needs port 80 (the SDK ignores the URL's port): "
                f"binding {host}:80 was refused ({exc}); run as root or grant "
                "CAP_NET_BIND_SERVICE"
            ) from exc
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                continue
            raise
        sock.listen(32)
        return sock
    raise GatewayUnavailable("no free 127.x.y.z:80 for the loopback Alipay gateway")


class FakeAlipayGateway:
    """Answers alipay.trade.{query,close,refund,precreate} like Alipay's openapi gateway.

    ``trades`` is Alipay's side of each trade, by out_trade_no: set
    ``trades[no] = {"trade_status": "TRADE_SUCCESS", "total_amount": "135.00"}``
    (see :meth:`pay`) before the portal asks. A trade that is not there is
    answered with code 40004 / ACQ.TRADE_NOT_EXIST, as Alipay does for a
    trade nobody opened. Refunds are idempotent by ``out_request_no`` as at
    Alipay: a retry answers success again with ``fund_change`` "N".

    Faults: ``lose_answer["alipay.trade.refund"] = 1`` processes the next
    refund but closes the connection without answering (the portal cannot
    know whether it happened); ``sign_with`` signs answers with another key.
    ``requests`` records every call: method, biz_content and whether its
    signature verified with the app public key.
    """

    def __init__(self, tester: AlipayTester):
        self.tester = tester
        self.sign_with: KeyPair = tester.alipay
        self.trades: dict[str, dict[str, str]] = {}
        self.refunds: dict[str, dict[str, str]] = {}
        self.requests: list[dict] = []
        self.lose_answer: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.host = ""

    # -- Alipay's side of the trades

    def pay(self, order: Order, *, amount_fen: int | None = None, status: str = "TRADE_SUCCESS"):
        """The buyer paid ``order`` at Alipay (its notification may never come)."""
        self.trades[order.out_trade_no] = {
            "trade_no": "2026" + secrets.token_hex(10),
            "trade_status": status,
            "total_amount": alipay_module.fen_to_amount(
                order.price_fen if amount_fen is None else amount_fen
            ),
            "refunded_fen": "0",
        }

    def calls(self, method: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method]

    @property
    def url(self) -> str:
        return f"http://{self.host}/gateway.do"

    # -- server

    def start(self) -> FakeAlipayGateway:
        sock = _bind_port_80()
        self.host = sock.getsockname()[0]
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                gateway._handle(self)

            def log_message(self, format, *args):  # noqa: A002 - http.server's signature
                pass

        server = ThreadingHTTPServer((self.host, 80), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    # -- requests

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        # The SDK puts the common parameters (method, app_id, sign…) in the
        # query string of an absolute request target, biz_content in the body.
        query = urllib.parse.urlsplit(http.path).query
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length).decode("utf-8")
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        method = params.get("method", "")
        verified = self._verify_request(params)
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            biz = {}
        with self._lock:
            self.requests.append({"method": method, "biz": biz, "verified": verified})
            if not verified:
                payload = _error("40002", "isv.invalid-signature", "验签出错")
            elif params.get("app_id") != self.tester.app_id:
                payload = _error("40002", "isv.invalid-app-id", "无效的AppID参数")
            else:
                payload = self._answer(method, biz)
            lose = self.lose_answer.get(method, 0) > 0
            if lose:
                self.lose_answer[method] -= 1
        if lose:
            # Processed, but the answer never reaches the portal.
            http.close_connection = True
            http.connection.shutdown(socket.SHUT_RDWR)
            return
        inner = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        sign = rsa_sign(inner, self.sign_with)
        name = method.replace(".", "_") + "_response"
        # The SDK verifies the exact text between `"…_response":` and `,"sign"`.
        text = '{"' + name + '":' + inner + ',"sign":"' + sign + '"}'
        data = text.encode("utf-8")
        http.send_response(200)
        http.send_header("Content-Type", "text/html;charset=utf-8")
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        http.wfile.write(data)

    def _verify_request(self, params: dict[str, str]) -> bool:
        """RSA2 over every parameter but ``sign`` (sign_type included), as Alipay checks."""
        sign = params.get("sign", "")
        if params.get("sign_type") != "RSA2" or not sign:
            return False
        content = get_sign_content({k: v for k, v in params.items() if k != "sign"})
        try:
            used = rsa.verify(
                content.encode("utf-8"), base64.b64decode(sign), self.tester.app.public
            )
        except (rsa.VerificationError, ValueError):
            return False
        return used == "SHA-256"

    def _answer(self, method: str, biz: dict) -> dict:
        out_trade_no = biz.get("out_trade_no", "")
        trade = self.trades.get(out_trade_no)
        if method == "alipay.trade.precreate":
            self.trades.setdefault(
                out_trade_no,
                {
                    "trade_no": "",
                    "trade_status": "WAIT_BUYER_PAY",
                    "total_amount": biz.get("total_amount", ""),
                    "refunded_fen": "0",
                },
            )
            return {
                "code": "10000",
                "msg": "Success",
                "out_trade_no": out_trade_no,
                "qr_code": f"https://qr.alipay.com/{secrets.token_hex(8)}",
            }
        if trade is None:
            return _error("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在", out_trade_no=out_trade_no)
        if method == "alipay.trade.query":
            return {
                "code": "10000",
                "msg": "Success",
                "out_trade_no": out_trade_no,
                "trade_no": trade["trade_no"],
                "trade_status": trade["trade_status"],
                "total_amount": trade["total_amount"],
                "buyer_logon_id": "tes***@example.com",
                "buyer_pay_amount": trade["total_amount"],
                "send_pay_date": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
            }
        if method == "alipay.trade.close":
            if trade["trade_status"] != "WAIT_BUYER_PAY":
                return _error("40004", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            trade["trade_status"] = "TRADE_CLOSED"
            return {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no}
        if method == "alipay.trade.refund":
            return self._refund(out_trade_no, trade, biz)
        return _error("40004", "isv.invalid-method", f"不存在的方法名 {method}")

    def _refund(self, out_trade_no: str, trade: dict, biz: dict) -> dict:
        request_no = biz.get("out_request_no") or out_trade_no
        total = alipay_module.amount_to_fen(trade["total_amount"])
        done = self.refunds.get(request_no)
        if done is not None:
            # The same out_request_no again: the same refund, no money moves.
            return {**done, "fund_change": "N"}
        if trade["trade_status"] not in {"TRADE_SUCCESS"}:
            return _error("40004", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        amount = alipay_module.amount_to_fen(biz.get("refund_amount", ""))
        refunded = int(trade["refunded_fen"])
        if not amount or refunded + amount > total:
            return _error("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        refunded += amount
        trade["refunded_fen"] = str(refunded)
        if refunded == total:
            trade["trade_status"] = "TRADE_CLOSED"
        answer = {
            "code": "10000",
            "msg": "Success",
            "out_trade_no": out_trade_no,
            "trade_no": trade["trade_no"],
            "buyer_logon_id": "tes***@example.com",
            "fund_change": "Y",
            "refund_fee": alipay_module.fen_to_amount(refunded),
            "gmt_refund_pay": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
        }
        self.refunds[request_no] = answer
        return answer

    def refunded_fen(self, out_trade_no: str) -> int:
        return int(self.trades[out_trade_no]["refunded_fen"])


def _error(code: str, sub_code: str, sub_msg: str, **extra: str) -> dict:
    msg = {"40002": "Invalid Arguments", "40004": "Business Failed"}.get(code, "Error")
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg, **extra}


# --- fixtures ---------------------------------------------------------------------------


def _use(settings, values: dict) -> None:
    for name, value in values.items():
        setattr(settings, name, value)
    # keys() is cached by the setting values; a new tmp path is a new entry,
    # but clear it so no test sees another's keys.
    alipay_module._load_keys.cache_clear()


@pytest.fixture
def alipay(settings, tmp_path) -> AlipayTester:
    """The portal configured (production mode) with the tester's own keys; no gateway."""
    tester = AlipayTester(tmp_path / "alipay-keys")
    _use(settings, tester.settings())
    yield tester
    alipay_module._load_keys.cache_clear()


@pytest.fixture
def gateway(alipay, settings) -> FakeAlipayGateway:
    """A running loopback gateway, and the portal pointed at it."""
    fake = FakeAlipayGateway(alipay)
    try:
        fake.start()
    except GatewayUnavailable as exc:
        pytest.skip(str(exc))
    _use(settings, {"ALIPAY_GATEWAY": fake.url})
    yield fake
    fake.stop()


# --- settings in a fresh process ------------------------------------------------------


def settings_error(tmp_path, **env_values: str) -> str:
    """The last line of what importing the settings prints, which must fail, with ``env_values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIPAY_")}
    env.update({"DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1", "ALADDIN_VAR_DIR": str(tmp_path)})
    env.update(env_values)
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parents[2],
        env={**env, "DJANGO_SETTINGS_MODULE": "aladdin.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    return done.stderr.strip().splitlines()[-1]
