"""The stub's simulated scheduler and kubelet (issue 19; seam in ``__init__``).

What it does, and where it differs from a real node:

- **Scheduling** follows the default scheduler's filters that matter to the
  portal: ``spec.nodeSelector``, required node affinity (``In``, ``NotIn``,
  ``Exists``, ``DoesNotExist``), NoSchedule/NoExecute taints against the pod's
  tolerations, and the requests of ``nvidia.com/gpu``, cpu and
  memory (a container's limits stand in for missing requests, as the API
  server defaults them) against each node's allocatable, counting the
  non-terminal pods bound there. A pod that fits nowhere stays ``Pending`` with
  ``PodScheduled=False``/``Unschedulable`` and the scheduler's own message, a
  ``FailedScheduling`` event is recorded (when the store can create objects),
  and it is retried whenever a pod ends or goes.
- **Containers are local processes**: there are no images. A container must
  have a ``command`` (plus ``args``), or its image an entry in
  ``Kubelet.entrypoints`` ({image: argv}); ``image`` is recorded in the status
  and otherwise ignored; no memory or CPU limit is enforced (no OOMKilled). Only ``spec.containers[0]`` runs; init containers are run
  one after another before it, with the same sandbox. ``restartPolicy: Always``
  is treated as ``Never``: a container that exits leaves the pod terminal.
- **Sandbox**: bubblewrap with the host's top-level directories bound
  (``--dev-bind``, so the host's files and tools are there; a missing mount
  point is made in the sandbox's own root, not on the host), each PVC bound read-write from
  ``<root>/volumes/<namespace>/<claimName>`` (created on first use; a later pod
  of the same claim sees the files), ``emptyDir`` as a fresh directory (under
  ``/dev/shm`` for ``medium: Memory``), a fresh pid namespace, its own
  hostname, and a generated ``/etc/hosts``. **All pods share the host's
  network; every pod IP is 127.0.0.1**, and the hosts file maps the
  ``<hostname>.<subdomain>[.<ns>.svc[.cluster.local]]`` names of the
  namespace's pods behind a headless Service to it. Exec runs a new bwrap with
  the same mounts, env, hostname and working directory (its own pid namespace:
  it does not see the container's processes).
- **Logs** live in ``<root>/logs/<ns>_<pod>_<uid>.log`` and go with the pod,
  as on a real node.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import fcntl
import hashlib
import itertools
import json
import os
import pathlib
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
import uuid

from tests.kubestub import wsproto

BWRAP = shutil.which("bwrap")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POD_IP = "127.0.0.1"
HOST_IP = "127.0.0.1"
TERMINAL = ("Succeeded", "Failed")
RESOURCES = ("cpu", "memory", "nvidia.com/gpu")

_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(value) -> float:
    """A Kubernetes quantity ("500m", "1Gi", "2", "1e3") as a number."""
    s = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if s.endswith(suffix) and not (suffix == "E" and re.fullmatch(r"[\d.]+[eE]\d+", s)):
            return float(s[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(s)


# How often the stub's metrics API measures a pod (metrics-server scrapes every
# 15 s or more; a second keeps the tests quick). Its timestamps are whole seconds.
METRICS_RESOLUTION = 1.0


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nano(ts: float) -> str:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1e9) % 1_000_000_000:09d}Z"


def send_status(handler, code: int, reason: str, message: str, details: dict | None = None):
    """A ``Status`` error body, as the API server answers before any upgrade."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
    handler.wfile.flush()


def _q(query: dict, key: str, default: str | None = None) -> str | None:
    values = query.get(key)
    return values[0] if values else default


def _true(query: dict, key: str) -> bool:
    return (_q(query, key, "") or "").lower() in ("1", "true", "yes")


class _Runtime:
    """What the kubelet knows of one pod (by uid)."""

    def __init__(self, pod: dict, log_path: pathlib.Path):
        meta = pod["metadata"]
        self.namespace = meta["namespace"]
        self.name = meta["name"]
        self.uid = meta.get("uid") or str(uuid.uuid4())
        self.created = time.monotonic()
        self.lock = threading.Lock()
        # new -> unschedulable | starting -> running -> done
        self.state = "new"
        self.deleting = False
        self.grace = 30
        self.proc: subprocess.Popen | None = None
        self.cond = threading.Condition()
        self.log_path = log_path
        self.size = 0
        self.line_starts: list[int] = []
        self.line_times: list[float] = []
        self.output_done = False
        self.finished = threading.Event()
        self.exit_code: int | None = None
        self.sandbox: dict | None = None
        self.execs: set[subprocess.Popen] = set()
        self.cpu_sample: tuple[float, float] | None = None
        # The last answer of the metrics API and when it was measured (monotonic).
        self.metrics: tuple[float, dict] | None = None
        self.message = ""


