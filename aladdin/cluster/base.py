"""The cluster driver interface.

The portal never talks to a cluster directly: services decide, Celery tasks
call a :class:`ClusterDriver`, and a reconciler converges the database to
what the driver reports. Two backends: ``local`` (sandboxed processes on the
portal's host, owned by the local agent; the embedded default) and
``kubernetes`` (:mod:`aladdin.cluster.kubernetes`: pods in a namespace per user, on the
official client; docs/operations.md "Kubernetes").

Conventions every backend keeps (DESIGN rule 7; KubeSpawner, Kubernetes
controller guidelines):

- **Deterministic names.** Workloads are named by the portal: ``ws-<id>``
  for workshops, ``job-<id>`` (``job-<id>-<worker>`` per worker) for jobs.
  A retried create finds its own object: "already exists" is success, and
  "not found" on delete or stop is success. A worker that died between
  "create" and "save state" therefore leaves neither an orphan nor a lost
  workload: the retry or the reconciler finds it by name.
- **Labels.** Every workload carries ``aladdin/user=<user id>``,
  ``aladdin/kind=<workshop|job>`` and ``aladdin/owner=<name>``; the
  reconciler lists by label and removes labelled workloads with no live row.
- **Errors.** :class:`DriverError`; ``permanent=True`` means retrying cannot
  help (bad image, invalid spec, quota), ``False`` means try again later
  (agent or API server unreachable, 409 conflict during a rollout).
  :class:`NoCapacity` (transient): no free card of the model asked for.
  The local backend's operations and error codes are listed in
  :mod:`aladdin.cluster.protocol`.
- **Quota.** :class:`QuotaExceeded(requested, used, limit)` renders the
  manual's message. The portal checks quota itself before asking the
  cluster (it can weigh 40G against 80G cards, a ResourceQuota cannot); the
  backend's own quota is the backstop.
- **Facts.** :meth:`ClusterDriver.capabilities` says what the backend
  promises its workloads (:class:`Capabilities`); the portal reads it
  through :func:`aladdin.cluster.capabilities` (cached), never ``health()``
  keys. ``tests/cluster/contract/`` is the behaviour every backend shares.
- **Level-triggered status.** :meth:`ClusterDriver.list_workloads` returns
  what the cluster has now; nobody relies on having seen an event. The
  Kubernetes backend fills this from a watch (informer cache, resumed with
  the last resourceVersion and relisted on 410 Gone), never by polling each
  object.

User space. Each user has one storage volume mounted at ``/root`` in every
workload, sized to the storage allowance, and (on Kubernetes) a namespace
``u-<user id>`` with a ResourceQuota from the plan (cpu, memory, GPU count),
a default-deny NetworkPolicy, Pod Security "baseline", no service-account
token in user pods, a PersistentVolumeClaim for ``/root`` and a
memory-backed ``/dev/shm``. Locally: a directory under
``LOCAL_VOLUMES_DIR`` owned by the user's sandbox uid.
"""

from __future__ import annotations

import abc
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils.translation import gettext as _

from aladdin.lib.errors import DomainError

from .images import ImageRecipe, ImageState

LABEL_USER = "aladdin/user"
LABEL_KIND = "aladdin/kind"
LABEL_OWNER = "aladdin/owner"


class DriverError(DomainError):
    """A cluster operation failed. ``permanent``: retrying will not help.

    ``code`` names the failure where the backend knows it (the local agent's
    :class:`aladdin.cluster.protocol.ErrorCode` values); callers branch on
    it or on a subclass, never on the message.

    An API whose action the cluster refuses answers 409 ``state_conflict``
    (aladdin.lib.errors): the request was fine, the workload's state was not.
    """

    error_code = "state_conflict"

    def __init__(self, message: str, *, permanent: bool = False, code: str = ""):
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class NoCapacity(DriverError):  # noqa: N818 - reads as the condition
    """Not enough free cards of a model right now: the start may succeed later (never permanent).

    The message carries the numbers (asked, free, total) for the user.
    """

    def __init__(self, message: str):
        super().__init__(message, permanent=False, code="no_capacity")


