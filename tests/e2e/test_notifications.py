"""The notifications centre in real Chromium: notices read in the reader's language, the bell.

A user browsing in Chinese buys a plan (the order-paid notice, texted too)
and a job of theirs fails (written by the portal's own process while the
page is open: the bell's count rises without a reload); after switching to
English both notices read in English; marking them read drops the count.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import REPO, STEP_TIMEOUT
from tests.e2e.test_purchase import _sign_up, _switch_language

pytestmark = pytest.mark.e2e

PHONE_WIDTH = 390


def _notice_for(portal, phone: str, *, job_id: int) -> None:
    """A job-failed notice, written as the portal's worker writes it while Chinese is active."""
    code = (
        "from django.utils import translation\n"
        "from aladdin.accounts.models import User\n"
        "from aladdin.accounts.services import notification_create\n"
        "from django.db import transaction\n"
        f"user = User.objects.get(phone='{phone}')\n"
        "with translation.override('zh-hans'), transaction.atomic():\n"
        "    notification_create(user=user, message='job_failed',\n"
        f"        params={{'id': {job_id}, 'name': 'train', 'exit_code': 3, 'reason': ''}})\n"
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


def _texted(portal, phone: str, needle: str) -> bool:
    """Whether the worker's log shows an SMS to ``phone`` containing ``needle``."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        for log in portal.logs.values():
            text = log.read_text(errors="replace")
            if any(
                needle in line for line in text.splitlines() if line.find(f"SMS to {phone}:") >= 0
            ):
                return True
        time.sleep(0.2)
    return False


def _both_widths(page, shot, name: str) -> None:
    shot(page, f"{name}-1280")
    page.set_viewport_size({"width": PHONE_WIDTH, "height": 844})
    # no horizontal scroll of the page on a phone
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"{name}: the page is {width} px wide at {PHONE_WIDTH} px"
    shot(page, f"{name}-390")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_notice_written_in_chinese_reads_in_english_and_the_bell_drops_when_read(
    page, portal, shot
):
    # given a new user browsing in Chinese (the default), with no notices yet
    phone = _sign_up(page, portal)
    bell = page.get_by_test_id("bell")
    count = bell.get_by_test_id("bell-count")
    expect(bell).to_be_visible()
    expect(count).to_be_hidden()

    # when they buy Trial through the (sandbox) payment page
    page.goto("/billing/plans/")
    page.get_by_test_id("buy-trial").get_by_test_id("buy-button").click()
    expect(page).to_have_url(re.compile(r"/billing/sandbox/ALD\w+/$"))
    page.get_by_test_id("sandbox-pay").click()
    expect(page).to_have_url(re.compile(r"/billing/orders/(ALD\w+)/return/$"))
    order = re.search(r"/orders/(ALD\w+)/", page.url).group(1)

    # then the bell counts the order-paid notice, and it was texted too
    expect(count).to_have_text("1")
    assert _texted(portal, phone, order), "no order-paid SMS in the portal's logs"

    # when a job of theirs fails while they look at their notifications (in Chinese)
    bell.click()
    expect(page).to_have_url(re.compile(r"/notifications/$"))
    expect(page.get_by_test_id("notice")).to_have_count(1)
    _notice_for(portal, phone, job_id=41)

    # then the bell's count rises without a reload (pushed over the websocket)
    expect(count).to_have_text("2")
    page.reload()
    notices = page.get_by_test_id("notice")
    expect(notices).to_have_count(2)
    expect(notices.first.get_by_test_id("notice-title")).to_contain_text("任务 train（#41）失败")
    _both_widths(page, shot, "notifications-zh")

    # when they switch to English
    _switch_language(page, "en")

    # then both notices read in English, newest first, with links to what they are about
    expect(page).to_have_url(re.compile(r"/notifications/$"))
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    job_notice, order_notice = notices.nth(0), notices.nth(1)
    expect(job_notice.get_by_test_id("notice-title")).to_contain_text("Job train (#41) failed")
    expect(job_notice.get_by_test_id("notice-body")).to_have_text("Exit code 3.")
    # (each link marks its notice read on the way: /notifications/<id>/open/ -> the page)
    opens = re.compile(r"^/notifications/\d+/open/$")
    expect(job_notice.get_by_test_id("notice-link")).to_have_attribute("href", opens)
    expect(job_notice.get_by_test_id("notice-link")).to_contain_text("See the job")
    expect(order_notice.get_by_test_id("notice-texted")).to_have_text("· also texted to you")
    expect(order_notice.get_by_test_id("notice-title")).to_contain_text(
        f"Payment received for order {order}"
    )
    expect(order_notice.get_by_test_id("notice-body")).to_contain_text("¥135.00")
    expect(order_notice.get_by_test_id("notice-link")).to_have_attribute("href", opens)
    expect(page.locator("main")).not_to_contain_text("任务")
    _both_widths(page, shot, "notifications-en")

    # when they mark the job's notice read
    job_notice.get_by_test_id("mark-read").click()

    # then the bell's count drops to 1 and that notice has no mark-read button
    expect(count).to_have_text("1")
    expect(notices.nth(0)).to_have_attribute("data-read", "1")
    expect(notices.nth(0).get_by_test_id("mark-read")).to_have_count(0)
    shot(page, "one-read")

    # when they mark all read, the bell shows no count
    page.get_by_test_id("read-all").click()
    expect(count).to_be_hidden()
    expect(page.get_by_test_id("unread-summary")).to_have_text("0 unread notices")
    _both_widths(page, shot, "all-read")

    # and the account page offers the SMS switches, on by default
    page.goto("/account/")
    prefs = page.get_by_test_id("sms-preferences")
    expect(prefs.get_by_test_id("sms-order_paid")).to_be_checked()
    prefs.get_by_test_id("sms-order_paid").uncheck()
    prefs.get_by_test_id("sms-save").click()
    expect(page.get_by_test_id("sms-order_paid")).not_to_be_checked()
    expect(page.get_by_test_id("sms-job-balance")).to_be_checked()
    _both_widths(page, shot, "account-sms")
