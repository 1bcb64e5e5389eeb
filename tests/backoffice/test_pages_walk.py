"""Walk every admin page a support agent can reach from the home page, in zh-hans and English.

For each page: it answers 200; no raw µDCU integer of the seeded objects
shows (the formatted DCU does, where the page lists it); in zh-hans no column
header, list filter title or field label is left as its English text.
"""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta

import pytest
from django.urls import URLPattern, reverse
from django.utils import timezone

from aladdin.accounts.models import BannedPhone, SmsMessage, StaffAction
from aladdin.backoffice import urls as backoffice_urls
from billing import services as billing_services
from billing.models import Account, ArrearsReview, Invoice, Order, PaymentNotification, Refund
from storage.models import DailyPeak, Reclamation, RetentionWarning, StorageAllowance, StorageCharge
from tests import factories
from tests.backoffice.queues_support import pending_zh, support_agent  # noqa: F401 - fixture
from workshops import services as workshop_services

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("pending_zh")]

# Distinctive amounts, so a raw integer on a page cannot be a coincidence.
VOUCHER_MICRO = 12_345_678  # 12.345678 DCU
CHARGE_MICRO = 2_345_671
JOB_CHARGED_MICRO = 7_654_321
STORAGE_FEE_MICRO = 45_678
REVERSED_MICRO = 1_234_567
ARREARS_AT_OPEN_MICRO = 11_223_344
ORDER_FEN = 12_345  # 123.45 yuan
# Five digits or more, as every amount here: fewer are common in any page.
REFUND_FEN = 10_321  # 103.21 yuan

RAW = {
    VOUCHER_MICRO: "12.345678",
    CHARGE_MICRO: "2.345671",
    JOB_CHARGED_MICRO: "7.654321",
    STORAGE_FEE_MICRO: "0.045678",
    REVERSED_MICRO: "1.234567",
    ARREARS_AT_OPEN_MICRO: "11.223344",
}
RAW_FEN = {ORDER_FEN: "123.45", REFUND_FEN: "103.21"}

# Texts that read the same in both languages.
SAME_IN_BOTH = {"", "ID", "DCU", "SSH", "CPU", "GPU", "ENV", "URL", "PDF", "CUDA", "Conda"}

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmzQZlqGeTVK6TGqGTeYdbCGoOm8gDV9Kq4oPtmDZs9 walk@test"


@pytest.fixture
def seeded(plans, cards, catalog, make_workshop):
    """One of each object a support agent sees, with the amounts above."""
    now = timezone.now()
    student = factories.UserFactory(username="walker")
    factories.SubscriptionFactory(user=student, plan_code="basic")
    factories.VoucherFactory(user=student, amount_micro=VOUCHER_MICRO)
    billing_services.charge(
        user=student, kind="test", key="walk", amount_micro=CHARGE_MICRO, reason="walk"
    )
    Account.objects.filter(user=student).update(debt_micro=ARREARS_AT_OPEN_MICRO)
    ArrearsReview.objects.create(user=student, debt_micro_at_open=ARREARS_AT_OPEN_MICRO)
    order = Order.objects.create(
        user=student,
        plan=plans["extension"],
        price_fen=ORDER_FEN,
        out_trade_no="WALK000001",
        expires_at=now + timedelta(minutes=30),
        state=Order.State.PAID,
        paid_at=now,
        needs_support=True,
    )
    PaymentNotification.objects.create(
        order=order,
        out_trade_no=order.out_trade_no,
        trade_status="TRADE_SUCCESS",
        outcome=PaymentNotification.Outcome.FLAGGED,
    )
    Refund.objects.create(
        order=order,
        out_request_no="WALKR1",
        amount_fen=REFUND_FEN,
        reason="walk",
        reversed_micro=REVERSED_MICRO,
        error="ACQ.SYSTEM_ERROR",
    )
    Invoice.objects.create(
        order=order, title_type="personal", title="Walker", email="w@x.cn", amount_fen=ORDER_FEN
    )
    StorageAllowance.objects.create(user=student, last_bytes=3 * 1024**3, last_sampled_at=now)
    DailyPeak.objects.create(user=student, day=now.date(), peak_bytes=3 * 1024**3)
    StorageCharge.objects.create(
        user=student,
        day=now.date(),
        peak_bytes=50 * 1024**3,
        charged_gib=20,
        free_gib=30,
        amount_micro=STORAGE_FEE_MICRO,
        ledger_key="storage:walk",
    )
    RetentionWarning.objects.create(user=student, sent_at=now, reclaim_at=now + timedelta(days=3))
    Reclamation.objects.create(user=student, at=now, bytes=1024**3, reason="retention")
    make_workshop(student)
    job = factories.JobFactory(user=student, card="80g", charged_micro=JOB_CHARGED_MICRO)
    job.worker_rows.update(charged_micro=JOB_CHARGED_MICRO)
    factories.JobConfigurationFactory(user=student)
    workshop_services.ssh_key_add(user=student, public_key=KEY, name="laptop")
    StaffAction.objects.create(actor=None, target_user=student, action="voucher", reason="walk")
    SmsMessage.objects.create(phone=student.phone, purpose="login", backend="console")
    BannedPhone.objects.create(phone="+8613999999999", reason="mining")
    return student