@dataclass(frozen=True)
class Resources:
    """Resources of a workload or a quota: CPU in millicores, memory in MiB, GPUs by model.

    ``gpus`` maps a card model ("40g", "80g") to a count.
    """

    cpu_millicores: int = 0
    memory_mib: int = 0
    gpus: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: Resources) -> Resources:
        gpus = dict(self.gpus)
        for model, n in other.gpus.items():
            gpus[model] = gpus.get(model, 0) + n
        return Resources(
            self.cpu_millicores + other.cpu_millicores, self.memory_mib + other.memory_mib, gpus
        )

    def fits_within(self, limit: Resources) -> bool:
        return self.cpu_millicores <= limit.cpu_millicores and self.memory_mib <= limit.memory_mib

    def human(self) -> str:
        """As students read it: "2 CPU / 4 GiB" (0.5 CPU, 512 MiB when not whole)."""
        cpu = self.cpu_millicores / 1000
        memory = self.memory_mib / 1024
        mem_text = f"{memory:g} GiB" if memory >= 1 else f"{self.memory_mib} MiB"
        return f"{cpu:g} CPU / {mem_text}"

    def describe(self) -> str:
        """Kubernetes quantities as the manual's message shows them: cpu=26,memory=400Gi."""
        cpu = self.cpu_millicores / 1000
        cpu_text = f"{cpu:g}" if cpu == int(cpu) else f"{self.cpu_millicores}m"
        if self.memory_mib % 1024 == 0:
            memory = f"{self.memory_mib // 1024}Gi"
        else:
            memory = f"{self.memory_mib}Mi"
        return f"limits.cpu={cpu_text},limits.memory={memory}"


class QuotaExceeded(DriverError):  # noqa: N818 - the manual's own term
    """Refused by quota: what was requested, what is used, what is allowed."""

    # One code per meaning, whichever app refuses (docs/api.md).
    error_code = "quota_exceeded"

    def __init__(self, requested: Resources, used: Resources, limit: Resources, advice: str = ""):
        self.requested = requested
        self.used = used
        self.limit = limit
        self.advice = advice
        super().__init__(self.message(), permanent=True)

    def message(self) -> str:
        # The manual's wording (SPEC §4.1), so support recognises it.
        text = _("exceeded quota: requested: %(requested)s, used: %(used)s, limited: %(limit)s") % {
            "requested": self.requested.describe(),
            "used": self.used.describe(),
            "limit": self.limit.describe(),
        }
        return f"{text}. {self.advice}" if self.advice else text


class Phase:
    """Workload phases, as every backend reports them."""

    PENDING = "pending"  # accepted, not running yet (pulling, scheduling, starting)
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # exited 0 (jobs)
    FAILED = "failed"  # exited non-zero, killed, or could not start
    MISSING = "missing"  # the cluster has no workload of that name


@dataclass(frozen=True)
class DiskSpace:
    """The volumes' filesystem as :meth:`ClusterDriver.disk_free` reports it, in bytes.

    ``free`` is what an unprivileged writer can still use (statvfs ``f_bavail``:
    the filesystem's root reserve is not theirs).
    """

    total: int
    free: int


@dataclass(frozen=True)
class WorkloadStatus:
    """What the cluster says about one workload now."""

    name: str
    phase: str
    user_id: int | None = None
    kind: str = ""
    exit_code: int | None = None
    reason: str = ""  # English, for operators and logs
    started_at: datetime | None = None
    finished_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Cards the backend assigned (local: CUDA_VISIBLE_DEVICES ids), for display.
    gpu_devices: tuple[str, ...] = ()
    # The reason as a message the portal renders in the reader's language
    # (aladdin.cluster.reasons); "" when the backend gave text only.
    reason_id: str = ""
    reason_params: dict[str, Any] = field(default_factory=dict)
    # The worker group it belongs to (WorkerGroup.group), "" for none; a
    # backend that knows groups echoes the spec's, so the portal can tell
    # an agent older than Run Task (it would run the worker alone).
    group: str = ""


