"""A private local agent per test: real processes, a temporary socket, volumes and var/.

Image environments are built once per test session (:func:`built_images`):
a small recipe (Python 3.12 and one pinned pure-Python package) and the
test torch image (Python 3.11 with the torch 2.13.0 CPU build that pip
takes from this machine's disk), into an images root that the agents of
the tests needing them share (``start_agent(ALADDIN_IMAGES_ROOT=...)``).
Every other agent gets an empty images root of its own.
"""

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

from aladdin.cluster.base import LABEL_KIND, LABEL_OWNER, LABEL_USER, Resources, WorkloadSpec
from aladdin.cluster.cgroups import Cgroups
from aladdin.cluster.cgroups import detect as detect_cgroups
from aladdin.cluster.images import BuildState, ImageRecipe, ImageState
from aladdin.cluster.local import LocalDriver

REPO = Path(__file__).resolve().parents[2]
# A workshop's main process: idle until SIGTERM, then exit 0.
WORKSHOP_INIT = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 3600 & wait; done']


# The recipes the session builds (DESIGN: small recipes; the torch one because
# the manual's CUDA check needs torch, and 2.13.0 CPU is on this machine's disk).
SMALL_RECIPE = ImageRecipe("test-python:3.12", python="3.12", packages=("six==1.16.0",))
TORCH_RECIPE = ImageRecipe(
    "test-torch:2.13.0-cpu",
    python="3.11",
    # numpy keeps torch from warning at import that it is missing.
    packages=("torch==2.13.0", "numpy==2.3.5"),
)
BUILD_TIMEOUT = 900
# The catalog's own recipes that tests start through the portal: workshops'
# default (tests.factories.seeded_catalog) and jobs' (gpu_jobs DEFAULT_IMAGE).
CATALOG_DEFAULTS = (
    ImageRecipe("python:3.12", python="3.12"),
    ImageRecipe("python:3.11", python="3.11"),
)


def spec(
    name: str,
    *,
    user_id: int = 1,
    command=None,
    kind: str = "workshop",
    env=None,
    recipe: ImageRecipe | None = None,
):
    return WorkloadSpec(
        name=name,
        user_id=user_id,
        kind=kind,
        image="python:3.11",
        command=command or WORKSHOP_INIT,
        env=env or {},
        resources=Resources(1000, 1024),
        labels={LABEL_USER: str(user_id), LABEL_KIND: kind, LABEL_OWNER: name},
        recipe=recipe,
    )


def wait_for_image(driver: LocalDriver, recipe: ImageRecipe, timeout: float = BUILD_TIMEOUT):
    """Poll ``recipe``'s state until its build ended: every state seen, the last one ended."""
    seen: list[ImageState] = []
    deadline = time.monotonic() + timeout
    while True:
        state = driver.image_status(recipe)
        seen.append(state)
        if state.state != BuildState.BUILDING:
            return seen
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


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
        self.driver = LocalDriver(socket_path=self.socket)
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
            # Its own images root unless the test shares the session's.
            "ALADDIN_IMAGES_ROOT": str(self.base / "images"),
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
def agent(start_agent, built_images) -> RunningAgent:
    """An agent that can sandbox; the test is skipped (with the agent's reason) if it cannot.

    It shares the session's images root, where the catalog's default python
    images are built (once): workloads the portal starts run on them.
    """
    built_images.build_catalog_defaults()
    running = start_agent(**built_images.agent_env())
    if not running.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {running.health['sandbox_reason']}")
    return running


class BuiltImages:
    """The session's images root, and each recipe's build (states seen, in order), built on first use."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "images"
        self.builds: dict[str, list[ImageState]] = {}

    def build(self, recipe: ImageRecipe) -> ImageState:
        """``recipe`` built into the session's root (once); its final state."""
        key = recipe.key()
        if key not in self.builds:
            agent = RunningAgent(self.base, {"ALADDIN_IMAGES_ROOT": str(self.root)})
            agent.start()
            try:
                agent.driver.build_image(recipe)
                self.builds[key] = wait_for_image(agent.driver, recipe)
            finally:
                agent.stop()
        final = self.builds[key][-1]
        # The agent's log (its build steps) says where a failed build stopped.
        log = self.base / "agent-output.log"
        assert final.state == BuildState.READY, (final, log.read_text()[-3000:])
        return final

    def agent_env(self) -> dict[str, str]:
        return {"ALADDIN_IMAGES_ROOT": str(self.root)}

    def build_catalog_defaults(self) -> None:
        for recipe in CATALOG_DEFAULTS:
            self.build(recipe)
