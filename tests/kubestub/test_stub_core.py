"""The API-server stub speaks the real wire format to the real ``kubernetes`` client.

Every test goes through the official client (typed APIs, ``Watch``, ``ApiException``)
against ``KubeStub(run_pods=False)``: what passes here is what the portal's backend
will see. Each test works in a namespace of its own on one shared stub; the tests
that need a stub of their own (history expiry) start one.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
import types

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.kubestub.selectors import SelectorError, parse_label_selector, parse_quantity
from tests.kubestub.server import KubeStub

_names = itertools.count(1)


@pytest.fixture(scope="module")
def stub():
    with KubeStub(run_pods=False, bookmark_seconds=0.2) as running:
        yield running


@pytest.fixture
def v1(stub):
    with client.ApiClient(stub.configuration()) as api:
        yield client.CoreV1Api(api)


@pytest.fixture
def ns(v1):
    name = f"u-{next(_names)}"
    v1.create_namespace({"metadata": {"name": name}})
    return name


def pod(name, *, labels=None, limits=None, requests=None, node=None):
    resources = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    spec = {"containers": [{"name": "main", "image": "busybox:1.36", "resources": resources}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def merge_patcher(stub) -> client.CoreV1Api:
    """A client whose patches are JSON merge patches (client 34 has no per-call content type:
    a default header wins over the one the typed method picks)."""
    api = client.ApiClient(stub.configuration())
    api.set_default_header("Content-Type", "application/merge-patch+json")
    return client.CoreV1Api(api)


def status_of(error: ApiException) -> dict:
    return json.loads(error.body)


# --- CRUD and errors ---------------------------------------------------------------------------


def test_created_pod_gets_identity_version_and_defaults(v1, ns):
    created = v1.create_namespaced_pod(ns, pod("job-1", limits={"cpu": "2", "memory": "4Gi"}))

    assert created.kind == "Pod" and created.api_version == "v1"
    assert created.metadata.namespace == ns
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) > 0
    assert created.status.phase == "Pending"
    # Requests default to limits, as the API server's defaulting does.
    assert created.spec.containers[0].resources.requests == {"cpu": "2", "memory": "4Gi"}
    fetched = v1.read_namespaced_pod("job-1", ns)
    assert fetched.metadata.resource_version == created.metadata.resource_version


def test_a_missing_pod_is_a_404_status_the_client_parses(v1, ns):
    with pytest.raises(ApiException) as caught:
        v1.read_namespaced_pod("job-1", ns)

    assert caught.value.status == 404
    assert status_of(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "job-1" not found',
        "reason": "NotFound",
        "details": {"name": "job-1", "kind": "pods"},
        "code": 404,
    }


def test_creating_a_pod_twice_is_409_already_exists(v1, ns):
    v1.create_namespaced_pod(ns, pod("job-1"))

    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod(ns, pod("job-1"))

    assert caught.value.status == 409
    body = status_of(caught.value)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'pods "job-1" already exists'


def test_creating_into_a_missing_namespace_names_the_namespace(v1):
    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod("u-missing", pod("job-1"))

    assert caught.value.status == 404
    body = status_of(caught.value)
    assert body["message"] == 'namespaces "u-missing" not found'
    assert body["details"] == {"name": "u-missing", "kind": "namespaces"}


def test_an_object_without_a_name_is_422_and_generate_name_fills_one(v1, ns):
    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_config_map(ns, {"metadata": {}, "data": {"a": "b"}})

    assert caught.value.status == 422
    body = status_of(caught.value)
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required'
    )
    assert body["details"] == {
        "kind": "ConfigMap",
        "causes": [
            {
                "reason": "FieldValueRequired",
                "message": "Required value: name or generateName is required",
                "field": "metadata.name",
            }
        ],
    }

    made = v1.create_namespaced_config_map(ns, {"metadata": {"generateName": "cfg-"}, "data": {}})
    assert made.metadata.name.startswith("cfg-") and len(made.metadata.name) == len("cfg-") + 5


def test_an_invalid_name_is_refused_with_the_rfc_1123_text(v1, ns):
    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod(ns, pod("Job_1"))

    assert caught.value.status == 422
    assert status_of(caught.value)["message"].startswith(
        'Pod "Job_1" is invalid: metadata.name: Invalid value: "Job_1": a lowercase RFC 1123 subdomain'
    )


def test_a_stale_resource_version_is_a_409_conflict(v1, ns):
    first = v1.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    first.data = {"a": "2"}
    v1.replace_namespaced_config_map("cfg", ns, first)

    first.data = {"a": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as caught:
        v1.replace_namespaced_config_map("cfg", ns, first)

    assert caught.value.status == 409
    body = status_of(caught.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "cfg": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert v1.read_namespaced_config_map("cfg", ns).data == {"a": "2"}


def test_patches_merge_labels_and_strategic_patches_merge_containers_by_name(stub, v1, ns):
    v1.create_namespaced_pod(ns, pod("job-1", labels={"a": "1", "b": "2"}))

    merged = merge_patcher(stub).patch_namespaced_pod(
        "job-1", ns, {"metadata": {"labels": {"b": None, "c": "3"}}}
    )
    assert merged.metadata.labels == {"a": "1", "c": "3"}

    # The client's default for a dict body is a strategic merge patch.
    strategic = v1.patch_namespaced_pod(
        "job-1", ns, {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}}
    )
    assert [(c.name, c.image) for c in strategic.spec.containers] == [("main", "busybox:1.37")]
    assert strategic.spec.containers[0].termination_message_path == "/dev/termination-log"

    patched = v1.patch_namespaced_pod(
        "job-1", ns, [{"op": "add", "path": "/metadata/annotations", "value": {"x": "y"}}]
    )
    assert patched.metadata.annotations == {"x": "y"}
    assert int(patched.metadata.resource_version) > int(merged.metadata.resource_version)


def test_the_status_subresource_changes_only_status(stub, v1, ns):
    v1.create_namespaced_pod(ns, pod("job-1"))

    updated = v1.patch_namespaced_pod_status("job-1", ns, {"status": {"phase": "Running"}})
    assert updated.status.phase == "Running"

    # A main-resource write cannot change status (the pod strategy resets it).
    kept = merge_patcher(stub).patch_namespaced_pod("job-1", ns, {"status": {"phase": "Failed"}})
    assert kept.status.phase == "Running"


def test_deleting_a_pod_answers_the_pod_and_a_config_map_a_success_status(stub, v1, ns):
    v1.create_namespaced_pod(ns, pod("job-1"))
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}})

    deleted = v1.delete_namespaced_pod("job-1", ns, grace_period_seconds=0)
    assert deleted.metadata.name == "job-1"
    raw = v1.delete_namespaced_config_map("cfg", ns, _preload_content=False)
    assert json.loads(raw.data)["status"] == "Success"

    with pytest.raises(ApiException) as caught:
        v1.delete_namespaced_pod("job-1", ns)
    assert caught.value.status == 404
    assert stub.requests[("DELETE", "/api/v1/namespaces/{namespace}/pods/{name}")] >= 2


def test_a_dry_run_answers_without_storing(stub, v1, ns):
    before = stub.store.resource_version

    made = v1.create_namespaced_pod(ns, pod("job-1"), dry_run="All")
    assert made.metadata.uid and made.status.phase == "Pending"
    assert stub.store.resource_version == before
    with pytest.raises(ApiException):
        v1.read_namespaced_pod("job-1", ns)

    v1.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}})
    v1.delete_namespaced_config_map("cfg", ns, dry_run="All")
    assert v1.read_namespaced_config_map("cfg", ns).metadata.name == "cfg"


def test_a_service_keeps_its_cluster_ip_across_a_replace(v1, ns):
    made = v1.create_namespaced_service(
        ns, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert made.spec.cluster_ip and made.spec.ports[0].target_port == 80

    replaced = v1.replace_namespaced_service(
        "svc", ns, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 8080}]}}
    )

    assert replaced.spec.cluster_ip == made.spec.cluster_ip
    assert replaced.spec.ports[0].port == 8080


def test_the_system_namespaces_may_not_be_deleted(v1):
    with pytest.raises(ApiException) as caught:
        v1.delete_namespace("default")

    assert caught.value.status == 403
    assert status_of(caught.value)["message"] == (
        'namespaces "default" is forbidden: this namespace may not be deleted'
    )


# --- list: selectors and pages -----------------------------------------------------------------


def test_label_selectors_speak_the_full_syntax(v1, ns):
    v1.create_namespaced_pod(ns, pod("a", labels={"app": "web", "tier": "front"}))
    v1.create_namespaced_pod(ns, pod("b", labels={"app": "db", "tier": "back"}))
    v1.create_namespaced_pod(ns, pod("c", labels={"app": "cache"}))

    def names(selector):
        return [p.metadata.name for p in v1.list_namespaced_pod(ns, label_selector=selector).items]

    assert names("app=web") == ["a"]
    assert names("app==db") == ["b"]
    assert names("app!=web") == ["b", "c"]
    assert names("app in (web, db)") == ["a", "b"]
    assert names("app notin (web)") == ["b", "c"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c"]
    assert names("app in (web,db),tier!=front") == ["b"]
    with pytest.raises(ApiException) as caught:
        v1.list_namespaced_pod(ns, label_selector="app in (web")
    assert caught.value.status == 400


def test_field_selectors_filter_name_phase_and_node_across_namespaces(v1, ns):
    v1.create_namespaced_pod(ns, pod("a", node="node-1"))
    v1.create_namespaced_pod(ns, pod("b", node="node-2"))
    v1.patch_namespaced_pod_status("b", ns, {"status": {"phase": "Running"}})

    def names(selector):
        return [
            p.metadata.name
            for p in v1.list_pod_for_all_namespaces(field_selector=selector).items
            if p.metadata.namespace == ns
        ]

    assert names("metadata.name=a") == ["a"]
    assert names(f"metadata.namespace=={ns},status.phase!=Running") == ["a"]
    assert names("spec.nodeName=node-2") == ["b"]
    with pytest.raises(ApiException) as caught:
        v1.list_pod_for_all_namespaces(field_selector="spec.image=x")
    assert caught.value.status == 400
    assert "field label not supported: spec.image" in status_of(caught.value)["message"]


def test_limit_and_continue_page_through_a_list(stub, v1, ns):
    stub.store.bulk_create_pods(ns, [pod(f"p-{i:03}") for i in range(25)])

    seen, token, pages = [], None, 0
    while True:
        page = v1.list_namespaced_pod(ns, limit=10, _continue=token)
        seen += [p.metadata.name for p in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 25 - len(seen)

    assert pages == 3
    assert seen == [f"p-{i:03}" for i in range(25)]
    assert int(page.metadata.resource_version) >= 25


def test_nodes_are_real_node_objects(v1):
    nodes = {n.metadata.name: n for n in v1.list_node().items}

    assert nodes["node-1"].metadata.labels["aladdin.io/gpu-model"] == "80g"
    assert nodes["node-2"].status.allocatable["nvidia.com/gpu"] == "2"
    assert v1.read_node("node-1").status.allocatable["memory"] == "512Gi"


# --- quota -------------------------------------------------------------------------------------


def quota(v1, ns, hard, name="quota"):
    return v1.create_namespaced_resource_quota(
        ns, {"metadata": {"name": name}, "spec": {"hard": hard}}
    )


def test_quota_refuses_a_pod_over_the_limit_with_the_api_servers_message(v1, ns):
    quota(v1, ns, {"limits.cpu": "10", "limits.memory": "20Gi", "requests.nvidia.com/gpu": "2"})
    for i in range(4):
        v1.create_namespaced_pod(ns, pod(f"job-{i}", limits={"cpu": "2", "memory": "4Gi"}))

    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod(ns, pod("job-9", limits={"cpu": "3", "memory": "6Gi"}))

    assert caught.value.status == 403
    body = status_of(caught.value)
    assert body["reason"] == "Forbidden"
    assert body["details"] == {"name": "job-9", "kind": "pods"}
    assert body["message"] == (
        'pods "job-9" is forbidden: exceeded quota: quota, requested: limits.cpu=3,limits.memory=6Gi, '
        "used: limits.cpu=8,limits.memory=16Gi, limited: limits.cpu=10,limits.memory=20Gi"
    )
    # Only the exceeded resources are named.
    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod(ns, pod("job-8", limits={"cpu": "500m", "memory": "6Gi"}))
    assert status_of(caught.value)["message"].endswith(
        "requested: limits.memory=6Gi, used: limits.memory=16Gi, limited: limits.memory=20Gi"
    )


def test_quota_counts_gpus_from_requests(v1, ns):
    quota(v1, ns, {"requests.nvidia.com/gpu": "1"})
    gpu = {"nvidia.com/gpu": "1"}
    v1.create_namespaced_pod(ns, pod("job-1", limits=gpu))

    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod(ns, pod("job-2", limits=gpu))

    assert status_of(caught.value)["message"] == (
        'pods "job-2" is forbidden: exceeded quota: quota, requested: requests.nvidia.com/gpu=1, '
        "used: requests.nvidia.com/gpu=1, limited: requests.nvidia.com/gpu=1"
    )


def test_quota_refuses_a_pod_without_the_limits_it_constrains(v1, ns):
    quota(v1, ns, {"limits.cpu": "10", "limits.memory": "20Gi"})

    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod(ns, pod("x", requests={"cpu": "1"}))

    assert caught.value.status == 403
    assert status_of(caught.value)["message"] == (
        'pods "x" is forbidden: failed quota: quota: must specify limits.cpu for: main; '
        "limits.memory for: main"
    )


def test_quota_status_follows_pods_created_finished_and_deleted(stub, v1, ns):
    made = quota(v1, ns, {"limits.cpu": "10", "limits.memory": "20Gi", "pods": "5"})
    assert made.status.hard == {"limits.cpu": "10", "limits.memory": "20Gi", "pods": "5"}
    assert made.status.used == {"limits.cpu": "0", "limits.memory": "0", "pods": "0"}

    v1.create_namespaced_pod(ns, pod("a", limits={"cpu": "1500m", "memory": "512Mi"}))
    v1.create_namespaced_pod(ns, pod("b", limits={"cpu": "500m", "memory": "1Gi"}))
    used = v1.read_namespaced_resource_quota("quota", ns).status.used
    assert used == {"limits.cpu": "2", "limits.memory": "1536Mi", "pods": "2"}

    # A finished pod stops counting (the kubelet writes status through the store).
    stub.store.mutate("pods", ns, "a", lambda p: p["status"].update(phase="Succeeded"))
    used = v1.read_namespaced_resource_quota("quota", ns).status.used
    assert used == {"limits.cpu": "500m", "limits.memory": "1Gi", "pods": "1"}

    v1.delete_namespaced_pod("b", ns)
    used = v1.read_namespaced_resource_quota("quota", ns).status.used
    assert used == {"limits.cpu": "0", "limits.memory": "0", "pods": "0"}


def test_limit_range_defaults_fill_containers_before_the_quota_looks(v1, ns):
    v1.create_namespaced_limit_range(
        ns,
        {
            "metadata": {"name": "limits"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "1", "memory": "1Gi"},
                        "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
                        "max": {"cpu": "4"},
                    }
                ]
            },
        },
    )
    quota(v1, ns, {"limits.cpu": "10", "limits.memory": "20Gi"})

    made = v1.create_namespaced_pod(ns, pod("job-1"))

    resources = made.spec.containers[0].resources
    assert resources.limits == {"cpu": "1", "memory": "1Gi"}
    assert resources.requests == {"cpu": "100m", "memory": "256Mi"}
    assert made.status.qos_class == "Burstable"
    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod(ns, pod("job-2", limits={"cpu": "8"}))
    assert caught.value.status == 403
    assert status_of(caught.value)["message"] == (
        'pods "job-2" is forbidden: maximum cpu usage per Container is 4, but limit is 8'
    )


# --- PVCs and namespaces -----------------------------------------------------------------------


def test_a_claim_is_bound_grows_with_its_request_and_cannot_shrink(v1, ns):
    claim = {
        "metadata": {"name": "home"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    }
    made = v1.create_namespaced_persistent_volume_claim(ns, claim)
    assert made.status.phase == "Bound"
    assert made.status.capacity == {"storage": "10Gi"}

    grown = v1.patch_namespaced_persistent_volume_claim(
        "home", ns, {"spec": {"resources": {"requests": {"storage": "20Gi"}}}}
    )
    assert grown.status.capacity == {"storage": "20Gi"}

    with pytest.raises(ApiException) as caught:
        v1.patch_namespaced_persistent_volume_claim(
            "home", ns, {"spec": {"resources": {"requests": {"storage": "5Gi"}}}}
        )
    assert caught.value.status == 422
    assert status_of(caught.value)["message"] == (
        'PersistentVolumeClaim "home" is invalid: spec.resources.requests.storage: '
        "Forbidden: field can not be less than status.capacity"
    )


def test_deleting_a_namespace_removes_everything_in_it(v1):
    ns = f"u-{next(_names)}"
    v1.create_namespace(
        {"metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    assert (
        v1.read_namespace(ns).metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    )
    v1.create_namespaced_pod(ns, pod("job-1"))
    v1.create_namespaced_service(
        ns, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    )
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}})
    quota(v1, ns, {"pods": "3"})
    start = v1.list_pod_for_all_namespaces().metadata.resource_version
    events = []
    watching = threading.Thread(
        target=lambda: events.extend(
            (e["type"], e["object"].metadata.name)
            for e in watch.Watch().stream(
                v1.list_namespaced_pod, ns, resource_version=start, timeout_seconds=1
            )
        )
    )
    watching.start()

    # The typed client reads the answer as a V1Status; the server sends the Namespace.
    answer = json.loads(v1.delete_namespace(ns, _preload_content=False).data)

    assert answer["kind"] == "Namespace"
    assert answer["status"]["phase"] == "Terminating"
    assert answer["metadata"]["deletionTimestamp"]
    watching.join()
    assert ("DELETED", "job-1") in events
    with pytest.raises(ApiException) as caught:
        v1.read_namespace(ns)
    assert caught.value.status == 404
    assert not [p for p in v1.list_pod_for_all_namespaces().items if p.metadata.namespace == ns]
    assert not [s for s in v1.list_service_for_all_namespaces().items if s.metadata.namespace == ns]


# --- watch -------------------------------------------------------------------------------------


def test_a_watch_streams_added_modified_and_deleted(v1, ns):
    v1.create_namespaced_pod(ns, pod("before"))
    seen = []

    def writer():
        time.sleep(0.2)
        v1_writer = v1  # the client pools connections: safe across threads
        v1_writer.create_namespaced_pod(ns, pod("job-1"))
        v1_writer.patch_namespaced_pod_status("job-1", ns, {"status": {"phase": "Running"}})
        v1_writer.delete_namespaced_pod("job-1", ns)

    threading.Thread(target=writer).start()
    w = watch.Watch()
    for event in w.stream(v1.list_namespaced_pod, ns, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            w.stop()

    assert seen == [
        ("ADDED", "before"),  # no resourceVersion: the current state first
        ("ADDED", "job-1"),
        ("MODIFIED", "job-1"),
        ("DELETED", "job-1"),
    ]


def test_a_watch_from_a_version_replays_what_came_after(v1, ns):
    first = v1.create_namespaced_pod(ns, pod("a"))
    v1.create_namespaced_pod(ns, pod("b"))
    v1.patch_namespaced_pod_status("a", ns, {"status": {"phase": "Running"}})

    stream = watch.Watch().stream(
        v1.list_namespaced_pod,
        ns,
        resource_version=first.metadata.resource_version,
        timeout_seconds=1,
    )
    seen = [(e["type"], e["object"].metadata.name, e["object"].status.phase) for e in stream]

    assert seen == [("ADDED", "b", "Pending"), ("MODIFIED", "a", "Running")]


def test_an_object_leaving_the_selection_is_deleted_for_that_watcher(v1, ns):
    v1.create_namespaced_pod(ns, pod("job-1", labels={"team": "a"}))
    start = v1.list_namespaced_pod(ns).metadata.resource_version
    v1.patch_namespaced_pod("job-1", ns, {"metadata": {"labels": {"team": "b"}}})
    v1.patch_namespaced_pod("job-1", ns, {"metadata": {"labels": {"team": "a"}}})

    stream = watch.Watch().stream(
        v1.list_namespaced_pod,
        ns,
        label_selector="team=a",
        resource_version=start,
        timeout_seconds=1,
    )
    seen = [(e["type"], e["object"].metadata.labels["team"]) for e in stream]

    # DELETED carries the object as it was when it still matched.
    assert seen == [("DELETED", "a"), ("ADDED", "a")]


def test_bookmarks_come_raw_over_a_chunked_stream(v1, ns):
    v1.create_namespaced_pod(ns, pod("job-1"))
    rv = v1.list_namespaced_pod(ns).metadata.resource_version

    response = v1.list_namespaced_pod(
        ns,
        watch=True,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=1,
        _preload_content=False,
    )
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.headers["Content-Type"] == "application/json"
    lines = [json.loads(line) for line in watch.watch.iter_resp_lines(response)]
    response.release_conn()

    bookmarks = [e for e in lines if e["type"] == "BOOKMARK"]
    assert bookmarks, lines
    assert bookmarks[0]["object"] == {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": bookmarks[0]["object"]["metadata"]["resourceVersion"]},
    }
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    # The typed Watch hands bookmarks through too (with the raw object).
    typed = watch.Watch().stream(
        v1.list_namespaced_pod,
        ns,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=1,
    )
    assert "BOOKMARK" in {e["type"] for e in typed}


def test_a_watch_from_expired_history_gets_a_410_error_event():
    with KubeStub(run_pods=False) as stub, client.ApiClient(stub.configuration()) as api:
        v1 = client.CoreV1Api(api)
        v1.create_namespace({"metadata": {"name": "u-1"}})
        old = v1.create_namespaced_pod("u-1", pod("job-1")).metadata.resource_version
        v1.create_namespaced_pod("u-1", pod("job-2"))
        stub.expire_history()
        now = stub.store.resource_version

        raw = v1.list_namespaced_pod(
            "u-1", watch=True, resource_version=old, timeout_seconds=1, _preload_content=False
        )
        assert raw.status == 200  # the error comes inside the stream, like the real server
        lines = [json.loads(line) for line in watch.watch.iter_resp_lines(raw)]
        assert lines == [
            {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {old} ({now})",
                    "reason": "Expired",
                    "code": 410,
                },
            }
        ]

        with pytest.raises(ApiException) as caught:
            list(
                watch.Watch().stream(
                    v1.list_namespaced_pod, "u-1", resource_version=old, timeout_seconds=1
                )
            )
        assert caught.value.status == 410

        # From the current version on, the watch works again.
        current = watch.Watch().stream(
            v1.list_namespaced_pod, "u-1", resource_version=str(now), timeout_seconds=1
        )
        assert list(current) == []


def test_a_small_history_ring_forgets_its_oldest_events():
    with KubeStub(run_pods=False, history=3) as stub, client.ApiClient(stub.configuration()) as api:
        v1 = client.CoreV1Api(api)
        v1.create_namespace({"metadata": {"name": "u-1"}})
        old = v1.create_namespaced_config_map(
            "u-1", {"metadata": {"name": "c0"}}
        ).metadata.resource_version
        for i in range(1, 6):
            v1.create_namespaced_config_map("u-1", {"metadata": {"name": f"c{i}"}})

        with pytest.raises(ApiException) as caught:
            list(
                watch.Watch().stream(
                    v1.list_namespaced_config_map, "u-1", resource_version=old, timeout_seconds=1
                )
            )
        assert caught.value.status == 410


def test_a_slow_watcher_does_not_hold_up_writers(stub, v1, ns):
    stalled = v1.list_namespaced_pod(ns, watch=True, timeout_seconds=5, _preload_content=False)
    stub.store.bulk_create_pods(ns, [pod(f"p-{i}") for i in range(200)])

    started = time.monotonic()
    for i in range(200):
        stub.store.mutate("pods", ns, f"p-{i}", lambda p: p["status"].update(phase="Running"))
    assert time.monotonic() - started < 2
    stalled.close()


# --- plumbing ----------------------------------------------------------------------------------


def test_a_kubeconfig_points_the_client_at_the_stub(stub, tmp_path):
    path = stub.write_kubeconfig(tmp_path / "config")
    api = config.new_client_from_config(config_file=str(path))

    names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}

    assert {"default", "kube-system"} <= names
    assert client.VersionApi(api).get_code().git_version == "v1.34.1"
    api.close()


def test_network_policies_live_in_their_group(v1, ns, stub):
    with client.ApiClient(stub.configuration()) as api:
        net = client.NetworkingV1Api(api)
        policy = {
            "metadata": {"name": "deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }
        made = net.create_namespaced_network_policy(ns, policy)
        assert made.api_version == "networking.k8s.io/v1"
        with pytest.raises(ApiException) as caught:
            net.create_namespaced_network_policy(ns, policy)
        body = status_of(caught.value)
        assert body["message"] == 'networkpolicies.networking.k8s.io "deny" already exists'
        assert body["details"]["group"] == "networking.k8s.io"


def test_quantities_print_as_kubernetes_prints_them():
    cases = {
        "500m": "500m",
        "0.5": "500m",
        "2000m": "2",
        "1.5Gi": "1536Mi",
        "1024Mi": "1Gi",
        "1000": "1k",
        "1500": "1500",
        "1e3": "1e3",
        "0.1n": "1n",
    }
    assert {text: str(parse_quantity(text)) for text in cases} == cases
    total = parse_quantity("512Mi") + parse_quantity("1Gi")
    assert str(total) == "1536Mi"


def test_label_selector_parser_rejects_garbage():
    assert parse_label_selector("a in (x, y),!b")({"a": "y"})
    assert not parse_label_selector("a notin (x)")({"a": "x"})
    assert parse_label_selector("n>3")({"n": "4"})
    with pytest.raises(SelectorError):
        parse_label_selector("a in (x")


def test_bulk_created_pods_count_against_the_quota_once_done(stub, v1, ns):
    quota(v1, ns, {"limits.cpu": "100", "pods": "50"})

    stub.store.bulk_create_pods(ns, [pod(f"p-{i}", limits={"cpu": "250m"}) for i in range(20)])

    assert v1.read_namespaced_resource_quota("quota", ns).status.used == {
        "limits.cpu": "5",
        "pods": "20",
    }


def test_deletecollection_removes_the_selected_pods(v1, ns):
    v1.create_namespaced_pod(ns, pod("a", labels={"run": "1"}))
    v1.create_namespaced_pod(ns, pod("b", labels={"run": "1"}))
    v1.create_namespaced_pod(ns, pod("c", labels={"run": "2"}))

    v1.delete_collection_namespaced_pod(ns, label_selector="run=1")

    assert [p.metadata.name for p in v1.list_namespaced_pod(ns).items] == ["c"]


# --- the kubelet seam (a recording kubelet in place of tests/kubestub/kubelet.py) ---------------


class RecordingKubelet:
    """Keeps the seam of tests/kubestub/__init__.py; stops a pod 50 ms after it is told to."""

    def __init__(self, store, root, nodes):
        self.store, self.root, self.nodes = store, root, nodes
        self.calls: list[tuple] = []

    def pod_created(self, pod):
        stored = self.store.get("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.calls.append(("pod_created", pod["metadata"]["name"], stored is not None))

    def pod_deleting(self, namespace, name, grace_seconds):
        pod = self.store.get("pods", namespace, name)
        self.calls.append(
            ("pod_deleting", name, grace_seconds, pod["metadata"]["deletionTimestamp"] is not None)
        )
        threading.Timer(0.05, self.store.remove, ("pods", namespace, name)).start()

    def namespace_deleted(self, namespace):
        self.calls.append(("namespace_deleted", namespace))

    def serve_log(self, handler, namespace, name, query):
        body = f"log of {name} follow={query.get('follow')}\n".encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    # This stand-in only checks the seam's calls; exec and port-forward are the
    # real kubelet's (tests/kubestub/test_stub_kubelet.py), never asked of it here.
    def serve_exec(self, handler, namespace, name, query):
        raise AssertionError("the seam's stand-in kubelet runs no exec")

    def serve_portforward(self, handler, namespace, name, query):
        raise AssertionError("the seam's stand-in kubelet forwards no port")

    def stats_summary(self, node_name):
        return {"node": {"nodeName": node_name}, "pods": []}

    def pod_metrics(self, namespace, name):
        return {
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": name, "namespace": namespace},
            "containers": [{"name": "main", "usage": {"cpu": "10m", "memory": "1Mi"}}],
        }

    def close(self):
        self.calls.append(("close",))


def test_with_run_pods_the_stub_drives_the_kubelet_through_its_seam(monkeypatch, tmp_path):
    fake = types.ModuleType("tests.kubestub.kubelet")
    fake.Kubelet = RecordingKubelet
    monkeypatch.setitem(sys.modules, "tests.kubestub.kubelet", fake)

    with (
        KubeStub(run_pods=True, root=tmp_path) as stub,
        client.ApiClient(stub.configuration()) as api,
    ):
        kubelet = stub.kubelet
        assert isinstance(kubelet, RecordingKubelet)
        assert kubelet.root == tmp_path
        assert [n["metadata"]["name"] for n in kubelet.nodes] == ["node-1", "node-2"]
        v1 = client.CoreV1Api(api)
        v1.create_namespace({"metadata": {"name": "u-1"}})
        v1.create_namespaced_pod("u-1", pod("job-1"))
        assert kubelet.calls == [("pod_created", "job-1", True)]

        assert (
            v1.read_namespaced_pod_log("job-1", "u-1", follow=True)
            == "log of job-1 follow=['True']\n"
        )
        summary = v1.connect_get_node_proxy_with_path(
            "node-1", "stats/summary", _preload_content=False
        )
        assert json.loads(summary.data)["node"]["nodeName"] == "node-1"
        metrics = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", "u-1", "pods", "job-1"
        )
        assert metrics["containers"][0]["usage"]["cpu"] == "10m"

        # Graceful: the answer carries the deletion stamp; the kubelet removes the pod.
        answer = v1.delete_namespaced_pod("job-1", "u-1")
        assert answer.metadata.deletion_grace_period_seconds == 30
        assert answer.metadata.deletion_timestamp is not None
        assert kubelet.calls[-1] == ("pod_deleting", "job-1", 30, True)
        deadline = time.monotonic() + 2
        while stub.store.get("pods", "u-1", "job-1") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stub.store.get("pods", "u-1", "job-1") is None

        # A namespace goes once the kubelet has stopped its pods (grace 0).
        v1.create_namespaced_pod("u-1", pod("job-2"))
        v1.delete_namespace("u-1")
        deadline = time.monotonic() + 2
        while stub.store.get("namespaces", None, "u-1") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stub.store.get("namespaces", None, "u-1") is None
        assert ("pod_deleting", "job-2", 0, True) in kubelet.calls
        assert kubelet.calls[-1] == ("namespace_deleted", "u-1")
    assert kubelet.calls[-1] == ("close",)
