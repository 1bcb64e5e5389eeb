"""Kubernetes backend: each workload a pod in its user's namespace (SPEC §9, issue 19).

The official ``kubernetes`` client talks to the API server; every object is
built by :mod:`.manifests` (so what is validated is what is sent), every
refusal is translated by :mod:`.errors`, and exec, terminals and port
forwards go through :mod:`.streams` (the websocket channel protocols).
Objects are read as the API's JSON (``_preload_content=False``), not as the
client's model classes: the manifests speak the same camelCase dicts, and a
pod list decodes several times faster.

Decisions, and why:

- **Pods are read from a watch cache** (:mod:`.watch`, one informer per
  process, started on the first read; ``KUBERNETES_WATCH``): the reconcilers
  list every workload every few seconds from memory, not from the API
  server (the module docstring of :mod:`aladdin.cluster.base`:
  level-triggered, never a poll per object). The cache may be a moment
  behind: a pod it does not have is asked for by name (a pod just made),
  a start reads the API, and a stop waits until the cache has seen the
  pod go. Beat's own informer wakes the reconcilers when a pod changes
  (:mod:`.feed`).
- **Idempotence.** A create answered 409 finds the pod: ours (its
  ``aladdin/owner`` label is the name) is success, anything else a
  permanent refusal. A delete answered 404 is done.
- **Run Task workers are bare pods**, each with ``hostname: <group>-<i>``
  and ``subdomain: <group>`` under a headless Service ``<group>``
  (``publishNotReadyAddresses``, so worker 0's name resolves before it is
  ready), not an Indexed Job: the contract starts each worker as a workload
  of its own, with its own command (its rank), its own cards and its own
  metering window, and stops or reports each on its own; a Job's pods share
  one template and one lifecycle. Kubeflow's PyTorchJob makes bare pods for
  the same reason. A Job would also hide a quota refusal in FailedCreate
  events: the quota is checked for all workers before worker 0 is made.
- **Logs once a pod is gone** (docs/architecture.md): the platform's
  entrypoint writes the output to ``/root/.aladdin/logs/<name>.log`` too;
  :meth:`KubernetesDriver.follow_logs` follows the pod log while the pod
  exists and reads that file through the user's files pod after. What says
  in which namespace a gone pod's file is: a small ConfigMap ``log-<name>``
  labelled ``aladdin/owner=<name>`` in the user's namespace, made before the
  pod and removed by ``delete_logs``: found by label across namespaces, it
  survives the pod, the portal's restarts and an eviction alike, and goes
  with the namespace.
- **The files pod** (``files``, one per user, made on demand): SFTP,
  reading and removing kept logs, and a pod that mounts the PVC when no
  workload runs, for the kubelet's volume stats.
- **Capacity** is checked before a GPU pod is made (the scheduler would
  leave it Pending without a word the portal can show): the model's
  nodes' allocatable cards minus the cards of the non-terminal pods bound
  to them and of our own pending pods of that model.
- **Images**: the operator builds the catalog's container images from the
  same recipes and pushes them to ``KUBERNETES_IMAGE_REGISTRY``; the node
  pulls one at start. :meth:`KubernetesDriver.image_status` is therefore
  ``ready`` for every recipe (a missing image fails the start, with the
  pull error as its reason).
- **Disk**: every ``/root`` is a PVC with its own size (a hard cap the
  storage class enforces), so no one user fills a shared disk and the
  portal's disk guard is off by default on Kubernetes
  (``LOCAL_DISK_RESERVE_MIB`` defaults to 0 there). :meth:`disk_free`
  answers the nodes' filesystems from the kubelets' summaries, for
  ``/metrics``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .. import reasons
from ..base import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_USER,
    Capabilities,
    ClusterDriver,
    DiskSpace,
    DriverError,
    ExecSession,
    MetricSample,
    NoCapacity,
    Phase,
    PortStream,
    QuotaExceeded,
    Resources,
    Terminal,
    WorkloadMetrics,
    WorkloadSpec,
    WorkloadStatus,
    check_port,
)
from ..images import BuildState, ImageRecipe, ImageState
from . import manifests, quantity
from .errors import GPU_RESOURCE, driver_error
from .manifests import Config
from .watch import PodInformer

log = logging.getLogger(__name__)

# Seconds one API request may take (connect, read); a follow has no read timeout.
REQUEST_TIMEOUT = (5, 30)
# How long a stop waits past the grace for the pod to be gone.
STOP_MARGIN_SECONDS = 10
# How long the files pod may take to start (an image pull on a fresh node).
FILES_START_SECONDS = 120
# How often a waiting loop looks again.
POLL_SECONDS = 0.05
ENDED_PHASES = ("Succeeded", "Failed")
# A pod's name is also its aladdin/owner label's value: a DNS label.
# The portal's workload pods: what list_workloads returns and the watch cache holds.
WORKLOAD_SELECTOR = f"{LABEL_KIND} in (workshop,job)"
# The first list of a process's watch cache; past it, reads go to the API this time.
CACHE_SYNC_SECONDS = 10
# After a delete the API says is done, how long the cache may take to see it.
CACHE_CATCH_UP_SECONDS = 2
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The login shell, bash where the image has it (SPEC §5: the workshop's shell).
LOGIN_SHELL = [
    "/bin/sh",
    "-c",
    "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l",
]
# Container states that end a start: the image cannot be had, the container not made.
_START_FAILURES = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
_DEFAULT_SFTP_SERVER = "/usr/lib/openssh/sftp-server"
# The LimitRanger's refusal of a container over the maximum.
_PER_CONTAINER_MAX = "usage per Container is"


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _labels(obj: dict) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _gpus(pod: dict) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        if GPU_RESOURCE in limits:
            total += quantity.count(limits[GPU_RESOURCE])
    return total


def _memory_mib(pod: dict) -> int:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == manifests.CONTAINER:
            limits = (container.get("resources") or {}).get("limits") or {}
            if "memory" in limits:
                return quantity.mebibytes(limits["memory"])
    return 0


def _main_state(pod: dict) -> dict:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == manifests.CONTAINER:
            return status
    return {}


def pod_status(pod: dict) -> WorkloadStatus:
    """What a pod says, as every backend reports it (phase, exit, reason, times, labels)."""
    meta = pod.get("metadata") or {}
    labels = _labels(pod)
    status = pod.get("status") or {}
    api_phase = status.get("phase") or "Pending"
    container = _main_state(pod)
    state = container.get("state") or {}
    terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
    running = state.get("running") or {}
    waiting = state.get("waiting") or {}
    phase = {
        "Pending": Phase.PENDING,
        "Running": Phase.RUNNING,
        "Succeeded": Phase.SUCCEEDED,
        "Failed": Phase.FAILED,
    }.get(api_phase, Phase.RUNNING)  # Unknown: its node stopped reporting; it ran
    exit_code: int | None = None
    reason: reasons.EndReason | None = None
    if terminated:
        exit_code = int(terminated.get("exitCode", 0))
        if terminated.get("reason") == "OOMKilled":
            reason = reasons.out_of_memory(_memory_mib(pod))
        elif exit_code != 0:
            reason = reasons.exited(exit_code)
    if phase == Phase.PENDING and waiting.get("reason") in _START_FAILURES:
        phase = Phase.FAILED
        detail = f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
        reason = reasons.could_not_start(detail)
    elif phase == Phase.PENDING:
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("reason") == "Unschedulable"
            ):
                # Still pending (the scheduler tries again); the reason says why it waits.
                reason = reasons.could_not_start(condition.get("message") or "Unschedulable")
    if phase == Phase.FAILED and reason is None:
        detail = status.get("message") or status.get("reason") or "the pod failed"
        reason = reasons.EndReason("", {}, f"{status.get('reason', 'Failed')}: {detail}")
    started = _parse_time(
        running.get("startedAt") or (terminated or {}).get("startedAt") or status.get("startTime")
    )
    finished = _parse_time((terminated or {}).get("finishedAt"))
    if phase in (Phase.SUCCEEDED, Phase.FAILED) and finished is None:
        finished = _parse_time(meta.get("deletionTimestamp")) or datetime.now(UTC)
    user = labels.get(LABEL_USER, "")
    return WorkloadStatus(
        name=meta.get("name", ""),
        phase=phase,
        user_id=int(user) if user.isdigit() else None,
        kind=labels.get(LABEL_KIND, ""),
        exit_code=exit_code,
        reason=reason.text if reason else "",
        started_at=started,
        finished_at=finished,
        labels={k: v for k, v in labels.items() if k != manifests.LABEL_MANAGED_BY},
        reason_id=reason.id if reason else "",
        reason_params=dict(reason.params) if reason else {},
        group=labels.get(manifests.LABEL_GROUP, ""),
    )


def _quota_resources(values: dict, model: str) -> Resources:
    """A ResourceQuota's ``hard`` or ``used`` as Resources (cards counted as ``model``'s)."""
    gpus = quantity.count(values.get(f"requests.{GPU_RESOURCE}", 0))
    return Resources(
        quantity.millicores(values.get("limits.cpu", 0)),
        quantity.mebibytes(values.get("limits.memory", 0)),
        {model or GPU_RESOURCE: gpus} if gpus else {},
    )


def _merge_patch(current: Any, desired: Any) -> Any:
    """A JSON merge patch (RFC 7386) from ``current`` to ``desired``: gone keys set to None."""
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return desired
    patch = {key: _merge_patch(current.get(key), value) for key, value in desired.items()}
    for key in current.keys() - desired.keys():
        patch[key] = None
    return patch


def _version(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _missing(name: str) -> WorkloadStatus:
    return WorkloadStatus(name=name, phase=Phase.MISSING)


def _not_running(name: str) -> DriverError:
    return DriverError(f"{name} is not running", permanent=True, code="not_running")


class _Follow(Iterator[bytes]):
    """A workload's output from ``offset`` (see :meth:`KubernetesDriver.follow_logs`).

    :meth:`close` may be called from any thread: it shuts the open response
    or exec session down, which wakes the reader (the iterator then ends).
    """

    def __init__(self, chunks: Callable[[_Follow], Generator[bytes, None, None]]):
        self._lock = threading.Lock()
        self.closed = threading.Event()
        self._resource: Any = None
        self._chunks = chunks(self)

    def hold(self, resource: Any) -> None:
        """What :meth:`close` must shut (a response, an exec session); None to let go."""
        with self._lock:
            self._resource = resource
            closed = self.closed.is_set()
        if closed and resource is not None:
            self._shut(resource)

    @staticmethod
    def _shut(resource: Any) -> None:
        with contextlib.suppress(Exception):
            if hasattr(resource, "shutdown"):
                resource.shutdown()
            resource.close()

    def __iter__(self) -> _Follow:
        return self

    def __next__(self) -> bytes:
        if self.closed.is_set():
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            raise
        except DriverError:
            if self.closed.is_set():
                raise StopIteration from None
            raise
        except Exception as exc:
            if self.closed.is_set():
                raise StopIteration from None
            raise DriverError(f"the log stream broke: {exc!r}") from exc
        if self.closed.is_set():
            raise StopIteration
        return chunk

    def close(self) -> None:
        with self._lock:
            self.closed.set()
            resource = self._resource
        if resource is not None:
            self._shut(resource)
        # Not read by another thread now: end the generator here, so that
        # what it holds open is released at once (else the reader ends it).
        with contextlib.suppress(ValueError):
            self._chunks.close()


class KubernetesDriver(ClusterDriver):
    name = "kubernetes"

    def __init__(
        self,
        api_client: k8s.ApiClient | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        watch: bool | None = None,
        **overrides: Any,
    ):
        """``api_client``: tests pass one built from the stub's configuration.

        Otherwise ``kubeconfig`` (default ``KUBERNETES_KUBECONFIG``; "" = the
        in-cluster configuration) and its ``context``. ``watch`` (default
        ``KUBERNETES_WATCH``): read pods from a watch cache (:mod:`.watch`),
        started on the first read. ``overrides`` replace
        :class:`~.manifests.Config` fields (the settings' values).
        """
        from django.conf import settings

        self._watch = settings.KUBERNETES_WATCH if watch is None else watch
        self._informer: PodInformer | None = None
        self._informer_lock = threading.Lock()
        # The resourceVersion of this process's last pod write: a listing from
        # the cache waits for it (a process reads its own writes).
        self._written = 0
        self.config = Config.from_settings(**overrides)
        self.api_client = api_client or self._load(kubeconfig, context)
        self.core = k8s.CoreV1Api(self.api_client)
        self.networking = k8s.NetworkingV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)

    @staticmethod
    def _load(kubeconfig: str | None, context: str | None) -> k8s.ApiClient:
        from django.conf import settings
        from kubernetes import config as kube_config

        path = settings.KUBERNETES_KUBECONFIG if kubeconfig is None else kubeconfig
        ctx = (settings.KUBERNETES_CONTEXT if context is None else context) or None
        try:
            if path:
                return kube_config.new_client_from_config(config_file=path, context=ctx)
            configuration = k8s.Configuration()
            kube_config.load_incluster_config(client_configuration=configuration)
            return k8s.ApiClient(configuration)
        except (kube_config.ConfigException, OSError) as exc:
            raise DriverError(
                f"no Kubernetes configuration: {exc} (ALADDIN_KUBECONFIG; empty = in-cluster)",
                permanent=True,
            ) from exc

    # --- API helpers --------------------------------------------------------
    def _json(self, call: Callable[..., Any], *args: Any, doing: str, **kwargs: Any) -> dict:
        """``call``'s answer as the API's JSON; refusals as DriverError (errors.py)."""
        gpu_model = kwargs.pop("gpu_model", "")
        try:
            response = call(
                *args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs
            )
        except Exception as exc:
            raise driver_error(exc, doing, gpu_model=gpu_model) from exc
        try:
            data = response.data
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        try:
            return json.loads(data) if data else {}
        except ValueError as exc:
            raise DriverError(f"{doing}: the API's answer is not JSON: {exc}") from exc

    def _get(self, call: Callable[..., Any], *args: Any, doing: str, **kwargs: Any) -> dict | None:
        """The object, or None on 404."""
        try:
            return self._json(call, *args, doing=doing, **kwargs)
        except DriverError as exc:
            if exc.code == "not_found":
                return None
            raise

    def _create(
        self, call: Callable[..., Any], *args: Any, doing: str, **kwargs: Any
    ) -> dict | None:
        """The created object, or None when one of that name exists already (409)."""
        try:
            return self._json(call, *args, doing=doing, **kwargs)
        except DriverError as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiException) and cause.status == 409:
                return None
            raise

    def _delete(self, call: Callable[..., Any], *args: Any, doing: str, **kwargs: Any) -> None:
        """Deleted, or already gone (404)."""
        self._get(call, *args, doing=doing, **kwargs)

    def _namespace(self, user_id: int) -> str:
        return self.config.namespace(user_id)

    # --- pods: read from the watch cache, or the API ------------------------------
    def _cache(self) -> PodInformer | None:
        """This process's watch cache of the workload pods, once it has listed them; else None.

        Started on the first read (a process that never asks about pods
        never watches). Until its first list is in, and where watching is
        off, reads go to the API.
        """
        if not self._watch:
            return None
        with self._informer_lock:
            if self._informer is None:
                self._informer = PodInformer(
                    self.api_client, label_selector=WORKLOAD_SELECTOR
                ).start()
            informer = self._informer
        return informer if informer.wait_synced(CACHE_SYNC_SECONDS) else None

    def close(self) -> None:
        """Stop the watch (tests; a process that is done with the driver)."""
        with self._informer_lock:
            informer, self._informer = self._informer, None
        if informer is not None:
            informer.stop()

    def _find_pod(self, name: str, *, fresh: bool = False) -> dict | None:
        """The workload pod named ``name`` (by its owner label, any namespace), or None.

        From the cache when it has the pod; a miss asks the API, because a pod
        created a moment ago may not have reached the cache yet (the caller
        may have just made it, in this process or another). ``fresh``: ask
        the API in any case (a start must not take a pod another process has
        just deleted for its own).
        """
        if not _NAME_RE.match(name or ""):
            return None
        cache = None if fresh else self._cache()
        if cache is not None and (pod := cache.get(name)) is not None:
            if _labels(pod).get(LABEL_OWNER) == name:
                return pod
        pods = self._api_pods(f"{LABEL_OWNER}={name}")
        pods = [p for p in pods if (p.get("metadata") or {}).get("name") == name]
        return pods[0] if pods else None

    def _list_pods(self, label_selector: str) -> list[dict]:
        """The pods of every namespace matching ``label_selector`` (the workloads' from the cache).

        The cache has at least this process's own writes (it waits briefly
        for them, else the API answers). It may be a moment behind another
        process's: the reconcilers ask for a row's workload by name before
        ending it as missing (aladdin/workloads/reconcile.py).
        """
        cache = self._cache() if label_selector == WORKLOAD_SELECTOR else None
        if cache is not None and self._caught_up(cache):
            return cache.list()
        return self._api_pods(label_selector)

    def _wrote(self, obj: dict) -> None:
        version = _version((obj.get("metadata") or {}).get("resourceVersion"))
        if version is not None:
            self._written = max(self._written, version)

    def _caught_up(self, cache: PodInformer) -> bool:
        """Whether the cache has seen this process's last pod write (waiting up to a moment).

        resourceVersions are etcd's revision numbers as strings; the API
        calls them opaque, so one that is not a number is not waited for.
        """
        deadline = time.monotonic() + CACHE_CATCH_UP_SECONDS
        while True:
            seen = _version(cache.resource_version)
            if seen is None or seen >= self._written:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS / 5)

    def _api_pods(self, label_selector: str) -> list[dict]:
        answer = self._json(
            self.core.list_pod_for_all_namespaces,
            label_selector=label_selector,
            doing="list pods",
        )
        return list(answer.get("items") or [])

    # --- health and facts ---------------------------------------------------
    def _gpu_models(self) -> dict[str, dict[str, int]]:
        models = {}
        for model in self.config.gpu_node_labels:
            total, free = self._cards(model)
            models[model] = {"total": total, "free": free}
        return models

    def health(self) -> dict:
        result: dict[str, Any] = {"ok": False, "driver": self.name}
        try:
            self._json(self.core.list_namespace, limit=1, doing="list namespaces")
            result.update(
                ok=True,
                sandbox="pod",
                limits="pod limits",
                network="network policy",
                project_quota=True,
                gpus={"virtual": False, "models": self._gpu_models()},
            )
        except Exception as exc:  # never raises (the contract)
            result["error"] = str(exc)
        return result

    def capabilities(self) -> Capabilities:
        try:
            self._json(self.core.list_namespace, limit=1, doing="list namespaces")
        except Exception as exc:
            return Capabilities.unknown(str(exc))
        return Capabilities(
            isolation="pod",
            limits="pod limits",
            network="network policy",
            gpu_metrics=bool(self.config.prometheus_url),
            gpu_metrics_reason=""
            if self.config.prometheus_url
            else "no Prometheus with the DCGM exporter is configured "
            "(ALADDIN_KUBERNETES_PROMETHEUS_URL)",
            volume_quota=True,
            volume_quota_reason="",
        )

    # --- user space ---------------------------------------------------------
    def ensure_user_space(self, *, user_id: int, storage_gib: int, quota: Resources | None) -> None:
        """Namespace, quota, limit range, network policy and the ``home`` PVC; idempotent.

        An existing object is brought to the spec (patched); the PVC only
        grows (a claim cannot shrink). ``quota`` None: no ResourceQuota.
        """
        cfg, ns = self.config, self._namespace(user_id)
        created = self._create(
            self.core.create_namespace, manifests.namespace(cfg, user_id), doing=f"create {ns}"
        )
        if created is None:
            found = self._get(self.core.read_namespace, ns, doing=f"read {ns}")
            if found and (found.get("metadata") or {}).get("deletionTimestamp"):
                raise DriverError(
                    f"the user's space {ns} is being deleted; try again in a minute",
                    permanent=False,
                )
        if quota is not None:
            body = manifests.resource_quota(cfg, user_id, quota)
            self._ensure(
                self.core.create_namespaced_resource_quota,
                self.core.read_namespaced_resource_quota,
                self.core.patch_namespaced_resource_quota,
                manifests.QUOTA,
                ns,
                body,
            )
        else:
            self._delete(
                self.core.delete_namespaced_resource_quota,
                manifests.QUOTA,
                ns,
                doing=f"delete quota in {ns}",
            )
        self._ensure(
            self.core.create_namespaced_limit_range,
            self.core.read_namespaced_limit_range,
            self.core.patch_namespaced_limit_range,
            manifests.LIMIT_RANGE,
            ns,
            manifests.limit_range(cfg, user_id, quota),
        )
        self._ensure(
            self.networking.create_namespaced_network_policy,
            self.networking.read_namespaced_network_policy,
            self.networking.patch_namespaced_network_policy,
            manifests.NETWORK_POLICY,
            ns,
            manifests.network_policy(cfg, user_id),
        )
        pvc = manifests.home_pvc(cfg, user_id, storage_gib)
        doing = f"create the volume of {ns}"
        if self._create(self.core.create_namespaced_persistent_volume_claim, ns, pvc, doing=doing):
            return
        found = self._json(
            self.core.read_namespaced_persistent_volume_claim,
            manifests.HOME_PVC,
            ns,
            doing=f"read the volume of {ns}",
        )
        have = ((found.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
        want = pvc["spec"]["resources"]["requests"]["storage"]
        if have is None or quantity.parse(want) > quantity.parse(have):
            try:
                self._json(
                    self.core.patch_namespaced_persistent_volume_claim,
                    manifests.HOME_PVC,
                    ns,
                    {"spec": {"resources": {"requests": {"storage": want}}}},
                    doing=f"expand the volume of {ns} to {want}",
                )
            except DriverError as exc:
                if not exc.permanent:
                    raise
                # A storage class without volume expansion: the volume keeps
                # its size, the student's workloads still start; the operator
                # is told (docs/operations.md: the class must allow expansion).
                log.error("cannot expand the volume of %s to %s: %s", ns, want, exc)

    def _ensure(
        self, create: Callable, read: Callable, patch: Callable, name: str, ns: str, body: dict
    ) -> None:
        """``body`` created, or the one there brought to its spec and labels (409)."""
        kind = body["kind"]
        if self._create(create, ns, body, doing=f"create {kind} {name} in {ns}") is not None:
            return
        current = self._json(read, name, ns, doing=f"read {kind} {name} in {ns}")
        labels = body["metadata"]["labels"]
        have_labels = (current.get("metadata") or {}).get("labels") or {}
        if current.get("spec") == body["spec"] and all(
            have_labels.get(k) == v for k, v in labels.items()
        ):
            return  # as it should be: no write, no new resourceVersion
        # A merge patch: what the portal decides (spec, our labels), keys it
        # no longer sets removed (a plan that stops counting cards).
        self._json(
            patch,
            name,
            ns,
            {
                "metadata": {"labels": labels},
                "spec": _merge_patch(current.get("spec"), body["spec"]),
            },
            doing=f"update {kind} {name} in {ns}",
        )

    def delete_user_space(self, *, user_id: int) -> None:
        """Delete the namespace (everything in it goes with it, the PVC too). 404 = done."""
        ns = self._namespace(user_id)
        try:
            self._delete(self.core.delete_namespace, ns, doing=f"delete {ns}")
        except DriverError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, ApiException) and cause.status == 409):
                raise
            # 409 on a namespace: it is being deleted already (its content goes first).

    def _live_namespace(self, user_id: int) -> str | None:
        ns = self._namespace(user_id)
        return ns if self._is_live(ns) else None

    def _is_live(self, ns: str) -> bool:
        """The namespace exists and is not being deleted."""
        found = self._get(self.core.read_namespace, ns, doing=f"read {ns}")
        return found is not None and not (found.get("metadata") or {}).get("deletionTimestamp")

    def storage_usage_bytes(self, *, user_id: int) -> int:
        """The ``home`` PVC's ``usedBytes`` in the kubelet's volume stats; 0 without a space.

        From a running pod that mounts it (any workload, else the files pod,
        started for it). A real kubelet refreshes volume stats about once a
        minute: the number may lag that much. Where the kubelet has none yet,
        or the portal may not read them (``nodes/proxy`` left out of its
        RBAC), ``du`` in the files pod measures the volume instead.
        """
        ns = self._live_namespace(user_id)
        if ns is None:
            return 0
        pods = self._json(
            self.core.list_namespaced_pod,
            ns,
            field_selector="status.phase=Running",
            doing=f"list pods in {ns}",
        ).get("items", [])
        nodes = {
            p["spec"]["nodeName"]
            for p in pods
            if self._mounts_home(p) and p["spec"].get("nodeName")
        }
        if not nodes:
            nodes = {self._files_pod(ns)["spec"]["nodeName"]}
        for node in sorted(nodes):
            try:
                used = self._volume_used(node, ns)
            except DriverError as exc:
                if not exc.permanent:
                    raise
                break  # forbidden: measure it ourselves
            if used is not None:
                return used
        out, code = self._files_run(ns, ["du", "-sk", "/root"])
        try:
            return int(out.split()[0]) * 1024
        except (IndexError, ValueError):
            raise DriverError(f"cannot measure {ns}'s volume (du exited {code})") from None

    @staticmethod
    def _mounts_home(pod: dict) -> bool:
        return any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == manifests.HOME_PVC
            for v in (pod.get("spec") or {}).get("volumes") or []
        )

    def _summary(self, node: str) -> dict | None:
        """The kubelet's stats summary of ``node`` (through the API server's node proxy)."""
        # Not connect_get_node_proxy_with_path: it quotes the "/" of the
        # path as %2F, which the proxy does not take as a path separator.
        return self._get(
            self.api_client.call_api,
            "/api/v1/nodes/{name}/proxy/stats/summary",
            "GET",
            path_params={"name": node},
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            response_type=None,
            _return_http_data_only=True,
            doing=f"read {node}'s stats",
        )

    def _volume_used(self, node: str, ns: str) -> int | None:
        summary = self._summary(node) or {}
        for pod in summary.get("pods") or []:
            for volume in pod.get("volume") or []:
                ref = volume.get("pvcRef") or {}
                if (ref.get("namespace"), ref.get("name")) == (ns, manifests.HOME_PVC):
                    if volume.get("usedBytes") is not None:
                        return int(volume["usedBytes"])
        return None

    def disk_free(self) -> DiskSpace:
        """The nodes' filesystems summed, from the kubelets' summaries (for ``/metrics``).

        The users' volumes are PVCs with their own sizes (the storage class
        manages that capacity): there is no one filesystem of volumes, and
        the disk guard is off by default here (LOCAL_DISK_RESERVE_MIB 0).
        """
        nodes = self._json(self.core.list_node, doing="list nodes").get("items", [])
        total = free = 0
        for node in nodes:
            try:
                fs = ((self._summary(node["metadata"]["name"]) or {}).get("node") or {}).get("fs")
            except DriverError:
                continue
            if fs:
                total += int(fs.get("capacityBytes") or 0)
                free += int(fs.get("availableBytes") or 0)
        if total <= 0:
            raise DriverError("no node reported its filesystem (kubelet stats summary)")
        return DiskSpace(total=total, free=min(free, total))

    # --- images -------------------------------------------------------------
    def image_status(self, recipe: ImageRecipe) -> ImageState:
        """Ready: the operator builds the catalog's container images (module docstring)."""
        return ImageState(key=recipe.key(), state=BuildState.READY)

    def build_image(self, recipe: ImageRecipe) -> ImageState:
        return self.image_status(recipe)

    # --- capacity and quota -------------------------------------------------------
    def _cards(self, model: str) -> tuple[int, int]:
        """(total, free) cards of ``model``: allocatable minus what pods hold or wait for."""
        labels = self.config.gpu_node_labels.get(model)
        if not labels:
            return 0, 0
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        nodes = self._json(self.core.list_node, label_selector=selector, doing="list nodes")
        names = set()
        total = 0
        for node in nodes.get("items") or []:
            if (node.get("spec") or {}).get("unschedulable"):
                continue
            names.add(node["metadata"]["name"])
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            total += quantity.count(allocatable.get(GPU_RESOURCE, 0))
        pods = self._json(
            self.core.list_pod_for_all_namespaces,
            field_selector="status.phase!=Succeeded,status.phase!=Failed",
            doing="list pods",
        ).get("items", [])
        held = 0
        for pod in pods:
            spec = pod.get("spec") or {}
            node = spec.get("nodeName")
            if node in names:
                held += _gpus(pod)
            elif not node and _labels(pod).get(manifests.LABEL_MANAGED_BY) == manifests.MANAGED_BY:
                selector_ = spec.get("nodeSelector") or {}
                if selector_ and all(selector_.get(k) == v for k, v in labels.items()):
                    held += _gpus(pod)
        return total, max(total - held, 0)

    def _check_capacity(self, model: str, asked: int) -> None:
        total, free = self._cards(model)
        if free < asked:
            # The local agent's wording (aladdin/cluster/gpus.py).
            raise NoCapacity(
                f"no free {model.upper()} card on the cluster: {asked} asked, "
                f"{free} of {total} free; the job starts when one is released"
            )

    def _check_quota(self, spec: WorkloadSpec, ns: str, workers: int) -> None:
        """Refuse, as the API server would, what ``workers`` such pods would exceed."""
        quota = self._get(
            self.core.read_namespaced_resource_quota, manifests.QUOTA, ns, doing="read quota"
        )
        if quota is None:
            return
        hard = (
            (quota.get("status") or {}).get("hard") or (quota.get("spec") or {}).get("hard") or {}
        )
        used = (quota.get("status") or {}).get("used") or {}
        model = manifests.gpu_model(spec)
        cards = manifests.gpu_count(spec.resources)
        asks = {
            "limits.cpu": (spec.resources.cpu_millicores * workers, quantity.millicores),
            "limits.memory": (spec.resources.memory_mib * workers, quantity.mebibytes),
            f"requests.{GPU_RESOURCE}": (cards * workers, quantity.count),
        }
        over = False
        for key, (asked, unit) in asks.items():
            if key in hard and unit(used.get(key, 0)) + asked > unit(hard[key]):
                over = True
        if not over:
            return

        requested = Resources(
            spec.resources.cpu_millicores * workers,
            spec.resources.memory_mib * workers,
            {model: cards * workers} if cards else {},
        )
        raise self._as_student_sees(
            QuotaExceeded(requested, _quota_resources(used, model), _quota_resources(hard, model)),
            ns,
        )

    def _quota_refusal(self, spec: WorkloadSpec, ns: str) -> QuotaExceeded:
        """``spec`` refused for the quota, with the quota's numbers now."""
        quota = self._get(
            self.core.read_namespaced_resource_quota, manifests.QUOTA, ns, doing="read quota"
        )
        status = (quota or {}).get("status") or {}
        refusal = QuotaExceeded(
            spec.resources,
            _quota_resources(status.get("used") or {}, ""),
            _quota_resources(
                status.get("hard") or (quota or {}).get("spec", {}).get("hard") or {}, ""
            ),
        )
        return self._as_student_sees(refusal, ns)

    def _as_student_sees(self, refusal: QuotaExceeded, ns: str) -> QuotaExceeded:
        """The plan's numbers: the files pod's share taken out of the limit and the use.

        The quota holds the files pod's share on top of the plan
        (:func:`.manifests.resource_quota`); the student's plan does not.
        """
        share = manifests.FILES_RESOURCES
        files = self._get(
            self.core.read_namespaced_pod, manifests.FILES_POD, ns, doing="read the files pod"
        )
        counted = files is not None and (files.get("status") or {}).get("phase") not in ENDED_PHASES

        def less(amount: Resources, minus: bool) -> Resources:
            # A resource the message does not name (0) has nothing to take out.
            cpu, memory = amount.cpu_millicores, amount.memory_mib
            if minus and cpu:
                cpu = max(cpu - share.cpu_millicores, 0)
            if minus and memory:
                memory = max(memory - share.memory_mib, 0)
            return Resources(cpu, memory, dict(amount.gpus))

        return QuotaExceeded(
            refusal.requested,
            less(refusal.used, counted),
            less(refusal.limit, True),
            refusal.advice,
        )

    # --- workloads --------------------------------------------------------------
    def group_address(self, *, group: str) -> str:
        """Worker 0's pod DNS name under the group's headless Service."""
        return f"{group}-0.{group}"

    def start_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Make ``spec``'s pod, or return the status of ours already there (module docstring).

        A later worker of a group is refused (``not_running``) while worker 0
        is missing or has ended; a pending worker 0 is fine (its pod is
        starting, and the workers wait for the rendezvous).
        """
        if not _NAME_RE.match(spec.name):
            raise DriverError(
                f"invalid workload name {spec.name!r}", permanent=True, code="invalid"
            )
        existing = self._find_pod(spec.name, fresh=True)
        if existing is not None:
            # A retry after a start that died before its Service was made makes it now.
            self._ensure_group_service(spec, existing)
            return pod_status(existing)
        cfg, ns = self.config, self._namespace(spec.user_id)
        pod = manifests.workload_pod(cfg, spec)  # refuses a spec it cannot run
        model = manifests.gpu_model(spec)
        group = spec.group
        if group is not None and group.index > 0:
            leader = self._find_pod(f"{group.group}-0")
            if leader is None or pod_status(leader).phase not in (Phase.PENDING, Phase.RUNNING):
                raise _not_running(f"worker 0 of {group.group}")
        if group is not None and group.index == 0:
            self._check_quota(spec, ns, group.size)
        if model:
            self._check_capacity(model, manifests.gpu_count(spec.resources))
        self._create(
            self.core.create_namespaced_config_map,
            ns,
            manifests.log_record(cfg, spec.user_id, spec.name),
            doing=f"record the log of {spec.name}",
        )
        try:
            created = self._create(
                self.core.create_namespaced_pod,
                ns,
                pod,
                doing=f"create pod {spec.name}",
                gpu_model=model,
            )
        except QuotaExceeded as exc:
            raise self._as_student_sees(exc, ns) from exc
        except DriverError as exc:
            if _PER_CONTAINER_MAX in str(exc):
                # The LimitRange's maximum (the quota) refused it before the
                # quota could: the student reads the quota's message either way.
                raise self._quota_refusal(spec, ns) from exc
            raise
        if created is None:
            found = self._get(self.core.read_namespaced_pod, spec.name, ns, doing="read pod")
            if found is None or _labels(found).get(LABEL_OWNER) != spec.name:
                raise DriverError(
                    f"a pod named {spec.name} that is not the portal's exists in {ns}",
                    permanent=True,
                    code="invalid",
                )
            created = found
        self._wrote(created)
        self._ensure_group_service(spec, created)
        return pod_status(created)

    def _ensure_group_service(self, spec: WorkloadSpec, pod: dict) -> None:
        """Worker 0's headless Service and the group's network policy, owned by its pod.

        409: there already.
        """
        group = spec.group
        if group is None or group.index != 0:
            return
        meta = pod["metadata"]
        owner = meta.get("uid", "")
        self._create(
            self.core.create_namespaced_service,
            meta["namespace"],
            manifests.group_service(self.config, spec.user_id, group, owner_uid=owner),
            doing=f"create the service of {group.group}",
        )
        self._create(
            self.networking.create_namespaced_network_policy,
            meta["namespace"],
            manifests.group_network_policy(self.config, spec.user_id, group, owner_uid=owner),
            doing=f"create the network policy of {group.group}",
        )

    def _wait_gone(self, ns: str, name: str, seconds: float) -> dict | None:
        """None once the pod is gone; the pod as it still is after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            pod = self._get(self.core.read_namespaced_pod, name, ns, doing=f"read pod {name}")
            if pod is None or time.monotonic() > deadline:
                return pod
            time.sleep(POLL_SECONDS)

    def _delete_pod(self, pod: dict, grace_seconds: float) -> WorkloadStatus:
        meta = pod["metadata"]
        name, ns = meta["name"], meta["namespace"]
        grace = max(0, math.ceil(grace_seconds))
        self._delete(
            self.core.delete_namespaced_pod,
            name,
            ns,
            grace_period_seconds=grace,
            doing=f"delete pod {name}",
        )
        labels = _labels(pod)
        if labels.get(manifests.LABEL_WORKER) == "0" and labels.get(manifests.LABEL_GROUP):
            # Also owned by the pod (garbage collected); this is for a cluster without GC.
            group = labels[manifests.LABEL_GROUP]
            self._delete(
                self.core.delete_namespaced_service, group, ns, doing="delete the group's service"
            )
            self._delete(
                self.networking.delete_namespaced_network_policy,
                f"group-{group}",
                ns,
                doing="delete the group's network policy",
            )
        left = self._wait_gone(ns, name, grace + STOP_MARGIN_SECONDS)
        if left is not None:
            return pod_status(left)
        self._cache_forgets(name)
        return _missing(name)

    def _cache_forgets(self, name: str) -> None:
        """Wait (briefly) until the cache too has seen the pod go: a read right after a stop is missing."""
        cache = self._informer if self._watch else None
        deadline = time.monotonic() + CACHE_CATCH_UP_SECONDS
        while cache is not None and cache.get(name) is not None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS / 5)

    def stop_workload(self, *, name: str, grace_seconds: float = 10) -> WorkloadStatus:
        pod = self._find_pod(name)
        if pod is None:
            return _missing(name)
        return self._delete_pod(pod, grace_seconds)

    def workload_status(self, *, name: str) -> WorkloadStatus:
        pod = self._find_pod(name)
        return _missing(name) if pod is None else pod_status(pod)

    def forget_workload(self, *, name: str) -> None:
        """Delete the ended pod (its kept log stays). A running one is left alone."""
        pod = self._find_pod(name)
        if pod is None or pod_status(pod).phase not in (Phase.SUCCEEDED, Phase.FAILED):
            return
        self._delete_pod(pod, 0)

    def list_workloads(self) -> list[WorkloadStatus]:
        return [pod_status(p) for p in self._list_pods(WORKLOAD_SELECTOR)]

    # --- files pod ----------------------------------------------------------------
    def _files_pod(self, ns: str) -> dict:
        """The user's running files pod, made (or remade) first when needed."""
        deadline = time.monotonic() + FILES_START_SECONDS
        user_id = int(ns.removeprefix(self.config.namespace_prefix))
        while True:
            pod = self._get(
                self.core.read_namespaced_pod, manifests.FILES_POD, ns, doing="read the files pod"
            )
            if pod is None:
                self._create(
                    self.core.create_namespaced_pod,
                    ns,
                    manifests.files_pod(self.config, user_id),
                    doing=f"create the files pod in {ns}",
                )
            else:
                phase = (pod.get("status") or {}).get("phase")
                deleting = (pod.get("metadata") or {}).get("deletionTimestamp")
                if phase == "Running" and not deleting:
                    return pod
                if phase in ENDED_PHASES and not deleting:
                    self._delete(
                        self.core.delete_namespaced_pod,
                        manifests.FILES_POD,
                        ns,
                        grace_period_seconds=0,
                        doing="delete the ended files pod",
                    )
                waiting = (_main_state(pod).get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in _START_FAILURES:
                    raise DriverError(
                        f"the files pod cannot start: {waiting['reason']}: "
                        f"{waiting.get('message', '')}",
                        permanent=False,
                    )
            if time.monotonic() > deadline:
                raise DriverError(f"the files pod of {ns} did not start in time", permanent=False)
            time.sleep(POLL_SECONDS)

    def _files_exec(self, ns: str, argv: list[str]) -> ExecSession:
        from . import streams

        self._files_pod(ns)
        return streams.exec_session(
            self.api_client,
            namespace=ns,
            pod=manifests.FILES_POD,
            container=manifests.CONTAINER,
            argv=argv,
        )

    def _files_run(self, ns: str, argv: list[str]) -> tuple[bytes, int | None]:
        session = self._files_exec(ns, argv)
        out = b""
        try:
            session.close_stdin()
            while True:
                stream, data = session.read(timeout=60)
                if not stream:
                    return out, session.exit_code
                if stream == 1:
                    out += data
        finally:
            session.close()

    # --- logs ---------------------------------------------------------------------
    def _log_namespace(self, name: str) -> str | None:
        """Where ``name``'s kept log is (its record's namespace), or None."""
        if not _NAME_RE.match(name or ""):
            return None
        records = self._json(
            self.core.list_config_map_for_all_namespaces,
            label_selector=f"{LABEL_OWNER}={name},{LABEL_KIND}={manifests.KIND_LOG}",
            doing="list log records",
        ).get("items", [])
        for record in records:
            if record["metadata"]["name"] == f"log-{name}":
                return record["metadata"]["namespace"]
        return None

    def follow_logs(self, *, name: str, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        """The pod log while the pod exists (from ``offset``), then the kept file in /root.

        The pod log API has no byte offset: the first ``offset`` bytes are
        read and dropped. A follow of a pending pod waits for it to start.
        Known limit: a container log the kubelet rotated (10 MiB by default)
        serves only its newest file, so offsets past a rotation are off
        while the pod exists; the kept file has them right once it is gone.
        """
        offset = max(int(offset), 0)
        return _Follow(lambda handle: self._log_chunks(handle, name, offset, follow))

    def _log_chunks(
        self, handle: _Follow, name: str, offset: int, follow: bool
    ) -> Generator[bytes, None, None]:
        position = offset
        while not handle.closed.is_set():
            pod = self._find_pod(name)
            if pod is None:
                break  # gone (or never there): the kept file has the rest
            meta = pod["metadata"]
            status = pod_status(pod)
            started = bool(
                (_main_state(pod).get("state") or {}).keys() - {"waiting"}
                or (_main_state(pod).get("lastState") or {}).get("terminated")
            )
            if not started:
                if status.phase != Phase.PENDING or not follow:
                    return  # never started (nothing was written), or nothing yet
                handle.closed.wait(POLL_SECONDS)
                continue
            ended = status.phase in (Phase.SUCCEEDED, Phase.FAILED)
            try:
                response = self.core.read_namespaced_pod_log(
                    meta["name"],
                    meta["namespace"],
                    container=manifests.CONTAINER,
                    follow=follow and not ended,
                    _preload_content=False,
                    _request_timeout=(REQUEST_TIMEOUT[0], None),
                )
            except ApiException as exc:
                if exc.status in (400, 404):
                    # Gone, or not started after all: look again.
                    handle.closed.wait(POLL_SECONDS)
                    continue
                raise driver_error(exc, f"read the log of {name}") from exc
            except Exception as exc:
                raise driver_error(exc, f"read the log of {name}") from exc
            handle.hold(response)
            seen = 0
            try:
                for data in response.stream(65536, decode_content=False):
                    if not data:
                        continue
                    start, seen = seen, seen + len(data)
                    if seen <= position:
                        continue
                    chunk = data[max(position - start, 0) :]
                    position = seen
                    yield chunk
            finally:
                handle.hold(None)
                with contextlib.suppress(Exception):
                    response.release_conn()
            if ended or not follow:
                return
            # The follow ended while the pod lived: it ended too, or the
            # connection broke. The loop looks at the pod again.
        if handle.closed.is_set():
            return
        yield from self._kept_log(handle, name, position)

    def _kept_log(self, handle: _Follow, name: str, position: int) -> Iterator[bytes]:
        ns = self._log_namespace(name)
        if ns is None or not self._is_live(ns):
            return
        session = self._files_exec(
            ns, ["tail", "-c", f"+{position + 1}", f"{manifests.LOG_DIR}/{name}.log"]
        )
        handle.hold(session)
        try:
            session.close_stdin()
            while True:
                stream, data = session.read()
                if not stream:
                    return
                if stream == 1 and data:
                    yield data
        finally:
            handle.hold(None)
            session.close()

    def delete_logs(self, *, name: str) -> None:
        """Remove the kept log file and its record; refused while the pod runs.

        An ended pod still there is deleted too: its pod log is the same
        output (the kept output goes as a whole).
        """
        pod = self._find_pod(name)
        if pod is not None:
            if pod_status(pod).phase in (Phase.PENDING, Phase.RUNNING):
                raise DriverError(
                    f"{name} is running: stop it before deleting its logs", permanent=True
                )
            self._delete_pod(pod, 0)
        ns = self._log_namespace(name)
        if ns is None:
            return
        if self._is_live(ns):
            _out, code = self._files_run(ns, ["rm", "-f", f"{manifests.LOG_DIR}/{name}.log"])
            if code != 0:
                raise DriverError(f"could not remove the log of {name} (rm exited {code})")
        self._delete(
            self.core.delete_namespaced_config_map, f"log-{name}", ns, doing="delete the log record"
        )

    # --- exec, terminal, ports, files ----------------------------------------------
    def _running_pod(self, name: str) -> dict:
        pod = self._find_pod(name)
        if pod is None or pod_status(pod).phase != Phase.RUNNING:
            raise _not_running(name)
        return pod

    def exec_in_workload(
        self,
        *,
        name: str,
        command: list[str] | None = None,
        tty: bool = False,
        env: dict[str, str] | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> ExecSession:
        from . import streams

        env = dict(env or {})
        for key in env:
            if not _ENV_NAME_RE.match(key):
                raise DriverError(f"invalid variable name {key!r}", permanent=True, code="invalid")
        pod = self._running_pod(name)
        argv = list(command) if command else list(LOGIN_SHELL)
        if env:
            # Applied inside the container, by its own env(1): data, not arguments of ours.
            argv = ["env", "--", *(f"{k}={v}" for k, v in env.items()), *argv]
        return streams.exec_session(
            self.api_client,
            namespace=pod["metadata"]["namespace"],
            pod=name,
            container=manifests.CONTAINER,
            argv=argv,
            tty=bool(tty),
            rows=int(rows),
            cols=int(cols),
        )

    def open_terminal(self, *, name: str, rows: int = 24, cols: int = 80) -> Terminal:
        from . import streams

        pod = self._running_pod(name)
        return streams.terminal(
            self.api_client,
            namespace=pod["metadata"]["namespace"],
            pod=name,
            container=manifests.CONTAINER,
            argv=list(LOGIN_SHELL),
            rows=int(rows),
            cols=int(cols),
        )

    def connect_port(self, *, name: str, port: int) -> PortStream:
        from . import streams

        port = check_port(port)
        if not _NAME_RE.match(name or ""):
            raise DriverError(f"invalid workload name {name!r}", permanent=True, code="invalid")
        pod = self._running_pod(name)
        return streams.port_stream(
            self.api_client, namespace=pod["metadata"]["namespace"], pod=name, port=port
        )

    def open_files(self, *, user_id: int) -> ExecSession:
        """``sftp-server`` in the user's files pod, over the PVC at /root."""
        from django.conf import settings

        ns = self._live_namespace(user_id)
        if ns is None:
            # The volume made as small as it can be; the portal's next
            # ensure_user_space sizes it to the allowance and sets the quota.
            self.ensure_user_space(user_id=user_id, storage_gib=1, quota=None)
            ns = self._namespace(user_id)
        server = str(getattr(settings, "SSH_SFTP_SERVER", "") or _DEFAULT_SFTP_SERVER)
        return self._files_exec(ns, [server, "-e", "-d", "/root"])

    # --- metrics ------------------------------------------------------------------
    def _history(self, name: str, pod: dict | None, since: datetime | None) -> WorkloadMetrics:
        from . import prometheus

        ns = pod["metadata"]["namespace"] if pod is not None else self._log_namespace(name)
        if ns is None:
            return WorkloadMetrics(name=name)
        now = datetime.now(UTC)
        start = since or (prometheus.default_start(pod, now) if pod else now - timedelta(hours=1))
        # Prometheus answers points at step boundaries; the one at ``since`` was seen.
        samples, gpus, step = prometheus.history(
            prometheus.Prometheus(self.config.prometheus_url),
            namespace=ns,
            pod=name,
            start=start,
            end=now,
        )
        if since is not None:
            samples = [s for s in samples if s.at > since]
        return WorkloadMetrics(
            name=name, available=True, gpu_metrics=gpus, interval_seconds=step, samples=samples
        )

    def workload_metrics(self, *, name: str, since: datetime | None = None) -> WorkloadMetrics:
        """The history from Prometheus (cAdvisor, DCGM) where configured; else the metrics API's now.

        With ``KUBERNETES_PROMETHEUS_URL`` (:mod:`.prometheus`): CPU, memory
        and each card's utilisation and memory since ``since`` (or the pod's
        start), also for a pod that is gone, whose namespace its kept log's
        record says. Without it: one sample of CPU and memory now from the
        metrics API (metrics-server), "no metrics" where there is none.
        """
        pod = self._find_pod(name)
        if self.config.prometheus_url:
            return self._history(name, pod, since)
        if pod is None:
            return WorkloadMetrics(name=name)
        ns = pod["metadata"]["namespace"]
        try:
            found = self._json(
                self.custom.get_namespaced_custom_object,
                "metrics.k8s.io",
                "v1beta1",
                ns,
                "pods",
                name,
                doing=f"read the metrics of {name}",
            )
        except DriverError:
            # No metrics server (404, 503), or no sample of this pod yet.
            return WorkloadMetrics(name=name)
        cpu_cores = 0.0
        memory = 0
        for container in found.get("containers") or []:
            usage = container.get("usage") or {}
            cpu_cores += float(quantity.parse(usage.get("cpu", 0)))
            memory += int(quantity.parse(usage.get("memory", 0)))
        window = found.get("window") or "0s"
        match = re.match(r"^([0-9.]+)s$", str(window))
        period = float(match.group(1)) if match else 0.0
        at = _parse_time(found.get("timestamp")) or datetime.now(UTC)
        samples = []
        if since is None or at > since:
            samples.append(
                MetricSample(
                    at=at, period_seconds=period, cpu_percent=cpu_cores * 100, memory_bytes=memory
                )
            )
        return WorkloadMetrics(
            name=name, available=True, gpu_metrics=False, interval_seconds=period, samples=samples
        )
