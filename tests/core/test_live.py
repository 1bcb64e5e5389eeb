"""/ws/live/: state, billing and balance pushed to the open pages (aladdin/live.py), own rows only."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from aladdin import live
from aladdin.asgi import application
from gpu_jobs.choices import JobState
from gpu_jobs.models import Job
from tests.wsclient import refusal_code

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def cookie(client, user):
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def frames(headers, watch, *, count: int, during=None):
    """Send ``watch``; the first ``count`` update frames (``during()`` runs after the first)."""

    async def run():
        communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
        connected, _code = await communicator.connect(timeout=5)
        assert connected
        await communicator.send_json_to({"watch": watch})
        got = []
        while len(got) < count:
            message = await communicator.receive_output(timeout=10)
            assert message["type"] == "websocket.send", message
            got.append(json.loads(message["text"]))
            if during is not None and len(got) == 1:
                from asgiref.sync import sync_to_async

                await sync_to_async(during)()
        await communicator.disconnect()
        return got

    return async_to_sync(run)()


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(live, "LIVE_SECONDS", 0.2)


def test_the_first_frame_has_every_watched_row_then_only_what_changed(
    client, user, make_job, make_workshop, subscribe
):
    subscribe(user, "basic", timezone.now())
    workshop = make_workshop(user)
    job = make_job(user, state=JobState.STARTING, started_at=None)
    headers = [ORIGIN, cookie(client, user)]

    def the_job_starts():
        Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, started_at=timezone.now())

    first, second = frames(
        headers,
        {"jobs": [job.pk], "workshops": [workshop.pk], "balance": True},
        count=2,
        during=the_job_starts,
    )

    assert first["type"] == "update"
    assert first["jobs"][str(job.pk)]["state"] == "starting"
    assert first["jobs"][str(job.pk)]["state_label"] == "Starting"
    assert first["workshops"][str(workshop.pk)]["state"] == workshop.state
    assert first["balance"]["active"] == '<span class="dcu" title="56.6 DCU">56.60</span>'
    # Then only the job's changed fields: its state, label and start.
    changed = second["jobs"][str(job.pk)]
    assert changed["state"] == "running" and changed["state_label"] == "Running"
    assert changed["started"] != "—"
    assert "reason" not in changed
    assert second["workshops"] == {} and second["balance"] == {}


def test_labels_come_in_the_users_language(client, user, make_job):
    user.language = "zh-hans"
    user.save(update_fields=["language"])
    job = make_job(user, state=JobState.RUNNING)

    (first,) = frames([ORIGIN, cookie(client, user)], {"jobs": [job.pk]}, count=1)

    assert first["jobs"][str(job.pk)]["state_label"] == "运行中"


def test_another_users_rows_are_never_answered(client, user, make_user, make_job, make_workshop):
    other = make_user()
    their_workshop = make_workshop(other)
    theirs = make_job(other, state=JobState.RUNNING)
    mine = make_job(user, state=JobState.RUNNING)

    (first,) = frames(
        [ORIGIN, cookie(client, user)],
        {"jobs": [theirs.pk, mine.pk], "workshops": [their_workshop.pk]},
        count=1,
    )

    assert set(first["jobs"]) == {str(mine.pk)}
    assert first["workshops"] == {}


def test_anonymous_is_refused_with_4401(user):
    assert refusal_code("/ws/live/", [ORIGIN]) == 4401


def test_a_bad_watch_message_closes_with_4400(client, user):
    headers = [ORIGIN, cookie(client, user)]

    async def run():
        communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
        await communicator.connect(timeout=5)
        await communicator.send_json_to({"nonsense": 1})
        message = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return message

    assert async_to_sync(run)() == {"type": "websocket.close", "code": 4400}
