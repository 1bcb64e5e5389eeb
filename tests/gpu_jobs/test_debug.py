"""GPU Debug end to end (issue 18): the IDE's DAP session through ``ws/jobs/<id>/debug/``.

A user launches a file as a GPU Debug job; the local backend runs it in the
user's sandbox under the platform's debugpy (mounted read-only, not in the
image); a websocket client speaking the Debug Adapter Protocol, as the IDE
plugin does, attaches, stops at a breakpoint, reads a local variable,
continues, and the job ends succeeded. Another user is refused like on the
log websocket.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import timezone

from aladdin.asgi import application
from aladdin.cluster import debugger
from gpu_jobs import services
from gpu_jobs.choices import JobState
from gpu_jobs.consumers import DapFramingError, DapReader, dap_frame
from tests.cluster.conftest import REPO
from tests.cluster.test_exec import run
from tests.gpu_jobs.test_logs import cookie
from tests.wsclient import refusal_code

pytestmark = pytest.mark.django_db(transaction=True)

TARGET = REPO / "tests" / "gpu_jobs" / "payloads" / "debug_target.py"
BREAKPOINT_LINE = 7


class Dap:
    """A DAP client over the portal's websocket: one JSON message per text frame."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator
        self.seq = 0
        self.backlog: list[dict] = []
        self.close_code: int | None = None

    async def request(self, command: str, **arguments) -> int:
        self.seq += 1
        message = {"seq": self.seq, "type": "request", "command": command, "arguments": arguments}
        await self.communicator.send_to(text_data=json.dumps(message))
        return self.seq

    async def wait(self, matches, timeout: float = 60) -> dict:
        for message in self.backlog:
            if matches(message):
                self.backlog.remove(message)
                return message
        deadline = time.monotonic() + timeout
        while True:
            output = await self.communicator.receive_output(
                timeout=max(0.1, deadline - time.monotonic())
            )
            if output["type"] == "websocket.close":
                self.close_code = output.get("code", 1000)
                raise AssertionError(
                    f"closed ({self.close_code}) while waiting; saw {self.backlog}"
                )
            message = json.loads(output["text"])
            if matches(message):
                return message
            self.backlog.append(message)

    async def response(self, seq: int) -> dict:
        answer = await self.wait(lambda m: m["type"] == "response" and m["request_seq"] == seq)
        assert answer["success"], answer
        return answer

    async def event(self, name: str) -> dict:
        return await self.wait(lambda m: m["type"] == "event" and m["event"] == name)

    async def closed(self, timeout: float = 60) -> int:
        """The close code once the server closes (every message before it is kept)."""
        deadline = time.monotonic() + timeout
        while True:
            output = await self.communicator.receive_output(
                timeout=max(0.1, deadline - time.monotonic())
            )
            if output["type"] == "websocket.close":
                return output.get("code", 1000)
            self.backlog.append(json.loads(output["text"]))