# --- reading a page ------------------------------------------------------------------------


def _text(fragment: str) -> str:
    return html_lib.unescape(re.sub(r"<[^>]+>", "", fragment)).strip().rstrip(":：").strip()


def _labels(page: str) -> list[str]:
    """Column headers, app and model names, list filter titles and field labels."""
    found = []
    for th in re.findall(r'<th[^>]*scope="col"[^>]*>(.*?)</th>', page, re.S):
        # a sortable header: its text sits in <div class="text">, beside the sort options
        inner = re.search(r'<div class="text">(.*?)</div>', th, re.S)
        found.append(_text(inner.group(1) if inner else th))
    # the home page's app and model names
    for name in re.findall(r'<(?:caption|th scope="row")[^>]*>(.*?)</(?:caption|th)>', page, re.S):
        found.append(_text(name))
    for title in re.findall(r'data-filter-title="([^"]*)"', page):
        found.append(html_lib.unescape(title))
    for label in re.findall(r"<label[^>]*>(.*?)</label>", page, re.S):
        found.append(_text(label))
    # inline tables' column headers
    for th in re.findall(r'<th class="column-[^"]*"[^>]*>(.*?)</th>', page, re.S):
        found.append(_text(th))
    return [t for t in found if t not in SAME_IN_BOTH and not t.startswith("?")]


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _raw_numbers(page: str) -> list[int]:
    # Links and the change lists' row checkboxes carry ids, which count up
    # over a test process's life: one once read 4321, the refund's fen.
    page = re.sub(r'href="[^"]*"|name="_selected_action" value="\d+"', "", page)
    return [n for n in (*RAW, *RAW_FEN) if re.search(rf"(?<![\d.,]){n}(?![\d])", page)]


def _get(client, agent, url: str, language: str):
    agent.language = language
    agent.save(update_fields=["language"])
    response = client.get(url)
    assert response.status_code == 200, f"{url} ({language}): {response.status_code}"
    return response


def _pages(client, agent) -> list[str]:
    """The home page, each model list on it, each listed object's page, the back office pages."""
    home = _get(client, agent, reverse("admin:index"), "en")
    urls = [reverse("admin:index")]
    for app in home.context["app_list"]:
        for model in app["models"]:
            if not model.get("admin_url"):
                continue
            urls.append(model["admin_url"])
            listing = _get(client, agent, model["admin_url"], "en")
            cl = listing.context["cl"]
            opts = cl.opts
            for obj in list(cl.result_list)[:3]:
                urls.append(
                    reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
                )
    for pattern in backoffice_urls.urlpatterns:
        if isinstance(pattern, URLPattern) and not pattern.pattern.regex.groupindex:
            urls.append(reverse(f"backoffice:{pattern.name}"))
    return urls


# --- the walk ------------------------------------------------------------------------------


def test_support_agent_pages_show_no_raw_micro_dcu_and_no_untranslated_label(seeded, client):
    agent = support_agent()
    client.force_login(agent)
    urls = _pages(client, agent)
    problems: list[str] = []
    seen_formatted: set[str] = set()

    for url in urls:
        en = _get(client, agent, url, "en").content.decode()
        zh = _get(client, agent, url, "zh-hans").content.decode()
        for language, page in (("en", en), ("zh-hans", zh)):
            for n in _raw_numbers(page):
                problems.append(f"{url} ({language}): raw amount {n}")
            seen_formatted.update(
                text for text in (*RAW.values(), *RAW_FEN.values()) if text in page
            )
        en_labels, zh_labels = _labels(en), _labels(zh)
        for text in zh_labels:
            if not _has_cjk(text) and text in en_labels:
                problems.append(f"{url} (zh-hans): untranslated label {text!r}")

    assert not problems, "\n".join(sorted(set(problems)))
    # every seeded amount was shown somewhere, formatted
    assert seen_formatted == {*RAW.values(), *RAW_FEN.values()}


def test_the_walk_covers_each_list_the_home_page_offers_and_the_overview(seeded, client):
    agent = support_agent()
    client.force_login(agent)

    urls = _pages(client, agent)

    for name in ("billing_grant", "billing_ledgerentry", "billing_order", "gpu_jobs_job"):
        assert reverse(f"admin:{name}_changelist") in urls
    assert reverse("backoffice:overview") in urls
    assert any("/admin/billing/grant/" in u and u.endswith("/change/") for u in urls)
