"""Issue 16's "Done when": a support agent finds a miner, gives a voucher, stops a job, bans them.

The portal runs like `make run` (web, worker, beat and the local agent), so
the job and the workshop really run in the agent's sandboxes and really
stop. The miner's account, plan, SSH key, IDE token, workshop and job are
made in the portal's own environment (as the user would through the
dashboard and the plugin, which other e2e tests drive); everything the
support agent does goes through the browser.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.e2e.test_run_shell import _portal_shell

pytestmark = pytest.mark.e2e

PASSWORD = "S3cure-pass-word"
VOUCHER_REASON = "Compensation for the outage of 1 December"
STOP_REASON = "The job mines cryptocurrency"
BAN_REASON = "Mining Monero on GPU cards (job logs reviewed)"
HOLD_SCRIPT = "#!/bin/bash\necho mining; sleep 600\n"

SETUP = """
import json, secrets
from datetime import timedelta
from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken
from aladdin.accounts.models import User
from billing import services as billing
from billing.models import Plan
from workshops import services as workshops

miner = User.objects.create_user(phone="{miner}", password="{password}", phone_verified=True)
billing.subscription_create(user=miner, plan=Plan.objects.get(code="basic"))
key, _private = workshops.ssh_key_generate(user=miner, name="laptop")
app = Application.objects.get(client_id=settings.OAUTH_IDE_CLIENT_ID)
access = AccessToken.objects.create(
    user=miner, application=app, token=secrets.token_urlsafe(30),
    expires=timezone.now() + timedelta(hours=1), scope="read write",
)
RefreshToken.objects.create(
    user=miner, application=app, token=secrets.token_urlsafe(30), access_token=access
)
# The real support group, as migrate left it (aladdin/backoffice/roles.py).
group = Group.objects.get(name="support")
agent = User.objects.create_user(
    phone="{agent}", password="{password}", phone_verified=True, is_staff=True,
    language="zh-hans",
)
agent.groups.add(group)
print(json.dumps({{"miner": miner.pk, "agent": agent.pk, "token": access.token,
                  "fingerprint": key.fingerprint}}))
"""

LAUNCH = """
import json
from aladdin.accounts.models import User
from gpu_jobs import services as jobs
from gpu_jobs.models import GpuType
from workshops import services as workshops
from workshops.models import Image, ResourcePreset

miner = User.objects.get(pk={miner})
workshop = workshops.workshop_create(
    user=miner, name="rig", image=Image.objects.get(name="python", tag="3.12"),
    preset=ResourcePreset.objects.order_by("cpu_millicores", "memory_mib").first(),
)
job = jobs.job_create(
    user=miner, kind="shell", entry="hold.sh", gpu_type=GpuType.objects.get(code="40g")
)
print(json.dumps({{"workshop": workshop.pk, "job": job.pk}}))
"""

STATE = """
import json
from django.utils import timezone
from aladdin.accounts.models import User
from billing import selectors
from billing.models import LedgerEntry
from gpu_jobs.models import Job
from workshops.models import Workshop
from workshops.selectors import ssh_login_target