def wait_running(job, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if services.job_sync(job_id=job.pk) == JobState.RUNNING:
            return
        time.sleep(0.2)
    job.refresh_from_db()
    raise AssertionError(f"job {job.pk} is {job.state}: {job.reason}")


@pytest.fixture
def debug_agent(portal_driver):
    problem = debugger.problem(settings.DEBUGPY_DIR)
    if problem:
        pytest.skip(problem)
    return portal_driver


def test_a_dap_client_stops_at_a_breakpoint_reads_a_local_and_the_job_succeeds(
    debug_agent, agent, client, user, cards, catalog, subscribe
):
    subscribe(user, "basic", timezone.now())
    # given: the file in the user's storage, as the IDE uploads it
    debug_agent.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    target = agent.volumes_dir / str(user.pk) / "debug_target.py"
    shutil.copy(TARGET, target)
    os.chown(target, settings.LOCAL_UID_BASE + user.pk, settings.LOCAL_UID_BASE + user.pk)

    # when: GPU Debug on a 40G card, and the plugin opens the bridge once it runs
    job = services.job_create(
        user=user, kind="debug", entry="debug_target.py", gpu_type=cards["40g"]
    )
    wait_running(job)
    headers = [cookie(client, user), (b"origin", b"http://localhost")]

    # the platform's debugpy is there read-only, and the program's imports are its own
    out, _err, _code = run(
        debug_agent.exec_in_workload(
            name=job.workload_name,
            command=["sh", "-c", 'touch /opt/aladdin/debugpy/x 2>&1; echo "path=[$PYTHONPATH]"'],
        )
    )
    assert b"Read-only file system" in out and b"path=[]" in out, out

    async def session():
        communicator = WebsocketCommunicator(
            application, f"/ws/jobs/{job.pk}/debug/", headers=headers
        )
        connected, code = await communicator.connect(timeout=5)
        assert connected, code
        dap = Dap(communicator)
        initialize = await dap.request(
            "initialize",
            clientID="aladdin-test",
            adapterID="python",
            pathFormat="path",
            linesStartAt1=True,
            columnsStartAt1=True,
        )
        await dap.response(initialize)
        attach = await dap.request("attach", justMyCode=True)
        await dap.event("initialized")
        breakpoints = await dap.request(
            "setBreakpoints",
            source={"path": "/root/debug_target.py"},
            breakpoints=[{"line": BREAKPOINT_LINE}],
        )
        assert (await dap.response(breakpoints))["body"]["breakpoints"][0]["verified"]
        await dap.response(await dap.request("configurationDone"))
        await dap.response(attach)

        # then: stopped at the breakpoint's line, with the local's value
        stopped = await dap.event("stopped")
        assert stopped["body"]["reason"] == "breakpoint", stopped
        thread = stopped["body"]["threadId"]
        trace = await dap.response(await dap.request("stackTrace", threadId=thread))
        frame = trace["body"]["stackFrames"][0]
        assert (frame["line"], frame["source"]["path"]) == (
            BREAKPOINT_LINE,
            "/root/debug_target.py",
        )
        scopes = await dap.response(await dap.request("scopes", frameId=frame["id"]))
        local_scope = scopes["body"]["scopes"][0]
        variables = await dap.response(
            await dap.request("variables", variablesReference=local_scope["variablesReference"])
        )
        values = {v["name"]: v["value"] for v in variables["body"]["variables"]}
        assert values["answer"] == "42" and values["total"] == "30", values

        # and: it runs to its end once continued; the adapter then closes the bridge
        await dap.response(await dap.request("continue", threadId=thread))
        await dap.event("terminated")
        code = await dap.closed()
        await communicator.disconnect()
        return code

    assert async_to_sync(session)() == 1000

    deadline = time.monotonic() + 30
    while services.job_sync(job_id=job.pk) not in (JobState.SUCCEEDED, JobState.FAILED):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job.refresh_from_db()
    assert (job.state, job.exit_code) == (JobState.SUCCEEDED, 0), job.reason
    # the program's output went to the job's log, as a GPU Run's does
    log = b"".join(debug_agent.follow_logs(name=job.workload_name, follow=False))
    assert b"answer is 42" in log, log


def test_a_host_without_the_debugger_fails_the_job_at_once_with_the_way_out(
    start_agent, built_images, use_driver, user, cards, catalog, subscribe, tmp_path
):
    built_images.build_catalog_defaults()
    agent = start_agent(**built_images.agent_env(), ALADDIN_DEBUGPY_DIR=str(tmp_path / "none"))
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    use_driver(agent.driver)
    subscribe(user, "basic", timezone.now())
    agent.driver.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    target = agent.volumes_dir / str(user.pk) / "debug_target.py"
    shutil.copy(TARGET, target)
    os.chown(target, settings.LOCAL_UID_BASE + user.pk, settings.LOCAL_UID_BASE + user.pk)

    job = services.job_create(
        user=user, kind="debug", entry="debug_target.py", gpu_type=cards["40g"]
    )

    deadline = time.monotonic() + 30
    while services.job_sync(job_id=job.pk) not in (JobState.SUCCEEDED, JobState.FAILED):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.reason_id == "job.no_debugger", job.reason
    assert job.charged_micro == 0


def test_another_users_debug_socket_is_refused_like_the_log_socket(
    client, user, other_user, make_job
):
    job = make_job(user, kind="debug", state=JobState.RUNNING)
    headers = [cookie(client, other_user)]
    debug = refusal_code(f"/ws/jobs/{job.pk}/debug/", headers)
    assert debug == refusal_code(f"/ws/jobs/{job.pk}/logs/", headers) == 4404


def test_the_debug_socket_refuses_a_job_that_is_not_a_running_debug_job(client, user, make_job):
    headers = [cookie(client, user)]
    run = make_job(user, kind="run", state=JobState.RUNNING)
    starting = make_job(user, kind="debug", state=JobState.STARTING)
    assert refusal_code(f"/ws/jobs/{run.pk}/debug/", headers) == 4400
    assert refusal_code(f"/ws/jobs/{starting.pk}/debug/", headers) == 4409


def test_dap_framing_is_added_and_stripped_whatever_the_chunks():
    messages = ['{"seq":1,"type":"event","event":"initialized"}', '{"text":"中文"}']
    stream = b"".join(dap_frame(m) for m in messages)
    for size in (1, 3, len(stream)):
        reader = DapReader()
        got = []
        for i in range(0, len(stream), size):
            got += reader.feed(stream[i : i + size])
        assert got == messages
    with pytest.raises(DapFramingError):
        DapReader().feed(b"Content-Type: x\r\n\r\n{}")
