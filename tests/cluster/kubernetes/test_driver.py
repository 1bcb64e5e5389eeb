"""The Kubernetes driver on the API-server stub: what the contract does not pin down (issue 19)."""

from __future__ import annotations

import time
from dataclasses import replace

import kubernetes.client
import pytest

from aladdin import cluster
from aladdin.cluster.base import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_USER,
    DriverError,
    NoCapacity,
    Phase,
    QuotaExceeded,
    Resources,
    WorkerGroup,
    WorkloadSpec,
)
from aladdin.cluster.images import ImageRecipe
from aladdin.cluster.kubernetes import manifests
from aladdin.cluster.kubernetes.driver import KubernetesDriver, pod_status
from aladdin.cluster.sftp import SftpClient

QUIET = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 3600 & wait; done']


def spec(name: str, *, user_id: int = 5, command=None, resources=None, **kwargs) -> WorkloadSpec:
    return WorkloadSpec(
        name=name,
        user_id=user_id,
        kind=kwargs.pop("kind", "job"),
        image="python:3.11",
        command=command or QUIET,
        env={},
        resources=resources or Resources(500, 512),
        labels={LABEL_USER: str(user_id), LABEL_KIND: "job", LABEL_OWNER: name},
        **kwargs,
    )


def wait_for(driver, name, phases, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        status = driver.workload_status(name=name)
        if status.phase in phases or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


@pytest.fixture
def space(k8s_driver):
    """User 5's space with a quota of 2 CPU / 4 GiB; deleted after the test."""
    k8s_driver.ensure_user_space(user_id=5, storage_gib=1, quota=Resources(2000, 4096))
    yield 5
    k8s_driver.delete_user_space(user_id=5)
    deadline = time.monotonic() + 20
    while k8s_driver.core.list_namespace(label_selector="aladdin/user=5").items:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_user_space_holds_what_the_manifests_say(k8s_driver, space):
    core, ns = k8s_driver.core, "u-5"
    namespace = core.read_namespace(ns)
    quota = core.read_namespaced_resource_quota("compute", ns)

    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert quota.spec.hard == {"limits.cpu": "2250m", "limits.memory": "4352Mi"}
    assert core.read_namespaced_limit_range("defaults", ns).spec.limits[0].max == {
        "cpu": "2",
        "memory": "4Gi",
    }
    policy = k8s_driver.networking.read_namespaced_network_policy("isolation", ns)
    assert policy.spec.policy_types == ["Ingress", "Egress"]


def test_the_volume_grows_with_the_allowance_and_never_shrinks(k8s_driver, space):
    def size():
        pvc = k8s_driver.core.read_namespaced_persistent_volume_claim("home", "u-5")
        return pvc.spec.resources.requests["storage"]

    k8s_driver.ensure_user_space(user_id=5, storage_gib=3, quota=Resources(2000, 4096))
    assert size() == "3Gi"
    k8s_driver.ensure_user_space(user_id=5, storage_gib=2, quota=Resources(2000, 4096))
    assert size() == "3Gi"


def test_a_volume_the_storage_class_cannot_expand_does_not_stop_the_student(
    k8s_driver, space, monkeypatch, caplog
):
    def refuse(*args, **kwargs):
        exc = kubernetes.client.exceptions.ApiException(status=403, reason="Forbidden")
        exc.body = (
            '{"kind":"Status","message":"only dynamically provisioned pvc can be resized and the '
            'storageclass that provisions the pvc must support resize","code":403}'
        )
        raise exc

    monkeypatch.setattr(k8s_driver.core, "patch_namespaced_persistent_volume_claim", refuse)
    k8s_driver.ensure_user_space(user_id=5, storage_gib=9, quota=Resources(2000, 4096))

    assert "cannot expand the volume of u-5 to 9Gi" in caplog.text
    assert k8s_driver.start_workload(spec("job-after")).name == "job-after"


def test_a_changed_plan_updates_the_quota(k8s_driver, space):
    def hard():
        return k8s_driver.core.read_namespaced_resource_quota("compute", "u-5").spec.hard

    k8s_driver.ensure_user_space(
        user_id=5, storage_gib=1, quota=Resources(20_000, 40960, {"80g": 2})
    )
    assert hard() == {
        "limits.cpu": "20250m",
        "limits.memory": "41216Mi",
        "requests.nvidia.com/gpu": "2",
    }
    version = k8s_driver.core.read_namespaced_resource_quota("compute", "u-5").metadata
    k8s_driver.ensure_user_space(
        user_id=5, storage_gib=1, quota=Resources(20_000, 40960, {"80g": 2})
    )
    again = k8s_driver.core.read_namespaced_resource_quota("compute", "u-5").metadata
    assert again.resource_version == version.resource_version  # unchanged: not written

    # a plan that no longer counts cards leaves them to the portal
    k8s_driver.ensure_user_space(user_id=5, storage_gib=1, quota=Resources(20_000, 40960))
    assert hard() == {"limits.cpu": "20250m", "limits.memory": "41216Mi"}


def test_a_create_answered_409_finds_our_own_pod(k8s_driver, space):
    first = k8s_driver.start_workload(spec("job-409"))
    # As if the retry's lookup missed it (an informer behind): the create's 409 decides.
    k8s_driver._find_pod = lambda name, **_: None
    try:
        again = k8s_driver.start_workload(spec("job-409"))
    finally:
        del k8s_driver._find_pod
    assert again.name == first.name == "job-409"
    assert (
        len(
            k8s_driver.core.list_namespaced_pod("u-5", label_selector="aladdin/owner=job-409").items
        )
        == 1
    )


def test_a_409_on_a_pod_that_is_not_ours_is_refused(k8s_driver, space):
    pod = manifests.workload_pod(k8s_driver.config, spec("job-other"))
    pod["metadata"]["labels"].pop(LABEL_OWNER)
    k8s_driver.core.create_namespaced_pod("u-5", pod)

    with pytest.raises(DriverError) as refused:
        k8s_driver.start_workload(spec("job-other"))
    assert refused.value.permanent


def test_deletes_of_what_is_gone_are_done(k8s_driver, space):
    k8s_driver.start_workload(spec("job-del"))
    k8s_driver.core.delete_namespaced_pod("job-del", "u-5", grace_period_seconds=0)

    assert k8s_driver.stop_workload(name="job-del").phase == Phase.MISSING
    k8s_driver.forget_workload(name="job-del")
    k8s_driver.delete_user_space(user_id=77)  # never made


def test_a_stop_waits_until_the_pod_is_gone(k8s_driver, space):
    k8s_driver.start_workload(spec("job-stop"))
    wait_for(k8s_driver, "job-stop", {Phase.RUNNING})

    assert k8s_driver.stop_workload(name="job-stop", grace_seconds=1).phase == Phase.MISSING
    assert not k8s_driver.core.list_namespaced_pod(
        "u-5", label_selector="aladdin/owner=job-stop"
    ).items


def test_the_api_servers_quota_refusal_is_quota_exceeded(k8s_driver, space):
    k8s_driver.start_workload(spec("job-room", resources=Resources(1500, 1024)))

    with pytest.raises(QuotaExceeded) as refused:
        k8s_driver.start_workload(spec("job-over", resources=Resources(1000, 1024)))

    # the numbers of the API server's own message
    assert refused.value.requested.cpu_millicores == 1000
    assert refused.value.used.cpu_millicores == 1500
    assert refused.value.limit.cpu_millicores == 2000
    assert "exceeded quota" in str(refused.value)
    assert k8s_driver.workload_status(name="job-over").phase == Phase.MISSING


def test_the_files_pod_leaves_the_whole_plan_to_the_student(k8s_driver, space):
    k8s_driver.storage_usage_bytes(user_id=5)  # starts the files pod
    k8s_driver.start_workload(spec("ws-full", kind="workshop", resources=Resources(2000, 4096)))

    with pytest.raises(QuotaExceeded) as refused:
        k8s_driver.start_workload(spec("job-more", resources=Resources(500, 512)))

    # the plan's numbers, as the portal's own check would say them
    assert refused.value.used == Resources(2000, 4096)
    assert refused.value.limit == Resources(2000, 4096)


def test_a_pod_over_the_limit_ranges_maximum_is_quota_exceeded_too(k8s_driver, space):
    with pytest.raises(QuotaExceeded) as refused:
        k8s_driver.start_workload(spec("job-big", resources=Resources(3000, 1024)))

    assert refused.value.requested == Resources(3000, 1024)
    assert refused.value.limit == Resources(2000, 4096)
    assert k8s_driver.workload_status(name="job-big").phase == Phase.MISSING


def test_a_task_is_refused_before_worker_0_when_all_workers_would_exceed_the_quota(
    k8s_driver, space
):
    worker0 = spec(
        "job-60-0",
        resources=Resources(1000, 1024),
        group=WorkerGroup(group="job-60", index=0, size=3),
    )

    with pytest.raises(QuotaExceeded) as refused:
        k8s_driver.start_workload(worker0)

    assert refused.value.requested == Resources(3000, 3072)
    assert refused.value.limit == Resources(2000, 4096)
    assert k8s_driver.workload_status(name="job-60-0").phase == Phase.MISSING


def test_worker_0_makes_the_groups_headless_service(k8s_driver, space):
    group = WorkerGroup(group="job-61", index=0, size=2)
    k8s_driver.start_workload(spec("job-61-0", group=group))

    service = k8s_driver.core.read_namespaced_service("job-61", "u-5")
    assert service.spec.cluster_ip == "None" and service.spec.publish_not_ready_addresses
    assert service.metadata.owner_references[0].name == "job-61-0"
    policy = k8s_driver.networking.read_namespaced_network_policy("group-job-61", "u-5")
    assert policy.spec.pod_selector.match_labels == {"aladdin/group": "job-61"}
    assert k8s_driver.group_address(group="job-61") == "job-61-0.job-61"

    # a start that died before it made the Service: the retry makes it
    k8s_driver.core.delete_namespaced_service("job-61", "u-5")
    k8s_driver.start_workload(spec("job-61-0", group=group))
    assert k8s_driver.core.read_namespaced_service("job-61", "u-5").spec.cluster_ip == "None"


def test_no_capacity_counts_our_pending_pods_of_the_model(k8s_driver, space):
    gpu = Resources(500, 512, {"40g": 2})
    k8s_driver.start_workload(spec("job-gpu-a", resources=gpu))

    with pytest.raises(NoCapacity) as refused:
        k8s_driver.start_workload(spec("job-gpu-b", resources=Resources(500, 512, {"40g": 1})))
    assert "1 asked, 0 of 2 free" in str(refused.value)
    assert k8s_driver.health()["gpus"]["models"]["40g"] == {"total": 2, "free": 0}


def test_the_kept_log_outlives_the_pod_even_deleted_behind_our_back(k8s_driver, space):
    command = ["sh", "-c", "printf 'kept\\nlines\\n'"]
    k8s_driver.start_workload(spec("job-kept", command=command))
    assert wait_for(k8s_driver, "job-kept", {Phase.SUCCEEDED}).exit_code == 0
    k8s_driver.core.delete_namespaced_pod("job-kept", "u-5", grace_period_seconds=0)
    wait_for(k8s_driver, "job-kept", {Phase.MISSING})

    assert b"".join(k8s_driver.follow_logs(name="job-kept", offset=5)) == b"lines\n"
    k8s_driver.delete_logs(name="job-kept")
    assert b"".join(k8s_driver.follow_logs(name="job-kept")) == b""
    assert not k8s_driver.core.list_namespaced_config_map(
        "u-5", label_selector="aladdin/owner=job-kept"
    ).items


def test_an_oom_kill_and_a_pull_error_are_reasons():
    def pod(state: dict, phase: str) -> dict:
        return {
            "metadata": {"name": "job-1", "labels": {LABEL_USER: "3", LABEL_KIND: "job"}},
            "spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": "2Gi"}}}]},
            "status": {"phase": phase, "containerStatuses": [{"name": "main", "state": state}]},
        }

    oom = pod_status(pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "Failed"))
    pull = pod_status(
        pod({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}, "Pending")
    )
    signalled = pod_status(pod({"terminated": {"exitCode": 143, "reason": "Error"}}, "Failed"))

    assert (oom.phase, oom.exit_code, oom.reason_id) == (Phase.FAILED, 137, "workload.oom")
    assert oom.reason_params == {"limit_mib": 2048} and oom.user_id == 3
    assert (pull.phase, pull.reason_id) == (Phase.FAILED, "workload.not_started")
    assert "ImagePullBackOff: not found" in pull.reason
    assert (signalled.reason_id, signalled.reason_params) == (
        "workload.signal",
        {"signal": "SIGTERM"},
    )