miner = User.objects.get(pk={miner})
print(json.dumps({{
    "job": Job.objects.get(pk={job}).state,
    "workshop": Workshop.objects.get(pk={workshop}).state,
    "active_micro": selectors.active_balance_micro(miner, timezone.now()),
    "forfeits": LedgerEntry.objects.filter(user=miner, kind="forfeit").count(),
    "ssh_allowed": ssh_login_target(username="rig", fingerprint="{fingerprint}") is not None,
    "banned": miner.banned_at is not None,
}}))
"""


def _json_shell(portal, code: str) -> dict:
    return json.loads(_portal_shell(portal, code).splitlines()[-1])


def _state(portal, ids: dict) -> dict:
    return _json_shell(portal, STATE.format(**ids))


def _wait_for(portal, ids: dict, check, what: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    state = _state(portal, ids)
    while not check(state) and time.monotonic() < deadline:
        time.sleep(2)
        state = _state(portal, ids)
    assert check(state), f"{what} within {timeout} s: {state}\n{portal.tail()}"
    return state


def _api_me(portal, token: str) -> int:
    request = urllib.request.Request(
        f"{portal.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _upload_script(portal, user_id: int) -> None:
    volume = portal.var_dir / "volumes" / str(user_id)
    volume.mkdir(parents=True, exist_ok=True)
    script = volume / "hold.sh"
    script.write_text(HOLD_SCRIPT)
    uid = settings.LOCAL_UID_BASE + user_id
    for path in (volume, script):
        os.chown(path, uid, uid)
    volume.chmod(0o700)


def _both_widths(page, shot, name: str) -> None:
    shot(page, f"{name}-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, f"{name}-390")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_support_finds_a_miner_gives_a_voucher_stops_the_job_and_bans_them(
    browser, page, portal, shot
):
    # given a miner with a plan, an SSH key, a connected IDE, a workshop and a running job
    miner_local = f"139{random.randrange(10**8):08d}"
    agent_local = f"137{random.randrange(10**8):08d}"
    ids = _json_shell(
        portal,
        SETUP.format(
            miner=f"+86{miner_local}",
            agent=f"+86{agent_local}",
            password=PASSWORD,
        ),
    )
    _upload_script(portal, ids["miner"])
    ids.update(_json_shell(portal, LAUNCH.format(**ids)))
    _wait_for(
        portal,
        ids,
        lambda s: s["job"] == "running" and s["workshop"] == "running",
        "the job and the workshop running",
        timeout=240,
    )
    assert _api_me(portal, ids["token"]) == 200
    assert _state(portal, ids)["ssh_allowed"]

    # when the support agent logs in with the phone as people type it
    # (the staff login at /admin/login/, phone as typed, Django's own form)
    typed_phone = f"{agent_local[:3]} {agent_local[3:7]} {agent_local[7:]}"
    page.goto("/admin/login/")
    page.fill("input[name=username]", typed_phone)
    page.fill("input[name=password]", PASSWORD)
    _both_widths(page, shot, "admin-login-zh")
    page.locator("#login-form input[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))

    # and finds the miner by phone (another format again)
    page.goto("/admin/backoffice/search/")
    page.fill("input[name=q]", f"+86 {miner_local}")
    page.locator(".bo-search button[type=submit]").click()
    expect(page).to_have_url(re.compile(rf"/admin/backoffice/users/{ids['miner']}/$"))
    expect(page.locator(f"tr[data-job='{ids['job']}']")).to_be_visible()
    _both_widths(page, shot, "user-zh")
    page.goto("/admin/backoffice/search/?q=%2B8613")
    expect(page.locator(f"table.bo-hits a[href$='/users/{ids['miner']}/']")).to_be_visible()
    _both_widths(page, shot, "search-zh")
    page.goto(f"/admin/backoffice/users/{ids['miner']}/")

    # and issues a voucher with a reason
    voucher = page.locator("form[action$='/act/voucher/']")
    voucher.locator("input[name=amount_dcu]").fill("3")
    voucher.locator("input[name=reason]").fill(VOUCHER_REASON)
    voucher.locator("button[type=submit]").click()
    expect(page.locator("ul.messagelist")).to_contain_text("3")
    expect(page.locator("#ledger")).to_contain_text(VOUCHER_REASON)

    # and stops the running job with a reason
    job_row = page.locator(f"tr[data-job='{ids['job']}']")
    job_row.locator("input[name=reason]").fill(STOP_REASON)
    job_row.locator("button[type=submit]").click()
    expect(page.locator("ul.messagelist")).to_contain_text(str(ids["job"]))
    _wait_for(portal, ids, lambda s: s["job"] == "stopped", "the job stopped", timeout=60)

    # and bans the miner
    ban = page.locator("form[action$='/act/ban/']")
    ban.locator("input[name=reason]").fill(BAN_REASON)
    ban.locator("input[name=confirm]").check()
    shot(page, "before-ban")
    ban.locator("button[type=submit]").click()
    expect(page.locator("[data-test=banned]")).to_be_visible()

    # then the job ended, the workshop stopped, the active compute is 0 with forfeit entries
    state = _wait_for(
        portal,
        ids,
        lambda s: s["workshop"] == "stopped",
        "the workshop stopped",
        timeout=60,
    )
    assert state["job"] == "stopped"
    assert state["active_micro"] == 0
    assert state["forfeits"] >= 1
    page.reload()
    expect(page.locator("[data-test=active-dcu]")).to_have_text(re.compile(r"^0 DCU$"))
    expect(page.locator("#ledger tr[data-kind=forfeit]").first).to_be_visible()

    # and the IDE token and the SSH key are refused
    assert _api_me(portal, ids["token"]) == 401
    assert not state["ssh_allowed"]

    # and each action is in the audit log with its reason
    audit = page.locator("#audit")
    for action, reason in (
        ("voucher", VOUCHER_REASON),
        ("job_stop", STOP_REASON),
        ("ban", BAN_REASON),
    ):
        expect(audit.locator(f"tr[data-action={action}]").first).to_contain_text(reason)
    _both_widths(page, shot, "banned-zh")

    # the same page in English
    _portal_shell(
        portal,
        "from aladdin.accounts.models import User; "
        f"User.objects.filter(pk={ids['agent']}).update(language='en')",
    )
    page.reload()
    expect(page.locator("#audit")).to_contain_text("Staff actions on this user")
    _both_widths(page, shot, "banned-en")
    # (both test users' numbers start +8613: the search lists them)
    page.goto("/admin/backoffice/search/?q=%2B8613")
    expect(page.locator(f"table.bo-hits a[href$='/users/{ids['miner']}/']")).to_be_visible()
    _both_widths(page, shot, "search-en")

    # and the miner who logs in with the right password is told the account is banned
    other = browser.new_context(base_url=portal.url, locale="zh-CN")
    try:
        miner = other.new_page()
        miner.goto("/accounts/login/")
        miner.fill("input[name=login]", miner_local)
        miner.fill("input[name=password]", PASSWORD)
        miner.locator("main form button[type=submit]").first.click()
        shot(miner, "miner-login")
        expect(miner.locator("main")).to_contain_text(re.compile("banned|封禁"))
        expect(miner).not_to_have_url(re.compile(r"/overview/$"))
    finally:
        other.close()
