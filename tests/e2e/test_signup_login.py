"""A new user signs up by phone, then logs in by code and by password, in real Chromium.

The portal runs as `make run` runs it (see conftest.portal); SMS codes come
from the console SMS backend's lines in the web process's log.
"""

from __future__ import annotations

import random
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

PASSWORD = "Lamp-Violet-2718"


def _submit(page) -> None:
    page.locator("main form button[type=submit]").first.click()


def _expect_overview(page) -> None:
    expect(page).to_have_url(re.compile(r"/overview/$"))
    expect(page.get_by_test_id("logout")).to_be_visible()


def _log_out(page) -> None:
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("logout")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_new_user_signs_up_by_phone_then_logs_in_by_code_and_by_password(page, portal, shot):
    local = f"139{random.randrange(10**8):08d}"
    phone = f"+86{local}"

    # given a visitor on the sign-up page (default language: Simplified Chinese)
    page.goto("/accounts/signup/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    shot(page, "signup")

    # when they sign up with phone and password (no username) and enter the texted code
    offset = portal.log_offset()
    page.fill("input[name=phone]", local)
    page.fill("input[name=password1]", PASSWORD)
    _submit(page)
    code = portal.wait_for_sms(phone, after=offset)
    expect(page.locator("input[name=code]")).to_be_visible()
    shot(page, "verify-phone")
    page.fill("input[name=code]", code)
    _submit(page)

    # then they land on the overview, logged in, their number masked
    _expect_overview(page)
    expect(page.get_by_test_id("overview-phone")).to_contain_text(local[-4:])
    expect(page.get_by_test_id("overview-phone")).not_to_contain_text(local)
    shot(page, "signed-up")

    _log_out(page)
    shot(page, "logged-out")

    # when they log in by a code texted to them (a new SMS, past the 60 s resend interval)
    portal.forget_sms_interval(phone)
    page.goto("/accounts/login/code/")
    offset = portal.log_offset()
    page.fill("input[name=phone]", local)
    _submit(page)
    login_code = portal.wait_for_sms(phone, after=offset)
    expect(page.locator("input[name=code]")).to_be_visible()
    shot(page, "login-code")
    page.fill("input[name=code]", login_code)
    _submit(page)
    _expect_overview(page)
    shot(page, "logged-in-by-code")

    _log_out(page)

    # when they log in by phone and password
    page.goto("/accounts/login/")
    page.fill("input[name=login]", local)
    page.fill("input[name=password]", PASSWORD)
    shot(page, "login-password")
    _submit(page)
    _expect_overview(page)
    expect(page.get_by_test_id("logout")).not_to_have_text("Log out")
    shot(page, "logged-in-by-password")

    # when they switch the language to English, and back
    page.select_option("select[name=language]", "en")
    page.get_by_test_id("switch-language").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("nav.nav")).to_contain_text("Overview")
    expect(page.get_by_test_id("logout")).to_have_text("Log out")
    shot(page, "english")

    page.select_option("select[name=language]", "zh-hans")
    page.get_by_test_id("switch-language").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    _expect_overview(page)
    # Django's own catalog already translates "Log out", whether or not the
    # portal's catalog is compiled, so a visible label must change back.
    expect(page.get_by_test_id("logout")).not_to_have_text("Log out")
    shot(page, "chinese")