def test_metrics_are_one_sample_or_none(k8s_driver, space):
    k8s_driver.start_workload(spec("job-metrics"))
    wait_for(k8s_driver, "job-metrics", {Phase.RUNNING})

    metrics = k8s_driver.workload_metrics(name="job-metrics")

    (sample,) = metrics.samples
    assert metrics.available and not metrics.gpu_metrics
    assert sample.memory_bytes > 0 and sample.cpu_percent >= 0 and sample.period_seconds > 0
    later = k8s_driver.workload_metrics(name="job-metrics", since=sample.at)
    assert later.available and later.samples == []


def test_no_metrics_server_is_no_metrics_not_an_error(k8s_driver, space, monkeypatch):
    k8s_driver.start_workload(spec("job-nometrics"))
    wait_for(k8s_driver, "job-nometrics", {Phase.RUNNING})

    def unavailable(*args, **kwargs):
        raise kubernetes.client.exceptions.ApiException(status=503, reason="ServiceUnavailable")

    monkeypatch.setattr(k8s_driver.custom, "get_namespaced_custom_object", unavailable)
    metrics = k8s_driver.workload_metrics(name="job-nometrics")
    assert (metrics.name, metrics.available, metrics.samples) == ("job-nometrics", False, [])


def test_images_are_ready_the_registry_has_them(k8s_driver):
    recipe = ImageRecipe("python:3.11", python="3.11")
    assert k8s_driver.image_status(recipe).state == "ready"
    assert k8s_driver.build_image(recipe).usable


