"""A sandbox's network is attached only once bwrap has finished setting the sandbox up.

slirp4netns brings the namespace's loopback up, and the kernel then gives
lo its 127.0.0.1; bwrap's own loopback set-up, if it has not run yet, then
fails ("loopback: Failed RTM_NEWADDR: File exists") and the sandbox exits
1. On a loaded machine that ended a freshly started workshop "failed: exit
code 1" (CI, 2026-12-02). The agent now waits for the guard's "ready"
(sandbox.GUARD), which runs only after bwrap's set-up, before it attaches.

In-process (the agent's own Agent.prepare and spawn path) so that the
attach can be watched: at each attach the guard must already run in the
sandbox, and a loopback brought up first (as a fast slirp4netns would)
must not end the workload. The order is what this asserts: without the
wait the race was lost only when bwrap's child was not scheduled for a few
milliseconds, which a quiet machine does not reproduce on demand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from aladdin.cluster import egress
from aladdin.cluster.agent.server import Agent
from aladdin.cluster.base import Phase
from aladdin.cluster.sandbox import HOST_ENV, NSENTER
from tests.cluster.conftest import spec


def _pid_namespace(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def _guard_runs(sandbox_pid: int) -> bool:
    """Is the guard (sandbox.GUARD, argv[0] "aladdin-guard") a process of the sandbox yet?"""
    namespace = _pid_namespace(sandbox_pid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or _pid_namespace(int(entry)) != namespace:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"aladdin-guard" in cmdline:
            return True
    return False


@pytest.fixture
def agent(monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root")
    base = Path(tempfile.mkdtemp(prefix="aladdin-setup-order-"))
    os.chmod(base, 0o711)
    monkeypatch.setenv("ALADDIN_LOCAL_SANDBOX", "")
    agent = Agent(
        socket_path=base / "agent" / "agent.sock",
        state_dir=base / "agent",
        volumes_dir=base / "volumes",
        gpus="virtual:40g=1",
        cgroup_parent=f"aladdin-test-{base.name}",
    )
    agent.prepare()
    if not agent.workloads.sandbox_ok:
        pytest.skip(f"cannot sandbox here: {agent.workloads.sandbox_reason}")
    if not agent.workloads.network:
        pytest.skip(f"no network for workloads here: {agent.workloads.network_reason}")
    stop = threading.Event()

    def spawner() -> None:  # the agent's main loop, for spawns only
        while not stop.is_set():
            agent.workloads.run_spawns(timeout=0.1)

    thread = threading.Thread(target=spawner, daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.workloads.stop_all()
        stop.set()
        thread.join(5)
        if agent.workloads.cgroups is not None:
            agent.workloads.cgroups.remove_stale(set())
            for parent in agent.workloads.cgroups.parents():
                with contextlib.suppress(OSError):
                    parent.rmdir()
        shutil.rmtree(base, ignore_errors=True)


def test_the_network_is_attached_after_the_sandbox_is_set_up(agent, monkeypatch):
    real_attach = egress.attach
    guard_ran: list[bool] = []

    def attach(pid, net_namespace, policy):
        guard_ran.append(_guard_runs(pid))
        # What slirp4netns --configure does first, at once: lo up.
        subprocess.run(
            [NSENTER, f"--net=/proc/{pid}/ns/net", "ip", "link", "set", "lo", "up"],
            env=HOST_ENV,
            check=True,
        )
        return real_attach(pid, net_namespace, policy)

    monkeypatch.setattr(egress, "attach", attach)
    workloads = agent.workloads
    for i in range(5):
        name = f"ws-order-{i}"
        record = workloads.start(spec(name, command=["sleep", "infinity"]))
        assert record.phase == Phase.RUNNING, record
        time.sleep(0.2)  # a sandbox whose set-up failed has exited by now
        record = workloads.status(name)
        log = (agent.logs_dir / f"{name}.log").read_text(errors="replace")
        assert record.phase == Phase.RUNNING, (record, log)
        workloads.stop(name, grace_seconds=2)

    assert guard_ran == [True] * 5
