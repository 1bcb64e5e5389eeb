"""Buying a plan through the local payment sandbox, in real Chromium (SPEC §5).

The portal runs as `make run` runs it with ALIPAY_SANDBOX=1 (see
conftest.portal). The sandbox page signs a TRADE_SUCCESS notification with
the sandbox's "Alipay" key and POSTs it over real HTTP to the portal's notify
endpoint, so the same verification and fulfilment as production run.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from .conftest import REPO, STEP_TIMEOUT

pytestmark = pytest.mark.e2e

PASSWORD = "Lamp-Violet-2718"


def _sign_up(page, portal) -> str:
    """A new user, signed up by phone with the code from the web log; returns the phone."""
    local = f"139{random.randrange(10**8):08d}"
    phone = f"+86{local}"
    # Lift the 60 s resend interval of this client's IP (other tests signed up too).
    portal.forget_sms_interval(phone)
    page.goto("/accounts/signup/")
    offset = portal.log_offset()
    page.fill("input[name=phone]", local)
    page.fill("input[name=password1]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    code = portal.wait_for_sms(phone, after=offset)
    page.fill("input[name=code]", code)
    page.locator("main form button[type=submit]").first.click()
    expect(page).to_have_url(re.compile(r"/overview/$"))
    return phone


def _switch_language(page, code: str) -> None:
    page.select_option("select[name=language]", code)
    page.get_by_test_id("switch-language").click()
    expect(page.locator("html")).to_have_attribute("lang", code)


def _make_education_user(portal, phone: str) -> None:
    """Staff approval of the education status, done in the portal's own environment."""
    code = (
        "from aladdin.accounts.models import User; "
        f"n = User.objects.filter(phone='{phone}').update(education_status='staff'); "
        "assert n == 1, n"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=portal.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_user_buys_trial_through_the_sandbox_and_gets_20_dcu(page, portal, shot):
    # given a new user, reading the portal in English
    _sign_up(page, portal)
    _switch_language(page, "en")

    # when they buy Trial on the plans page, paying on the (sandbox) Alipay page
    page.goto("/billing/plans/")
    trial = page.get_by_test_id("buy-trial")
    expect(trial.get_by_test_id("buy-button")).to_have_text("Buy for ¥135.00")
    expect(trial.locator("input[name=channel][value=page]")).to_be_checked()
    shot(page, "plans")
    trial.get_by_test_id("buy-button").click()

    # then the sandbox page says plainly that no real money moves
    expect(page).to_have_url(re.compile(r"/billing/sandbox/ALD\w+/$"))
    banner = page.get_by_test_id("sandbox-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Local payment sandbox — not real money")
    expect(page.get_by_test_id("order-amount")).to_contain_text("135.00")
    expect(page.get_by_test_id("back-to-orders")).to_be_visible()
    shot(page, "sandbox")

    # when they pay (simulated): a signed notification goes over HTTP to the notify endpoint
    page.get_by_test_id("sandbox-pay").click()

    # then the return page shows the payment and what it granted
    expect(page).to_have_url(re.compile(r"/billing/orders/ALD\w+/return/$"))
    expect(page.get_by_test_id("order-result")).to_have_text("Payment received")
    expect(page.get_by_test_id("order-granted")).to_contain_text("20.00 DCU")
    expect(page.get_by_test_id("order-state")).to_have_text("Paid")
    shot(page, "return-paid")

    # and the balance shows the plan's 20 DCU
    page.get_by_test_id("see-balance").click()
    expect(page.get_by_test_id("balance-active")).to_have_text("20.00")
    expect(page.get_by_test_id("balance-plan")).to_contain_text("Trial")
    shot(page, "balance")

    # and the orders page lists it as paid, with the invoice request offered
    page.get_by_role("link", name="Orders", exact=True).click()
    row = page.locator("[data-testid^=order-ALD]").first
    expect(row).to_have_attribute("data-state", "paid")
    expect(row).to_contain_text("技术服务费")
    shot(page, "orders")

    # when they ask for a company invoice, first forgetting the tax number
    row.get_by_test_id("invoice-request").click()
    expect(page.get_by_test_id("invoice-item")).to_have_text("技术服务费")
    page.check("input[name=title_type][value=company]")
    page.fill("input[name=title]", "北京某某科技有限公司")
    page.fill("input[name=email]", "finance@example.com")
    page.get_by_test_id("invoice-submit").click()
    expect(page.get_by_test_id("field-tax_number").locator(".errorlist")).to_contain_text(
        "tax number"
    )
    shot(page, "invoice-error")
    page.fill("input[name=tax_number]", "91110000MA01ABCD2X")
    page.get_by_test_id("invoice-submit").click()

    # then the request is recorded and waits for staff
    expect(page).to_have_url(re.compile(r"/billing/orders/$"))
    expect(
        page.locator("[data-testid^=order-ALD]").first.get_by_test_id("order-invoice")
    ).to_have_text("Requested")
    shot(page, "invoice-requested")


def test_an_education_user_pays_the_education_price_by_qr_code(browser, portal, shot):
    context = browser.new_context(
        base_url=portal.url, locale="zh-CN", viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(STEP_TIMEOUT * 1000)
    page = context.new_page()
    try:
        # given a new user whose education status staff approved (default language: Chinese)
        phone = _sign_up(page, portal)
        _make_education_user(portal, phone)

        # then the plans page offers Trial at the education price
        page.goto("/billing/plans/")
        trial = page.get_by_test_id("buy-trial")
        expect(page.get_by_test_id("plan-trial").get_by_test_id("plan-price")).to_contain_text(
            "119.00"
        )
        expect(trial.get_by_test_id("buy-button")).to_contain_text("119.00")
        shot(page, "plans-education")

        # when they choose the QR code
        trial.locator("input[name=channel][value=qr]").check()
        trial.get_by_test_id("buy-button").click()

        # then a QR code is drawn with the amount; in the sandbox it opens the sandbox page
        expect(page).to_have_url(re.compile(r"/billing/orders/ALD\w+/pay/$"))
        expect(page.get_by_test_id("qr-code").locator("svg")).to_be_visible()
        expect(page.get_by_test_id("order-amount")).to_contain_text("119.00")
        expect(page.get_by_test_id("sandbox-banner")).to_be_visible()
        shot(page, "qr")
        page.get_by_test_id("open-sandbox").click()

        expect(page).to_have_url(re.compile(r"/billing/sandbox/ALD\w+/$"))
        expect(page.get_by_test_id("sandbox-banner")).to_be_visible()
        expect(page.get_by_test_id("order-amount")).to_contain_text("119.00")
        shot(page, "sandbox-education")
        page.get_by_test_id("sandbox-pay").click()

        expect(page).to_have_url(re.compile(r"/billing/orders/ALD\w+/return/$"))
        status = page.get_by_test_id("order-status")
        expect(status).to_have_attribute("data-state", "paid")
        expect(page.get_by_test_id("order-amount")).to_contain_text("119.00")
        shot(page, "return-education")

        page.get_by_test_id("see-balance").click()
        expect(page.get_by_test_id("balance-active")).to_have_text("20.00")
    except Exception:
        # This test drives its own context: save what the browser showed.
        shot(page, "FAILED")
        raise
    finally:
        context.close()
