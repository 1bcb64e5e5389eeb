"""A job's output: the websocket stream (ws/jobs/<pk>/logs/) and gpu_jobs.logs, with a real agent.

The portal's driver is a LocalDriver pointed at a private agent
(tests/cluster/conftest.py) that runs real processes. pytest-asyncio is not
installed: each test runs its coroutine with async_to_sync; the consumer
reads the database from its own thread, hence transaction=True.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from aladdin.asgi import application
from aladdin.cluster.base import DriverError, Phase
from gpu_jobs import logs
from gpu_jobs.choices import JobState
from tests.cluster.conftest import spec
from tests.wsclient import refusal_code

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def cookie(client, user):
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def run_workload(driver, job, script: str) -> None:
    driver.ensure_user_space(user_id=job.user_id, storage_gib=1, quota=None)
    driver.start_workload(
        spec(job.workload_name, user_id=job.user_id, kind="job", command=["sh", "-c", script])
    )


def wait_for_end(driver, job) -> None:
    b"".join(driver.follow_logs(name=job.workload_name))
    assert driver.workload_status(name=job.workload_name).phase in {
        Phase.SUCCEEDED,
        Phase.FAILED,
    }


def collect(headers, pk, *, query: str = "", during=None, timeout: float = 20):
    """Connect; every frame until the server closes, and its close code.

    (False, code) when the connection was refused. ``during`` runs (in a
    thread) once the socket is open.
    """

    async def run():
        path = f"/ws/jobs/{pk}/logs/" + (f"?{query}" if query else "")
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await communicator.connect(timeout=5)
        if not connected:
            return False, code
        if during is not None:
            threading.Thread(target=during, daemon=True).start()
        frames = []
        while True:
            message = await communicator.receive_output(timeout=timeout)
            if message["type"] == "websocket.close":
                await communicator.disconnect()
                return frames, message.get("code", 1000)
            frames.append(json.loads(message["text"]))

    return async_to_sync(run)()


def text_of(frames) -> str:
    return "".join(f["data"] for f in frames if f["type"] == "log")


def test_output_reaches_the_client_in_order_and_ends_with_the_end_frame(
    client, user, make_job, portal_driver
):
    job = make_job(user)
    run_workload(portal_driver, job, 'for i in $(seq 1 200); do echo "line $i"; done; sleep 0.3')

    frames, code = collect([cookie(client, user), ORIGIN], job.pk)

    expected = "".join(f"line {i}\n" for i in range(1, 201))
    assert text_of(frames) == expected
    assert frames[-1] == {"type": "end", "offset": len(expected), "state": "succeeded"}
    offsets = [f["offset"] for f in frames]
    assert offsets == sorted(offsets)
    assert code == 1000


def test_lines_arrive_while_the_job_is_still_running(client, user, make_job, portal_driver):
    job = make_job(user)
    run_workload(portal_driver, job, "echo early; sleep 3; echo late")
    arrivals: list[tuple[float, str]] = []
    headers = [cookie(client, user), ORIGIN]

    async def run():
        communicator = WebsocketCommunicator(
            application, f"/ws/jobs/{job.pk}/logs/", headers=headers
        )
        assert (await communicator.connect(timeout=5))[0]
        started = time.monotonic()
        while True:
            message = await communicator.receive_output(timeout=10)
            if message["type"] == "websocket.close":
                break
            arrivals.append((time.monotonic() - started, json.loads(message["text"])["type"]))
        await communicator.disconnect()

    async_to_sync(run)()

    assert arrivals[0][1] == "log" and arrivals[0][0] < 1.5
    assert arrivals[-1][1] == "end" and arrivals[-1][0] > 2


def test_resuming_from_an_offset_gives_only_the_rest(client, user, make_job, portal_driver):
    job = make_job(user)
    run_workload(portal_driver, job, "echo one; echo two; echo three")
    wait_for_end(portal_driver, job)

    frames, code = collect([cookie(client, user), ORIGIN], job.pk, query="offset=4")

    assert text_of(frames) == "two\nthree\n"
    assert frames[-1] == {"type": "end", "offset": 14, "state": "succeeded"}
    assert code == 1000


def test_another_users_job_is_refused_with_4404_before_any_output(
    client, user, other_user, make_job, portal_driver
):
    job = make_job(other_user)
    run_workload(portal_driver, job, "echo secret")
    wait_for_end(portal_driver, job)

    assert refusal_code(f"/ws/jobs/{job.pk}/logs/", [cookie(client, user), ORIGIN]) == 4404


def test_a_missing_job_is_refused_with_4404(client, user, portal_driver):
    assert refusal_code("/ws/jobs/999999/logs/", [cookie(client, user), ORIGIN]) == 4404


def test_a_deleted_job_is_refused_with_4404(client, user, make_job, portal_driver):
    job = make_job(user, state=JobState.SUCCEEDED, deleted_at=timezone.now())

    assert refusal_code(f"/ws/jobs/{job.pk}/logs/", [cookie(client, user), ORIGIN]) == 4404


def test_anonymous_is_refused_with_4401(user, make_job, portal_driver):
    job = make_job(user)

    assert refusal_code(f"/ws/jobs/{job.pk}/logs/", [ORIGIN]) == 4401


def test_a_utf8_character_split_between_chunks_arrives_whole(client, user, make_job, portal_driver):
    job = make_job(user)
    # "你" is e4 bd a0: its first two bytes are written well before the third.
    run_workload(portal_driver, job, r"printf 'a\344\275'; sleep 0.5; printf '\240b\n'")

    frames, code = collect([cookie(client, user), ORIGIN], job.pk)

    assert frames == [
        {"type": "log", "data": "a", "offset": 1},
        {"type": "log", "data": "你b\n", "offset": 6},
        {"type": "end", "offset": 6, "state": "succeeded"},
    ]
    assert code == 1000


def test_a_job_not_started_yet_is_waited_for(client, user, make_job, portal_driver):
    job = make_job(user, state=JobState.QUEUED)

    def start_later():
        time.sleep(1)
        run_workload(portal_driver, job, "echo started")
        type(job).objects.filter(pk=job.pk).update(state=JobState.RUNNING)

    frames, code = collect([cookie(client, user), ORIGIN], job.pk, during=start_later)

    assert frames == [
        {"type": "log", "data": "started\n", "offset": 8},
        {"type": "end", "offset": 8, "state": "succeeded"},
    ]
    assert code == 1000


def test_a_disconnect_stops_the_stream(client, user, make_job, portal_driver, agent):
    job = make_job(user)
    run_workload(portal_driver, job, "echo hello; sleep 60")
    headers = [cookie(client, user), ORIGIN]

    async def run():
        communicator = WebsocketCommunicator(
            application, f"/ws/jobs/{job.pk}/logs/", headers=headers
        )
        assert (await communicator.connect(timeout=5))[0]
        first = json.loads((await communicator.receive_output(timeout=10))["text"])
        await communicator.disconnect()
        return first

    assert async_to_sync(run)() == {"type": "log", "data": "hello\n", "offset": 6}
    name = f"logs-{job.workload_name}"
    deadline = time.monotonic() + 5
    while any(t.name == name for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the pump thread is still running"
        time.sleep(0.05)
    portal_driver.stop_workload(name=job.workload_name, grace_seconds=1)


def test_read_logs_returns_a_chunk_and_says_when_it_is_all(user, make_job, portal_driver):
    job = make_job(user)
    run_workload(portal_driver, job, "echo one; echo two")
    wait_for_end(portal_driver, job)
    job.state = JobState.SUCCEEDED

    assert logs.read_logs(job, limit=4) == logs.LogChunk(b"one\n", 4, ended=False)
    assert logs.read_logs(job, offset=4) == logs.LogChunk(b"two\n", 8, ended=True)
    assert logs.read_logs(job, offset=8) == logs.LogChunk(b"", 8, ended=True)


def test_delete_logs_is_refused_while_running_and_removes_the_output_after(
    user, make_job, portal_driver
):
    job = make_job(user)
    run_workload(portal_driver, job, "echo kept; sleep 60")
    time.sleep(0.3)

    with pytest.raises(DriverError):
        logs.delete_logs(job)
    assert logs.read_logs(job).data == b"kept\n"

    portal_driver.stop_workload(name=job.workload_name, grace_seconds=1)
    logs.delete_logs(job)

    assert logs.read_logs(job).data == b""
    logs.delete_logs(job)  # missing = success
