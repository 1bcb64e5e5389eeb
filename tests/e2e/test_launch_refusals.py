"""Refusals at launch say the way out, in the browser (issue 17): a free user's GPU job is
told it needs a plan; a job on a file that is not in the user's storage is refused with
its path before anything starts."""

from __future__ import annotations

import random
import re

from playwright.sync_api import expect

from tests.e2e.test_backoffice_journey import _json_shell
from tests.factories import PASSWORD

SETUP = """
import json
from aladdin.accounts.models import User
from billing import services as billing
from billing.models import Plan
free = User.objects.create_user(phone="{free}", password="{password}", phone_verified=True)
paid = User.objects.create_user(phone="{paid}", password="{password}", phone_verified=True)
billing.subscription_create(user=paid, plan=Plan.objects.get(code="basic"))
print(json.dumps({{"free": free.pk, "paid": paid.pk}}))
"""

JOBS = """
import json
from gpu_jobs.models import Job
print(json.dumps({{"jobs": Job.objects.filter(user_id__in=[{free}, {paid}]).count()}}))
"""


def _log_in(page, local: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", local)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))


def _launch(page, entry: str) -> None:
    page.goto("/jobs/new/")
    page.fill("input[name=entry]", entry)
    page.locator("[data-testid=job-launch]").click()


def test_launch_refusals_say_what_to_do(browser, page, portal, shot):
    free_local = f"133{random.randrange(10**8):08d}"
    paid_local = f"134{random.randrange(10**8):08d}"
    ids = _json_shell(
        portal,
        SETUP.format(free=f"+86{free_local}", paid=f"+86{paid_local}", password=PASSWORD),
    )

    # A free user (the page in Chinese, the default): GPU use needs a plan.
    _log_in(page, free_local)
    _launch(page, "train.py")
    expect(page.locator("[data-testid=form-errors]")).to_contain_text("GPU 任务需要套餐")
    shot(page, "free-user-needs-a-plan")

    # A user with a plan, a file that is not there: refused with its path.
    other = browser.new_context(base_url=portal.url, locale="zh-CN")
    paid = other.new_page()
    _log_in(paid, paid_local)
    _launch(paid, "experiments/train.py")
    expect(paid.locator("form[data-testid=job-launch-form]")).to_contain_text(
        "你的存储中没有 /root/experiments/train.py"
    )
    shot(paid, "missing-entry-file")
    other.close()

    assert _json_shell(portal, JOBS.format(**ids))["jobs"] == 0
