"""The pod informer against the API-server stub on loopback, through the real ``kubernetes`` client.

The stub (``tests/kubestub``, no kubelet) speaks the watch wire format:
chunked JSON lines, BOOKMARK, an ERROR event carrying a 410 Status inside a
200 response. The tests change pods through its store and watch the
informer's cache and callbacks follow.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from aladdin.cluster.kubernetes.watch import PodInformer, reconcile_feed
from tests.kubestub.server import KubeStub

SELECTOR = "aladdin/kind"


class RecordingApiClient(client.ApiClient):
    """The real client, recording each request's query and able to hold new ones.

    ``hold()`` stands for a network partition: requests made after it wait
    (``held`` is set when one does) until ``release()``.
    """

    def __init__(self, configuration: client.Configuration):
        super().__init__(configuration)
        self.requests: list[dict[str, str]] = []
        self._open = threading.Event()
        self._open.set()
        self.held = threading.Event()

    def call_api(self, resource_path, method, path_params=None, query_params=None, *a, **kw):
        if not self._open.is_set():
            self.held.set()
            self._open.wait(10)
        self.requests.append({k: str(v) for k, v in query_params or ()})
        return super().call_api(resource_path, method, path_params, query_params, *a, **kw)

    def hold(self) -> None:
        self.held.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()


def pod(name: str, *, kind: str = "job", phase: str = "Pending", ns: str = "u-1") -> dict:
    labels = {"aladdin/user": "1", "aladdin/owner": name}
    if kind:
        labels["aladdin/kind"] = kind
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": phase},
    }


def set_phase(phase: str) -> Callable[[dict], None]:
    def fn(obj: dict) -> None:
        obj["status"]["phase"] = phase

    return fn


def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {check}")
        time.sleep(0.01)


class Cluster:
    """The stub (no kubelet: pods stay as the test puts them) and shorthands for its store."""

    def __init__(self, stub: KubeStub):
        self.stub = stub
        self.store = stub.store
        self.namespaces: set[str] = set()

    def create(self, obj: dict) -> None:
        ns = obj["metadata"]["namespace"]
        if ns not in self.namespaces:
            self.store.create("namespaces", None, {"metadata": {"name": ns}})
            self.namespaces.add(ns)
        self.store.create("pods", ns, obj)

    def mutate(self, ns: str, name: str, fn: Callable[[dict], None]) -> None:
        assert self.store.mutate("pods", ns, name, fn) is not None

    def remove(self, ns: str, name: str) -> None:
        assert self.store.remove("pods", ns, name) is not None

    @property
    def rv(self) -> str:
        return str(self.store.resource_version)


@pytest.fixture
def api(request) -> Iterator[Cluster]:
    # Bookmarks every 30 s unless a test asks for more (indirect parametrize):
    # a bookmark moves the resourceVersion, which other tests compare.
    bookmark_seconds = getattr(request, "param", 30.0)
    with KubeStub(run_pods=False, bookmark_seconds=bookmark_seconds) as stub:
        yield Cluster(stub)


@pytest.fixture
def make_informer(api):
    made: list[PodInformer] = []

    def make(**kwargs) -> tuple[PodInformer, RecordingApiClient, list[tuple[str, str]]]:
        events: list[tuple[str, str]] = []
        api_client = RecordingApiClient(api.stub.configuration())
        kwargs.setdefault("on_event", lambda t, p: events.append((t, p["metadata"]["name"])))
        informer = PodInformer(api_client, label_selector=SELECTOR, **kwargs)
        made.append(informer)
        informer.start()
        assert informer.wait_synced(5)
        return informer, api_client, events

    yield make
    for informer in made:
        informer.stop()


def test_the_list_then_live_changes_reach_the_cache_and_on_event(api, make_informer):
    # given two pods before the informer starts, one of them not the portal's
    api.create(pod("job-1"))
    api.create(pod("other", kind=""))
    informer, _, events = make_informer()
    assert [p["metadata"]["name"] for p in informer.list()] == ["job-1"]
    assert events == [("ADDED", "job-1")]
    assert informer.relists == 1

    # when pods are added, changed and deleted while it watches
    api.create(pod("ws-2", kind="workshop", ns="u-2"))
    api.mutate("u-1", "job-1", set_phase("Running"))
    eventually(lambda: (informer.get("job-1") or {}).get("status", {}).get("phase") == "Running")
    api.remove("u-1", "job-1")
    eventually(lambda: informer.get("job-1") is None)

    # then the cache and the callbacks follow, found by name in any namespace
    assert informer.get("ws-2")["metadata"]["namespace"] == "u-2"
    assert events == [
        ("ADDED", "job-1"),
        ("ADDED", "ws-2"),
        ("MODIFIED", "job-1"),
        ("DELETED", "job-1"),
    ]
    assert informer.events == 3
    assert informer.relists == 1, "a live watch needs no re-list"


@pytest.mark.parametrize("api", [0.2], indirect=True)
def test_a_bookmark_advances_the_resource_version_without_an_event(api, make_informer):
    api.create(pod("job-1"))
    informer, _, events = make_informer()
    before = informer.resource_version

    # a change the selector does not match moves the server's resourceVersion on
    api.create(pod("other", kind=""))
    eventually(lambda: informer.resource_version == api.rv)

    assert int(informer.resource_version) > int(before)
    assert informer.bookmarks >= 1
    assert events == [("ADDED", "job-1")]
    assert informer.events == 0


def test_an_ended_watch_resumes_from_its_resource_version_without_a_re_list(api, make_informer):
    informer, api_client, events = make_informer(watch_timeout_seconds=1)
    api.create(pod("job-1"))
    eventually(lambda: informer.get("job-1"))
    rv = informer.resource_version

    # the server ends the watch after 1 s; the next one starts where it left off
    eventually(lambda: sum(1 for r in api_client.requests if r.get("watch")) >= 2, timeout=5)
    assert api_client.requests[-1]["resourceVersion"] == rv == api.rv
    assert informer.relists == 1


def test_expired_history_re_lists_and_reports_what_changed_in_the_gap(api, make_informer):
    for name in ("job-1", "job-2", "job-3"):
        api.create(pod(name))
    informer, api_client, events = make_informer(watch_timeout_seconds=1)
    events.clear()

    # given the informer cut off (its next request waits) ...
    api_client.hold()
    assert api_client.held.wait(5), "the 1 s watch ended and the next request is waiting"
    # ... while a pod goes, another changes, one comes, and the history is compacted
    api.remove("u-1", "job-1")
    api.mutate("u-1", "job-2", set_phase("Running"))
    api.create(pod("job-4"))
    api.stub.expire_history()

    # when it comes back, its watch from the old resourceVersion gets a 410
    api_client.release()
    eventually(lambda: informer.relists == 2)

    # then it re-listed: the cache is the server's, the gap reported as events
    eventually(lambda: len(events) == 3)
    assert sorted(p["metadata"]["name"] for p in informer.list()) == ["job-2", "job-3", "job-4"]
    assert informer.get("job-1") is None
    assert informer.get("job-2")["status"]["phase"] == "Running"
    assert sorted(events) == [("ADDED", "job-4"), ("DELETED", "job-1"), ("MODIFIED", "job-2")]
    assert informer.resource_version == api.rv
    assert informer.errors == 0, "a 410 is the protocol, not an error"

    # and it watches again from the new list
    api.remove("u-1", "job-3")
    eventually(lambda: informer.get("job-3") is None)


def test_the_list_is_read_in_pages(api, make_informer):
    for i in range(5):
        api.create(pod(f"job-{i}", ns=f"u-{i}"))
    informer, api_client, _ = make_informer(page_size=2)

    lists = [r for r in api_client.requests if not r.get("watch")]
    assert [r.get("limit") for r in lists] == ["2", "2", "2"]
    assert [bool(r.get("continue")) for r in lists] == [False, True, True]
    assert sorted(p["metadata"]["name"] for p in informer.list()) == [f"job-{i}" for i in range(5)]
    assert informer.relists == 1


def test_stop_returns_within_a_second_during_an_idle_watch(api, make_informer):
    informer, api_client, _ = make_informer(watch_timeout_seconds=240)
    eventually(lambda: any(r.get("watch") for r in api_client.requests))
    time.sleep(0.2)

    started = time.monotonic()
    informer.stop()

    assert time.monotonic() - started < 1
    assert not informer._thread.is_alive()
    assert informer.errors == 0


def test_periodic_resync_re_lists(api, make_informer):
    informer, _, _ = make_informer(resync_seconds=1)
    eventually(lambda: informer.relists >= 2, timeout=4)


def test_the_feed_coalesces_a_burst_into_one_call_per_kind_and_sends_after_it():
    sent: list[tuple[str, float]] = []
    feed = reconcile_feed(lambda kind: sent.append((kind, time.monotonic())), min_interval=0.3)
    phases = ["Pending", "Running"]
    try:
        # a burst: 50 phase changes of jobs and one of a workshop
        started = time.monotonic()
        for i in range(50):
            feed("MODIFIED", pod(f"job-{i % 5}", phase=phases[i % 2]))
        feed("ADDED", pod("ws-1", kind="workshop"))
        assert [k for k, _ in sent] == ["job", "workshop"], "the first of each kind at once"

        # the rest of the burst in one trailing call, not dropped
        eventually(lambda: len(sent) == 3, timeout=2)
        assert sent[2][0] == "job"
        assert sent[2][1] - started >= 0.29
        time.sleep(0.5)
        assert len(sent) == 3, "one trailing call per burst"

        # a MODIFIED that keeps the phase is no change; a deletion is
        feed("MODIFIED", pod("ws-1", kind="workshop"))
        assert len(sent) == 3
        feed("DELETED", pod("ws-1", kind="workshop", phase="Running"))
        assert [k for k, _ in sent][3:] == ["workshop"]
        # pods without the kind label are not the reconcilers'
        feed("ADDED", pod("other", kind=""))
        time.sleep(0.4)
        assert len(sent) == 4
    finally:
        feed.close()


def test_the_feed_is_fed_by_the_informer(api, make_informer):
    sent: list[str] = []
    feed = reconcile_feed(sent.append, min_interval=0.2)
    api.create(pod("job-1"))
    informer, _, _ = make_informer(on_event=feed)
    assert sent == ["job"]

    for phase in ("Running", "Succeeded"):
        api.mutate("u-1", "job-1", set_phase(phase))
    eventually(lambda: len(sent) == 2)
    api.remove("u-1", "job-1")
    eventually(lambda: len(sent) == 3)
    assert sent == ["job", "job", "job"]
    feed.close()


def test_an_unreachable_api_server_is_retried_with_backoff_and_stop_still_returns_at_once():
    # a port nobody listens on (bound, then closed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = False
    informer = PodInformer(client.ApiClient(configuration), label_selector=SELECTOR).start()
    try:
        eventually(lambda: informer.errors >= 2, timeout=3)
        assert not informer.synced.is_set()
    finally:
        started = time.monotonic()
        informer.stop()
    assert time.monotonic() - started < 1
    assert not informer._thread.is_alive()


def test_managed_fields_are_not_cached(api, make_informer):
    managed = [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1"}]
    listed = pod("job-1")
    listed["metadata"]["managedFields"] = managed
    api.create(listed)
    informer, _, _ = make_informer()
    watched = pod("job-2")
    watched["metadata"]["managedFields"] = managed
    api.create(watched)
    eventually(lambda: informer.get("job-2"))

    assert api.store.get("pods", "u-1", "job-1")["metadata"]["managedFields"] == managed
    assert "managedFields" not in informer.get("job-1")["metadata"]
    assert "managedFields" not in informer.get("job-2")["metadata"]