@dataclass(frozen=True)
class WorkerGroup:
    """One worker of a multi-worker workload (Run Task, SPEC §7): which group, which worker.

    The workers of a group are separate workloads, each with its own cards,
    cgroup and allocation window, named ``<group>-<index>`` (``job-<id>-0``,
    ``job-<id>-1``, ...). What the backend guarantees: every worker reaches
    worker 0 at :meth:`ClusterDriver.group_address` on ``port`` (torchrun's
    rendezvous, ``MASTER_ADDR:MASTER_PORT``), and the workers reach each other
    on the ports they open. Locally the workers share worker 0's network
    namespace (its slirp4netns and egress rules), so the address is
    ``127.0.0.1``; worker 0 must run before the others start (a start of
    worker ``i > 0`` without it is refused, ``not_running``). On Kubernetes
    each worker is a pod of its own (``hostname`` ``<group>-<index>``,
    ``subdomain`` ``<group>``) behind a headless Service named ``group``
    (``publishNotReadyAddresses``), as Kubeflow's PyTorchJob makes them, and
    the address is worker 0's pod DNS name; a later worker is refused while
    worker 0 is missing or ended.
    """

    group: str
    index: int
    size: int
    port: int = 29500


@dataclass(frozen=True)
class GpuSample:
    """One card's use at one sample: ``index`` is the card's device number.

    ``utilization_percent`` is the share of the last interval the card was
    busy (NVML's ``gpu`` utilisation, DCGM's ``DCGM_FI_DEV_GPU_UTIL``).
    """

    index: str
    utilization_percent: float
    memory_used_mib: int
    memory_total_mib: int


@dataclass(frozen=True)
class MetricSample:
    """A workload's use over ``period_seconds`` up to ``at`` (an average where downsampled).

    ``cpu_percent``: CPU time used per wall time, in percent of one core
    (200 = two cores busy). ``memory_bytes``: memory in use (the cgroup's,
    page cache that can be dropped left out). None where the backend cannot
    tell. ``gpus``: one per card the workload holds, empty without GPU metrics.
    """

    at: datetime
    period_seconds: float
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    gpus: tuple[GpuSample, ...] = ()


@dataclass(frozen=True)
class WorkloadMetrics:
    """What :meth:`ClusterDriver.workload_metrics` returns for one workload.

    ``available`` False: this backend (or an agent of an earlier release)
    keeps no metrics of it: "no metrics", not an error. ``gpu_metrics``
    False: its cards report nothing (virtual cards, no NVML); CPU and
    memory may still be there. ``samples`` are oldest first.
    """

    name: str
    available: bool = False
    gpu_metrics: bool = False
    interval_seconds: float = 0
    samples: list[MetricSample] = field(default_factory=list)


