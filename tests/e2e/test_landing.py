"""A visitor reads the landing page in real Chromium: both languages, desktop and phone widths.

Each width and language is checked for a horizontal page scroll (the page must
fit the screen; tables and long words scroll or wrap inside their cards) and
saved as a screenshot under test-artifacts/e2e.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def _switch_language(page, code: str) -> None:
    page.select_option("select[name=language]", code)
    page.get_by_test_id("switch-language").click()
    expect(page.locator("html")).to_have_attribute("lang", code)


def _no_horizontal_scroll(page) -> None:
    sizes = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
    )
    assert sizes["scroll"] <= sizes["inner"], f"the page scrolls sideways: {sizes}"


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_a_visitor_reads_plans_gpus_and_the_faq_at_desktop_and_phone_widths(page, shot, language):
    # given a visitor on the landing page, in the language they chose
    page.goto("/")
    if language != "zh-hans":
        _switch_language(page, language)
    expect(page.locator("html")).to_have_attribute("lang", language)

    for name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.goto("/")

        # then the plans for sale show their prices and education prices, read from the data
        basic = page.get_by_test_id("landing-plan-basic")
        expect(basic.get_by_test_id("landing-price")).to_have_text("¥365.00")
        expect(basic.get_by_test_id("landing-edu-price")).to_contain_text("¥325.00")
        # two decimals, the exact amount on hover
        compute = basic.get_by_test_id("landing-dcu").locator("span.dcu")
        expect(compute).to_have_text("56.60")
        expect(compute).to_have_attribute("title", "56.6 DCU")
        expect(page.get_by_test_id("landing-plan-free")).to_be_visible()

        # and the GPUs with their price per card-hour, and what a DCU is
        expect(
            page.get_by_test_id("landing-gpu-40g").get_by_test_id("landing-gpu-price")
        ).to_contain_text("1.28")
        expect(
            page.get_by_test_id("landing-gpu-80g").get_by_test_id("landing-gpu-price")
        ).to_contain_text("2.56")
        expect(page.get_by_test_id("dcu-explained")).to_contain_text("1 DCU = 312 TFLOPS·h")

        # and the sign-up call to action is on screen without scrolling
        expect(page.get_by_test_id("cta-signup")).to_be_in_viewport()

        # and nothing makes the page scroll sideways
        _no_horizontal_scroll(page)
        shot(page, f"{language}-{name}")

        # when they open an FAQ answer, it shows, and the page still fits
        faq = page.locator("#faq details").first
        faq.locator("summary").click()
        expect(faq.locator("p")).to_be_visible()
        _no_horizontal_scroll(page)
    shot(page, f"{language}-phone-faq-open")

    # and "Sign up" leads to the sign-up page
    page.get_by_test_id("cta-signup").click()
    expect(page).to_have_url(re.compile(r"/accounts/signup/$"))
