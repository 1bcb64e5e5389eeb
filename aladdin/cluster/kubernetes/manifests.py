"""Every object the Kubernetes backend creates, as plain dicts (the API's JSON), built from specs.

The driver sends exactly these; :func:`examples` builds one of each from
sample specs, so ``deploy/kubernetes``'s checks and ``test_manifests`` validate
what the driver sends (``kubernetes-validate --strict``, Kubernetes 1.34).

Per user, in the namespace ``<prefix><user id>`` (labelled ``aladdin/user``,
managed by aladdin, Pod Security "baseline" enforced):

- ``ResourceQuota`` ``compute``: ``limits.cpu`` and ``limits.memory`` of the
  plan, ``requests.nvidia.com/gpu`` when the plan counts cards;
- ``LimitRange`` ``defaults``: a container that names no limits gets small
  ones (none goes unlimited, which the quota would refuse anyway), and no
  container may ask for more than the quota;
- ``NetworkPolicy`` ``isolation``: ingress only from the portal's SSH
  gateway and port proxy; egress to the cluster's DNS pods and to the
  internet without the blocked ranges (private, CGNAT, metadata);
- ``PersistentVolumeClaim`` ``home``: ``/root`` of every pod, sized to the
  storage allowance;
- the workloads' pods (one container ``main``), a headless ``Service`` and a
  ``NetworkPolicy`` opening its workers to each other per Run Task group, the ``files`` pod (SFTP, kept logs, usage), and a
  ``ConfigMap`` ``log-<name>`` per workload: where its kept log lives once
  the pod is gone (see :mod:`aladdin.cluster.kubernetes.driver`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import debugger
from ..base import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_USER,
    DriverError,
    Resources,
    WorkerGroup,
    WorkloadSpec,
)
from . import quantity

GPU_RESOURCE = "nvidia.com/gpu"
LABEL_GROUP = "aladdin/group"
LABEL_WORKER = "aladdin/worker"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "aladdin"
KIND_FILES = "files"
KIND_LOG = "log"
CONTAINER = "main"
FILES_POD = "files"
HOME_PVC = "home"
QUOTA = "compute"
LIMIT_RANGE = "defaults"
NETWORK_POLICY = "isolation"
POD_SECURITY_VERSION = "v1.34"
LOG_DIR = "/root/.aladdin/logs"
# The files pod is small: SFTP, tail and du need little.
FILES_RESOURCES = Resources(cpu_millicores=250, memory_mib=256)
# What a container that names no limits gets (the LimitRange's default).
DEFAULT_CONTAINER = Resources(cpu_millicores=500, memory_mib=512)
# Portal components allowed into user pods (SSH sessions, forwarded ports).
INGRESS_COMPONENTS = ("ssh-gateway", "port-proxy")

# The platform's entrypoint (POSIX sh): the main process's stdout and stderr,
# one stream, go to the container's stdout (the pod log, while the pod exists)
# and to /root/.aladdin/logs/<name>.log (what stays once it is gone), the
# file capped at ALADDIN_LOG_MAX_BYTES with a one-line note, as the local
# agent keeps it. SIGTERM (the pod's stop) goes to the process; the exit code
# is the process's. A file that cannot be written (a full volume) costs the
# kept copy only: the copier drains the stream whatever happens, so the pod
# log and the process never block on it. Once the process has exited, what
# its leftover children still hold open gets 3 s to drain (the container
# ends with its first process, as the local sandbox does).
ENTRYPOINT = r"""
log_dir=/root/.aladdin/logs
log="$log_dir/$ALADDIN_WORKLOAD.log"
cap="${ALADDIN_LOG_MAX_BYTES:-268435456}"
mkdir -p "$log_dir" 2>/dev/null
tmp=
for dir in /dev/shm "${TMPDIR:-/tmp}" "$log_dir"; do
  if { mkdir -p "$dir/.aladdin-entrypoint.$$" &&
    mkfifo "$dir/.aladdin-entrypoint.$$/out" "$dir/.aladdin-entrypoint.$$/keep"; } 2>/dev/null
  then
    tmp="$dir/.aladdin-entrypoint.$$"
    break
  fi
done
if [ -z "$tmp" ]; then
  echo "[aladdin: no kept copy of this output: no directory for a pipe]" >&2
  exec "$@"