@dataclass(frozen=True)
class WorkloadSpec:
    """What to run.

    ``image`` is a catalog reference ("torch:2.5.1-cu124") and ``recipe``
    what it is made of (:mod:`aladdin.cluster.images`): Kubernetes runs the
    container image built from it; the local backend mounts the environment
    it built from it, and fails the start (reason given) if that is not
    ready. ``recipe`` None: no image environment (the host's userland only,
    e.g. a job whose interpreter is the user's own conda under /root). ``command`` runs with ``/root`` (the user's volume) as home and
    ``workdir`` as working directory; ``env`` already holds the platform
    defaults merged with the user's variables. ``gpu_devices`` is filled by
    the local backend's allocator (CUDA_VISIBLE_DEVICES); Kubernetes uses
    ``resources.gpus`` as extended-resource limits instead. ``debugger``:
    the backend provides the platform's debugpy read-only at
    :data:`aladdin.cluster.debugger.MOUNT` (GPU Debug jobs; see that module).
    ``group``: this
    workload is one worker of a multi-worker workload (:class:`WorkerGroup`);
    None for everything else. A backend that does not know the field ignores
    it: :meth:`ClusterDriver.start_workload` refuses a grouped spec such a
    backend would run ungrouped (the status echoes ``group``).
    """

    name: str
    user_id: int
    kind: str  # "workshop" | "job"
    image: str
    command: list[str]
    env: dict[str, str]
    resources: Resources
    workdir: str = "/root"
    labels: dict[str, str] = field(default_factory=dict)
    gpu_devices: tuple[str, ...] = ()
    recipe: ImageRecipe | None = None
    debugger: bool = False
    group: WorkerGroup | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a backend can promise its workloads, as typed facts (SPEC §9), with reasons.

    Read once through :func:`aladdin.cluster.capabilities` (cached for
    :data:`aladdin.cluster.CAPABILITIES_TTL_SECONDS` in the process) by the
    pages that show notices, instead of reading ``health()`` keys on every
    request. ``health()`` stays the live check of ``/healthz`` and ``/metrics``.

    - ``isolation``: each user's workloads are isolated from the others'
      ("bubblewrap" locally, "pod" on Kubernetes; "" when not). Without it
      ``insecure`` says the operator admitted several users anyway
      (``ALADDIN_LOCAL_INSECURE=1``); otherwise one user only.
    - ``limits``: memory, CPU and process limits per workload ("cgroup v2",
      "cgroup v1", "pod limits"; "" when off).
    - ``network``: outbound network with the egress policy ("slirp4netns",
      "network policy"; "" = loopback only). Only meaningful with isolation.
    - ``gpu_metrics``: per-card use is sampled (NVML, DCGM).
    - ``volume_quota``: each user's volume has a hard cap (project quotas,
      a PVC's size); without it the portal refuses over the allowance.
    - ``known``: False when the backend could not be asked (agent
      unreachable): then nothing else is claimed and pages show no notice
      built on a guess.
    """

    known: bool = True
    isolation: str = ""
    isolation_reason: str = ""
    insecure: bool = False
    limits: str = ""
    limits_reason: str = ""
    network: str = ""
    network_reason: str = ""
    gpu_metrics: bool = False
    gpu_metrics_reason: str = ""
    volume_quota: bool = False
    volume_quota_reason: str = ""

    @classmethod
    def unknown(cls, reason: str) -> Capabilities:
        """The backend did not answer: claim nothing, warn of nothing."""
        return cls(
            known=False,
            isolation="unknown",
            isolation_reason=reason,
            limits="unknown",
            limits_reason=reason,
            network="unknown",
            network_reason=reason,
        )


class Terminal(abc.ABC):
    """An interactive terminal in a workload (a PTY)."""

    @abc.abstractmethod
    def read(self, timeout: float | None = None) -> bytes:
        """Output bytes; b"" when the terminal has closed."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send keystrokes."""

    @abc.abstractmethod
    def resize(self, *, rows: int, cols: int) -> None:
        """Set the window size."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the terminal's shell; idempotent."""


