"""The "Ban for mining" admin action: asks why, then bans end to end (user_ban_for_mining)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from aladdin.accounts.models import StaffAction
from billing import selectors as billing_selectors
from billing.choices import LedgerKind
from billing.models import LedgerEntry
from gpu_jobs.choices import JobState
from tests.backoffice.queues_support import support_agent
from tests.factories import UserFactory
from workshops.choices import WorkshopState

pytestmark = pytest.mark.django_db

USERS = "admin:accounts_user_changelist"


def test_the_ban_action_asks_why_then_stops_forfeits_and_records_once(
    client, user, subscribe, make_job, make_workshop, driver, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    subscribe(user, "basic", timezone.now())
    job = make_job(user, started_at=timezone.now())
    workshop = make_workshop(user)
    agent = support_agent()
    client.force_login(agent)
    form = {"action": "ban_for_mining", "_selected_action": [user.pk]}

    asked = client.post(reverse(USERS), form)
    assert asked.status_code == 200 and b"ban_reason" in asked.content
    user.refresh_from_db()
    assert not user.is_banned

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            reverse(USERS), {**form, "confirm_ban": "1", "ban_reason": "mining on 8 GPUs"}
        )

    assert done.status_code == 302
    user.refresh_from_db()
    job.refresh_from_db()
    workshop.refresh_from_db()
    assert user.is_banned and not user.is_active
    assert job.state == JobState.STOPPED
    assert workshop.state == WorkshopState.STOPPED
    assert billing_selectors.active_balance_micro(user, timezone.now()) == 0
    assert LedgerEntry.objects.filter(
        user=user, kind=LedgerKind.FORFEIT, reason="mining on 8 GPUs"
    ).exists()
    record = StaffAction.objects.get(target_user=user)
    assert (record.actor, record.action, record.reason) == (agent, "ban", "mining on 8 GPUs")


def test_staff_who_may_not_see_users_cannot_ban(client, user):
    client.force_login(UserFactory(is_staff=True))

    response = client.post(
        reverse(USERS),
        {
            "action": "ban_for_mining",
            "_selected_action": [user.pk],
            "confirm_ban": "1",
            "ban_reason": "x",
        },
    )

    assert response.status_code == 403
    user.refresh_from_db()
    assert not user.is_banned
