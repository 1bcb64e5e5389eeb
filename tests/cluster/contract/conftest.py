"""The backends the driver contract runs on, each behind one small harness.

``backend`` is parametrised over :data:`BACKENDS`; one backend (one local
agent) serves a whole module, and each test's workloads are stopped and
forgotten after it. A harness gives the tests what differs between backends
and nothing else: how to start a workshop-like or job-like workload, and how
a job's output and exit come about (a real backend runs the command; the
fake is told).

The Kubernetes backend (issue 19) runs twice: ``kubernetes``, its driver on
the real ``kubernetes`` client against the API-server stub on loopback
(:mod:`tests.kubestub`, whose kubelet runs the pods' commands), and
``kubernetes-cluster``, against the real cluster that ``KUBECONFIG`` names
(skipped without it; docs/operations.md says what that cluster needs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import kubernetes.client
import pytest
from kubernetes import config as kube_config

from aladdin.cluster.base import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_USER,
    ClusterDriver,
    Phase,
    Resources,
    WorkerGroup,
    WorkloadSpec,
    WorkloadStatus,
)
from aladdin.cluster.kubernetes.driver import KubernetesDriver
from tests.cluster.conftest import WORKSHOP_INIT, RunningAgent
from tests.fakes import FakeDriver
from tests.kubestub.server import KubeStub

# Cards every backend offers the suite: one 80G, two 40G.
CARDS = {"80g": 1, "40g": 2}
ENDED = {Phase.SUCCEEDED, Phase.FAILED}

BACKENDS = [
    "fake",
    "local",
    "kubernetes",
    pytest.param(
        "kubernetes-cluster",
        marks=pytest.mark.skipif(
            not os.environ.get("KUBECONFIG"),
            reason="no real cluster: set KUBECONFIG to run the contract on one",
        ),
    ),
]


class Backend:
    """One backend under the contract: its driver and what differs in driving it."""

    name = ""
    # Workloads run their commands (a process, a pod): the network and the
    # files they make are real. The fake runs nothing.
    runs_processes = True

    def __init__(self, driver: ClusterDriver):
        self.driver = driver

    def spec(
        self,
        name: str,
        *,
        kind: str = "workshop",
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        user_id: int = 1,
        gpus: dict[str, int] | None = None,
        group: WorkerGroup | None = None,
    ) -> WorkloadSpec:
        return WorkloadSpec(
            name=name,
            user_id=user_id,
            kind=kind,
            image="python:3.11",
            command=command or WORKSHOP_INIT,
            env=env or {},
            resources=Resources(1000, 1024, gpus or {}),
            labels={LABEL_USER: str(user_id), LABEL_KIND: kind, LABEL_OWNER: name},
            group=group,
        )

    def workshop(self, name: str, **kwargs) -> WorkloadStatus:
        """A workshop-like workload: runs until stopped."""
        return self.driver.start_workload(self.spec(name, **kwargs))

    def job(self, name: str, *, output: str = "", exit_code: int = 0, **kwargs) -> WorkloadStatus:
        """A job-like workload that prints ``output`` and exits with ``exit_code``; its end status."""
        script = f'printf "%s" "$OUT"; exit {int(exit_code)}'
        spec = self.spec(
            name, kind="job", command=["sh", "-c", script], env={"OUT": output}, **kwargs
        )
        self.driver.start_workload(spec)
        self.ran(name, output=output, exit_code=exit_code)
        return self.wait_for(name, ENDED)

    def ran(self, name: str, *, output: str, exit_code: int) -> None:
        """What a real backend's workload does by itself (the fake is told)."""

    def two_part_job(self, name: str, first: str, second: str, pause: float) -> None:
        """A job that prints ``first``, waits ``pause`` seconds, prints ``second`` and exits 0."""
        script = f'printf "%s" "$FIRST"; sleep {pause}; printf "%s" "$SECOND"'
        env = {"FIRST": first, "SECOND": second}
        self.driver.start_workload(
            self.spec(name, kind="job", command=["sh", "-c", script], env=env)
        )

    def wait_for(self, name: str, phases: set[str], timeout: float = 20) -> WorkloadStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.driver.workload_status(name=name)
            if status.phase in phases or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    def clean(self) -> None:
        """Stop and forget every workload (between tests)."""
        for status in self.driver.list_workloads():
            self.driver.stop_workload(name=status.name, grace_seconds=1)
            self.driver.forget_workload(name=status.name)

    def close(self) -> None:
        pass


class FakeBackend(Backend):
    name = "fake"
    runs_processes = False
    driver: FakeDriver

    def __init__(self):
        driver = FakeDriver()
        driver.gpu_capacity = dict(CARDS)
        super().__init__(driver)

    def ran(self, name: str, *, output: str, exit_code: int) -> None:
        self.driver.write_log(name, output.encode())
        self.driver.finish(name, exit_code)

    def two_part_job(self, name: str, first: str, second: str, pause: float) -> None:
        self.driver.start_workload(self.spec(name, kind="job", command=["true"]))
        self.driver.write_log(name, first.encode())

        def later() -> None:
            self.driver.write_log(name, second.encode())
            self.driver.finish(name, 0)

        timer = threading.Timer(pause, later)
        timer.daemon = True
        timer.start()


