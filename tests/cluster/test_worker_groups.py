"""A Run Task's workers on the local backend: separate sandboxes that share worker 0's network.

Real agent, real bubblewrap sandboxes (SPEC §9: "The workers of one Run Task
reach each other"; docs/operations.md "Run Task workers").
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from aladdin.cluster.base import DriverError, Phase, WorkerGroup

from .conftest import spec
from .test_local_agent import wait_for_phase

# Worker 0 serves one line on the loopback; worker 1 reads it from there.
SERVER = (
    "import socket; s = socket.socket(); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', 29500)); s.listen(); c, _ = s.accept(); "
    "c.sendall(b'hello from worker 0\\n'); c.close()"
)
# Worker 0 of three: the same line to each of the two others.
SERVER3 = (
    "import socket; s = socket.socket(); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', 29500)); s.listen()\n"
    "for _ in range(2):\n"
    "    c, _ = s.accept(); c.sendall(b'hello from worker 0\\n'); c.close()\n"
)
CLIENT = (
    "import socket, time\n"
    "for _ in range(100):\n"
    "    try:\n"
    "        c = socket.create_connection(('127.0.0.1', 29500)); break\n"
    "    except OSError: time.sleep(0.1)\n"
    "print(c.recv(100).decode().strip(), flush=True)\n"
)


@pytest.fixture
def sandboxing_agent(start_agent):
    agent = start_agent()
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    return agent


def worker(index: int, size: int, command: list[str]):
    return replace(
        spec(f"job-7-{index}", kind="job", command=command),
        group=WorkerGroup(group="job-7", index=index, size=size),
    )


def test_a_later_worker_reaches_worker_0_on_the_loopback_in_its_own_sandbox(sandboxing_agent):
    driver = sandboxing_agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    assert driver.group_address(group="job-7") == "127.0.0.1"

    first = driver.start_workload(worker(0, 2, ["python3", "-c", SERVER]))
    second = driver.start_workload(worker(1, 2, ["python3", "-c", CLIENT]))

    assert first.group == second.group == "job-7"
    output = b"".join(driver.follow_logs(name="job-7-1")).decode()
    assert "hello from worker 0" in output
    for name in ("job-7-0", "job-7-1"):
        status = wait_for_phase(driver, name, {Phase.SUCCEEDED, Phase.FAILED})
        assert status.phase == Phase.SUCCEEDED, (name, status)


def test_the_workers_have_separate_sandboxes_but_one_network_namespace(sandboxing_agent):
    driver = sandboxing_agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    hold = ["sh", "-c", "sleep 60"]
    driver.start_workload(worker(0, 2, hold))
    driver.start_workload(worker(1, 2, hold))
    try:
        records = {r["name"]: r for r in driver._call("list")["workloads"]}
        pids = [records[f"job-7-{i}"]["sandbox_pid"] for i in (0, 1)]
        namespaces = [
            {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("net", "pid", "mnt")}
            for pid in pids
        ]
        assert namespaces[0]["net"] == namespaces[1]["net"]
        assert namespaces[0]["pid"] != namespaces[1]["pid"]
        assert namespaces[0]["mnt"] != namespaces[1]["mnt"]
        assert namespaces[0]["net"] != os.readlink("/proc/self/ns/net")
    finally:
        for i in (1, 0):
            driver.stop_workload(name=f"job-7-{i}", grace_seconds=1)


def test_workers_sent_together_later_ones_first_join_worker_0s_network(sandboxing_agent):
    # The portal sends a task's workers at once (LocalDriver.starts_workers_together):
    # a later worker that arrives before worker 0 waits for its namespace.
    driver = sandboxing_agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    with ThreadPoolExecutor(max_workers=3) as pool:
        later = [
            pool.submit(driver.start_workload, worker(i, 3, ["python3", "-c", CLIENT]))
            for i in (1, 2)
        ]
        first = pool.submit(driver.start_workload, worker(0, 3, ["python3", "-c", SERVER3]))
        statuses = [f.result(timeout=60) for f in (first, *later)]

    assert all(s.group == "job-7" for s in statuses), statuses
    for i in (1, 2):
        output = b"".join(driver.follow_logs(name=f"job-7-{i}")).decode()
        assert "hello from worker 0" in output, (i, output)
    for i in range(3):
        status = wait_for_phase(driver, f"job-7-{i}", {Phase.SUCCEEDED, Phase.FAILED})
        assert status.phase == Phase.SUCCEEDED, (i, status)


def test_a_later_worker_is_refused_while_worker_0_does_not_run(sandboxing_agent):
    driver = sandboxing_agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    with pytest.raises(DriverError) as refused:
        driver.start_workload(worker(1, 2, ["true"]))
    assert refused.value.code == "not_running"
    assert driver.workload_status(name="job-7-1").phase == Phase.MISSING


def test_an_agent_older_than_run_task_is_refused_not_left_running_a_worker_alone(tmp_path):
    # An older agent ignores the spec's group and answers a record without it.
    from aladdin.cluster.local import LocalDriver

    calls = []

    def older_agent(op, *, timeout=15, **fields):
        calls.append(op)
        return {
            "ok": True,
            "status": {
                "name": fields.get("spec", fields).get("name", "job-7-1"),
                "phase": "running",
            },
        }

    driver = LocalDriver(socket_path=tmp_path / "none.sock")
    driver._call = older_agent  # stands in for the agent (see LocalDriver._call)
    with pytest.raises(DriverError) as refused:
        driver.start_workload(worker(1, 2, ["true"]))
    assert refused.value.permanent and "older than Run Task" in str(refused.value)
    assert calls == ["start", "stop"]
    # A spec without a group is what older agents always took.
    calls.clear()
    assert driver.start_workload(spec("job-8", kind="job")).phase == Phase.RUNNING
    assert calls == ["start"]


def test_only_pids_and_the_uid_reach_the_host_programs_that_join_a_network():
    from aladdin.cluster import sandbox

    argv = sandbox.joined_net_argv(4242, 20001, ["/usr/bin/bwrap", "--args", "5", "sh"])
    assert argv == [
        sandbox.NSENTER, "--net=/proc/4242/ns/net", "--setuid", "20001", "--setgid", "20001",
        "--", "/usr/bin/bwrap", "--args", "5", "sh",
    ]  # fmt: skip


def test_the_agent_answers_as_many_connections_at_once_as_a_task_makes(start_agent):
    # A Run Task's later workers (up to 8 at once), their polls and the
    # reconciler connect together; a full listen backlog fails a Unix
    # socket's connect at once (EAGAIN), which the portal takes for a down agent.
    driver = start_agent().driver
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda _: driver._call("health"), range(96)))
    assert all(answer["ok"] for answer in answers)
