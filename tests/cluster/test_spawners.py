"""The agent's spawner threads: starts sent together run together, and a stopping agent refuses more.

A Run Task's workers 1..N-1 are sent together by the portal
(gpu_jobs/run_task.py); with one spawner they started one after another,
so the time to "all N running" grew with N (issue 18's benchmark). The
agent's own serve loop runs here in a thread; each spawn is replaced by one
that waits for the others at a barrier, which only concurrent spawns pass.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from aladdin.cluster.agent import server as agent_server
from aladdin.cluster.base import Phase
from tests.cluster.conftest import spec


@pytest.fixture
def agent(monkeypatch):
    base = Path(tempfile.mkdtemp(prefix="aladdin-spawners-"))
    base.chmod(0o711)
    agent = agent_server.Agent(
        socket_path=base / "agent" / "agent.sock",
        state_dir=base / "agent",
        volumes_dir=base / "volumes",
        gpus="virtual:40g=4",
        cgroup_parent=f"aladdin-test-{base.name}",
    )
    thread = threading.Thread(target=agent.serve_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not agent.socket_path.exists():
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield agent
    finally:
        agent.shutdown()
        thread.join(30)
        shutil.rmtree(base, ignore_errors=True)


def _fake_spawns(agent, monkeypatch, hold) -> list[str]:
    threads: list[str] = []

    def spawn(workload, spec, image_env):
        threads.append(threading.current_thread().name)
        hold()
        with agent.workloads.lock:
            workload.phase = Phase.RUNNING

    monkeypatch.setattr(agent.workloads, "_spawn", spawn)
    return threads


def test_starts_sent_together_are_spawned_together(agent, monkeypatch):
    barrier = threading.Barrier(4, timeout=10)
    # Raises BrokenBarrierError after its timeout unless all four wait at once.
    threads = _fake_spawns(agent, monkeypatch, barrier.wait)
    records = {}

    def start(i: int) -> None:
        records[i] = agent.workloads.start(spec(f"task-7-{i}", kind="task", user_id=i + 1))

    starters = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in starters:
        t.start()
    for t in starters:
        t.join(30)

    assert {i: r.phase for i, r in records.items()} == {i: Phase.RUNNING for i in range(4)}
    assert len(set(threads)) == 4 and all(n.startswith("spawner-") for n in threads)


def test_a_stopping_agent_fails_queued_spawns_and_refuses_new_ones(agent, monkeypatch):
    release = threading.Event()
    held = _fake_spawns(agent, monkeypatch, lambda: release.wait(30))
    # Eight spawns hold every spawner; only then is the ninth sent, and it waits in the queue.
    busy = [
        threading.Thread(target=agent.workloads.start, args=(spec(f"ws-busy-{i}", user_id=i),))
        for i in range(1, 9)
    ]
    for t in busy:
        t.start()
    deadline = time.monotonic() + 10
    while len(held) < 8:
        assert time.monotonic() < deadline, held
        time.sleep(0.01)
    queued: dict = {}
    waiting = threading.Thread(
        target=lambda: queued.update(record=agent.workloads.start(spec("ws-queued", user_id=20)))
    )
    waiting.start()
    deadline = time.monotonic() + 10
    while agent.workloads._spawns.qsize() < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)

    refusing = threading.Thread(target=agent.workloads.refuse_spawns)
    refusing.start()
    waiting.join(10)
    late = agent.workloads.start(spec("ws-late", user_id=21))
    # It waits for the spawns under way, so that stop_all sees their workloads.
    assert refusing.is_alive()
    release.set()  # let the held spawns go
    for t in busy:
        t.join(10)
    refusing.join(10)
    assert not refusing.is_alive()

    for record in (queued["record"], late):
        assert record.phase == Phase.FAILED, record
        assert "the agent is stopping" in record.reason, record
    assert agent.workloads.get("ws-queued").cards == []  # nothing held for it
