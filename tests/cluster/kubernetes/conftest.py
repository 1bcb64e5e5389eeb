"""One API-server stub per module (its kubelet runs the pods), and a driver on it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest

from aladdin.cluster.kubernetes.driver import KubernetesDriver
from tests.cluster.contract.conftest import CARDS, stub_nodes
from tests.kubestub.server import KubeStub


@pytest.fixture(scope="module")
def stub() -> Iterator[KubeStub]:
    root = Path(tempfile.mkdtemp(prefix="aladdin-kubestub-"))
    os.chmod(root, 0o711)
    with KubeStub(run_pods=True, root=root, nodes=stub_nodes(CARDS)) as running:
        yield running
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def k8s_driver(stub) -> Iterator[KubernetesDriver]:
    driver = KubernetesDriver(kubernetes.client.ApiClient(stub.configuration()))
    yield driver
    driver.close()
    driver.api_client.close()
