from __future__ import annotations

import pytest
import time_machine

from aladdin.accounts.models import Notification, SmsMessage
from storage import services
from storage.models import Reclamation, RetentionWarning
from tests.factories import SubscriptionFactory

from .conftest import GIB, sh

# A Trial period from 1 April 09:00 ends on 1 May 09:00 (Asia/Shanghai):
# with no activity since, the volume is reclaimed on 16 May 09:00.
PLAN_END = sh(2026, 5, 1, 9)
RECLAIM_AT = sh(2026, 5, 16, 9)


@pytest.fixture
def lapsed(make_user, plans, driver):
    user = make_user(date_joined=sh(2026, 3, 1))
    SubscriptionFactory(user=user, plan_code="trial", at=sh(2026, 4, 1, 9))
    services.volume_register(user_id=user.pk)
    driver.usage[user.pk] = 12 * GIB
    return user


def _run(at):
    with time_machine.travel(at, tick=False):
        return services.retention_run()


def test_storage_is_reclaimed_15_days_after_the_plan_ended_not_a_minute_before(lapsed, driver):
    assert _run(sh(2026, 5, 16, 8, 59))["reclaimed"] == 0
    assert driver.deleted == []

    assert _run(RECLAIM_AT)["reclaimed"] == 1

    assert driver.deleted == [lapsed.pk]
    record = Reclamation.objects.get(user=lapsed)
    assert (record.at, record.bytes, record.basis_at) == (RECLAIM_AT, 12 * GIB, PLAN_END)
    # a reclaimed volume is neither reclaimed again nor sampled
    assert _run(sh(2026, 5, 17))["reclaimed"] == 0
    assert services.usage_sample(as_of=sh(2026, 5, 17), driver=driver) == 0


def test_the_warning_is_sent_in_app_and_by_sms_3_days_before(
    lapsed, django_capture_on_commit_callbacks
):
    assert _run(sh(2026, 5, 13, 8, 59))["warned"] == 0

    with django_capture_on_commit_callbacks(execute=True):
        assert _run(sh(2026, 5, 13, 9))["warned"] == 1

    assert RetentionWarning.objects.get(user=lapsed).reclaim_at == RECLAIM_AT
    notice = Notification.objects.get(user=lapsed, kind="storage_retention")
    assert "2026-05-16 09:00" in notice.rendered.body
    assert SmsMessage.objects.filter(phone=lapsed.phone, purpose="storage_retention").exists()
    # once per cycle
    assert _run(sh(2026, 5, 14))["warned"] == 0
    assert Notification.objects.filter(user=lapsed, kind="storage_retention").count() == 1


def test_an_api_call_with_the_plugins_token_restarts_the_15_days(lapsed, client, driver):
    from tests.accounts.test_ide_oauth import ide_login

    with time_machine.travel(sh(2026, 5, 10, 12), tick=False):
        tokens = ide_login(client, lapsed)
        response = client.get(
            "/api/v1/me", headers={"authorization": f"Bearer {tokens['access_token']}"}
        )
        assert response.status_code == 200

    assert _run(RECLAIM_AT)["reclaimed"] == 0
    assert driver.deleted == []
    assert _run(sh(2026, 5, 25, 11, 59))["reclaimed"] == 0
    assert _run(sh(2026, 5, 25, 12))["reclaimed"] == 1


def test_a_staff_hold_prevents_reclamation(lapsed, make_user, driver):
    staff = make_user(is_staff=True)
    services.storage_hold_set(user=lapsed, actor=staff, hold=True, reason="court order")

    assert _run(sh(2026, 6, 30)) == {"warned": 0, "reclaimed": 0}
    assert driver.deleted == []


def test_an_active_plan_keeps_the_storage(make_user, plans, driver):
    user = make_user(date_joined=sh(2026, 1, 1))
    SubscriptionFactory(user=user, plan_code="trial", at=sh(2026, 4, 1, 9))
    services.volume_register(user_id=user.pk)

    assert _run(sh(2026, 4, 30)) == {"warned": 0, "reclaimed": 0}


def test_a_user_who_never_subscribed_counts_from_sign_up(make_user, plans, driver):
    user = make_user(date_joined=sh(2026, 4, 1, 9))
    services.volume_register(user_id=user.pk)

    assert _run(sh(2026, 4, 16, 8, 59))["reclaimed"] == 0
    assert _run(sh(2026, 4, 16, 9))["reclaimed"] == 1
