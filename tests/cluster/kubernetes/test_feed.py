"""The watch cache behind the Kubernetes driver's reads, and beat's feed of the reconcilers (issue 19)."""

from __future__ import annotations

import threading
import time

import kubernetes.client
import pytest

from aladdin.cluster.base import Phase
from aladdin.cluster.kubernetes import feed

from .test_driver import QUIET, spec


@pytest.fixture
def space(k8s_driver):
    k8s_driver.ensure_user_space(user_id=6, storage_gib=1, quota=None)
    yield 6
    k8s_driver.delete_user_space(user_id=6)
    eventually(lambda: not k8s_driver.core.list_namespace(label_selector="aladdin/user=6").items)


def pod_lists(stub) -> int:
    return sum(n for (method, path), n in stub.requests.items() if path == "/api/v1/pods")


def eventually(check, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_reconcilers_listing_comes_from_the_watch_cache_with_its_own_writes(
    stub, k8s_driver, space
):
    # given a driver whose cache has listed the pods once
    k8s_driver.list_workloads()

    # when it starts a workload and lists the workloads, several times
    k8s_driver.start_workload(spec("job-cached", user_id=6, command=QUIET))
    lists = pod_lists(stub)
    listed = [[s.name for s in k8s_driver.list_workloads()] for _ in range(5)]

    # then each listing has the pod it just made, and none asked the API server
    assert all("job-cached" in names for names in listed)
    assert pod_lists(stub) == lists

    # and once it stops it, a read right after says missing
    k8s_driver.stop_workload(name="job-cached", grace_seconds=0)
    assert k8s_driver.workload_status(name="job-cached").phase == Phase.MISSING
    assert "job-cached" not in [s.name for s in k8s_driver.list_workloads()]


def test_a_pod_deleted_behind_the_portals_back_is_missing_at_once(stub, k8s_driver, space):
    k8s_driver.start_workload(spec("job-gone", user_id=6, command=QUIET))
    k8s_driver.core.delete_namespaced_pod("job-gone", "u-6", grace_period_seconds=0)

    eventually(lambda: k8s_driver.workload_status(name="job-gone").phase == Phase.MISSING)


class App:
    """A Celery app's send_task, recorded."""

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []
        self.changed = threading.Event()

    def send_task(self, name: str, **options) -> None:
        self.sent.append((name, options))
        self.changed.set()


def test_beats_watch_sends_a_kinds_reconcile_when_its_pod_changes_or_goes(stub, k8s_driver, space):
    app = App()
    api = kubernetes.client.ApiClient(stub.configuration())
    informer, reconcile_feed = feed.start(app, api, min_interval=0.2)
    try:
        assert informer.wait_synced(10)
        app.sent.clear()

        # when a job's pod starts and ends
        k8s_driver.start_workload(spec("job-fed", user_id=6, command=["sh", "-c", "exit 3"]))
        eventually(lambda: k8s_driver.workload_status(name="job-fed").phase == Phase.FAILED)

        # then the jobs' reconcile was sent (coalesced), never the workshops'
        eventually(lambda: ("gpu_jobs.reconcile", {"expires": 30}) in app.sent)
        assert {name for name, _ in app.sent} == {"gpu_jobs.reconcile"}

        # and a pod deleted behind the portal's back sends it again
        sent = len(app.sent)
        k8s_driver.core.delete_namespaced_pod("job-fed", "u-6", grace_period_seconds=0)
        eventually(lambda: len(app.sent) > sent)
    finally:
        reconcile_feed.close()
        informer.stop()
        api.close()


def test_beat_watches_nothing_on_the_local_backend(settings, monkeypatch):
    settings.CLUSTER_DRIVER = "local"
    monkeypatch.setattr(feed, "start", lambda *a, **k: pytest.fail("started a watch"))
    feed.on_beat_init(App())
