"""A private local agent per test: real processes, a temporary socket, volumes and var/."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from aladdin.cluster.base import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_USER,
    DriverError,
    Resources,
    WorkloadSpec,
)
from aladdin.cluster.cgroups import Cgroups
from aladdin.cluster.cgroups import detect as detect_cgroups
from aladdin.cluster.local import LocalDriver

REPO = Path(__file__).resolve().parents[2]
# A workshop's main process: idle until SIGTERM, then exit 0.
WORKSHOP_INIT = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 3600 & wait; done']


def spec(name: str, *, user_id: int = 1, command=None, kind: str = "workshop", env=None):
    return WorkloadSpec(
        name=name,
        user_id=user_id,
        kind=kind,
        image="python:3.11",
        command=command or WORKSHOP_INIT,
        env=env or {},
        resources=Resources(1000, 1024),
        labels={LABEL_USER: str(user_id), LABEL_KIND: kind, LABEL_OWNER: name},
    )


def _images_not_built_here(self, recipe):
    raise DriverError("this branch's local driver does not build images", permanent=True)


# TEMPORARY, for branches cut after ClusterDriver gained image_status and
# build_image but before the local driver implements them (issue 14's image
# builds land on their own branch): the tests here drive workloads, not
# images. Once LocalDriver is concrete this is LocalDriver itself.
TestLocalDriver = (
    type(
        "TestLocalDriver",
        (LocalDriver,),
        dict.fromkeys(LocalDriver.__abstractmethods__, _images_not_built_here),
    )
    if LocalDriver.__abstractmethods__
    else LocalDriver
)


class RunningAgent:
    """``manage.py cluster_agent`` as a subprocess, and a LocalDriver pointed at it."""

    def __init__(self, base: Path, env: dict[str, str]):
        self.base = base
        self.socket = base / "agent" / "agent.sock"
        self.state_dir = base / "agent"
        self.volumes_dir = base / "volumes"
        self.var_dir = base / "var"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.driver = TestLocalDriver(socket_path=self.socket)
        self.log = base / "agent-output.log"
        self.cgroup_parent = f"aladdin-test-{base.name}"

    def cgroups(self) -> Cgroups | None:
        """The agent's workload cgroups as the test sees them (None where the host has none)."""
        found, _reason = detect_cgroups(parent=self.cgroup_parent)
        return found

    def start(self) -> None:
        env = {
            **os.environ,
            "ALADDIN_VAR_DIR": str(self.var_dir),
            "ALADDIN_LOCAL_SANDBOX": "",
            "ALADDIN_LOCAL_INSECURE": "0",
            # Must not reach any workload: only the spec's env does.
            "AGENT_ONLY_PROBE": "agent-environment",
            # The default virtual cards on every machine (a GPU host's own
            # cards would change what the tests count); a test may override.
            "ALADDIN_LOCAL_GPUS": "virtual:40g=4,80g=4",
            # Its own cgroup group: agents of parallel tests (and their stale
            # cleanup at start) never touch each other's workload cgroups.
            "ALADDIN_LOCAL_CGROUP_PARENT": self.cgroup_parent,
            **self.env,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "cluster_agent",
                    "--socket",
                    str(self.socket),
                    "--state-dir",
                    str(self.state_dir),
                    "--volumes-dir",
                    str(self.volumes_dir),
                ],  # fmt: skip
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            if self.socket.exists():
                try:
                    self.health = self.driver._call("health", timeout=3)
                    return
                except Exception:  # noqa: BLE001, S110 - not listening yet
                    pass
            time.sleep(0.1)
        raise AssertionError(f"the agent did not start: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def start_agent():
    """Start an agent with extra environment; every agent is stopped after the test."""
    # Under /tmp, not pytest's 0700 tmp_path: bwrap binds the volume as the
    # sandbox uid, which must be able to traverse to it.
    base = Path(tempfile.mkdtemp(prefix="aladdin-cluster-"))
    os.chmod(base, 0o711)
    var = base / "var"
    var.mkdir(mode=0o700)
    agents: list[RunningAgent] = []

    def _start(**env: str) -> RunningAgent:
        agent = RunningAgent(base, env)
        agent.start()
        agents.append(agent)
        return agent

    yield _start
    for agent in agents:
        agent.stop()
    for agent in agents[:1]:  # they share the base, so the cgroup group
        if (cgroups := agent.cgroups()) is not None:
            cgroups.remove_stale(set())
            for parent in cgroups.parents():
                with contextlib.suppress(OSError):
                    parent.rmdir()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def agent(start_agent) -> RunningAgent:
    """An agent that can sandbox; the test is skipped (with the agent's reason) if it cannot."""
    running = start_agent()
    if not running.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {running.health['sandbox_reason']}")
    return running