fi
{
  { head -c "$cap" >"$log"; } 2>/dev/null
  if [ "$(head -c 1 | wc -c)" -gt 0 ]; then
    printf '\n[aladdin: output beyond %s MiB was dropped; the job runs on]\n' \
      "$((cap / 1048576))" >>"$log" 2>/dev/null
  fi
  cat >/dev/null
} <"$tmp/keep" &
keeper=$!
tee "$tmp/keep" <"$tmp/out" &
copier=$!
"$@" >"$tmp/out" 2>&1 </dev/null &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
wait "$child"
code=$?
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  code=$?
done
( sleep 3; kill "$copier" ) >/dev/null 2>&1 &
timer=$!
wait "$copier" 2>/dev/null
wait "$keeper"
kill "$timer" 2>/dev/null
rm -rf "$tmp"
exit "$code"
""".strip()

# The files pod's command: nothing but waiting (exec sessions do the work).
FILES_COMMAND = ["/bin/sh", "-c", 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done']


@dataclass(frozen=True)
class Config:
    """The settings the manifests depend on (aladdin/settings.py, "cluster")."""

    namespace_prefix: str = "u-"
    portal_namespace: str = "aladdin"
    storage_class: str = ""
    # ReadWriteMany: a user's pods (a workshop, jobs on GPU nodes of two
    # models, the workers of a task) mount one /root from several nodes.
    volume_access_mode: str = "ReadWriteMany"
    image_registry: str = "registry.example.edu/aladdin"
    gpu_node_labels: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "40g": {"aladdin.io/gpu-model": "40g"},
            "80g": {"aladdin.io/gpu-model": "80g"},
        }
    )
    files_image: str = "registry.example.edu/aladdin/files:1"
    blocked_cidrs: tuple[str, ...] = (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
    dns_selector: dict[str, Any] = field(
        default_factory=lambda: {"namespace": "kube-system", "pods": {"k8s-app": "kube-dns"}}
    )
    log_max_mib: int = 256
    # The image whose DEBUGPY_DIR an init container copies for GPU Debug
    # jobs ("" = none: a debug spec is refused, code no_debugger).
    tools_image: str = ""
    debugpy_dir: str = "/opt/aladdin/tools/debugpy"
    # The Prometheus that scrapes cAdvisor and the DCGM exporter ("" = none:
    # the metrics API's one sample of CPU and memory, no GPU metrics).
    prometheus_url: str = ""

    @classmethod
    def from_settings(cls, **overrides: Any) -> Config:
        from django.conf import settings

        values = {
            "namespace_prefix": settings.KUBERNETES_NAMESPACE_PREFIX,
            "portal_namespace": settings.KUBERNETES_PORTAL_NAMESPACE,
            "storage_class": settings.KUBERNETES_STORAGE_CLASS,
            "volume_access_mode": settings.KUBERNETES_VOLUME_ACCESS_MODE,
            "image_registry": settings.KUBERNETES_IMAGE_REGISTRY,
            "gpu_node_labels": dict(settings.KUBERNETES_GPU_NODE_LABELS),
            "files_image": settings.KUBERNETES_FILES_IMAGE,
            "blocked_cidrs": tuple(settings.KUBERNETES_BLOCKED_CIDRS),
            "dns_selector": dict(settings.KUBERNETES_DNS_SELECTOR),
            "log_max_mib": int(settings.LOCAL_LOG_MAX_MIB),
            "tools_image": settings.KUBERNETES_TOOLS_IMAGE,
            "debugpy_dir": str(settings.DEBUGPY_DIR),
            "prometheus_url": settings.KUBERNETES_PROMETHEUS_URL,
        }
        values.update(overrides)
        return cls(**values)

    def namespace(self, user_id: int) -> str:
        return f"{self.namespace_prefix}{int(user_id)}"

    def image(self, ref: str) -> str:
        """A catalog reference ("torch:2.5.1-cu124") as the registry's image."""
        return f"{self.image_registry}/{ref}" if self.image_registry else ref


def _meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {LABEL_MANAGED_BY: MANAGED_BY, **(labels or {})},
    }
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace(cfg: Config, user_id: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(
            cfg.namespace(user_id),
            labels={
                LABEL_USER: str(int(user_id)),
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/enforce-version": POD_SECURITY_VERSION,
                "pod-security.kubernetes.io/warn": "baseline",
                "pod-security.kubernetes.io/warn-version": POD_SECURITY_VERSION,
            },
        ),
    }


def gpu_count(resources: Resources) -> int:
    return sum(n for n in resources.gpus.values() if n > 0)