class ExecSession(abc.ABC):
    """A command running in a workload (:meth:`ClusterDriver.exec_in_workload`).

    The shape of Kubernetes' pod exec (channels stdin, stdout, stderr,
    resize, and the exit status at the end), so either backend can serve
    the SSH gateway. ``exit_code`` is None until :meth:`read` has returned
    the end; a process killed by a signal reports 128 + the signal, as a
    shell would.
    """

    exit_code: int | None = None

    @abc.abstractmethod
    def read(self, timeout: float | None = None) -> tuple[int, bytes]:
        """The next output: ``(1, data)`` stdout (a PTY's output too), ``(2, data)`` stderr.

        ``(0, b"")`` once the command has exited and all its output was
        read (then :attr:`exit_code` is set; None if the stream broke).
        Raises ``TimeoutError`` when nothing arrived within ``timeout``.
        """

    def ready(self) -> bool:
        """True when :meth:`read` would return at once (output already arrived); a hint.

        The SSH gateway gathers such output into one write to its event loop.
        """
        return False

    def output_fd(self) -> int | None:
        """A descriptor that turns readable when output arrives, for an event loop to watch; a hint.

        None (the default): only :meth:`read` (blocking, in a thread) is
        offered. Otherwise the caller reads with :meth:`read_available`
        from then on, never with :meth:`read`; writes, resizes and closes
        are unchanged. The SSH gateway's loop then reads the output itself,
        with no thread handing it each batch.
        """
        return None

    def read_available(self, limit: int) -> list[tuple[int, bytes | memoryview]]:
        """Without waiting, the output that arrived (about ``limit`` bytes at most); see output_fd.

        Items are :meth:`read`'s ``(stream, data)``, in order; ``(0, b"")``
        comes last once the command ended (:attr:`exit_code` is set then).
        An empty list: nothing yet. The data may be views of a buffer that
        stays valid as long as the caller holds them.

        A hook for sessions that have an :meth:`output_fd`: callers only use
        it on those, so the others need not implement it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no output_fd(): use read(), not read_available()"
        )

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send to the command's stdin. Raises DriverError once the session is closed."""

    @abc.abstractmethod
    def close_stdin(self) -> None:
        """End the command's stdin (EOF); output keeps coming."""

    @abc.abstractmethod
    def resize(self, *, rows: int, cols: int) -> None:
        """Set the PTY's window size (ignored without a PTY)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Hang up: the command gets SIGHUP (then SIGKILL) if it still runs; idempotent.

        Another thread may call it to end a :meth:`read` that is waiting.
        """


class PortStream(abc.ABC):
    """A TCP connection to a port inside a workload (:meth:`ClusterDriver.connect_port`).

    A byte stream both ways, the shape of Kubernetes' pod port-forward (one
    data stream per connection), so either backend serves the SSH gateway's
    ``ssh -L``. One thread may read while others write and close.
    """

    @abc.abstractmethod
    def read(self, size: int = 65536) -> bytes:
        """Up to ``size`` bytes from the workload's side; ``b""`` once it closed (or broke)."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send to the workload's side. Raises DriverError once the stream is closed or broke."""

    @abc.abstractmethod
    def close_write(self) -> None:
        """End what we send (a TCP half-close); the other side's data keeps coming."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close both ways; idempotent. Another thread may call it to end a waiting :meth:`read`."""

    def raw_socket(self) -> socket.socket | None:
        """The blocking socket that carries this stream's bytes as they are, if there is one.

        A relay may then move bytes on it directly (in the kernel, see
        :mod:`aladdin.cluster.splice`) instead of through :meth:`read` and
        :meth:`write`; shutting it down still ends the stream. None where the
        bytes are framed or buffered (Kubernetes' port-forward), or not yet all
        on the socket: then read and write are the way.
        """
        return None


