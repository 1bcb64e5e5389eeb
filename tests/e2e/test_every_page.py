"""Every student page, at 390 and 1280 px, in both languages (issue 17): no horizontal page
scroll, and axe-core (npm, package.json) reports no serious or critical violation.
Screenshots of each land in test-artifacts/e2e."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.test_backoffice_journey import _json_shell, _upload_script
from tests.factories import PASSWORD

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"

SETUP = """
import json
from aladdin.accounts.models import User
from aladdin.accounts.services import notification_create
from billing import services as billing
from billing.models import Plan
from workshops import services as workshops
from workshops.models import Image, ResourcePreset
user = User.objects.create_user(phone="{phone}", password="{password}", phone_verified=True)
billing.subscription_create(user=user, plan=Plan.objects.get(code="basic"))
ws = workshops.workshop_create(
    user=user, name="dev", image=Image.objects.get(name="python", tag="3.12"),
    preset=ResourcePreset.objects.order_by("cpu_millicores", "memory_mib").first(),
)
print(json.dumps({{"user": user.pk, "workshop": ws.pk}}))
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
jobs.job_stop(job=job)
print(json.dumps({{"job": job.pk}}))
"""

ANONYMOUS = ["/", "/accounts/login/", "/accounts/signup/"]


def student_pages(ids: dict) -> list[str]:
    return [
        "/overview/",
        "/workshops/",
        "/workshops/new/",
        f"/workshops/{ids['workshop']}/",
        "/workshops/keys/",
        "/jobs/",
        "/jobs/new/",
        f"/jobs/{ids['job']}/",
        "/jobs/configurations/",
        "/jobs/costs/",
        "/storage/",
        "/storage/files/",
        "/billing/plans/",
        "/billing/orders/",
        "/billing/ledger/",
        "/account/",
        "/notifications/",
    ]


def _problems(page, path: str) -> list[str]:
    problems = []
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if width[0] > width[1] + 1:
        problems.append(f"{path}: the page is {width[0]} px wide in a {width[1]} px window")
    undrawn = page.evaluate(
        """() => [...document.querySelectorAll("canvas[data-chart]")]
            .filter(c => c.hidden && JSON.parse(
                document.getElementById(c.dataset.chart).textContent).labels.length)
            .map(c => c.id)"""
    )
    problems += [f"{path}: the chart #{c} was not drawn" for c in undrawn]
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations
                .filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => v.id + " (" + v.impact + "): " + v.help + " — "
                     + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
        }"""
    )
    problems += [f"{path}: {v}" for v in found]
    return problems


def _walk(page, shot, paths, label: str) -> list[str]:
    problems: list[str] = []
    # A script that throws leaves a page half-working without any other sign.
    page.on("pageerror", lambda error: problems.append(f"[{label}] {page.url}: {error}"))
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            page.goto(path)
            problems += [f"[{label} {width}px] {p}" for p in _problems(page, path)]
            name = re.sub(r"[^a-z0-9]+", "-", path.strip("/")) or "home"
            shot(page, f"{label}-{width}-{name}")
    return problems


@pytest.mark.skipif(not AXE.exists(), reason="axe-core is not installed (make system-test-deps)")
def test_every_page_fits_a_phone_and_passes_axe_in_both_languages(page, portal, shot):
    local = f"136{random.randrange(10**8):08d}"
    ids = _json_shell(portal, SETUP.format(phone=f"+86{local}", password=PASSWORD))
    _upload_script(portal, ids["user"])
    ids.update(_json_shell(portal, LAUNCH.format(**ids)))

    problems = _walk(page, shot, ANONYMOUS, "zh")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/accounts/login/")
    page.fill("input[name=login]", local)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
    problems += _walk(page, shot, student_pages(ids), "zh")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/overview/")
    page.select_option("#lang-select", "en")
    page.locator("[data-testid=switch-language]").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    problems += _walk(page, shot, student_pages(ids), "en")

    assert problems == [], "\n".join(problems)