def test_capabilities_and_health_of_an_unreachable_api_server():
    configuration = kubernetes.client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # nothing listens
    configuration.retries = 0
    driver = KubernetesDriver(kubernetes.client.ApiClient(configuration))

    assert not driver.capabilities().known
    health = driver.health()
    assert health["ok"] is False and health["error"]


def test_the_setting_chooses_the_kubernetes_backend(settings, stub, tmp_path, monkeypatch):
    path = stub.write_kubeconfig(tmp_path / "kubeconfig")
    settings.CLUSTER_DRIVER = "kubernetes"
    settings.KUBERNETES_KUBECONFIG = str(path)
    cluster._driver_for.cache_clear()
    try:
        driver = cluster.get_driver()
        assert isinstance(driver, KubernetesDriver)
        assert driver.capabilities().isolation == "pod"
    finally:
        cluster._driver_for.cache_clear()


def test_a_spec_with_a_debugger_and_no_tools_image_is_refused(k8s_driver, space):
    with pytest.raises(DriverError) as refused:
        k8s_driver.start_workload(replace(spec("job-debug"), debugger=True))
    assert refused.value.code == "no_debugger"


def test_files_are_sftp_over_the_volume_in_the_files_pod(k8s_driver, space):
    k8s_driver._files_run("u-5", ["sh", "-c", "mkdir -p /root/proj && echo hi > /root/proj/a.txt"])

    with SftpClient(k8s_driver.open_files(user_id=5)) as sftp:
        names = {entry.name for entry in sftp.listdir("/root/proj")}
        assert sftp.realpath(".") == "/root"
    assert names == {"a.txt"}