class Kubelet:
    """Scheduler and kubelet for the stub's nodes; see the module docstring."""

    def __init__(self, store, root: pathlib.Path, nodes: list[dict]):
        self.store = store
        self.root = pathlib.Path(root)
        self.nodes = nodes
        for sub in ("volumes", "logs", "pods"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # _pods and scheduling decisions
        self._pods: dict[str, _Runtime] = {}  # by uid
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._closing = threading.Event()
        self._cid = itertools.count(1)
        # Stand-ins for images' entrypoints, for pods whose container has no
        # command: {image: argv}. The stub has no images to read them from.
        self.entrypoints: dict[str, list[str]] = {}
        self._refresher = threading.Thread(target=self._refresh_hosts, daemon=True)
        self._refresher.start()

    # ----------------------------------------------------------------- seam

    def pod_created(self, pod: dict) -> None:
        rt = _Runtime(pod, self.root / "logs" / "unset")
        rt.log_path = self.root / "logs" / f"{rt.namespace}_{rt.name}_{rt.uid}.log"
        with self._lock:
            if self._closed:
                return
            self._pods[rt.uid] = rt
        if BWRAP is None:
            self._fail_start(
                rt, pod, "bubblewrap (bwrap) is not installed: the stub cannot run pods"
            )
            return
        self._spawn(self._pod_worker, rt)

    def pod_deleting(self, namespace: str, name: str, grace_seconds: int) -> None:
        pod = self.store.get("pods", namespace, name)
        rt = self._by_uid(pod["metadata"].get("uid")) if pod else self._find(namespace, name)
        if rt is None:
            self._remove(namespace, name, None)
            return
        with rt.lock:
            rt.deleting = True
            rt.grace = max(0, int(grace_seconds or 0))
            state = rt.state
            if state in ("done", "unschedulable"):
                rt.state = "done"
        if state in ("done", "unschedulable"):
            self._finish_removal(rt)
        elif state == "running":
            self._spawn(self._kill, rt)
        # "new"/"starting": the pod worker sees ``deleting`` before it starts anything.

    def namespace_deleted(self, namespace: str) -> None:
        shutil.rmtree(self.root / "volumes" / namespace, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._closing.set()
            runtimes = list(self._pods.values())
        for rt in runtimes:
            self._signal(rt, signal.SIGKILL)
            for p in list(rt.execs):
                _killpg(p, signal.SIGKILL)
            with rt.cond:
                rt.cond.notify_all()
        for t in [*self._threads, self._refresher]:
            t.join(timeout=5)

    # ----------------------------------------------------------- scheduling

    def _nodes(self) -> list[dict]:
        try:
            nodes = self.store.list("nodes")
        except Exception:
            nodes = []
        return nodes or self.nodes

    @staticmethod
    def _requests(pod: dict) -> dict[str, float]:
        spec = pod.get("spec", {})

        def of(container):
            res = container.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            out = {}
            for r in RESOURCES:
                if r in req:
                    out[r] = parse_quantity(req[r])
                elif r in lim:
                    out[r] = parse_quantity(lim[r])
            return out

        total: dict[str, float] = {}
        for c in spec.get("containers") or []:
            for r, v in of(c).items():
                total[r] = total.get(r, 0) + v
        for c in spec.get("initContainers") or []:
            for r, v in of(c).items():
                total[r] = max(total.get(r, 0), v)
        return total

    @staticmethod
    def _matches(pod: dict, node: dict) -> bool:
        labels = node.get("metadata", {}).get("labels") or {}
        spec = pod.get("spec", {})
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return False
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or {}
        terms = required.get("nodeSelectorTerms") or []
        if not terms:
            return True

        def expr_ok(e):
            key, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
            if op == "In":
                return labels.get(key) in vals
            if op == "NotIn":
                return labels.get(key) not in vals
            if op == "Exists":
                return key in labels
            if op == "DoesNotExist":
                return key not in labels
            return False

        return any(all(expr_ok(e) for e in t.get("matchExpressions") or []) for t in terms)

    def _try_schedule(self, pod: dict) -> tuple[str | None, str]:
        """(node name, "") or (None, the scheduler's FitError message)."""
        want = self._requests(pod)
        nodes = self._nodes()
        used: dict[str, dict[str, float]] = {}
        uid = pod["metadata"].get("uid")
        for other in self.store.list("pods"):
            node = other.get("spec", {}).get("nodeName")
            if not node or other["metadata"].get("uid") == uid:
                continue
            if other.get("status", {}).get("phase") in TERMINAL:
                continue
            acc = used.setdefault(node, {})
            for r, v in self._requests(other).items():
                acc[r] = acc.get(r, 0) + v
        reasons: dict[str, int] = {}
        not_helpful = 0
        for node in nodes:
            name = node["metadata"]["name"]
            if not self._matches(pod, node):
                reasons["node(s) didn't match Pod's node affinity/selector"] = (
                    reasons.get("node(s) didn't match Pod's node affinity/selector", 0) + 1
                )
                not_helpful += 1
                continue
            taint = _untolerated(pod, node)
            if taint is not None:
                key = f"node(s) had untolerated taint {{{taint}}}"
                reasons[key] = reasons.get(key, 0) + 1
                not_helpful += 1
                continue
            status = node.get("status") or {}
            alloc = status.get("allocatable") or status.get("capacity") or {}
            short = []
            for r in RESOURCES:
                need = want.get(r, 0)
                if not need:
                    continue
                have = parse_quantity(alloc.get(r, 0))
                if used.get(name, {}).get(r, 0) + need > have + 1e-9:
                    short.append(r)
            if not short:
                return name, ""
            for r in short:
                key = f"Insufficient {r}"
                reasons[key] = reasons.get(key, 0) + 1
        n = len(nodes)
        msg = f"0/{n} nodes are available"
        parts = sorted(f"{v} {k}" for k, v in reasons.items())
        msg += ": " + ", ".join(parts) + "." if parts else "."
        # The default preemption plugin's PostFilter message: the stub never
        # preempts (all the portal's pods have the same priority).
        pre = []
        if n - not_helpful:
            pre.append(f"{n - not_helpful} No preemption victims found for incoming pod")
        if not_helpful:
            pre.append(f"{not_helpful} Preemption is not helpful for scheduling")
        msg += f" preemption: 0/{n} nodes are available: {', '.join(sorted(pre))}."
        return None, msg

    def _schedule(self, rt: _Runtime, retry: bool = False) -> bool:
        """Bind the pod, or mark it unschedulable. True when bound."""
        with self._lock:
            if retry and rt.state != "unschedulable":
                return False  # another retry bound it meanwhile
            pod = self.store.get("pods", rt.namespace, rt.name)
            if pod is None or pod["metadata"].get("uid") != rt.uid:
                return False
            node = pod.get("spec", {}).get("nodeName")
            msg = ""
            if not node:
                node, msg = self._try_schedule(pod)
            now = _now()
            if node is None:
                changed = rt.message != msg
                rt.message = msg
                with rt.lock:
                    if rt.deleting:
                        return False
                    rt.state = "unschedulable"

                def unsched(obj):
                    st = obj.setdefault("status", {})
                    st["phase"] = "Pending"
                    _set_condition(
                        st, "PodScheduled", "False", now, reason="Unschedulable", message=msg
                    )

                if changed:
                    self._mutate(rt, unsched)
                    self._event(rt, "FailedScheduling", msg, "Warning", "default-scheduler")
                return False

            def bind(obj):
                obj["spec"]["nodeName"] = node
                st = obj.setdefault("status", {})
                st["phase"] = "Pending"
                _set_condition(st, "PodScheduled", "True", now)

            self._mutate(rt, bind)
            with rt.lock:
                rt.state = "starting" if rt.state in ("new", "unschedulable") else rt.state
        self._event(
            rt,
            "Scheduled",
            f"Successfully assigned {rt.namespace}/{rt.name} to {node}",
            "Normal",
            "default-scheduler",
        )
        return True

    def _retry_pending(self) -> None:
        with self._lock:
            if self._closed:
                return
            waiting = sorted(
                (rt for rt in self._pods.values() if rt.state == "unschedulable"),
                key=lambda r: r.created,
            )
        for rt in waiting:
            if not rt.deleting and self._schedule(rt, retry=True):
                self._spawn(self._pod_worker, rt, True)

    # ----------------------------------------------------------- pod worker

    def _spawn(self, fn, *args) -> threading.Thread:
        t = threading.Thread(target=fn, args=args, daemon=True, name=f"kubelet-{fn.__name__}")
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()
        return t

    def _pod_worker(self, rt: _Runtime, scheduled: bool = False) -> None:
        # This thread starts the container's bwrap and lives until it exits:
        # --die-with-parent ties bwrap to the thread that forked it.
        try:
            if not scheduled and not self._schedule(rt):
                current = self.store.get("pods", rt.namespace, rt.name)
                if current is None or current["metadata"].get("uid") != rt.uid:
                    with self._lock:
                        self._pods.pop(rt.uid, None)
                    return
                with rt.lock:
                    gone = rt.deleting and rt.state != "unschedulable"
                    if gone:
                        rt.state = "done"
                if gone:
                    self._finish_removal(rt)
                return
            self._run_pod(rt)
        except Exception as exc:  # the stub must not leave a pod hanging silently
            pod = self.store.get("pods", rt.namespace, rt.name)
            if pod is not None:
                self._fail_start(rt, pod, f"stub kubelet error: {exc!r}")

    def _run_pod(self, rt: _Runtime) -> None:
        pod = self.store.get("pods", rt.namespace, rt.name)
        if pod is None or pod["metadata"]["uid"] != rt.uid:
            return
        spec = pod["spec"]
        main = spec["containers"][0]
        cname = main.get("name", "main")
        image = main.get("image", "")
        cid = f"containerd://{hashlib.sha256(f'{rt.uid}{next(self._cid)}'.encode()).hexdigest()}"
        now = _now()

        def creating(obj):
            st = obj.setdefault("status", {})
            st.update(hostIP=HOST_IP, hostIPs=[{"ip": HOST_IP}], startTime=now)
            _set_condition(st, "PodReadyToStartContainers", "False", now)
            _set_condition(st, "Initialized", "True", now)
            _set_condition(
                st,
                "Ready",
                "False",
                now,
                reason="ContainersNotReady",
                message=f"containers with unready status: [{cname}]",
            )
            _set_condition(
                st,
                "ContainersReady",
                "False",
                now,
                reason="ContainersNotReady",
                message=f"containers with unready status: [{cname}]",
            )
            st["containerStatuses"] = [
                {
                    "name": cname,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                    "lastState": {},
                    "ready": False,
                    "restartCount": 0,
                    "image": image,
                    "imageID": "",
                    "started": False,
                }
            ]

        self._mutate(rt, creating)
        try:
            rt.sandbox = self._sandbox(pod)
        except _StartError as exc:
            self._fail_start(rt, pod, str(exc))
            return
        for init in spec.get("initContainers") or []:
            try:
                argv = self._argv(init, self._env(rt.sandbox, init))
            except _StartError as exc:
                self._fail_start(rt, pod, str(exc))
                return
            code = subprocess.call(
                self._bwrap(rt.sandbox, init) + argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self._env(rt.sandbox, init),
                start_new_session=True,
            )
            if code != 0:
                self._fail_start(rt, pod, f"init container {init.get('name')} exited with {code}")
                return
        try:
            argv = self._argv(main, self._env(rt.sandbox, main))
        except _StartError as exc:
            self._fail_start(rt, pod, str(exc))
            return
        self._write_hosts(rt.namespace)
        missing = self._not_found(rt.sandbox, main, argv[0])
        if missing:
            self._fail_start(
                rt,
                pod,
                "failed to create containerd task: failed to create shim task: OCI runtime "
                "create failed: runc create failed: unable to start container process: "
                f"error during container init: {missing}: unknown",
            )
            return
        with rt.lock:
            if rt.deleting:
                rt.state = "done"
                deleting = True
            else:
                deleting = False
                rt.log_path.touch()
                r, w = os.pipe()
                try:
                    rt.proc = subprocess.Popen(
                        self._bwrap(rt.sandbox, main) + argv,
                        stdin=subprocess.DEVNULL,
                        stdout=w,
                        stderr=w,
                        env=self._env(rt.sandbox, main),
                        start_new_session=True,
                    )
                finally:
                    os.close(w)
                rt.state = "running"
        if deleting:
            self._finish_removal(rt)
            return
        started = _now()
        image_id = f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"

        def running(obj):
            st = obj.setdefault("status", {})
            st["phase"] = "Running"
            st.update(podIP=POD_IP, podIPs=[{"ip": POD_IP}])
            _set_condition(st, "PodReadyToStartContainers", "True", started)
            _set_condition(st, "Ready", "True", started)
            _set_condition(st, "ContainersReady", "True", started)
            cs = st["containerStatuses"][0]
            cs.update(
                state={"running": {"startedAt": started}},
                ready=True,
                started=True,
                imageID=image_id,
                containerID=cid,
            )

        self._mutate(rt, running)
        self._write_hosts(rt.namespace)
        self._pump_output(rt, r)
        code = rt.proc.wait()
        # bwrap reports a signalled child as 128+signal, as container runtimes do.
        if code < 0:
            code = 128 - code
        rt.exit_code = code
        finished = _now()
        phase = "Succeeded" if code == 0 else "Failed"
        reason = "Completed" if code == 0 else "Error"
        ready_reason = "PodCompleted" if code == 0 else "PodFailed"

        def terminated(obj):
            st = obj.setdefault("status", {})
            st["phase"] = phase
            _set_condition(st, "PodReadyToStartContainers", "False", finished)
            _set_condition(st, "Ready", "False", finished, reason=ready_reason)
            _set_condition(st, "ContainersReady", "False", finished, reason=ready_reason)
            cs = st["containerStatuses"][0]
            cs.update(
                state={
                    "terminated": {
                        "exitCode": code,
                        "reason": reason,
                        "startedAt": started,
                        "finishedAt": finished,
                        "containerID": cid,
                    }
                },
                ready=False,
                started=False,
            )

        self._mutate(rt, terminated)
        with rt.cond:
            rt.output_done = True
            rt.cond.notify_all()
        rt.finished.set()
        with rt.lock:
            rt.state = "done"
            deleting = rt.deleting
        if deleting:
            self._finish_removal(rt)
        else:
            self._write_hosts(rt.namespace)
            self._retry_pending()

    def _pump_output(self, rt: _Runtime, fd: int) -> None:
        """Copy the container's output to its log file as it comes."""
        with open(rt.log_path, "ab", buffering=0) as log:
            at_line_start = True
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                ts = time.time()
                log.write(chunk)
                with rt.cond:
                    base = rt.size
                    if at_line_start:
                        rt.line_starts.append(base)
                        rt.line_times.append(ts)
                    for m in re.finditer(b"\n", chunk):
                        if m.end() < len(chunk):
                            rt.line_starts.append(base + m.end())
                            rt.line_times.append(ts)
                    at_line_start = chunk.endswith(b"\n")
                    rt.size = base + len(chunk)
                    rt.cond.notify_all()
        os.close(fd)

    def _fail_start(self, rt: _Runtime, pod: dict, message: str) -> None:
        spec = pod.get("spec", {})
        main = (spec.get("containers") or [{}])[0]
        now = _now()

        def failed(obj):
            st = obj.setdefault("status", {})
            st["phase"] = "Failed"
            st["message"] = message
            st["reason"] = "StartError"
            st.setdefault("startTime", now)
            st["containerStatuses"] = [
                {
                    "name": main.get("name", "main"),
                    "state": {
                        "terminated": {
                            "exitCode": 128,
                            "reason": "StartError",
                            "message": message,
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                    "lastState": {},
                    "ready": False,
                    "restartCount": 0,
                    "image": main.get("image", ""),
                    "imageID": "",
                    "started": False,
                }
            ]

        self._mutate(rt, failed)
        with contextlib.suppress(OSError):
            rt.log_path.touch()  # an empty log, as for a container that never ran
        rt.exit_code = 128
        with rt.cond:
            rt.output_done = True
            rt.cond.notify_all()
        rt.finished.set()
        with rt.lock:
            rt.state = "done"
            deleting = rt.deleting
        if deleting:
            self._finish_removal(rt)
        else:
            self._retry_pending()

    def _kill(self, rt: _Runtime) -> None:
        if rt.grace > 0 and rt.proc is not None:
            # As a runtime signals the container's init only: bwrap's own
            # processes would die of SIGTERM and take the sandbox with them.
            for pid in _sandboxed_roots(rt.proc.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        else:
            self._signal(rt, signal.SIGKILL)
        if not rt.finished.wait(rt.grace):
            self._signal(rt, signal.SIGKILL)

    @staticmethod
    def _signal(rt: _Runtime, sig: int) -> None:
        if rt.proc is not None and rt.proc.poll() is None:
            _killpg(rt.proc, sig)

    def _finish_removal(self, rt: _Runtime) -> None:
        for p in list(rt.execs):
            _killpg(p, signal.SIGKILL)
        self._remove(rt.namespace, rt.name, rt.uid)
        with self._lock:
            self._pods.pop(rt.uid, None)
        with rt.cond:
            rt.output_done = True
            rt.cond.notify_all()
        rt.finished.set()
        with contextlib.suppress(OSError):
            rt.log_path.unlink()
        if rt.sandbox:
            shutil.rmtree(rt.sandbox["dir"], ignore_errors=True)
            for d in rt.sandbox["shm"]:
                shutil.rmtree(d, ignore_errors=True)
        self._write_hosts(rt.namespace)
        self._retry_pending()

    def _remove(self, namespace: str, name: str, uid: str | None) -> None:
        current = self.store.get("pods", namespace, name)
        if current is None:
            return
        if uid is not None and current["metadata"].get("uid") != uid:
            return
        self.store.remove("pods", namespace, name)

    # ------------------------------------------------------------- sandbox

    def _sandbox(self, pod: dict) -> dict:
        meta, spec = pod["metadata"], pod["spec"]
        ns, uid = meta["namespace"], meta["uid"]
        base = self.root / "pods" / uid
        base.mkdir(parents=True, exist_ok=True)
        volumes: dict[str, pathlib.Path] = {}
        shm: list[pathlib.Path] = []
        for vol in spec.get("volumes") or []:
            name = vol["name"]
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                path = self.root / "volumes" / ns / claim
            elif "emptyDir" in vol:
                if (vol["emptyDir"] or {}).get("medium") == "Memory" and os.access(
                    "/dev/shm", os.W_OK
                ):
                    path = pathlib.Path("/dev/shm") / f"kubestub-{uid}-{name}"
                    shm.append(path)
                else:
                    path = base / "volumes" / name
            elif "configMap" in vol or "secret" in vol:
                path = base / "volumes" / name
                path.mkdir(parents=True, exist_ok=True)
                self._project(ns, vol, path)
            else:
                path = base / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            volumes[name] = path
        hostname = spec.get("hostname") or meta["name"]
        env_base = {
            "PATH": DEFAULT_PATH,
            "HOME": "/root",
            "HOSTNAME": hostname,
        }
        sandbox = {
            "dir": base,
            "hosts": base / "hosts",
            "volumes": volumes,
            "shm": shm,
            "hostname": hostname,
            "namespace": ns,
            "pod": pod,
            "env": env_base,
        }
        sandbox["hosts"].write_text(self._hosts_text(pod))
        return sandbox

    def _project(self, ns: str, vol: dict, path: pathlib.Path) -> None:
        import base64

        if "configMap" in vol:
            kind, name, decode = "configmaps", vol["configMap"].get("name"), False
        else:
            kind, name, decode = "secrets", vol["secret"].get("secretName"), True
        try:
            obj = self.store.get(kind, ns, name) or {}
        except Exception:
            obj = {}
        for key, value in (obj.get("data") or {}).items():
            data = base64.b64decode(value) if decode else str(value).encode()
            (path / key).write_bytes(data)

    def _container_env(self, sandbox: dict, container: dict) -> dict[str, str]:
        pod = sandbox["pod"]
        env = dict(sandbox["env"])
        fields = {
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": pod["metadata"]["namespace"],
            "metadata.uid": pod["metadata"].get("uid", ""),
            "status.podIP": POD_IP,
            "status.hostIP": HOST_IP,
            "spec.nodeName": pod["spec"].get("nodeName", ""),
        }
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = _expand(str(e["value"]), env)
            elif "valueFrom" in e:
                ref = (e["valueFrom"] or {}).get("fieldRef") or {}
                path = ref.get("fieldPath", "")
                m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
                if m:
                    env[e["name"]] = (pod["metadata"].get(m.group(1)) or {}).get(m.group(2), "")
                else:
                    env[e["name"]] = fields.get(path, "")
        return env

    def _env(self, sandbox: dict, container: dict) -> dict[str, str]:
        return self._container_env(sandbox, container)

    def _argv(self, container: dict, env: dict) -> list[str]:
        command = container.get("command") or self.entrypoints.get(container.get("image", ""))
        argv = list(command or []) + list(container.get("args") or [])
        if not command:
            raise _StartError(
                f"container {container.get('name')!r} has no command: the stub kubelet runs "
                "commands on the host and cannot run an image's entrypoint"
            )
        return [_expand(a, env) for a in argv]

    def _not_found(self, sandbox: dict, container: dict, argv0: str) -> str | None:
        """runc's complaint when ``argv0`` is no executable in the sandbox, else None."""
        check = subprocess.run(
            self._bwrap(sandbox, container) + ["/bin/sh", "-c", 'command -v "$0"', argv0],
            env=self._env(sandbox, container),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if check.returncode == 0:
            return None
        if "/" in argv0:
            return f'exec: "{argv0}": stat {argv0}: no such file or directory'
        return f'exec: "{argv0}": executable file not found in $PATH'

    def _bwrap(self, sandbox: dict, container: dict, workdir: str | None = None) -> list[str]:
        args = [BWRAP, *_host_root_args()]
        mounts = []
        for m in container.get("volumeMounts") or []:
            src = sandbox["volumes"].get(m["name"])
            if src is None:
                continue
            if m.get("subPath"):
                src = src / m["subPath"]
                src.mkdir(parents=True, exist_ok=True)
            mounts.append((m["mountPath"], src, m.get("readOnly", False)))
        mounts.sort(key=lambda t: t[0].rstrip("/").count("/"))
        for dest, src, ro in mounts:
            args += ["--ro-bind" if ro else "--bind", str(src), dest]
        args += [
            "--ro-bind",
            str(sandbox["hosts"]),
            "/etc/hosts",
            "--proc",
            "/proc",
            "--unshare-pid",
            "--unshare-uts",
            "--hostname",
            sandbox["hostname"],
            "--die-with-parent",
        ]
        wd = workdir or container.get("workingDir")
        if wd:
            for dest, src, _ro in mounts:
                rel = os.path.relpath(wd, dest)
                if not rel.startswith(".."):
                    (src / rel).mkdir(parents=True, exist_ok=True)
                    break
            args += ["--chdir", wd]
        else:
            args += ["--chdir", "/"]
        return args + ["--"]

    # --------------------------------------------------------------- hosts

    def _hosts_text(self, pod: dict) -> str:
        meta, spec = pod["metadata"], pod.get("spec", {})
        ns = meta["namespace"]
        lines = [
            "# Kubernetes-managed hosts file (the stub kubelet's).",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
        ]
        own = spec.get("hostname") or meta["name"]
        if spec.get("subdomain"):
            sub = spec["subdomain"]
            lines.append(f"{POD_IP}\t{own}.{sub}.{ns}.svc.cluster.local\t{own}")
        else:
            lines.append(f"{POD_IP}\t{own}")
        try:
            services = {
                s["metadata"]["name"]: s
                for s in self.store.list("services", ns)
                if (s.get("spec") or {}).get("clusterIP") == "None"
            }
        except Exception:
            services = {}
        if services:
            for other in self.store.list("pods", ns):
                ospec = other.get("spec", {})
                host, sub = ospec.get("hostname"), ospec.get("subdomain")
                if not host or not sub or sub not in services:
                    continue
                phase = other.get("status", {}).get("phase")
                if phase in TERMINAL or other["metadata"].get("deletionTimestamp"):
                    continue
                publish = (services[sub].get("spec") or {}).get("publishNotReadyAddresses")
                if phase != "Running" and not (publish and ospec.get("nodeName")):
                    continue
                names = [
                    f"{host}.{sub}",
                    f"{host}.{sub}.{ns}.svc",
                    f"{host}.{sub}.{ns}.svc.cluster.local",
                ]
                lines.append(f"{POD_IP}\t" + " ".join(names))
        return "\n".join(lines) + "\n"

    def _refresh_hosts(self) -> None:
        # A headless Service created after its pods started still resolves.
        while not self._closing.wait(1.0):
            with self._lock:
                namespaces = {rt.namespace for rt in self._pods.values() if rt.state == "running"}
            for ns in namespaces:
                with contextlib.suppress(Exception):
                    self._write_hosts(ns)

    def _write_hosts(self, namespace: str) -> None:
        """Bring the namespace's hosts files up to date, by appending only.

        The file is bind-mounted (the mount holds the inode, so no rename) and
        read at any time by the workload's resolver: a rewrite could show it a
        torn file. Stale lines stay: every pod's address is 127.0.0.1 anyway.
        """
        with self._lock:
            runtimes = [
                rt
                for rt in self._pods.values()
                if rt.namespace == namespace and rt.sandbox is not None and rt.state != "done"
            ]
        for rt in runtimes:
            pod = self.store.get("pods", rt.namespace, rt.name)
            if pod is None:
                continue
            wanted = self._hosts_text(pod).splitlines()
            with contextlib.suppress(OSError):
                have = set(rt.sandbox["hosts"].read_text().splitlines())
                missing = [line for line in wanted if line not in have]
                if missing:
                    fd = os.open(rt.sandbox["hosts"], os.O_WRONLY | os.O_APPEND)
                    try:
                        os.write(fd, ("\n".join(missing) + "\n").encode())
                    finally:
                        os.close(fd)

    # ---------------------------------------------------------------- helpers

    def _find(self, namespace: str, name: str) -> _Runtime | None:
        with self._lock:
            for rt in self._pods.values():
                if rt.namespace == namespace and rt.name == name:
                    return rt
        return None

    def _mutate(self, rt: _Runtime, fn) -> None:
        def guarded(obj):
            if obj["metadata"].get("uid") == rt.uid:
                fn(obj)

        self.store.mutate("pods", rt.namespace, rt.name, guarded)

    def _event(self, rt: _Runtime, reason: str, message: str, type_: str, component: str):
        create = getattr(self.store, "create", None)
        if create is None:
            return
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{rt.name}.{uuid.uuid4().hex[:16]}",
                "namespace": rt.namespace,
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": rt.name,
                "namespace": rt.namespace,
                "uid": rt.uid,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": _nano(time.time()),
            "count": 1,
            "action": "Scheduling" if component == "default-scheduler" else "",
            "reportingComponent": component,
            "reportingInstance": f"{component}-stub",
        }
        with contextlib.suppress(Exception):
            create("events", rt.namespace, event)

    def _running_runtime(self, handler, namespace: str, name: str, query: dict, verb: str):
        """The pod's runtime if it runs; else answers the refusal and returns None."""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            send_status(
                handler,
                404,
                "NotFound",
                f'pods "{name}" not found',
                {"name": name, "kind": "pods"},
            )
            return None, None
        cname = pod["spec"]["containers"][0].get("name", "main")
        container = _q(query, "container")
        if container and container != cname:
            send_status(
                handler,
                400,
                "BadRequest",
                f"container {container} is not valid for pod {name}",
            )
            return None, None
        phase = pod.get("status", {}).get("phase")
        if phase in TERMINAL:
            send_status(
                handler,
                400,
                "BadRequest",
                f"cannot {verb} into a container in a completed pod; current phase is {phase}",
            )
            return None, None
        rt = self._by_uid(pod["metadata"].get("uid"))
        if rt is None or rt.state != "running":
            if not pod.get("spec", {}).get("nodeName"):
                send_status(handler, 400, "BadRequest", f"pod {name} does not have a host assigned")
            else:
                send_status(handler, 400, "BadRequest", f'container not found ("{cname}")')
            return None, None
        return rt, pod

    def _by_uid(self, uid: str | None) -> _Runtime | None:
        with self._lock:
            return self._pods.get(uid) if uid else None

    # ------------------------------------------------------------------ logs

    def serve_log(self, handler, namespace: str, name: str, query: dict) -> None:
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            send_status(
                handler, 404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}
            )
            return
        cname = pod["spec"]["containers"][0].get("name", "main")
        container = _q(query, "container")
        if container and container != cname:
            send_status(
                handler, 400, "BadRequest", f"container {container} is not valid for pod {name}"
            )
            return
        if _true(query, "previous"):
            send_status(
                handler,
                400,
                "BadRequest",
                f'previous terminated container "{cname}" in pod "{name}" not found',
            )
            return
        rt = self._by_uid(pod["metadata"].get("uid"))
        if rt is None or not rt.log_path.exists():
            reason = "ContainerCreating"
            send_status(
                handler,
                400,
                "BadRequest",
                f'container "{cname}" in pod "{name}" is waiting to start: {reason}',
            )
            return
        follow = _true(query, "follow")
        stamps = _true(query, "timestamps")
        limit = _q(query, "limitBytes")
        limit = int(limit) if limit else None
        tail = _q(query, "tailLines")
        since = _q(query, "sinceSeconds")
        with rt.cond:
            start = 0
            if tail is not None:
                n = int(tail)
                start = (
                    rt.line_starts[-n]
                    if 0 < n <= len(rt.line_starts)
                    else (rt.size if n == 0 else 0)
                )
            if since is not None:
                cutoff = time.time() - int(since)
                i = bisect.bisect_left(rt.line_times, cutoff)
                start = max(start, rt.line_starts[i] if i < len(rt.line_starts) else rt.size)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.flush()
        pos, sent = start, 0
        try:
            with open(rt.log_path, "rb") as f:
                while True:
                    with rt.cond:
                        while follow and rt.size <= pos and not rt.output_done and not self._closed:
                            rt.cond.wait(1.0)
                        size, done = rt.size, rt.output_done
                    if size > pos:
                        f.seek(pos)
                        data = f.read(size - pos)
                        pos += len(data)
                        if stamps:
                            data = self._stamp(rt, pos - len(data), data, done or not follow)
                        if limit is not None:
                            data = data[: limit - sent]
                        if data:
                            _chunk(handler, data)
                            sent += len(data)
                        if limit is not None and sent >= limit:
                            break
                        continue
                    if done or not follow or self._closed:
                        break
            _chunk(handler, b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            handler.close_connection = True

    @staticmethod
    def _stamp(rt: _Runtime, offset: int, data: bytes, _final: bool) -> bytes:
        out = []
        with rt.cond:
            starts, times = list(rt.line_starts), list(rt.line_times)
        at = offset
        for line in data.splitlines(keepends=True):
            i = bisect.bisect_right(starts, at) - 1
            ts = times[i] if i >= 0 else time.time()
            if i >= 0 and starts[i] == at:
                out.append(_nano(ts).encode() + b" " + line)
            else:
                out.append(line)
            at += len(line)
        return b"".join(out)

    # ------------------------------------------------------------------ exec

    def serve_exec(self, handler, namespace: str, name: str, query: dict) -> None:
        rt, pod = self._running_runtime(handler, namespace, name, query, "exec")
        if rt is None:
            return
        command = query.get("command") or []
        if not command:
            send_status(handler, 400, "BadRequest", "you must specify at least 1 command")
            return
        if not wsproto.is_upgrade(handler):
            send_status(handler, 400, "BadRequest", "Upgrade request required")
            return
        # As the API server's handshake: the client's first choice it speaks.
        offered = wsproto.offered_protocols(handler)
        proto = next(
            (
                p
                for p in offered
                if p in ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
            ),
            None,
        )
        if proto is None and offered:
            send_status(
                handler,
                403,
                "Forbidden",
                f"unable to upgrade: unsupported subprotocols {offered}",
            )
            return
        use_stdin = _true(query, "stdin")
        use_out = _true(query, "stdout")
        use_err = _true(query, "stderr")
        tty = _true(query, "tty")
        if not (use_stdin or use_out or use_err):
            send_status(
                handler, 400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr"
            )
            return
        ws = wsproto.WebSocket.accept(handler, proto)
        _Exec(self, rt, pod, ws, command, use_stdin, use_out, use_err, tty).run()

    # ------------------------------------------------------------ port-forward

    def serve_portforward(self, handler, namespace: str, name: str, query: dict) -> None:
        rt, pod = self._running_runtime(handler, namespace, name, query, "port-forward")
        if rt is None:
            return
        ports: list[int] = []
        for value in query.get("ports") or []:
            for p in value.split(","):
                try:
                    ports.append(int(p))
                except ValueError:
                    send_status(handler, 400, "BadRequest", f"unable to parse {p!r} as a port")
                    return
        if not ports:
            send_status(handler, 400, "BadRequest", 'query parameter "port" is required')
            return
        if not wsproto.is_upgrade(handler):
            send_status(handler, 400, "BadRequest", "Upgrade request required")
            return
        offered = wsproto.offered_protocols(handler)
        proto = next(
            (
                p
                for p in offered
                if p in ("v4.channel.k8s.io", "portforward.k8s.io", "channel.k8s.io")
            ),
            offered[0] if offered else None,
        )
        ws = wsproto.WebSocket.accept(handler, proto)
        _PortForward(rt, pod, ws, ports).run()

    # ----------------------------------------------------------------- stats

    def stats_summary(self, node_name: str) -> dict | None:
        if not any(n["metadata"]["name"] == node_name for n in self._nodes()):
            return None
        vfs = os.statvfs(self.root)
        capacity = vfs.f_blocks * vfs.f_frsize
        available = vfs.f_bavail * vfs.f_frsize
        node_used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
        pods = []
        for pod in self.store.list("pods"):
            spec = pod.get("spec", {})
            if spec.get("nodeName") != node_name:
                continue
            meta = pod["metadata"]
            volumes = []
            for vol in spec.get("volumes") or []:
                pvc = vol.get("persistentVolumeClaim")
                if not pvc:
                    continue
                path = self.root / "volumes" / meta["namespace"] / pvc["claimName"]
                volumes.append(
                    {
                        "time": _now(),
                        "name": vol["name"],
                        "pvcRef": {"name": pvc["claimName"], "namespace": meta["namespace"]},
                        "usedBytes": _du(path),
                        "capacityBytes": capacity,
                        "availableBytes": available,
                        "inodesFree": vfs.f_ffree,
                        "inodes": vfs.f_files,
                        "inodesUsed": vfs.f_files - vfs.f_ffree,
                    }
                )
            entry = {
                "podRef": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta.get("uid", ""),
                },
                "startTime": pod.get("status", {}).get("startTime"),
                "containers": [],
            }
            if volumes:
                entry["volume"] = volumes
            pods.append(entry)
        return {
            "node": {
                "nodeName": node_name,
                "startTime": _now(),
                "fs": {
                    "time": _now(),
                    "availableBytes": available,
                    "capacityBytes": capacity,
                    "usedBytes": node_used,
                    "inodesFree": vfs.f_ffree,
                    "inodes": vfs.f_files,
                    "inodesUsed": vfs.f_files - vfs.f_ffree,
                },
            },
            "pods": pods,
        }

    def pod_metrics(self, namespace: str, name: str) -> dict | None:
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            return None
        rt = self._by_uid(pod["metadata"].get("uid"))
        if rt is None or rt.state != "running" or rt.proc is None or rt.proc.poll() is not None:
            return None
        now = time.monotonic()
        if rt.metrics is not None and now - rt.metrics[0] < METRICS_RESOLUTION:
            # metrics-server answers its last scrape until the next one: two
            # reads in a row give the same sample, with the same timestamp.
            return rt.metrics[1]
        cpu_s, rss = _tree_usage(rt.proc.pid)
        prev = rt.cpu_sample
        rt.cpu_sample = (now, cpu_s)
        if prev and now - prev[0] > 0.05:
            window = now - prev[0]
            rate = max(0.0, (cpu_s - prev[1]) / window)
        else:
            window = max(now - rt.created, 0.001)
            rate = cpu_s / window
        rt.metrics = (
            now,
            {
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "creationTimestamp": _now(),
                    "labels": pod["metadata"].get("labels") or {},
                },
                "timestamp": _now(),
                "window": f"{window:.3f}s",
                "containers": [
                    {
                        "name": pod["spec"]["containers"][0].get("name", "main"),
                        "usage": {"cpu": f"{int(rate * 1e9)}n", "memory": f"{rss // 1024}Ki"},
                    }
                ],
            },
        )
        return rt.metrics[1]


class _StartError(Exception):
    pass


def _untolerated(pod: dict, node: dict) -> str | None:
    """The first NoSchedule/NoExecute taint the pod does not tolerate, as the scheduler prints it."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        for t in tolerations:
            if t.get("effect") and t["effect"] != taint.get("effect"):
                continue
            if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
                break
            if t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
                break
        else:
            return f"{taint['key']}: {taint.get('value', '')}"
    return None


def _host_root_args() -> list[str]:
    """The host's top-level entries bound on bwrap's own tmpfs root.

    Binding ``/`` itself would make bwrap create a missing mount point (say
    ``/workspace``) on the host; on a tmpfs root it appears in the sandbox only.
    """
    args: list[str] = []
    for entry in sorted(os.listdir("/")):
        path = "/" + entry
        if entry == "proc":
            continue
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--dev-bind", path, path]
    return args


def _expand(value: str, env: dict) -> str:
    """Kubernetes' $(VAR) references; $$ escapes, unknown names stay as written."""

    def sub(m):
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$\(\w+\)|\$\((\w+)\)", sub, value)


def _set_condition(st: dict, type_: str, status: str, now: str, reason=None, message=None):
    conds = st.setdefault("conditions", [])
    for c in conds:
        if c["type"] == type_:
            if c["status"] != status:
                c["lastTransitionTime"] = now
            c["status"] = status
            break
    else:
        c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": now}
        conds.append(c)
    c.pop("reason", None)
    c.pop("message", None)
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message


def _chunk(handler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _du(path: pathlib.Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
    return total


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def _sandboxed_roots(bwrap_pid: int) -> list[int]:
    """The topmost processes under a bwrap that are not bwrap itself."""
    children = _children()
    roots, todo = [], [bwrap_pid]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            try:
                comm = pathlib.Path(f"/proc/{child}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "bwrap":
                todo.append(child)
            else:
                roots.append(child)
    return roots


def _tree_usage(root_pid: int) -> tuple[float, int]:
    """CPU seconds and RSS bytes of a process and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    stats: dict[int, tuple[int, float, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        cpu = (int(fields[11]) + int(fields[12])) / tick
        rss = int(fields[21]) * page
        stats[int(entry)] = (ppid, cpu, rss)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    cpu_total, rss_total, todo = 0.0, 0, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in stats:
            cpu_total += stats[pid][1]
            rss_total += stats[pid][2]
        todo.extend(children.get(pid, []))
    return cpu_total, rss_total


class _Exec:
    """One exec session over the Kubernetes channel protocol."""

    def __init__(self, kubelet, rt, pod, ws, command, use_stdin, use_out, use_err, tty):
        self.k, self.rt, self.pod, self.ws = kubelet, rt, pod, ws
        self.command, self.tty = command, tty
        self.use_stdin, self.use_out, self.use_err = use_stdin, use_out, use_err
        self.v5 = ws.protocol == "v5.channel.k8s.io"
        self.status_json = ws.protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io")
        self.proc: subprocess.Popen | None = None
        self.stdin_fd: int | None = None
        self.master: int | None = None

    def _send(self, channel: int, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.ws.send_binary(bytes([channel]) + data)

    def run(self) -> None:
        k, rt = self.k, self.rt
        sandbox = rt.sandbox
        main = self.pod["spec"]["containers"][0]
        k._write_hosts(rt.namespace)
        env = k._env(sandbox, main)
        if self.tty:
            env.setdefault("TERM", "xterm")
        argv = k._bwrap(sandbox, main) + list(self.command)
        missing = k._not_found(sandbox, main, self.command[0])
        if missing:
            # What the kubelet says when the runtime cannot start the command.
            self._finish_error(
                "error executing command in container: failed to exec in container: failed "
                f'to start exec "{uuid.uuid4().hex}": OCI runtime exec failed: exec failed: '
                f"unable to start container process: {missing}: unknown"
            )
            return
        readers = []
        try:
            if self.tty:
                master, slave = pty.openpty()
                self.master = master
                self.proc = subprocess.Popen(
                    argv,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env=env,
                    start_new_session=True,
                    preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
                )
                os.close(slave)
                if self.use_stdin:
                    self.stdin_fd = os.dup(master)
                readers.append((master, 1))
            else:
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE if self.use_stdin else subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=err_w,
                    env=env,
                    start_new_session=True,
                )
                os.close(out_w)
                os.close(err_w)
                if self.use_stdin:
                    self.stdin_fd = os.dup(self.proc.stdin.fileno())
                    self.proc.stdin.close()
                readers += [(out_r, 1), (err_r, 2)]
        except OSError as exc:
            self._finish_error(f"failed to start exec: {exc}")
            return
        rt.execs.add(self.proc)
        threads = []
        for fd, ch in readers:
            t = threading.Thread(target=self._pump, args=(fd, ch), daemon=True)
            t.start()
            threads.append(t)
        inbound = threading.Thread(target=self._inbound, daemon=True)
        inbound.start()
        code = self.proc.wait()
        rt.execs.discard(self.proc)
        for t in threads:
            t.join(timeout=2)
        if code < 0:
            code = 128 - code
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": (
                    "command terminated with non-zero exit code: error executing command "
                    f"[{' '.join(self.command)}], exit code {code}"
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        if self.status_json:
            self._send(3, json.dumps(status).encode())
        elif code:
            self._send(3, status["message"].encode())
        self._close_fds()
        self.ws.close()
        inbound.join(timeout=2)
        with contextlib.suppress(OSError):
            self.ws.sock.shutdown(socket.SHUT_RDWR)

    def _finish_error(self, message: str) -> None:
        status = {
            "metadata": {},
            "status": "Failure",
            "message": f"Internal error occurred: {message}",
            "reason": "InternalError",
            "details": {"causes": [{"message": message}]},
            "code": 500,
        }
        self._send(3, json.dumps(status).encode() if self.status_json else message.encode())
        self.ws.close()
        with contextlib.suppress(OSError):
            self.ws.sock.shutdown(socket.SHUT_RDWR)

    def _close_fds(self) -> None:
        fd, self.stdin_fd = self.stdin_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _pump(self, fd: int, channel: int) -> None:
        want = self.use_out if channel == 1 else self.use_err
        while True:
            try:
                r, _, _ = select.select([fd], [], [], 0.2)
                if not r:
                    if self.proc.poll() is not None and self.tty:
                        # A tty's master never reports EOF while a grandchild
                        # holds the slave: stop once the command has exited.
                        r2, _, _ = select.select([fd], [], [], 0.1)
                        if not r2:
                            break
                    continue
                data = os.read(fd, 65536)
            except OSError:  # EIO: the pty's last slave closed
                break
            if not data:
                break
            if want:
                self._send(channel, data)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _inbound(self) -> None:
        while True:
            try:
                _op, payload = self.ws.recv()
            except (wsproto.WebSocketClosed, OSError, ValueError):
                break
            if not payload:
                continue
            channel, data = payload[0], payload[1:]
            if channel == 0:
                fd = self.stdin_fd
                if fd is not None and data:
                    with contextlib.suppress(OSError):
                        os.write(fd, data)
            elif channel == 4:
                with contextlib.suppress(ValueError, OSError):
                    size = json.loads(data)
                    if self.master is not None:
                        fcntl.ioctl(
                            self.master,
                            termios.TIOCSWINSZ,
                            struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0),
                        )
            elif channel == 255 and self.v5 and data[:1] == b"\x00":
                if self.tty:
                    fd = self.stdin_fd
                    if fd is not None:
                        # EOF on a tty is the line discipline's ^D.
                        with contextlib.suppress(OSError):
                            os.write(fd, b"\x04")
                else:
                    self._close_fds()
        # The client went away: the exec'd command goes with it.
        if self.proc is not None and self.proc.poll() is None:
            _killpg(self.proc, signal.SIGKILL)


class _PortForward:
    """The websocket port-forward protocol: channels 2i (data) and 2i+1 (error)."""

    def __init__(self, rt, pod, ws, ports):
        self.rt, self.pod, self.ws, self.ports = rt, pod, ws, ports
        self.conns: dict[int, socket.socket | None] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        pumps = []
        for i, port in enumerate(self.ports):
            prefix = struct.pack("<H", port)
            with contextlib.suppress(OSError):
                self.ws.send_binary(bytes([2 * i]) + prefix)
                self.ws.send_binary(bytes([2 * i + 1]) + prefix)
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                conn.settimeout(None)
            except OSError as exc:
                self.conns[i] = None
                reason = (
                    "connect: connection refused"
                    if isinstance(exc, ConnectionRefusedError)
                    else str(exc)
                )
                sandbox = hashlib.sha256(self.rt.uid.encode()).hexdigest()
                # The kubelet's wording around containerd's (the sandbox id stands in for the pod).
                msg = (
                    f"error forwarding port {port} to pod {sandbox}, uid : failed to execute "
                    f'portforward in network namespace "/var/run/netns/cni-{self.rt.uid}": '
                    f'failed to connect to localhost:{port} inside namespace "{sandbox}", '
                    f"IPv4: dial tcp4 127.0.0.1:{port}: {reason} "
                    f"IPv6 dial tcp6 [::1]:{port}: {reason} "
                )
                with contextlib.suppress(OSError):
                    self.ws.send_binary(bytes([2 * i + 1]) + msg.encode())
                continue
            self.conns[i] = conn
            t = threading.Thread(target=self._pump, args=(i, conn), daemon=True)
            t.start()
            pumps.append(t)
        inbound = threading.Thread(target=self._inbound, daemon=True)
        inbound.start()
        for t in pumps:
            t.join()
        # Every pod-side connection ended: the kubelet ends the stream.
        time.sleep(0.05)
        self.ws.close()
        inbound.join(timeout=2)
        self._close_all()
        with contextlib.suppress(OSError):
            self.ws.sock.shutdown(socket.SHUT_RDWR)

    def _close_all(self) -> None:
        for conn in self.conns.values():
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    conn.close()

    def _pump(self, i: int, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            try:
                self.ws.send_binary(bytes([2 * i]) + data)
            except OSError:
                break

    def _inbound(self) -> None:
        while True:
            try:
                _op, payload = self.ws.recv()
            except (wsproto.WebSocketClosed, OSError, ValueError):
                break
            if not payload:
                continue
            channel, data = payload[0], payload[1:]
            i = channel // 2
            conn = self.conns.get(i)
            if channel % 2 == 0 and conn is not None and data:
                try:
                    conn.sendall(data)
                except OSError:
                    pass
        self._close_all()