def resource_quota(cfg: Config, user_id: int, quota: Resources) -> dict:
    """The plan's quota, plus the files pod's share. Cards only when the plan counts them.

    The files pod (SFTP, kept logs) is the platform's, not a workload of the
    student's: its share is added so that a plan of 2 CPU still runs a 2 CPU
    workshop beside it (the driver takes it out of a refusal's numbers).
    The portal's own admission weighs 40G against 80G cards, which a
    ResourceQuota cannot; an empty ``gpus`` leaves the card count to it (0
    would forbid every GPU pod).
    """
    hard = {
        "limits.cpu": quantity.cpu(quota.cpu_millicores + FILES_RESOURCES.cpu_millicores),
        "limits.memory": quantity.memory(quota.memory_mib + FILES_RESOURCES.memory_mib),
    }
    if quota.gpus:
        hard[f"requests.{GPU_RESOURCE}"] = str(gpu_count(quota))
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(QUOTA, cfg.namespace(user_id), {LABEL_USER: str(int(user_id))}),
        "spec": {"hard": hard},
    }


def limit_range(cfg: Config, user_id: int, quota: Resources | None) -> dict:
    """Defaults so that no container goes unlimited; the quota as each container's maximum."""
    default = {
        "cpu": quantity.cpu(DEFAULT_CONTAINER.cpu_millicores),
        "memory": quantity.memory(DEFAULT_CONTAINER.memory_mib),
    }
    limit: dict[str, Any] = {"type": "Container", "default": default, "defaultRequest": default}
    if quota is not None:
        limit["max"] = {
            "cpu": quantity.cpu(max(quota.cpu_millicores, DEFAULT_CONTAINER.cpu_millicores)),
            "memory": quantity.memory(max(quota.memory_mib, DEFAULT_CONTAINER.memory_mib)),
        }
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(LIMIT_RANGE, cfg.namespace(user_id), {LABEL_USER: str(int(user_id))}),
        "spec": {"limits": [limit]},
    }


def network_policy(cfg: Config, user_id: int) -> dict:
    """Ingress from the SSH gateway and the port proxy only; egress to DNS and the internet."""
    portal = {"kubernetes.io/metadata.name": cfg.portal_namespace}
    dns_namespace = {
        "kubernetes.io/metadata.name": cfg.dns_selector.get("namespace", "kube-system")
    }
    v4 = [c for c in cfg.blocked_cidrs if ":" not in c]
    v6 = [c for c in cfg.blocked_cidrs if ":" in c]
    internet_v4: dict[str, Any] = {"cidr": "0.0.0.0/0"}
    if v4:
        internet_v4["except"] = v4
    internet_v6: dict[str, Any] = {"cidr": "::/0"}
    if v6:
        internet_v6["except"] = v6
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(NETWORK_POLICY, cfg.namespace(user_id), {LABEL_USER: str(int(user_id))}),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": portal},
                            "podSelector": {
                                "matchExpressions": [
                                    {
                                        "key": LABEL_COMPONENT,
                                        "operator": "In",
                                        "values": list(INGRESS_COMPONENTS),
                                    }
                                ]
                            },
                        }
                    ]
                }
            ],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {"matchLabels": dns_namespace},
                            "podSelector": {"matchLabels": dict(cfg.dns_selector.get("pods", {}))},
                        }
                    ],
                    "ports": dns_ports,
                },
                {"to": [{"ipBlock": internet_v4}, {"ipBlock": internet_v6}]},
            ],
        },
    }


def home_pvc(cfg: Config, user_id: int, storage_gib: int) -> dict:
    spec: dict[str, Any] = {
        "accessModes": [cfg.volume_access_mode],
        "resources": {"requests": {"storage": f"{max(int(storage_gib), 1)}Gi"}},
    }
    if cfg.storage_class:
        spec["storageClassName"] = cfg.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(HOME_PVC, cfg.namespace(user_id), {LABEL_USER: str(int(user_id))}),
        "spec": spec,
    }


def gpu_model(spec: WorkloadSpec) -> str:
    """The one card model ``spec`` asks for ("" for none). Raises DriverError for two models."""
    models = [model for model, n in spec.resources.gpus.items() if n > 0]
    if len(models) > 1:
        raise DriverError(
            f"{spec.name} asks for cards of {len(models)} models: a pod runs on one node",
            permanent=True,
            code="invalid",
        )
    return models[0] if models else ""