def check_port(port: object) -> int:
    """``port`` as a TCP port number (an int 1-65535, not a bool). Raises DriverError (permanent)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise DriverError(f"invalid port {port!r}: 1-65535", permanent=True, code="invalid")
    return port


class ClusterDriver(abc.ABC):
    """The small interface every backend implements. See the module docstring."""

    name: str = "base"
    # Whether a Run Task's workers may be started together, later workers
    # before worker 0 runs (run_task.start). The local agent makes a later
    # worker wait for worker 0's network namespace; a backend that refuses
    # a later worker until worker 0 exists (Kubernetes: its pod owns the
    # group's Service) keeps False and gets worker 0 first, then the rest.
    starts_workers_together: bool = False

    @abc.abstractmethod
    def health(self) -> dict:
        """Return ``{"ok": bool, ...details}``; never raises."""

    def capabilities(self) -> Capabilities:
        """What this backend promises its workloads (:class:`Capabilities`); never raises.

        Asks the backend each time: callers use the cached
        :func:`aladdin.cluster.capabilities`. The default reads
        :meth:`health`'s keys (``sandbox``, ``limits``, ``network``...), for a
        backend that reports nothing more; one that answers ``ok`` False is
        :meth:`Capabilities.unknown`.
        """
        health = self.health()
        if not health.get("ok"):
            return Capabilities.unknown(str(health.get("error", "the backend did not answer")))

        def how(key: str, off: str) -> str:
            # A key the backend does not report promises nothing and warns of nothing.
            value = str(health.get(key, "unreported"))
            return "" if value == off else value

        return Capabilities(
            isolation=how("sandbox", "unavailable"),
            isolation_reason=str(health.get("sandbox_reason", "")),
            insecure=bool(health.get("insecure")),
            limits=how("limits", "off"),
            limits_reason=str(health.get("limits_reason", "")),
            network=how("network", "off"),
            network_reason=str(health.get("network_reason", "")),
            volume_quota=bool(health.get("project_quota")),
            volume_quota_reason=str(health.get("project_quota_reason", "")),
        )

    # --- user space -------------------------------------------------------
    @abc.abstractmethod
    def ensure_user_space(self, *, user_id: int, storage_gib: int, quota: Resources) -> None:
        """Create or update the user's volume (size = allowance) and quota. Idempotent.

        Kubernetes: namespace, ResourceQuota, NetworkPolicy, PVC (expanded,
        never shrunk). Local: the volume directory, owned by the user's uid.
        Raises DriverError.
        """

    @abc.abstractmethod
    def delete_user_space(self, *, user_id: int) -> None:
        """Delete the user's volume and everything in it. Missing = success."""

    @abc.abstractmethod
    def storage_usage_bytes(self, *, user_id: int) -> int:
        """Bytes used in the user's volume now (0 when it does not exist). Raises DriverError."""

    @abc.abstractmethod
    def disk_free(self) -> DiskSpace:
        """Total and free bytes of the filesystem that holds the users' volumes. Raises DriverError.

        Local: ``statvfs`` of ``LOCAL_VOLUMES_DIR`` as the agent sees it (the
        portal's disk guard, aladdin/workloads/disk.py, compares it with the
        operator's reserve). Kubernetes: the volumes' storage class has its
        own capacity management; a backend without a shared filesystem
        answers its quota's view.
        """

    # --- images -----------------------------------------------------------
    @abc.abstractmethod
    def image_status(self, recipe: ImageRecipe) -> ImageState:
        """Where ``recipe`` stands on this backend now; never starts a build.

        ``unavailable`` (with the reason) when the host cannot provide it as
        it says: a Python version it has none of, CUDA without an NVIDIA
        driver (unless the operator allows CPU builds: then it builds, and
        ``cpu_only``), a userland or Debian packages it lacks. Kubernetes:
        ``ready`` (the registry's container image is pulled at start).
        Raises DriverError.
        """

    @abc.abstractmethod
    def build_image(self, recipe: ImageRecipe) -> ImageState:
        """Start building ``recipe`` unless it is ready, building or unavailable; return its state.

        Idempotent: a second call while it builds returns the same build.
        A failed build is retried. Raises DriverError.
        """

    # --- workloads --------------------------------------------------------
    def group_address(self, *, group: str) -> str:
        """The host at which every worker of ``group`` reaches worker 0 (``MASTER_ADDR``).

        See :class:`WorkerGroup`. Local: ``127.0.0.1`` (the workers share
        worker 0's network namespace). Kubernetes: ``<group>-0.<group>``
        (worker 0's pod through the group's headless Service). Not
        abstract: a backend without multi-worker workloads refuses,
        permanently (code ``invalid``).
        """
        raise DriverError(
            f"the {self.name} backend has no multi-worker workloads", permanent=True, code="invalid"
        )

    @abc.abstractmethod
    def start_workload(self, spec: WorkloadSpec) -> WorkloadStatus:
        """Start ``spec.name``, or return the status of the one already there.

        With ``spec.group`` the workload is one worker of a group
        (:class:`WorkerGroup`): start worker 0 first. Raises DriverError
        (permanent, code ``invalid``) when the backend would not keep the
        group's promise (an agent older than Run Task).

        Raises QuotaExceeded (the backend's quota refused it), NoCapacity (no
        free card of a model asked for: retry later) or DriverError (``code``
        "no_debugger", permanent: ``spec.debugger`` and the backend has no
        debugpy to provide).
        """

    @abc.abstractmethod
    def stop_workload(self, *, name: str, grace_seconds: float = 10) -> WorkloadStatus:
        """Stop and release ``name`` (SIGTERM, then SIGKILL after the grace).

        Files under /root stay; everything else of the workload is gone.
        Missing = success (phase "missing").
        """

    @abc.abstractmethod
    def workload_status(self, *, name: str) -> WorkloadStatus:
        """Current status; phase "missing" when the cluster has no such workload.

        A workload that ended is reported (phase succeeded/failed with its
        exit code, reason and finished_at) until :meth:`stop_workload` or
        :meth:`forget_workload` releases it.
        """

    @abc.abstractmethod
    def forget_workload(self, *, name: str) -> None:
        """Drop the record of an ended workload (its logs stay). Missing = success."""

    @abc.abstractmethod
    def list_workloads(self) -> list[WorkloadStatus]:
        """Every workload this portal manages (by label), running or ended, for the reconciler."""

    @abc.abstractmethod
    def follow_logs(self, *, name: str, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        """Yield the workload's output from byte ``offset``; with ``follow``, until it ends.

        Without ``follow``: what is there now, then the iterator ends. With
        it: each chunk as soon as the workload has written it (a push from
        the backend, not a poll by the caller; the local agent looks every
        20 ms), ending once the workload has ended (or is missing) and all
        of its output was yielded. Chunks are arbitrary byte slices: a line
        or a UTF-8 character may be split between two. The returned
        iterator has a ``close()`` that another thread may call to stop a
        follow that is waiting for output (the iterator then ends).
        Raises DriverError (backend unreachable, or the stream broke).

        Where the output lives once the workload is gone (docs/architecture.md,
        "Where logs live once a pod is gone"): it stays readable, at the same
        offsets, after the workload ended, was stopped or forgotten, until
        :meth:`delete_logs`. Local: the agent's kept output on the host
        (bounded per workload and per user). Kubernetes: the kubelet deletes a
        container's log with its pod and rotates it while it runs, so the
        platform's entrypoint in the pod also writes stdout and stderr (one
        stream) to ``/root/.aladdin/logs/<name>.log`` in the user's volume,
        capped as locally; the backend follows the pod log while the pod
        exists and reads that file after. Run Task workers also write
        ``/root/.aladdin/tasks/<id>/worker-<n>.log`` themselves.
        """

    @abc.abstractmethod
    def delete_logs(self, *, name: str) -> None:
        """Drop the workload's kept output. Missing = success.

        Raises DriverError (permanent) while the workload is running: stop
        it first. Kubernetes: removes ``/root/.aladdin/logs/<name>.log`` from
        the user's volume (see :meth:`follow_logs`), through the files pod.
        """

    @abc.abstractmethod
    def open_terminal(self, *, name: str, rows: int = 24, cols: int = 80) -> Terminal:
        """A shell in the running workload, as its user, in a PTY. Raises DriverError."""

    @abc.abstractmethod
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
        """Run ``command`` (an argv; None: the user's login shell) in the running workload ``name``.

        It runs as the workload's user, in the workload's own isolation (the
        sandbox locally, the pod's container on Kubernetes), with /root as
        its working directory and the workload's variables plus ``env``
        (names must be valid variable names). With ``tty`` it gets a PTY of
        ``rows`` x ``cols`` (stdout and stderr are then one stream). Nothing
        of ``command`` or ``env`` ever becomes an argument, variable or path
        of a program outside the workload: they are the process's own data.
        Kubernetes: pod exec on the workload's container, ``env`` applied by
        ``env`` inside the container.

        Raises DriverError (``code`` "not_running" when the workload does
        not run; permanent) or when the backend cannot be reached (transient).
        """

    def open_files(self, *, user_id: int) -> ExecSession:
        """An SFTP v3 server over ``user_id``'s volume (``/root``), as the user, no workload needed.

        The session's stdin/stdout carry SFTP (OpenSSH's ``sftp-server``;
        :mod:`aladdin.cluster.sftp` is the portal's client). It runs in the
        user's isolation, not the portal's: locally a short-lived sandbox
        over the volume as the user's uid; on Kubernetes a pod exec in a
        small pod mounting the user's PVC. Paths, permissions and symlinks
        are therefore judged there: a symlink to ``/`` shows that sandbox's
        root, never the host's. Creates the volume if it does not exist.

        Raises DriverError (the backend cannot be reached, transient; or
        cannot isolate, permanent). Not abstract: a backend without it
        refuses, permanently.
        """
        raise DriverError(f"the {self.name} backend has no files access", permanent=True)

    @abc.abstractmethod
    def connect_port(self, *, name: str, port: int) -> PortStream:
        """A TCP connection to ``127.0.0.1:port`` inside the running workload ``name``.

        The loopback is the workload's own (its network namespace locally,
        the pod's on Kubernetes), never the host's or the cluster network's:
        the SSH gateway forwards ``ssh -L`` only there. ``port`` is an int
        1-65535 (:func:`check_port`); nothing of the request chooses a host
        address, path or program. Kubernetes: the pod's port-forward
        subresource (one data stream per connection).

        Raises DriverError: ``code`` "invalid" (a bad port or name;
        permanent), "not_running" (permanent), "connection_refused" (nothing
        listens on the port; permanent), or a transient one when the
        backend cannot be reached.
        """

    def workload_metrics(self, *, name: str, since: datetime | None = None) -> WorkloadMetrics:
        """``name``'s CPU, memory and per-GPU use, sampled every few seconds, after ``since``.

        Kept for the workload's life, downsampled as it ages: recent samples
        at the sampling interval, older ones averaged over longer periods, so
        a job of days answers with a bounded number of samples. Where they
        are kept is the backend's affair, and the portal pulls them on
        demand (the job and workshop pages, ``GET /api/v1/jobs/<id>/metrics``):

        - local: the agent samples each workload's cgroup (CPU time, memory)
          and its cards through NVML (:mod:`aladdin.cluster.monitor`) and
          keeps a ring per workload, and the rings of the last 200 released
          ones so that an ended job's page still charts its run. Only the agent
          can read the cgroups, it samples whether or not anyone looks, and
          the portal's database never takes a row every few seconds per
          workload; an agent restart starts the rings afresh.
        - Kubernetes: the metrics API (metrics-server) for CPU and memory
          now, and the Prometheus that scrapes cAdvisor and NVIDIA's DCGM
          exporter for the history (a range query with a step that grows
          with the span).

        Not abstract: a backend without metrics (or a local agent of an
        earlier release, which answers the operation as unknown) returns
        ``WorkloadMetrics(available=False)``: "no metrics", never an error.
        A workload the backend does not know answers the same. Raises
        DriverError only when the backend cannot be reached.
        """
        return WorkloadMetrics(name=name)
