"""The portal trusts the Alipay key it is configured with, and nothing else (SPEC §5).

The first tests start the portal as production does (DEBUG off, the web
process of Procfile.dev, a file SQLite database) with ALIPAY_PUBLIC_KEY_FILE
pointing at a public key of the tester's own, then post notifications to it
over HTTP: only what the tester signed with that key fulfils an order, and
the same notification replayed 100 times, 10 of them at once, fulfils once.
Concurrency needs the running portal: the suite's in-memory SQLite database
cannot serve threads (DESIGN "Tests and CI").

The others check, in process, the key formats accepted and the signatures
the portal puts on its own requests to Alipay.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import rsa
from alipay.aop.api.util.SignatureUtils import get_sign_content
from cryptography.hazmat.primitives import serialization

from billing import alipay as alipay_module
from billing import payments
from billing.models import Order
from tests.billing import alipay_gateway
from tests.billing.alipay_gateway import NOTIFY_PATH, AlipayTester, beijing, keypair, settings_error
from tests.services_plugin import free_port, redis_port

alipay = alipay_gateway.alipay

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60
# Redis database of its own: the autouse _clean_redis fixture flushes database 0.
PORTAL_REDIS_DB = 2

# Run in the portal's own environment: migrate its database, then make the
# buyers and orders the tests pay for. Prints them as JSON.
SETUP = """
import json
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
from aladdin.accounts.models import User
from billing import payments
from billing.models import Plan
basic = Plan.objects.get(code="basic")
orders = {}
for i, name in enumerate(("trusted", "replayed")):
    user = User.objects.create_user(phone=f"+861390000000{i}", password="x-Secure-pass-1")
    orders[name] = payments.order_create(user=user, plan=basic).out_trade_no