class LocalBackend(Backend):
    """A real agent (``manage.py cluster_agent``) in a private directory, for the whole module."""

    name = "local"

    def __init__(self):
        # Under /tmp, not pytest's 0700 tmp_path: the sandbox uid traverses to the volume.
        self.base = Path(tempfile.mkdtemp(prefix="aladdin-contract-"))
        os.chmod(self.base, 0o711)
        (self.base / "var").mkdir(mode=0o700)
        cards = ",".join(f"{model}={n}" for model, n in CARDS.items())
        self.agent = RunningAgent(self.base, {"ALADDIN_LOCAL_GPUS": f"virtual:{cards}"})
        self.agent.start()
        super().__init__(self.agent.driver)
        if not self.agent.health["sandbox"]:
            self.close()
            pytest.skip(f"cannot sandbox here: {self.agent.health['sandbox_reason']}")

    def close(self) -> None:
        self.agent.stop()
        if (cgroups := self.agent.cgroups()) is not None:
            cgroups.remove_stale(set())
            for parent in cgroups.parents():
                with contextlib.suppress(OSError):
                    parent.rmdir()
        shutil.rmtree(self.base, ignore_errors=True)


class KubernetesBackend(Backend):
    """The Kubernetes driver on the API-server stub, whose nodes offer :data:`CARDS`."""

    name = "kubernetes"

    def __init__(self):
        if shutil.which("bwrap") is None:
            # As the local backend's harness skips where it cannot sandbox.
            pytest.skip("the stub's kubelet runs pods under bubblewrap, not installed here")
        self.root = Path(tempfile.mkdtemp(prefix="aladdin-kubestub-"))
        os.chmod(self.root, 0o711)
        self.stub = KubeStub(run_pods=True, root=self.root, nodes=stub_nodes(CARDS)).start()
        api_client = kubernetes.client.ApiClient(self.stub.configuration())
        super().__init__(KubernetesDriver(api_client))

    def clean(self) -> None:
        super().clean()
        # The files pod is the backend's own (not a workload): it stays for the
        # next test, as it would for the user.

    def close(self) -> None:
        self.driver.close()
        self.driver.api_client.close()
        self.stub.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class KubernetesClusterBackend(Backend):
    """The Kubernetes driver on the real cluster that ``KUBECONFIG`` names.

    Its users are 1 and 2 under the namespace prefix ``aladdin-contract-``
    (deleted at the end). The cluster needs what the settings say
    (``ALADDIN_KUBERNETES_*`` in the environment): the suite's catalog image
    (``python:3.11``, with ``sh`` and ``python3``) in the registry of
    ``ALADDIN_KUBERNETES_IMAGE_REGISTRY``, the files image
    (``ALADDIN_KUBERNETES_FILES_IMAGE``), a storage class with volume
    expansion, and exactly :data:`CARDS` free (one 80G card, two 40G) on
    nodes labelled as ``ALADDIN_KUBERNETES_GPU_NODE_LABELS`` says: the
    capacity test counts on them.
    """

    name = "kubernetes-cluster"

    def __init__(self):
        api_client = kube_config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
        super().__init__(KubernetesDriver(api_client, namespace_prefix="aladdin-contract-"))

    def wait_for(self, name: str, phases: set[str], timeout: float = 180) -> WorkloadStatus:
        return super().wait_for(name, phases, timeout)

    def close(self) -> None:
        for user_id in (1, 2):
            self.driver.delete_user_space(user_id=user_id)
        self.driver.close()
        self.driver.api_client.close()


def stub_nodes(cards: dict[str, int]) -> list[dict]:
    """One stub node per card model, labelled as the default settings expect."""
    return [
        {
            "name": f"node-{model}",
            "labels": {"kubernetes.io/hostname": f"node-{model}", "aladdin.io/gpu-model": model},
            "allocatable": {
                "cpu": "64",
                "memory": "512Gi",
                "nvidia.com/gpu": str(count),
                "pods": "110",
            },
        }
        for model, count in cards.items()
    ]


def _make(name: str) -> Backend:
    if name == "fake":
        return FakeBackend()
    if name == "local":
        return LocalBackend()
    if name == "kubernetes":
        return KubernetesBackend()
    if name == "kubernetes-cluster":
        return KubernetesClusterBackend()
    raise AssertionError(f"no harness for the {name} backend yet")


@pytest.fixture(scope="module", params=BACKENDS)
def module_backend(request) -> Iterator[Backend]:
    backend = _make(request.param)
    yield backend
    backend.close()


@pytest.fixture
def backend(module_backend: Backend) -> Iterator[Backend]:
    """The backend under test, its user 1's space ready; its workloads cleared after the test."""
    module_backend.driver.ensure_user_space(user_id=1, storage_gib=1, quota=Resources(4000, 8192))
    yield module_backend
    module_backend.clean()


def worker(backend: Backend, group: str, index: int, size: int, command: list[str]) -> WorkloadSpec:
    return replace(
        backend.spec(f"{group}-{index}", kind="job", command=command),
        group=WorkerGroup(group=group, index=index, size=size),
    )