def node_selector(cfg: Config, model: str) -> dict[str, str]:
    try:
        return dict(cfg.gpu_node_labels[model])
    except KeyError:
        raise DriverError(
            f"no nodes are configured for {model} cards (ALADDIN_KUBERNETES_GPU_NODE_LABELS)",
            permanent=True,
            code="invalid",
        ) from None


def workload_labels(spec: WorkloadSpec) -> dict[str, str]:
    labels = {
        **spec.labels,
        LABEL_USER: str(int(spec.user_id)),
        LABEL_KIND: spec.kind,
        LABEL_OWNER: spec.name,
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    if spec.group is not None:
        labels[LABEL_GROUP] = spec.group.group
        labels[LABEL_WORKER] = str(spec.group.index)
    return labels


def _volumes(memory_mib: int) -> list[dict]:
    return [
        {"name": "home", "persistentVolumeClaim": {"claimName": HOME_PVC}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": quantity.memory(memory_mib)}},
    ]


def _mounts() -> list[dict]:
    return [{"name": "home", "mountPath": "/root"}, {"name": "shm", "mountPath": "/dev/shm"}]


def workload_pod(cfg: Config, spec: WorkloadSpec) -> dict:
    """The pod of one workload (a workshop, a job, one worker of a Run Task)."""
    model = gpu_model(spec)
    cards = gpu_count(spec.resources)
    amounts = {
        "cpu": quantity.cpu(spec.resources.cpu_millicores),
        "memory": quantity.memory(spec.resources.memory_mib),
    }
    if cards:
        amounts[GPU_RESOURCE] = str(cards)
    env = {
        **spec.env,
        # The entrypoint's own (after the user's: they cannot move the kept log).
        "ALADDIN_WORKLOAD": spec.name,
        "ALADDIN_LOG_MAX_BYTES": str(cfg.log_max_mib * 2**20),
    }
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": cfg.image(spec.image),
        "command": ["/bin/sh", "-c", ENTRYPOINT, "aladdin-entrypoint", *spec.command],
        "workingDir": spec.workdir or "/root",
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "volumeMounts": _mounts(),
    }
    volumes = _volumes(spec.resources.memory_mib)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        # The runtime's default seccomp filter (baseline allows none at all).
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if spec.debugger:
        if not cfg.tools_image:
            raise DriverError(
                "no debugger on this cluster: set ALADDIN_KUBERNETES_TOOLS_IMAGE to the portal's "
                "image (it holds the platform's debugpy)",
                permanent=True,
                code="no_debugger",
            )
        volumes.append({"name": "debugpy", "emptyDir": {}})
        container["volumeMounts"].append(
            {"name": "debugpy", "mountPath": debugger.MOUNT, "readOnly": True}
        )
        pod_spec["initContainers"] = [
            {
                "name": "debugpy",
                "image": cfg.tools_image,
                "command": ["cp", "-R", f"{cfg.debugpy_dir}/.", "/debugpy/"],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
                "volumeMounts": [{"name": "debugpy", "mountPath": "/debugpy"}],
            }
        ]
    if model:
        pod_spec["nodeSelector"] = node_selector(cfg, model)
        # GPU nodes are usually tainted so that nothing else lands there.
        pod_spec["tolerations"] = [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
        ]
    if spec.group is not None:
        pod_spec["hostname"] = f"{spec.group.group}-{spec.group.index}"
        pod_spec["subdomain"] = spec.group.group
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(spec.name, cfg.namespace(spec.user_id), workload_labels(spec)),
        "spec": pod_spec,
    }


def group_service(cfg: Config, user_id: int, group: WorkerGroup, owner_uid: str = "") -> dict:
    """The headless Service that gives worker pods their DNS names (``<group>-0.<group>``).

    ``owner_uid``: worker 0's pod, which owns it (the cluster deletes it with the pod).
    """
    meta = _meta(
        group.group,
        cfg.namespace(user_id),
        {LABEL_USER: str(int(user_id)), LABEL_GROUP: group.group},
    )
    if owner_uid:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": f"{group.group}-0", "uid": owner_uid}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_GROUP: group.group},
            "ports": [{"name": "rendezvous", "port": group.port, "protocol": "TCP"}],
        },
    }


