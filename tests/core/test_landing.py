"""The landing page a visitor sees at /: plans and prices, GPUs, what a DCU is, the FAQ.

Everything priced on it is read from the database (plans and GPU types are
staff-edited data); a logged-in user still goes straight to the overview.
"""

from __future__ import annotations

import re

import pytest

from tests.backoffice.queues_support import pending_zh  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def landing(client, language: str = "en") -> str:
    response = client.get("/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return response.content.decode()


def section(html: str, testid: str) -> str:
    """The text of one card (tags dropped, whitespace collapsed)."""
    match = re.search(rf'data-testid="{testid}">(.*?)</section>', html, re.S)
    assert match, f"no {testid} on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def test_visitors_see_each_plan_for_sale_with_its_price_and_education_price(client, plans):
    html = landing(client)

    trial = section(html, "landing-plan-trial")
    assert "尝鲜版 Trial" in trial
    assert "¥135.00 for 30 days" in trial
    assert "Education price: ¥119.00" in trial
    assert "20.00 DCU" in trial
    basic = section(html, "landing-plan-basic")
    assert "¥365.00" in basic and "Education price: ¥325.00" in basic
    assert "56.60 DCU" in basic
    assert "GPU parallelism 4" in basic and "Free storage 60 GiB" in basic
    advanced = section(html, "landing-plan-advanced")
    assert "¥3100.00" in advanced and "Education price: ¥2750.00" in advanced
    assert "Max storage 2048 GiB" in advanced
    pack = section(html, "landing-plan-extension")
    assert "¥67.50" in pack and "Education price: ¥59.50" in pack
    assert "Needs an active plan" in pack


def test_the_free_tier_is_shown_as_what_a_visitor_gets_without_paying(client, plans):
    free = section(landing(client), "landing-plan-free")

    assert "¥0.00" in free
    assert "GPU jobs need a plan" in free
    assert "2 CPU, 4 GiB memory" in free
    assert "Free storage 30 GiB" in free


def test_each_plan_says_how_long_its_compute_runs_the_cheapest_card(client, plans, cards):
    html = landing(client)

    # 20 DCU at 1.28 DCU per card-hour: 15.625 hours.
    assert "about 15.6 hours on one DC100 (Hopper) 40G" in section(html, "landing-plan-trial")
    assert "about 390.6 hours" in section(html, "landing-plan-advanced")


def test_visitors_see_the_gpu_types_and_their_price_per_card_hour(client, plans, cards):
    html = landing(client)

    small = section(html, "landing-gpu-40g")
    assert "DC100 (Hopper) 40G" in small
    assert "1.28 DCU per card-hour" in small
    assert "5 CPU, 60 GiB memory" in small
    assert "no, one card per worker" in small
    large = section(html, "landing-gpu-80g")
    assert "2.56 DCU per card-hour" in large
    assert "Parallelism per card 2" in large
    # The exact price is on hover.
    assert '<span class="dcu" title="2.56 DCU">2.56</span>' in html


def test_prices_on_the_landing_page_follow_the_database(client, plans, cards):
    # given staff changed a price and a GPU rate in the back office
    plans["trial"].price_fen = 12_345
    plans["trial"].education_price_fen = 9_999
    plans["trial"].save()
    cards["80g"].price_micro_per_hour = 3_005_000
    cards["80g"].save()

    html = landing(client)

    trial = section(html, "landing-plan-trial")
    assert "¥123.45" in trial and "Education price: ¥99.99" in trial
    assert "¥135.00" not in trial
    # Two decimals, rounded half up; the exact rate on hover.
    assert '<span class="dcu" title="3.005 DCU">3.01</span>' in html


def test_a_plan_taken_off_sale_is_not_on_the_landing_page(client, plans):
    plans["basic"].is_active = False
    plans["basic"].save()

    html = landing(client)

    assert 'data-testid="landing-plan-basic"' not in html
    assert 'data-testid="landing-plan-trial"' in html


def test_the_landing_page_explains_the_dcu_with_the_cheapest_card(client, plans, cards):
    html = landing(client)

    assert "1 DCU = 312 TFLOPS·h" in html
    example = section(html.replace("</p>", "</section>"), "landing-dcu-example")
    # 60 min / 1.28 DCU per hour = 46.9 minutes of a 40G card per DCU.
    assert "1 DCU keeps it running for about 47 minutes" in example


def test_the_landing_page_says_what_a_workshop_and_a_job_are(client, plans):
    html = landing(client)

    assert "A workshop: your dev environment" in html
    assert "A job: your code on GPUs" in html
    assert "Workshops are not billed by time." in html


def test_the_faq_answers_what_matters_before_buying_with_the_platforms_numbers(client, plans):
    text = " ".join(re.sub(r"<[^>]+>", " ", landing(client)).split())

    assert "carries over for 30 days, inactive" in text
    assert "A higher plan takes effect as soon as it is paid" in text
    assert "keeps billing until you delete the job" in text
    # The storage rate is exact (a rate of 0.0015 is not "0.00"); the cap reads as an amount.
    assert "each day costs 0.0015 DCU per GiB over the free storage" in text
    assert "You never bear more than 10.00 DCU of arrears" in text
    assert "not logged in for 15 days" in text
    assert "Payment is by Alipay" in text
    assert "Cryptocurrency mining" in text


def test_visitors_are_offered_sign_up_and_log_in(client, plans):
    html = landing(client)

    assert 'href="/accounts/signup/" data-testid="cta-signup"' in html
    assert 'href="/accounts/login/" data-testid="cta-login"' in html


def test_logged_in_users_still_go_to_their_overview(client, user, plans):
    client.force_login(user)

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/overview/"


def test_the_landing_page_reads_in_chinese(client, plans, cards, pending_zh):  # noqa: F811
    html = landing(client, "zh-hans")

    assert '<html lang="zh-hans">' in html
    trial = section(html, "landing-plan-trial")
    assert "教育优惠价：¥119.00" in trial
    assert "购买前常见问题" in html
    assert "1 DCU = 312 TFLOPS·h" in html and "算力计量单位" in html
    assert "每卡每小时" in section(html, "landing-gpu-40g")
    # No English sentence of the page is left untranslated.
    for english in (
        "What is a DCU?",
        "Questions before you buy",
        "per card-hour",
        "Education price",
    ):
        assert english not in html
