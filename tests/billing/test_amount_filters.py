"""How pages show DCU and yuan: two decimals, the exact amount on hover, ¥ for yuan.

The rounding rule (aladdin.lib.units.format_micro_2dp): to 0.01 DCU, halves away
from zero; a non-zero amount that would read 0.00 reads "<0.01" instead, so a
nearly used-up balance or a one-second charge never looks like nothing. The
back office keeps the exact form (``dcu``), which these filters leave alone.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone

from billing import services

DCU = 1_000_000


def render(source: str, **context) -> str:
    return Template("{% load billing %}" + source).render(Context(context))


@pytest.mark.parametrize(
    ("micro", "shown", "exact"),
    [
        (56_600_000, "56.60", "56.6"),
        (20_000_000, "20.00", "20"),
        (1_234_567, "1.23", "1.234567"),
        (1_235_000, "1.24", "1.235"),  # a half rounds away from zero
        (19_995_000, "20.00", "19.995"),
        (5_000, "0.01", "0.005"),
        (4_999, "<0.01", "0.004999"),  # not used up: never "0.00"
        (1, "<0.01", "0.000001"),
        (0, "0.00", "0"),
        (-30_000, "-0.03", "-0.03"),
        (-5_000, "-0.01", "-0.005"),
        (-356, "-<0.01", "-0.000356"),
        (-2_500_000, "-2.50", "-2.5"),
    ],
)
def test_dcu_shows_two_decimals_with_the_exact_amount_on_hover(micro, shown, exact):
    html = render("{{ amount|dcu_page }}", amount=micro)
    assert html == f'<span class="dcu" title="{exact} DCU">{shown.replace("<", "&lt;")}</span>'


@pytest.mark.parametrize(
    ("micro", "html"),
    [
        (20 * DCU, '<span class="dcu" title="+20 DCU">+20.00</span>'),
        (-30_000, '<span class="dcu" title="-0.03 DCU">-0.03</span>'),
        (-356, '<span class="dcu" title="-0.000356 DCU">-&lt;0.01</span>'),
        (0, '<span class="dcu" title="0 DCU">0.00</span>'),
    ],
)
def test_ledger_amounts_carry_their_sign(micro, html):
    assert render("{{ amount|signed_dcu_page }}", amount=micro) == html


@pytest.mark.parametrize(
    ("fen", "text"),
    [(13_500, "¥135.00"), (6_750, "¥67.50"), (5, "¥0.05"), (0, "¥0.00"), (-150, "-¥1.50")],
)
def test_yuan_shows_as_a_price_with_the_yuan_sign(fen, text):
    assert render("{{ fen|cny }}", fen=fen) == text


@pytest.mark.parametrize("filter_name", ["dcu_page", "signed_dcu_page", "cny"])
def test_a_missing_amount_shows_nothing(filter_name):
    assert render(f"{{{{ amount|{filter_name}|default:'—' }}}}", amount=None) == "—"


def test_the_back_office_filter_keeps_the_exact_amount():
    assert render("{{ a|dcu }} {{ b|signed_dcu }}", a=56_600_000, b=-356) == "56.6 -0.000356"


def test_a_nearly_used_up_balance_never_reads_zero_on_the_overview(student_client, student, plans):
    # given a Trial of 20 DCU with all but 0.004 DCU spent
    services.subscription_create(user=student, plan=plans["trial"])
    services.charge(
        user=student, kind="test", key="use", amount_micro=20 * DCU - 4_000, reason="use"
    )

    html = student_client.get("/overview/").content.decode()

    assert (
        'data-testid="balance-active"><span class="dcu" title="0.004 DCU">&lt;0.01</span>' in html
    )


def test_a_one_second_charge_reads_as_less_than_a_hundredth_in_the_ledger(
    student_client, student, plans
):
    services.subscription_create(user=student, plan=plans["trial"])
    services.charge(user=student, kind="test", key="1s", amount_micro=356, reason="one second")

    html = student_client.get("/billing/ledger/").content.decode()

    assert '<span class="dcu" title="-0.000356 DCU">-&lt;0.01</span>' in html


def test_the_storage_page_shows_a_days_fee_rounded_with_the_exact_fee_on_hover(
    student_client, student, driver
):
    from storage.models import StorageCharge

    # given yesterday's peak was 1 GiB over the free storage: 0.0015 DCU
    day = timezone.localdate() - timedelta(days=1)
    StorageCharge.objects.create(
        user=student,
        day=day,
        peak_bytes=31 * 2**30,
        charged_gib=1,
        free_gib=30,
        amount_micro=1_500,
        ledger_key=f"storage:{student.pk}:{day}",
    )

    html = student_client.get("/storage/").content.decode()

    row = html[html.index(f"<tr><td>{day:%Y-%m-%d}</td>") :].split("</tr>")[0]
    assert row.endswith('<td class="num"><span class="dcu" title="0.0015 DCU">&lt;0.01</span></td>')
