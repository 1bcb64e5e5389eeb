"""What the Kubernetes backend creates: valid (strict, 1.34) and with the promised contents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest

from aladdin.cluster.base import DriverError, Resources, WorkerGroup, WorkloadSpec
from aladdin.cluster.kubernetes import manifests
from aladdin.cluster.kubernetes.manifests import Config

ROOT = Path(__file__).resolve().parents[3]
CFG = Config(storage_class="fast-expandable", tools_image="registry.example.edu/aladdin/portal:1")


def spec(**overrides) -> WorkloadSpec:
    values = {
        "name": "job-5",
        "user_id": 7,
        "kind": "job",
        "image": "torch:2.5.1-cu124",
        "command": ["python", "train.py"],
        "env": {"EPOCHS": "3"},
        "resources": Resources(4000, 16384, {"80g": 1}),
        "labels": {"aladdin/plan": "basic"},
    }
    values.update(overrides)
    return WorkloadSpec(**values)


@pytest.mark.parametrize(
    "obj", manifests.examples(), ids=lambda o: f"{o['kind']}-{o['metadata']['name']}"
)
def test_every_object_the_backend_makes_is_valid_in_strict_mode(obj):
    kubernetes_validate.validate(obj, "1.34.0", strict=True)


def test_examples_cover_every_kind_the_backend_creates():
    kinds = {o["kind"] for o in manifests.examples()}
    assert kinds == {
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Pod",
        "Service",
        "ConfigMap",
    }


def test_the_namespace_is_labelled_and_enforces_baseline():
    labels = manifests.namespace(CFG, 7)["metadata"]["labels"]
    assert manifests.namespace(CFG, 7)["metadata"]["name"] == "u-7"
    assert labels["aladdin/user"] == "7"
    assert labels["app.kubernetes.io/managed-by"] == "aladdin"
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.34"


def test_the_quota_is_the_plans_limits_and_card_count():
    plan = manifests.resource_quota(CFG, 7, Resources(20_000, 242 * 1024, {"80g": 1, "40g": 2}))
    free = manifests.resource_quota(CFG, 7, Resources(2000, 4096))

    # the plan, and the files pod's share (250m, 256Mi) on top
    assert plan["spec"]["hard"] == {
        "limits.cpu": "20250m",
        "limits.memory": f"{242 * 1024 + 256}Mi",
        "requests.nvidia.com/gpu": "3",
    }
    # no card count from the plan: the portal's admission counts cards, not the quota
    assert free["spec"]["hard"] == {"limits.cpu": "2250m", "limits.memory": "4352Mi"}


def test_the_limit_range_gives_defaults_and_a_maximum_per_container():
    limit = manifests.limit_range(CFG, 7, Resources(2000, 4096))["spec"]["limits"][0]
    assert limit["type"] == "Container"
    assert limit["default"] == limit["defaultRequest"] == {"cpu": "500m", "memory": "512Mi"}
    assert limit["max"] == {"cpu": "2", "memory": "4Gi"}
    assert "max" not in manifests.limit_range(CFG, 7, None)["spec"]["limits"][0]


def test_the_network_policy_admits_the_gateway_and_proxy_and_lets_out_dns_and_the_internet():
    policy = manifests.network_policy(CFG, 7)["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress", "Egress"]

    (ingress,) = policy["ingress"]
    (peer,) = ingress["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "aladdin"}}
    assert peer["podSelector"]["matchExpressions"] == [
        {
            "key": "app.kubernetes.io/component",
            "operator": "In",
            "values": ["ssh-gateway", "port-proxy"],
        }
    ]

    dns, internet = policy["egress"]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    v4, v6 = (peer["ipBlock"] for peer in internet["to"])
    assert v4["cidr"] == "0.0.0.0/0" and v6["cidr"] == "::/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(v4["except"])
    assert {"100.64.0.0/10"} <= set(v4["except"])
    assert set(v6["except"]) == {"fc00::/7", "fe80::/10"}


def test_the_home_claim_is_the_allowance_in_the_storage_class():
    pvc = manifests.home_pvc(CFG, 7, 50)
    assert pvc["metadata"]["name"] == "home"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pvc["spec"]["storageClassName"] == "fast-expandable"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "storageClassName" not in manifests.home_pvc(Config(), 7, 50)["spec"]


def test_a_gpu_pod_asks_for_its_cards_on_its_models_nodes_with_no_token():
    pod = manifests.workload_pod(CFG, spec())
    pod_spec = pod["spec"]
    (main,) = pod_spec["containers"]

    assert pod["metadata"]["namespace"] == "u-7"
    assert pod["metadata"]["labels"] == {
        "aladdin/plan": "basic",
        "aladdin/user": "7",
        "aladdin/kind": "job",
        "aladdin/owner": "job-5",
        "app.kubernetes.io/managed-by": "aladdin",
    }
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["enableServiceLinks"] is False
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["nodeSelector"] == {"aladdin.io/gpu-model": "80g"}
    assert pod_spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod_spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert main["name"] == "main"
    assert main["image"] == "registry.example.edu/aladdin/torch:2.5.1-cu124"
    amounts = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert main["resources"] == {"requests": amounts, "limits": amounts}
    assert main["command"][:2] == ["/bin/sh", "-c"]
    assert main["command"][3:] == ["aladdin-entrypoint", "python", "train.py"]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["EPOCHS"] == "3" and env["ALADDIN_WORKLOAD"] == "job-5"
    assert env["ALADDIN_LOG_MAX_BYTES"] == str(256 * 2**20)
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts == {"/root": "home", "/dev/shm": "shm"}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["home"]["persistentVolumeClaim"] == {"claimName": "home"}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}


def test_a_cpu_pod_has_no_cards_and_no_node_selector():
    pod = manifests.workload_pod(CFG, spec(resources=Resources(1000, 1536)))
    assert "nodeSelector" not in pod["spec"]
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1536Mi"}


def test_cards_of_two_models_or_an_unknown_model_are_refused():
    with pytest.raises(DriverError) as two:
        manifests.workload_pod(CFG, spec(resources=Resources(1000, 1024, {"80g": 1, "40g": 1})))
    with pytest.raises(DriverError) as unknown:
        manifests.workload_pod(CFG, spec(resources=Resources(1000, 1024, {"10g": 1})))
    assert (two.value.code, two.value.permanent) == ("invalid", True)
    assert (unknown.value.code, unknown.value.permanent) == ("invalid", True)


def test_a_debug_pod_gets_the_platforms_debugpy_or_is_refused_without_one():
    pod = manifests.workload_pod(CFG, spec(debugger=True))
    (init,) = pod["spec"]["initContainers"]
    assert init["image"] == CFG.tools_image
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "debugpy")
    assert mount == {"name": "debugpy", "mountPath": "/opt/aladdin/debugpy", "readOnly": True}

    with pytest.raises(DriverError) as refused:
        manifests.workload_pod(Config(), spec(debugger=True))
    assert refused.value.code == "no_debugger"


def test_a_task_worker_is_a_named_host_of_its_groups_headless_service():
    group = WorkerGroup(group="job-9", index=1, size=2)
    pod = manifests.workload_pod(CFG, spec(name="job-9-1", group=group))
    service = manifests.group_service(CFG, 7, group)

    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("job-9-1", "job-9")
    assert pod["metadata"]["labels"]["aladdin/group"] == "job-9"
    assert service["metadata"]["name"] == "job-9"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"aladdin/group": "job-9"}


def test_a_groups_workers_and_only_they_reach_each_other():
    group = WorkerGroup(group="job-9", index=0, size=2)
    policy = manifests.group_network_policy(CFG, 7, group, owner_uid="u-1")
    members = {"podSelector": {"matchLabels": {"aladdin/group": "job-9"}}}

    assert policy["spec"]["podSelector"] == members["podSelector"]
    assert policy["spec"]["ingress"] == [{"from": [members]}]
    assert policy["spec"]["egress"] == [{"to": [members]}]
    assert policy["metadata"]["ownerReferences"][0]["name"] == "job-9-0"


def test_the_files_pod_mounts_the_home_claim_in_the_files_image():
    pod = manifests.files_pod(CFG, 7)
    (main,) = pod["spec"]["containers"]
    assert pod["metadata"]["name"] == "files" and main["image"] == CFG.files_image
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert main["volumeMounts"] == [{"name": "home", "mountPath": "/root"}]
    assert main["resources"]["limits"] == {"cpu": "250m", "memory": "256Mi"}


def test_the_settings_make_the_config(settings):
    settings.KUBERNETES_NAMESPACE_PREFIX = "lab-"
    settings.KUBERNETES_IMAGE_REGISTRY = "reg.lab/x"
    cfg = Config.from_settings(files_image="reg.lab/files:2")
    assert cfg.namespace(3) == "lab-3" and cfg.image("python:3.11") == "reg.lab/x/python:3.11"
    assert cfg.files_image == "reg.lab/files:2"
    assert cfg.gpu_node_labels["80g"] == {"aladdin.io/gpu-model": "80g"}
    assert "169.254.0.0/16" in cfg.blocked_cidrs


def test_pods_are_denied_by_default_what_local_sandboxes_are_denied():
    # One egress policy on both backends (SPEC §9): the same ranges are never reachable.
    from django.conf import settings as django_settings

    from aladdin.cluster.egress import DENY_V4, DENY_V6

    assert set(django_settings.KUBERNETES_BLOCKED_CIDRS) == set(DENY_V4 + DENY_V6)


# --- the entrypoint, run by the local shell -------------------------------------------


def entrypoint(tmp_path, command, *, cap=1000, signal_after=None):
    home = tmp_path / "home"
    script = manifests.ENTRYPOINT.replace("/root/.aladdin", f"{home}/.aladdin")
    env = dict(os.environ, ALADDIN_WORKLOAD="job-5", ALADDIN_LOG_MAX_BYTES=str(cap))
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script, "aladdin-entrypoint", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    if signal_after is not None:
        time.sleep(signal_after)
        proc.send_signal(signal.SIGTERM)
    out, _err = proc.communicate(timeout=20)
    kept = (home / ".aladdin" / "logs" / "job-5.log").read_bytes()
    return proc.returncode, out, kept


def test_the_entrypoint_tees_stdout_and_stderr_and_exits_with_the_code(tmp_path):
    code, out, kept = entrypoint(tmp_path, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (code, out, kept) == (3, b"out\nerr\n", b"out\nerr\n")


def test_the_entrypoint_caps_the_kept_copy_with_a_note_not_the_stream(tmp_path):
    code, out, kept = entrypoint(
        tmp_path, ["sh", "-c", "head -c 3000 /dev/zero | tr '\\0' a"], cap=100
    )
    assert code == 0 and out == b"a" * 3000
    assert kept.startswith(b"a" * 100 + b"\n[aladdin: output beyond")
    assert kept.endswith(b"MiB was dropped; the job runs on]\n") and kept.count(b"\n") == 2


def test_the_entrypoint_forwards_sigterm_to_the_process(tmp_path):
    script = "trap 'echo stopping; exit 7' TERM; echo up; while :; do sleep 0.1; done"
    code, out, kept = entrypoint(tmp_path, ["sh", "-c", script], signal_after=0.5)
    assert (code, out, kept) == (7, b"up\nstopping\n", b"up\nstopping\n")


# --- the settings ------------------------------------------------------------------


def load_settings(**env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY"}}
    base.update({"DEBUG": "1", **env})
    return subprocess.run(
        [sys.executable, "-c", "import aladdin.settings as s; print(s.LOCAL_DISK_RESERVE_MIB)"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALADDIN_KUBERNETES_GPU_NODE_LABELS": "{80g"}, "GPU_NODE_LABELS is not JSON"),
        ({"ALADDIN_KUBERNETES_GPU_NODE_LABELS": '{"80g": 1}'}, "must map each card model"),
        ({"ALADDIN_KUBERNETES_BLOCKED_CIDRS": "10.0.0.0/33"}, "BLOCKED_CIDRS"),
        ({"ALADDIN_KUBERNETES_DNS_SELECTOR": '{"namespace": "x"}'}, "DNS_SELECTOR must be"),
    ],
)
def test_bad_kubernetes_settings_fail_at_start_with_the_variable_named(env, message):
    result = load_settings(**env)
    assert result.returncode != 0 and message in result.stderr


def test_the_disk_guard_is_off_by_default_on_kubernetes_only():
    assert load_settings(CLUSTER_DRIVER="kubernetes").stdout.strip() == "0"
    assert load_settings(CLUSTER_DRIVER="local").stdout.strip() == "10240"
    kept = load_settings(CLUSTER_DRIVER="kubernetes", ALADDIN_LOCAL_DISK_RESERVE_MIB="512")
    assert kept.stdout.strip() == "512"
