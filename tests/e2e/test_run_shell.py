"""A Run Shell job on the real local backend, its output live in the browser (issue 6).

The portal runs like `make run` (web, worker, beat and the local agent). The
script stands in for one the IDE uploaded to the user's storage; the job
runs in the user's sandbox on a (virtual) 40G card, and its output reaches
the job page over the log websocket while it runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.e2e.conftest import REPO
from tests.e2e.test_purchase import _sign_up
from tests.e2e.test_workshop_terminal import WS_CLOSE_CODE

pytestmark = pytest.mark.e2e

SCRIPT = """#!/bin/bash
echo "run shell says hi from $(id -u)"
for i in 1 2 3; do echo "step $i of 3"; sleep 0.5; done
echo "cards: $CUDA_VISIBLE_DEVICES"
"""


def _portal_shell(portal, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=portal.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _subscribe_and_upload(portal, phone: str) -> int:
    """Basic plan (the purchase itself is test_purchase's), and the script in /root."""
    user_id = int(
        _portal_shell(
            portal,
            "from aladdin.accounts.models import User; from billing.models import Plan; "
            "from billing import services; "
            f"u = User.objects.get(phone='{phone}'); "
            "services.subscription_create(user=u, plan=Plan.objects.get(code='basic')); "
            "print(u.pk)",
        ).splitlines()[-1]
    )
    volume = portal.var_dir / "volumes" / str(user_id)
    volume.mkdir(parents=True, exist_ok=True)
    script = volume / "hello.sh"
    script.write_text(SCRIPT)
    uid = settings.LOCAL_UID_BASE + user_id
    for path in (volume, script):
        os.chown(path, uid, uid)
    volume.chmod(0o700)
    return user_id


def test_a_run_shell_jobs_output_reaches_the_browser(browser, page, portal, shot):
    # given a user with a plan and a script in their storage
    phone = _sign_up(page, portal)
    _subscribe_and_upload(portal, phone)

    # when they launch it as Run Shell on a 40G card
    page.goto("/jobs/new/")
    page.select_option("select[name=kind]", "shell")
    page.fill("input[name=entry]", "hello.sh")
    page.select_option("select[name=gpu_type]", "40g")
    shot(page, "launch")
    page.get_by_test_id("job-launch").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job_path = re.search(r"/jobs/\d+/", page.url).group(0)

    # then its output streams into the page as it runs, as the user's own uid
    logs = page.get_by_test_id("job-logs")
    expect(logs).to_contain_text(re.compile(r"run shell says hi from \d+\n"), timeout=60_000)
    uid = int(re.search(r"hi from (\d+)", logs.inner_text()).group(1))
    assert uid > settings.LOCAL_UID_BASE  # a student's uid: not root, not the portal's
    expect(logs).to_contain_text("step 3 of 3", timeout=30_000)
    expect(logs).to_contain_text(re.compile(r"cards: \S+"))
    status = page.locator("#job-status")
    expect(status).to_have_attribute("data-state", "succeeded", timeout=30_000)
    shot(page, "succeeded")

    # and another user can neither see the job nor open its log stream
    other = browser.new_context(base_url=portal.url, locale="zh-CN")
    try:
        intruder = other.new_page()
        _sign_up(intruder, portal)
        intruder.goto("/overview/")
        ws_path = job_path.replace("/jobs/", "/ws/jobs/") + "logs/"
        assert intruder.evaluate(WS_CLOSE_CODE, ws_path) == 4404
        assert intruder.goto(job_path).status == 404
    finally:
        other.close()
