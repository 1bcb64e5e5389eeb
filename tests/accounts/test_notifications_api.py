"""/api/v1/notifications: the notices in the request's language, mark read, mark all read.

The plugin calls with its bearer token (no session), so the language is the
request's ``Accept-Language``. The unread count is also pushed over
/ws/notifications/ (the bell, the plugin).
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import translation

from aladdin.accounts.models import Notification
from aladdin.accounts.services import notification_create
from tests.accounts.test_ide_oauth import ide_login
from tests.backoffice.queues_support import pending_zh  # noqa: F401 - fixture


def _job_failed(user, *, job_id=7):
    return notification_create(
        user=user,
        message="job_failed",
        params={"id": job_id, "name": "train", "exit_code": 3, "reason": ""},
    )


@pytest.fixture
def plugin(client, user):
    """``plugin(path, method="get", language="en")``: the IDE plugin's call with its token."""
    token = ide_login(client, user)["access_token"]

    def call(path, method="get", language="en", **kwargs):
        headers = {"authorization": f"Bearer {token}", "accept-language": language}
        return getattr(client, method)(path, headers=headers, **kwargs)

    return call


def test_a_notice_created_under_chinese_reads_in_english_on_an_english_request(plugin, user):
    with translation.override("zh-hans"):
        notice = _job_failed(user)

    english = plugin("/api/v1/notifications").json()
    chinese = plugin("/api/v1/notifications", language="zh-hans").json()

    assert english["count"] == 1 and english["next"] is None
    row = english["results"][0]
    assert row["id"] == notice.pk and row["kind"] == "job-failed"
    assert row["message"] == "job_failed" and row["params"]["exit_code"] == 3
    assert row["title"] == "Job train (#7) failed" and row["body"] == "Exit code 3."
    assert row["url"] == "/jobs/7/" and row["read_at"] is None
    assert chinese["results"][0]["title"] == "任务 train（#7）失败"


def test_amounts_stay_integers_in_params_and_read_formatted(plugin, user):
    notification_create(
        user=user, message="order_paid", params={"order": "ALD1", "plan": "Trial", "amount": 13500}
    )

    row = plugin("/api/v1/notifications").json()["results"][0]

    assert row["params"]["amount"] == 13500
    assert row["body"] == "You paid ¥135.00 for Trial. It is on your account now."
    assert row["url"] == "/billing/orders/"


def test_the_list_is_newest_first_paginated_and_filters_unread(plugin, user):
    notices = [_job_failed(user, job_id=n) for n in range(1, 4)]
    Notification.objects.filter(pk=notices[0].pk).update(read_at=notices[0].created_at)

    page = plugin("/api/v1/notifications?page_size=2").json()
    unread = plugin("/api/v1/notifications?unread=1").json()
    read = plugin("/api/v1/notifications?unread=0").json()

    assert page["count"] == 3 and page["next"] is not None
    assert [r["id"] for r in page["results"]] == [notices[2].pk, notices[1].pk]
    assert [r["id"] for r in unread["results"]] == [notices[2].pk, notices[1].pk]
    assert [r["id"] for r in read["results"]] == [notices[0].pk]
    assert plugin("/api/v1/notifications?unread=maybe").status_code == 400


def test_mark_read_and_read_all(plugin, user):
    first, second, third = (_job_failed(user, job_id=n) for n in range(1, 4))

    response = plugin(f"/api/v1/notifications/{first.pk}/read", method="post")

    assert response.status_code == 200 and response.json()["read_at"] is not None
    assert plugin("/api/v1/notifications?unread=1").json()["count"] == 2
    # reading it again changes nothing
    again = plugin(f"/api/v1/notifications/{first.pk}/read", method="post").json()
    assert again["read_at"] == response.json()["read_at"]

    marked = plugin("/api/v1/notifications/read-all", method="post").json()

    assert marked == {"marked": 2}
    assert plugin("/api/v1/notifications?unread=1").json()["count"] == 0


def test_another_users_notice_is_a_404_and_is_not_listed(plugin, other_user):
    theirs = _job_failed(other_user)

    response = plugin(f"/api/v1/notifications/{theirs.pk}/read", method="post")

    assert response.status_code == 404 and response.json()["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert plugin("/api/v1/notifications").json()["count"] == 0
    assert plugin("/api/v1/notifications/read-all", method="post").json() == {"marked": 0}
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_an_anonymous_call_is_refused(client):
    assert client.get("/api/v1/notifications").status_code == 401


def test_the_schema_documents_the_three_operations(client):
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]

    assert "get" in paths["/api/v1/notifications"]
    assert "post" in paths["/api/v1/notifications/{id}/read"]
    assert "404" in paths["/api/v1/notifications/{id}/read"]["post"]["responses"]
    assert "post" in paths["/api/v1/notifications/read-all"]


# --- the live count -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_unread_count_is_pushed_when_a_notice_arrives_and_when_it_is_read(client, user):
    from channels.db import database_sync_to_async

    from aladdin.accounts.services import notification_mark_read
    from aladdin.asgi import application
    from tests.accounts.test_websocket_auth import SAME_ORIGIN, session_cookie

    headers = [session_cookie(client, user), SAME_ORIGIN]

    async def run():
        communicator = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        try:
            seen = [await communicator.receive_json_from(timeout=5)]
            # transaction=True: each write commits, so its push goes out at once
            notice = await database_sync_to_async(_job_failed)(user)
            seen.append(await communicator.receive_json_from(timeout=5))
            await database_sync_to_async(notification_mark_read)(
                user=user, notification_id=notice.pk
            )
            seen.append(await communicator.receive_json_from(timeout=5))
            return seen
        finally:
            await communicator.disconnect()

    assert async_to_sync(run)() == [
        {"type": "unread", "count": 0},
        {"type": "unread", "count": 1},
        {"type": "unread", "count": 0},
    ]


@pytest.mark.django_db(transaction=True)
def test_the_notices_socket_refuses_anonymous_clients():
    from tests.accounts.test_websocket_auth import SAME_ORIGIN
    from tests.wsclient import refusal_code

    assert refusal_code("/ws/notifications/", [SAME_ORIGIN]) == 4401
