"""The notifications centre: notices stored as message ids, read in the reader's language.

Pages (/notifications/, the bell on every page), mark read / all read, the
SMS of what must not be missed with its per-kind switch on the account page.
The API has its own file (test_notifications_api.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.utils import translation

from aladdin.accounts import services, sms
from aladdin.accounts.models import Notification, SmsMessage
from aladdin.accounts.services import notification_create
from billing import payments
from billing.models import Order
from tests.backoffice.queues_support import pending_zh  # noqa: F401 - fixture
from tests.billing import alipay_gateway
from tests.billing.alipay_gateway import post_form

alipay = alipay_gateway.alipay  # the fixture: the portal trusts the test's Alipay keys

SH = ZoneInfo("Asia/Shanghai")


def _bell_count(html: str) -> str:
    match = re.search(r'data-testid="bell-count"\s*(hidden)?\s*>(\d+)<', html)
    assert match, "no bell on the page"
    return "0" if match.group(1) else match.group(2)


def _job_failed(user, *, job_id=7, name="train"):
    return notification_create(
        user=user,
        message="job_failed",
        params={"id": job_id, "name": name, "exit_code": 3, "reason": ""},
    )


# --- language ------------------------------------------------------------------------


def test_a_notice_written_while_chinese_was_active_reads_in_english_on_an_english_page(
    client, make_user
):
    # given a notice written while the portal ran in Chinese (a worker, a Chinese page)
    user = make_user(language="zh-hans")
    with translation.override("zh-hans"):
        _job_failed(user)
    client.force_login(user)

    # when the user reads it in Chinese, then in English
    chinese = client.get("/notifications/").content.decode()
    user.language = "en"
    user.save(update_fields=["language"])
    english = client.get("/notifications/").content.decode()

    # then each page shows it in its own language, with its link to the job
    assert "任务 train（#7）失败" in chinese and "退出码 3。" in chinese
    assert "Job train (#7) failed" in english and "Exit code 3." in english
    assert "任务" not in english
    notice = Notification.objects.get(user=user)
    assert f'href="/notifications/{notice.pk}/open/"' in english and "See the job" in english


def test_amounts_and_times_are_formatted_when_read_from_integers_and_iso_times(client, user):
    notification_create(
        user=user,
        message="order_paid",
        params={"order": "ALD123", "plan": "Trial", "amount": 13500},
    )
    notification_create(
        user=user,
        message="storage_retention_warning",
        params={"when": datetime(2026, 5, 16, 1, 0, tzinfo=ZoneInfo("UTC")).isoformat()},
    )
    client.force_login(user)
    user.language = "en"
    user.save(update_fields=["language"])

    page = client.get("/notifications/").content.decode()

    assert "You paid ¥135.00 for Trial." in page
    # 01:00 UTC is 09:00 in Shanghai, the portal's time zone
    assert "reclaimed at 2026-05-16 09:00" in page
    stored = Notification.objects.get(user=user, kind="order_paid")
    assert stored.params["amount"] == 13500 and stored.title == "" and stored.body == ""


def test_a_notice_stored_as_text_before_message_ids_keeps_its_text(client, user):
    Notification.objects.create(user=user, kind="retention", title="旧通知", body="旧的正文")
    client.force_login(user)

    page = client.get("/notifications/", headers={"accept-language": "en"}).content.decode()

    assert "旧通知" in page and "旧的正文" in page


def test_the_overview_lists_unread_notices_rendered_with_a_link_to_all(client, user):
    _job_failed(user)
    client.force_login(user)
    user.language = "en"
    user.save(update_fields=["language"])

    page = client.get("/overview/").content.decode()

    assert "Job train (#7) failed" in page
    assert 'href="/notifications/"' in page


# --- the bell, mark read ----------------------------------------------------------------


def test_the_bell_on_every_page_counts_unread_notices_and_drops_when_one_is_read(client, user):
    first = _job_failed(user, job_id=1)
    _job_failed(user, job_id=2)
    client.force_login(user)
    assert _bell_count(client.get("/storage/").content.decode()) == "2"

    response = client.post(f"/notifications/{first.pk}/read/")

    assert response.status_code == 302 and response["Location"] == "/notifications/"
    first.refresh_from_db()
    assert first.read_at is not None
    assert _bell_count(client.get("/jobs/").content.decode()) == "1"


def test_mark_all_read_marks_every_unread_notice_of_the_user_only(client, user, other_user):
    for n in range(3):
        _job_failed(user, job_id=n + 1)
    theirs = _job_failed(other_user)
    client.force_login(user)

    response = client.post("/notifications/read-all/", {"next": "/overview/"}, follow=True)

    assert response.redirect_chain[-1][0] == "/overview/"
    assert not Notification.objects.filter(user=user, read_at__isnull=True).exists()
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert _bell_count(response.content.decode()) == "0"


def test_another_users_notice_is_a_404_and_stays_unread(client, user, other_user):
    theirs = _job_failed(other_user)
    client.force_login(user)

    assert client.post(f"/notifications/{theirs.pk}/read/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert "Job train" not in client.get("/notifications/").content.decode()


def test_marking_read_needs_a_post_with_the_csrf_token(user):
    from django.test import Client

    notice = _job_failed(user)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    assert browser.get(f"/notifications/{notice.pk}/read/").status_code == 405
    assert browser.post(f"/notifications/{notice.pk}/read/").status_code == 403
    notice.refresh_from_db()
    assert notice.read_at is None


def test_a_redirect_elsewhere_after_mark_read_goes_to_the_notifications_page(client, user):
    notice = _job_failed(user)
    client.force_login(user)

    response = client.post(f"/notifications/{notice.pk}/read/", {"next": "https://evil.example/"})

    assert response["Location"] == "/notifications/"


def test_the_list_is_newest_first_and_paginated(client, user):
    for n in range(25):
        _job_failed(user, job_id=n + 1, name=f"run{n + 1}")
    client.force_login(user)
    user.language = "en"
    user.save(update_fields=["language"])

    first = client.get("/notifications/").content.decode()
    second = client.get("/notifications/?page=2").content.decode()

    assert first.count('data-testid="notice"') == 20
    assert first.index("run25") < first.index("run6")
    assert second.count('data-testid="notice"') == 5 and "run1 " in second
    assert "Page 2 of 2" in second


def test_the_notifications_page_needs_a_login(client):
    response = client.get("/notifications/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_pages_read_in_chinese(client, make_user, pending_zh):  # noqa: F811
    user = make_user(language="zh-hans")
    _job_failed(user)
    client.force_login(user)

    page = client.get("/notifications/").content.decode()
    account = client.get("/account/").content.decode()

    assert "全部标为已读" in page and "标为已读" in page
    assert "余额用尽，GPU 任务已停止" in account


# --- SMS ----------------------------------------------------------------------------------


def _paid_order(user, plans, alipay) -> Order:
    """An order of Trial paid as Alipay tells it: a signed notification to the notify URL."""
    from django.test import Client

    order = payments.order_create(user=user, plan=plans["trial"])
    assert post_form(Client(), alipay.notification(order)).content == b"success"
    order.refresh_from_db()
    return order


def test_a_paid_order_is_texted_in_the_users_language(
    client, make_user, plans, alipay, django_capture_on_commit_callbacks, caplog
):
    user = make_user(language="zh-hans")

    with django_capture_on_commit_callbacks(execute=True):
        order = _paid_order(user, plans, alipay)

    notice = Notification.objects.get(user=user, kind="order_paid")
    assert notice.sms == Notification.Sms.SENT
    client.force_login(user)
    assert 'data-testid="notice-texted"' in client.get("/notifications/").content.decode()
    assert SmsMessage.objects.filter(phone=user.phone, purpose="order_paid", ok=True).count() == 1
    texted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SMS to")]
    assert texted and order.out_trade_no in texted[-1] and "¥135.00" in texted[-1]


def test_the_sms_is_in_the_accounts_language_whatever_the_writer_spoke(
    make_user,
    django_capture_on_commit_callbacks,
    caplog,
    pending_zh,  # noqa: F811
):
    chinese, english = make_user(language="zh-hans"), make_user(language="en")

    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        notification_create(user=chinese, message="jobs_stopped_balance", params={"n": 2})
    with translation.override("zh-hans"), django_capture_on_commit_callbacks(execute=True):
        notification_create(user=english, message="jobs_stopped_balance", params={"n": 2})

    texted = {r.args[0]: r.args[1] for r in caplog.records if r.msg == "SMS to %s: %s"}
    assert texted[chinese.phone].startswith("Aladdin：您的算力余额已用尽，2 个 GPU 任务已停止")
    assert texted[english.phone].startswith("Aladdin: your compute balance is used up and 2 GPU")


def test_a_kind_turned_off_on_the_account_page_is_not_texted_but_still_shown(
    client, user, plans, alipay, django_capture_on_commit_callbacks
):
    client.force_login(user)
    page = client.get("/account/").content.decode()
    assert 'name="sms" value="order_paid" checked' in page

    # when the user unticks "Order paid" and keeps the others
    response = client.post("/account/notifications/", {"sms": ["job-balance", "storage_retention"]})
    assert response.status_code == 302
    assert 'value="order_paid" checked' not in client.get("/account/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        order = _paid_order(user, plans, alipay)

    notice = Notification.objects.get(user=user, kind="order_paid")
    assert notice.sms == Notification.Sms.NONE
    assert not SmsMessage.objects.filter(phone=user.phone).exists()
    assert order.out_trade_no in client.get("/notifications/").content.decode()


def test_a_refused_sms_leaves_the_notice_and_the_payment_in_place(
    user, plans, alipay, settings, django_capture_on_commit_callbacks
):
    settings.SMS_ALERT_DAILY_LIMIT_PER_PHONE = 0

    with django_capture_on_commit_callbacks(execute=True):
        order = _paid_order(user, plans, alipay)

    order.refresh_from_db()
    assert order.state == Order.State.PAID
    notice = Notification.objects.get(user=user, kind="order_paid")
    assert notice.sms == Notification.Sms.REFUSED
    assert not SmsMessage.objects.filter(phone=user.phone).exists()


def test_a_provider_failure_is_recorded_and_not_raised(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(self, *, phone, text):
        raise sms.SmsError("isv.BUSINESS_LIMIT_CONTROL")

    monkeypatch.setattr(sms.ConsoleSmsBackend, "send_text", broken)

    with django_capture_on_commit_callbacks(execute=True):
        notice = notification_create(user=user, message="jobs_stopped_balance", params={"n": 2})

    notice.refresh_from_db()
    assert notice.sms == Notification.Sms.FAILED
    assert SmsMessage.objects.get(phone=user.phone).ok is False


def test_alerts_do_not_take_the_slot_a_login_code_needs(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notification_create(user=user, message="jobs_stopped_balance", params={"n": 1})

    # a code can still be sent at once (the 60 s slot is the codes' own)
    sms.consume(phone=user.phone, ip="203.0.113.9")


def test_an_sms_task_run_twice_texts_once(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notice = notification_create(user=user, message="jobs_stopped_balance", params={"n": 1})

    assert services.notification_sms_send(notification_id=notice.pk) == ""
    assert SmsMessage.objects.filter(phone=user.phone).count() == 1


def test_notices_that_need_no_sms_are_not_texted(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notice = _job_failed(user)

    assert notice.sms == Notification.Sms.NONE
    assert not SmsMessage.objects.exists()


@pytest.mark.parametrize("message", ["nope", ""])
def test_an_unknown_message_id_is_refused_when_written(user, message):
    with pytest.raises(KeyError):
        notification_create(user=user, message=message)


def test_following_a_notices_link_marks_it_read_and_opens_its_page(client, user, make_user):
    notice = _job_failed(user, job_id=7)
    client.force_login(user)
    page = client.get("/notifications/").content.decode()
    assert f'href="/notifications/{notice.pk}/open/"' in page

    response = client.get(f"/notifications/{notice.pk}/open/")

    assert response.status_code == 302 and response["Location"] == "/jobs/7/"
    notice.refresh_from_db()
    assert notice.read_at is not None


def test_another_users_notice_link_is_404_and_stays_unread(client, user, make_user):
    theirs = _job_failed(make_user())
    client.force_login(user)
    assert client.get(f"/notifications/{theirs.pk}/open/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.read_at is None