def test_usage_is_measured_with_du_where_the_kubelets_stats_are_forbidden(
    k8s_driver, space, monkeypatch
):
    def forbidden(node):
        raise DriverError("nodes/proxy is forbidden", permanent=True)

    k8s_driver._files_run("u-5", ["sh", "-c", "head -c 300000 /dev/zero > /root/blob"])
    monkeypatch.setattr(k8s_driver, "_summary", forbidden)

    assert k8s_driver.storage_usage_bytes(user_id=5) >= 300000


def test_a_port_in_the_pod_is_reached_through_port_forward(k8s_driver, space):
    server = (
        "import socket; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('127.0.0.1', 18765)); s.listen(); c, _ = s.accept(); "
        "c.sendall(b'hello ' + c.recv(100)); c.close()"
    )
    k8s_driver.start_workload(spec("ws-port", kind="workshop", command=["python3", "-c", server]))
    wait_for(k8s_driver, "ws-port", {Phase.RUNNING})

    deadline = time.monotonic() + 10
    while True:
        try:
            stream = k8s_driver.connect_port(name="ws-port", port=18765)
            stream.write(b"port")
            got = b""
            while chunk := stream.read():
                got += chunk
            break
        except DriverError as exc:  # the server not listening yet
            assert exc.code == "connection_refused" and time.monotonic() < deadline
            time.sleep(0.1)
    stream.close()
    assert got == b"hello port"

    with pytest.raises(DriverError) as refused:
        k8s_driver.connect_port(name="ws-none", port=18765)
    assert refused.value.code == "not_running"


def test_a_debug_job_gets_the_platforms_debugpy_read_only(stub, space, tmp_path):
    tools = tmp_path / "debugpy"
    (tools / "debugpy").mkdir(parents=True)
    (tools / "debugpy" / "__main__.py").write_text("print('the platform debugpy')\n")
    tools.chmod(0o755)
    tmp_path.chmod(0o755)
    driver = KubernetesDriver(
        kubernetes.client.ApiClient(stub.configuration()),
        watch=False,
        tools_image="registry.example.edu/aladdin/portal:1",
        debugpy_dir=str(tools),
    )
    command = [
        "sh",
        "-c",
        "cat /opt/aladdin/debugpy/debugpy/__main__.py; touch /opt/aladdin/debugpy/x",
    ]
    driver.start_workload(replace(spec("job-debugpy", command=command), debugger=True))

    ended = wait_for(driver, "job-debugpy", {Phase.SUCCEEDED, Phase.FAILED})
    output = b"".join(driver.follow_logs(name="job-debugpy"))
    assert b"print('the platform debugpy')" in output
    assert ended.phase == Phase.FAILED  # the copy is read-only in the job
