"""Times in pages: relative within a day ("3 minutes ago"), the date otherwise, exact on hover.

Pages render in the platform's time zone (Asia/Shanghai, UTC+8); the hover text
names the offset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.template import Context, Template
from django.utils import translation

from billing.choices import LedgerKind
from billing.models import LedgerEntry

NOW = datetime(2026, 5, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def render(source: str, **context) -> str:
    return Template("{% load portal_time %}" + source).render(Context(context))


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def test_a_recent_time_reads_relative_with_the_local_time_on_hover(frozen):
    with translation.override("en"):
        html = render("{{ t|when }}", t=NOW - timedelta(minutes=3))

    assert html == (
        '<time datetime="2026-05-10T03:57:00+00:00" title="2026-05-10 11:57:00 (UTC+08:00)">'
        "3\xa0minutes ago</time>"
    )


def test_a_recent_time_reads_relative_in_chinese(frozen):
    with translation.override("zh-hans"):
        html = render("{{ t|when }}", t=NOW - timedelta(hours=2))

    assert ">2\xa0小时之前</time>" in html or ">2小时之前</time>" in html


def test_an_older_time_reads_as_its_local_date(frozen):
    html = render('{{ t|when:"Y-m-d H:i:s" }}', t=datetime(2026, 5, 1, 16, 30, 5, tzinfo=UTC))

    # 16:30 UTC on May 1 is 00:30 on May 2 in Shanghai: the page shows the local day.
    assert ">2026-05-02 00:30:05</time>" in html
    assert 'title="2026-05-02 00:30:05 (UTC+08:00)"' in html


def test_a_time_ahead_within_a_day_reads_relative(frozen):
    with translation.override("en"):
        html = render("{{ t|when }}", t=NOW + timedelta(hours=5))

    assert "5\xa0hours from now</time>" in html


def test_no_time_shows_the_default():
    assert render('{{ t|when|default:"—" }}', t=None) == "—"


@pytest.mark.django_db
def test_the_ledger_shows_when_each_entry_was_made(frozen, student_client, student):
    LedgerEntry.objects.create(
        user=student,
        delta_micro=-30_000,
        kind=LedgerKind.CHARGE,
        reason="storage fee",
        idempotency_key="fee",
        created_at=NOW - timedelta(minutes=12),
    )

    html = student_client.get("/billing/ledger/", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert 'title="2026-05-10 11:48:00 (UTC+08:00)">12\xa0minutes ago</time>' in html