def group_network_policy(
    cfg: Config, user_id: int, group: WorkerGroup, owner_uid: str = ""
) -> dict:
    """The workers of one group reach each other (rendezvous, NCCL), and nothing else more.

    The namespace's policy denies pod-to-pod traffic (ingress from the portal
    only, egress without the cluster's ranges); policies add up, so this one
    opens exactly the group's pods to each other, as the local backend's
    shared network namespace does. Owned by worker 0's pod, like the Service.
    """
    meta = _meta(
        f"group-{group.group}",
        cfg.namespace(user_id),
        {LABEL_USER: str(int(user_id)), LABEL_GROUP: group.group},
    )
    if owner_uid:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": f"{group.group}-0", "uid": owner_uid}
        ]
    members = {"podSelector": {"matchLabels": {LABEL_GROUP: group.group}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            **members,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [members]}],
            "egress": [{"to": [members]}],
        },
    }


def files_pod(cfg: Config, user_id: int) -> dict:
    """The user's small long-lived pod over the PVC: SFTP, kept logs, volume usage."""
    amounts = {
        "cpu": quantity.cpu(FILES_RESOURCES.cpu_millicores),
        "memory": quantity.memory(FILES_RESOURCES.memory_mib),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(
            FILES_POD,
            cfg.namespace(user_id),
            {LABEL_USER: str(int(user_id)), LABEL_KIND: KIND_FILES},
        ),
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            # Ended (evicted, OOM): the driver deletes it and makes a new one.
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": CONTAINER,
                    "image": cfg.files_image,
                    "command": list(FILES_COMMAND),
                    "workingDir": "/root",
                    "resources": {"requests": dict(amounts), "limits": dict(amounts)},
                    "volumeMounts": [{"name": "home", "mountPath": "/root"}],
                }
            ],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": HOME_PVC}}],
        },
    }


def log_record(cfg: Config, user_id: int, name: str) -> dict:
    """Where ``name``'s kept log is once its pod is gone: a ConfigMap in the user's namespace.

    Found by its ``aladdin/owner`` label across namespaces; removed by
    ``delete_logs``. Its data say where the file is, for an operator.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(
            f"log-{name}",
            cfg.namespace(user_id),
            {LABEL_USER: str(int(user_id)), LABEL_KIND: KIND_LOG, LABEL_OWNER: name},
        ),
        "data": {"path": f"{LOG_DIR}/{name}.log"},
    }


def user_space(cfg: Config, user_id: int, storage_gib: int, quota: Resources | None) -> list[dict]:
    """What ``ensure_user_space`` makes, in order (the namespace first)."""
    objects = [namespace(cfg, user_id)]
    if quota is not None:
        objects.append(resource_quota(cfg, user_id, quota))
    objects += [
        limit_range(cfg, user_id, quota),
        network_policy(cfg, user_id),
        home_pvc(cfg, user_id, storage_gib),
    ]
    return objects


def examples(cfg: Config | None = None) -> list[dict]:
    """One of every object the backend can create, from sample specs (for validation)."""
    cfg = cfg or Config(tools_image="registry.example.edu/aladdin/portal:1")
    quota = Resources(cpu_millicores=20_000, memory_mib=242 * 1024, gpus={"80g": 1, "40g": 2})
    workshop = WorkloadSpec(
        name="ws-1",
        user_id=7,
        kind="workshop",
        image="torch:2.5.1-cu124",
        command=["/usr/sbin/sshd", "-D"],
        env={"TZ": "UTC"},
        resources=Resources(2000, 4096),
    )
    gpu_job = WorkloadSpec(
        name="job-2",
        user_id=7,
        kind="job",
        image="torch:2.5.1-cu124",
        command=["python", "-u", "train.py"],
        env={"EPOCHS": "3"},
        resources=Resources(10_000, 121 * 1024, {"80g": 1}),
        debugger=True,
    )
    group = WorkerGroup(group="job-3", index=0, size=2)
    task_worker = WorkloadSpec(
        name="job-3-0",
        user_id=7,
        kind="job",
        image="torch:2.5.1-cu124",
        command=["torchrun", "--nnodes=2", "train.py"],
        env={},
        resources=Resources(10_000, 121 * 1024, {"40g": 2}),
        group=group,
    )
    return [
        *user_space(cfg, 7, 50, quota),
        resource_quota(cfg, 8, Resources(2000, 4096)),
        workload_pod(cfg, workshop),
        workload_pod(cfg, gpu_job),
        workload_pod(cfg, task_worker),
        group_service(cfg, 7, group, owner_uid="9b2f6c1e-3d4a-4f7b-8e21-5c6d7e8f9a0b"),
        group_network_policy(cfg, 7, group, owner_uid="9b2f6c1e-3d4a-4f7b-8e21-5c6d7e8f9a0b"),
        files_pod(cfg, 7),
        log_record(cfg, 7, "job-2"),
    ]