print("ORDERS " + json.dumps(orders))
"""


@dataclass
class RunningPortal:
    url: str
    db: Path
    tester: AlipayTester
    orders: dict[str, str]
    log: Path

    def notify(self, params: dict[str, str]) -> str:
        request = urllib.request.Request(
            self.url + NOTIFY_PATH,
            data=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"

    def query(self, sql: str, *args) -> list[tuple]:
        with sqlite3.connect(self.db, timeout=20) as connection:
            return connection.execute(sql, args).fetchall()

    def order(self, name: str) -> dict:
        [row] = self.query(
            "SELECT state, subscription_id, trade_no, price_fen, user_id "
            "FROM billing_order WHERE out_trade_no = ?",
            self.orders[name],
        )
        return dict(
            zip(("state", "subscription_id", "trade_no", "price_fen", "user_id"), row, strict=True)
        )

    def subscriptions(self, name: str) -> int:
        return self.query(
            "SELECT count(*) FROM billing_subscription WHERE source = ?", self.orders[name]
        )[0][0]

    def outcomes(self, name: str) -> list[str]:
        return [
            row[0]
            for row in self.query(
                "SELECT outcome FROM billing_paymentnotification WHERE out_trade_no = ?",
                self.orders[name],
            )
        ]


def _web_command() -> str:
    for line in (REPO / "Procfile.dev").read_text().splitlines():
        name, _sep, command = line.partition(":")
        if name.strip() == "web":
            return command.strip()
    raise AssertionError("Procfile.dev has no web process")


@pytest.fixture(scope="module")
def running_portal(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("alipay-portal-var")
    tester = AlipayTester(tmp_path_factory.mktemp("tester-keys"))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CELERY_TASK_ALWAYS_EAGER", "PASSWORD_HASHERS", "DATABASE_URL", "PORT"}
    }
    env.update(
        {
            # Production mode: no sandbox possible, real keys required.
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            # Production settings, talked to on loopback without the proxy
            # that ends TLS: no redirect to https.
            "SECURE_SSL_REDIRECT": "0",
            "ALADDIN_VAR_DIR": str(var_dir),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port()}/{PORTAL_REDIS_DB}",
            "ALADDIN_WEB_PORT": str(port),
            "BIND": "127.0.0.1",
            "DJANGO_SETTINGS_MODULE": "aladdin.settings",
            "PYTHONUNBUFFERED": "1",
            **tester.env(),
        }
    )
    env.pop("ALIPAY_SANDBOX", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SETUP],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"portal setup failed:\n{done.stdout}\n{done.stderr}"
    line = next(x for x in done.stdout.splitlines() if x.startswith("ORDERS "))
    orders = json.loads(line.removeprefix("ORDERS "))

    log = var_dir / "web.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {_web_command()}"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    portal = RunningPortal(
        url=f"http://127.0.0.1:{port}",
        db=var_dir / "db.sqlite3",
        tester=tester,
        orders=orders,
        log=log,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if web.poll() is not None:
                pytest.fail(f"the portal exited ({web.returncode}):\n{log.read_text()}")
            try:
                urllib.request.urlopen(portal.url + NOTIFY_PATH, timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 405:  # up: the notify URL takes only POST
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the portal did not answer within {START_TIMEOUT} s:\n{log.read_text()}"
                )
            time.sleep(0.2)
        yield portal
    finally:
        if web.poll() is None:
            os.killpg(web.pid, signal.SIGTERM)
            try:
                web.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait()


def test_the_running_portal_fulfils_what_the_tester_signed_and_nothing_else(running_portal):
    portal = running_portal
    tester = portal.tester
    out_trade_no = portal.orders["trusted"]
    price = portal.order("trusted")["price_fen"]

    def notification(**kwargs) -> dict[str, str]:
        kwargs.setdefault("amount_fen", price)
        return tester.notification(out_trade_no=out_trade_no, **kwargs)

    # Not by the configured key, not RSA2 with SHA-256, not this app's or
    # seller's, not the order's amount, not as signed: nothing happens.
    refused = {
        "another key": notification(key=keypair("stranger")),
        "the app's own key": notification(key=tester.app),
        "SHA-1": notification(hash_method="SHA-1"),
        "another app": notification(app_id="2021999999999999"),
        "another seller": notification(seller_id="2088999999999999"),
        "another amount": notification(amount_fen=1),
    }
    tampered = notification()
    tampered["trade_status"] = "TRADE_FINISHED"
    refused["tampered"] = tampered
    replies = {name: portal.notify(params) for name, params in refused.items()}
    assert replies == dict.fromkeys(refused, "failure")
    assert portal.order("trusted")["state"] == Order.State.PENDING
    assert portal.subscriptions("trusted") == 0

    # Signed by the tester's key as Alipay signs: fulfilled.
    params = notification()
    assert portal.notify(params) == "success"

    order = portal.order("trusted")
    assert order["state"] == Order.State.PAID
    assert order["trade_no"] == params["trade_no"]
    assert order["subscription_id"] is not None
    assert portal.subscriptions("trusted") == 1
    assert sorted(portal.outcomes("trusted")) == ["fulfilled"] + ["rejected"] * len(refused)


def test_a_notification_replayed_100_times_10_at_once_fulfils_once(running_portal):
    portal = running_portal
    price = portal.order("replayed")["price_fen"]
    params = portal.tester.notification(out_trade_no=portal.orders["replayed"], amount_fen=price)

    # The first ten arrive together: they race for the first fulfilment.
    start = threading.Barrier(10)

    def send(_):
        start.wait(timeout=30)
        return portal.notify(params)

    with ThreadPoolExecutor(max_workers=10) as pool:
        together = list(pool.map(send, range(10)))
    one_by_one = [portal.notify(params) for _ in range(90)]

    assert together == ["success"] * 10
    assert one_by_one == ["success"] * 90
    order = portal.order("replayed")
    assert order["state"] == Order.State.PAID
    assert portal.subscriptions("replayed") == 1
    [[grants]] = portal.query(
        "SELECT count(*) FROM billing_grant WHERE user_id = ?", order["user_id"]
    )
    assert grants == 1
    [[entries]] = portal.query(
        "SELECT count(*) FROM billing_ledgerentry WHERE user_id = ? AND kind = 'grant'",
        order["user_id"],
    )
    assert entries == 1
    outcomes = portal.outcomes("replayed")
    assert outcomes.count("fulfilled") == 1
    assert outcomes.count("duplicate") == 99


def test_the_portal_refuses_to_start_without_its_alipay_key_files(tmp_path):
    tester = AlipayTester(tmp_path / "keys")
    configured = tester.env()

    missing = settings_error(tmp_path, **{**configured, "ALIPAY_PUBLIC_KEY_FILE": ""})
    assert "ImproperlyConfigured" in missing and "ALIPAY_PUBLIC_KEY_FILE" in missing

    absent = str(tmp_path / "nowhere.pem")
    unreadable = settings_error(tmp_path, **{**configured, "ALIPAY_PUBLIC_KEY_FILE": absent})
    assert "ImproperlyConfigured" in unreadable and absent in unreadable


# --- in process: key formats and the portal's own signatures -------------------------


def test_the_configured_keys_are_read_from_the_files(alipay):
    keys = alipay_module.keys()

    assert keys.app_id == alipay.app_id and keys.seller_id == alipay.seller_id
    assert keys.alipay_public_key_pem == alipay.alipay.public_pem
    assert keys.app_private_key_pem == alipay.app.private_pem
    assert not keys.sandbox


def test_a_pkcs8_app_private_key_is_accepted(alipay, settings):
    # Alipay's key tool writes PKCS#8 ("BEGIN PRIVATE KEY"); the SDK signs with PKCS#1.
    pkcs8 = (
        serialization.load_pem_private_key(alipay.app.private_pem.encode(), password=None)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    alipay.app_private_file.write_text(pkcs8)
    alipay_module._load_keys.cache_clear()

    assert alipay_module.keys().app_private_key_pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert alipay_module.keys().app_private_key_pem == alipay.app.private_pem


def test_the_cashier_url_is_signed_with_the_app_key(alipay, user, plans):
    order = payments.order_create(user=user, plan=plans["basic"])

    kind, url = payments.order_payment_target(
        order,
        return_url="https://portal.example/billing/orders/x/",
        notify_url="https://portal.example/billing/alipay/notify/",
        sandbox_url="unused",
    )

    assert kind == "redirect"
    assert url.startswith("http://127.0.0.1/gateway.do?")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert params["method"] == "alipay.trade.page.pay"
    assert params["app_id"] == alipay.app_id
    assert params["sign_type"] == "RSA2"
    assert params["notify_url"] == "https://portal.example/billing/alipay/notify/"
    biz = json.loads(params["biz_content"])
    assert biz["out_trade_no"] == order.out_trade_no
    assert biz["total_amount"] == "365.00"
    assert biz["product_code"] == "FAST_INSTANT_TRADE_PAY"
    # Alipay refuses payment when our window closes, however late the cashier opens.
    assert biz["time_expire"] == beijing(order.expires_at)
    assert "timeout_express" not in biz
    content = get_sign_content({k: v for k, v in params.items() if k != "sign"})
    used = rsa.verify(
        content.encode(), alipay_module.base64.b64decode(params["sign"]), alipay.app.public
    )
    assert used == "SHA-256"
