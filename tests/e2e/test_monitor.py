"""The Monitor on the job page (issue 18): a running job's CPU and memory drawn as live
charts (Chart.js, static/js/monitor.js) from the agent's samples, in both languages, at
1280 and 390 px, with no horizontal scroll and no serious axe violation. Screenshots in
test-artifacts/e2e."""

from __future__ import annotations

import os
import random
import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.e2e.test_backoffice_journey import _json_shell, _portal_shell
from tests.e2e.test_every_page import AXE, _problems
from tests.e2e.test_live_pages import LAUNCH, SETUP, STOP, _wait_for_job
from tests.factories import PASSWORD

# A shell job that keeps one core busy: the CPU line has something to show.
BUSY_SCRIPT = "#!/bin/bash\necho spinning\nwhile :; do :; done\n"

POINTS = """() => {
    const chart = window.Chart && Chart.getChart(document.getElementById("monitor-usage"));
    return chart ? chart.data.labels.length : 0;
}"""


def _upload_busy_script(portal, user_id: int) -> None:
    # Named as LAUNCH expects (hold.sh).
    volume = portal.var_dir / "volumes" / str(user_id)
    volume.mkdir(parents=True, exist_ok=True)
    script = volume / "hold.sh"
    script.write_text(BUSY_SCRIPT)
    uid = settings.LOCAL_UID_BASE + user_id
    for path in (volume, script):
        os.chown(path, uid, uid)
    volume.chmod(0o700)


@pytest.mark.skipif(not AXE.exists(), reason="axe-core is not installed (make system-test-deps)")
def test_the_job_page_draws_live_charts_of_the_jobs_cpu_and_memory(page, portal, shot):
    local = f"137{random.randrange(10**8):08d}"
    ids = _json_shell(portal, SETUP.format(phone=f"+86{local}", password=PASSWORD))
    _upload_busy_script(portal, ids["user"])
    ids.update(_json_shell(portal, LAUNCH.format(**ids)))
    _wait_for_job(portal, ids["job"], "running", timeout=240)

    page.goto("/accounts/login/")
    page.fill("input[name=login]", local)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))

    problems: list[str] = []
    try:
        for language in ("zh", "en"):
            if language == "en":
                page.set_viewport_size({"width": 1280, "height": 900})
                page.select_option("#lang-select", "en")
                page.locator("[data-testid=switch-language]").click()
                expect(page.locator("html")).to_have_attribute("lang", "en")
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(f"/jobs/{ids['job']}/")
            # The charts appear with the first samples and grow as the agent takes more
            # (every 5 s), without a reload.
            expect(page.get_by_test_id("monitor-usage-chart")).to_be_visible(timeout=60_000)
            expect(page.get_by_test_id("monitor-memory-chart")).to_be_visible()
            first = page.evaluate(POINTS)
            page.wait_for_function(f"({POINTS})() > {first}", timeout=60_000)
            legend = page.evaluate(
                """() => Chart.getChart(document.getElementById("monitor-usage"))
                    .data.datasets.map(d => d.label)"""
            )
            label = page.get_by_test_id("monitor").get_attribute("data-label-cpu")
            assert legend == [label]
            if language == "en":
                assert label == "CPU (100 = one core busy)"
            cpu = page.evaluate(
                """() => Chart.getChart(document.getElementById("monitor-usage"))
                    .data.datasets[0].data.filter(v => v !== null)"""
            )
            assert cpu and max(cpu) > 10, cpu  # the busy loop shows
            for width in (1280, 390):
                page.set_viewport_size({"width": width, "height": 900})
                page.wait_for_timeout(300)  # Chart.js redraws on resize
                problems += [f"[{language} {width}px] {p}" for p in _problems(page, "job")]
                shot(page, f"job-monitor-{language}-{width}")
    finally:
        _portal_shell(portal, STOP.format(**ids))
    assert problems == [], "\n".join(problems)
