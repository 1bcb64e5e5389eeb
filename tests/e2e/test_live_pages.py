"""Open pages follow the job without a reload (issue 17): the jobs list and the job page
show "billed so far" growing and the state changing when the job stops, in a real browser
against `make run`'s processes (aladdin/live.py, static/js/live.js)."""

from __future__ import annotations

import random
import re
import time

from playwright.sync_api import expect

from tests.e2e.test_backoffice_journey import _json_shell, _portal_shell, _upload_script
from tests.factories import PASSWORD

SETUP = """
import json
from aladdin.accounts.models import User
from billing import services as billing
from billing.models import Plan
user = User.objects.create_user(phone="{phone}", password="{password}", phone_verified=True)
billing.subscription_create(user=user, plan=Plan.objects.get(code="basic"))
print(json.dumps({{"user": user.pk}}))
"""

LAUNCH = """
import json
from aladdin.accounts.models import User
from gpu_jobs import services as jobs
from gpu_jobs.models import GpuType
job = jobs.job_create(
    user=User.objects.get(pk={user}), kind="shell", entry="hold.sh",
    gpu_type=GpuType.objects.get(code="40g"),
)
print(json.dumps({{"job": job.pk}}))
"""

STOP = """
from gpu_jobs import services as jobs
from gpu_jobs.models import Job
jobs.job_stop(job=Job.objects.get(pk={job}))
"""


STATE = """
import json
from gpu_jobs.models import Job
print(json.dumps({{"state": Job.objects.get(pk={job}).state}}))
"""


def _wait_for_job(portal, job: int, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = _json_shell(portal, STATE.format(job=job))["state"]
    while seen != state and time.monotonic() < deadline:
        time.sleep(2)
        seen = _json_shell(portal, STATE.format(job=job))["state"]
    assert seen == state, f"job {job} {state} within {timeout} s: {seen}\n{portal.tail()}"


def test_the_jobs_list_and_job_page_follow_the_job_without_a_reload(page, portal, shot):
    local = f"135{random.randrange(10**8):08d}"
    ids = _json_shell(portal, SETUP.format(phone=f"+86{local}", password=PASSWORD))
    _upload_script(portal, ids["user"])
    ids.update(_json_shell(portal, LAUNCH.format(**ids)))
    _wait_for_job(portal, ids["job"], "running", timeout=240)

    page.goto("/accounts/login/")
    page.fill("input[name=login]", local)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))

    # Both pages open while the job runs.
    page.goto("/jobs/")
    row = f"[data-testid='job-{ids['job']}']"
    billed = page.locator(f"{row} [data-live-field=billed] span.dcu")
    expect(page.locator(row)).to_have_attribute("data-state", "running")
    page.evaluate("window.__notReloaded = true")
    detail = page.context.new_page()
    detail.goto(f"/jobs/{ids['job']}/")
    detail.evaluate("window.__notReloaded = true")

    # The list: billed so far grows (its exact value, on hover) on the page as loaded.
    first = billed.get_attribute("title")
    expect(billed).not_to_have_attribute("title", first, timeout=30_000)
    shot(page, "jobs-list-running")

    # The job is stopped from elsewhere (the IDE, support): both pages follow.
    _portal_shell(portal, STOP.format(**ids))
    for open_page, card in ((page, row), (detail, "[data-testid=job-status]")):
        expect(open_page.locator(card)).to_have_attribute(
            "data-state", re.compile("stopped|succeeded|failed"), timeout=60_000
        )
        assert open_page.evaluate("window.__notReloaded") is True
    expect(page.locator(f"{row} [data-live-field=state_label]")).not_to_have_text(
        re.compile("运行中|Running")
    )
    shot(page, "jobs-list-stopped")
    shot(detail, "job-page-stopped")
