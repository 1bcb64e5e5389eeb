"""Benchmark: the pod informer under 10,000 pods and 1,000 status changes a second; a re-list vs. ``json.loads``.

    .venv/bin/python bench/kube_watch.py [--pods 10000] [--namespaces 500] [--rate 1000]
        [--seconds 600] [--sample 10] [--warmup 60] [--no-record]

The API-server stub (``tests.kubestub.KubeStub(run_pods=False)``: no
kubelet, pods stay as created) runs in this process on loopback, holding
--pods pods spread over --namespaces user namespaces (``u-<n>``), each
labelled as the backend labels a workload and about the size of a real
workload pod (two containers with resources, environment and volume
mounts, a status with conditions). The informer
(:class:`aladdin.cluster.kubernetes.watch.PodInformer`) runs in a child
process of its own, through the real ``kubernetes`` client, as a portal
process would: its memory is its own, and it does not share this
process's GIL with the stub.

1. The informer starts and syncs (a paged list of every pod). Then, before
   any load, a full re-list is timed: the running informer's own re-list
   (the list requests, 500 pods a page, each page decoded into the cache
   it replaces, as its thread does it), against its baseline,
   ``json.loads`` of the very same response bytes alone, fetched once
   more and decoded in the same run; also the requests alone, the
   cyclic GC's full collections during the re-list, and, once, the
   client's own decoding into its model classes (``V1PodList``), which
   the informer avoids. At two sizes: every pod, and the tenth of them in
   group 0 (an extra label; an informer of its own).
2. The load: --rate status changes a second for --seconds, made through
   the stub's store directly (``store.mutate``: the pod's phase flips and
   an annotation gets the time of the change), so that the stub's HTTP
   layer only streams the events and is not the bottleneck; the stub's
   write path is not what this measures. Round robin over the pods.
3. The informer's process reports every --sample seconds: events applied,
   its RSS, the pods it holds, its CPU time and its time in full GC
   collections; each change's lag (from the annotation's
   time to the informer's ``on_event`` for it) goes into a fixed log
   histogram (1 % buckets), so that the measuring does not grow either.
4. After the load, the informer must catch up with the store's last
   resourceVersion; then the lines below.

Setup, not measured: the stub's heap is frozen after the pods are made
(``gc.freeze()``): a full collection over it stalled the stub, and so
every event, for half a second.

Flat memory: the RSS at the end of the run within a few percent of the RSS
after --warmup seconds of load. The run is recorded in docs/benchmarks.md
(its own section only) unless --no-record.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from benchdocs import machine, record_run  # noqa: E402 - bench/ as a path

sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
os.environ.setdefault("DEBUG", "1")

from kubernetes import client  # noqa: E402

from aladdin.cluster.kubernetes.watch import PodInformer, reconcile_feed  # noqa: E402
from tests.kubestub.server import KubeStub  # noqa: E402

SECTION = "## Kubernetes watcher: 10,000 pods and 1,000 events/s against the stub; a re-list vs. `json.loads`"
SELECTOR = "aladdin/kind"
GROUP_LABEL = "bench/group"
TS_ANNOTATION = "bench/changed-at"
GROUPS = 10
RELIST_REPEATS = 5
CONTINUE = re.compile(rb'"continue":"([^"]+)"')
INTRO = f"""{SECTION}

Command:

```
make bench-kube-watch    # .venv/bin/python bench/kube_watch.py
```

(defaults: `--pods 10000 --namespaces 500 --rate 1000 --seconds 600
--sample 10 --warmup 60`). The API-server stub (`tests/kubestub`,
`run_pods=False`) on loopback holds the pods (about 2.5 KB of JSON each, a
workload pod's shape: labels, two containers with resources, environment
and mounts, status conditions), its heap frozen after the setup
(`gc.freeze()`: otherwise a full collection stalls the stub and every
event for 0.5 s); the informer runs in a child process through the real
`kubernetes` client, as a portal process would. First a full re-list,
timed before any load: the running informer's own (paged list requests
of 500 pods, each page decoded into the cache it replaces), against
its baseline, `json.loads` of the same response bytes alone, in the same
run; at every pod and at a tenth of them (a label selector). Then a load
generator makes `--rate` status changes a second through the stub's store
directly (`store.mutate`, not the HTTP API: the stub serves only the watch
stream, so its write path is not the bottleneck) for `--seconds`; each
change carries its time in an annotation, and the lag is from that time to
the informer's `on_event`, which also feeds `reconcile_feed` (its sends
counted, as the reconcile tasks would be woken). The informer's RSS, CPU
time, full-GC time and the time of a snapshot of its cache (what a
reconcile pass reads) are sampled every `--sample` s; flat memory (issue
19): the last RSS sample within a few percent of the one after `--warmup`
s. The informer re-lists every 300 s (its default resync) during the run.
"""


# --- the pods --------------------------------------------------------------------------


def make_pod(i: int, namespaces: int) -> dict[str, Any]:
    """A pod of the shape and size the backend creates for a job (about 3 KB of JSON)."""
    user = i % namespaces
    name = f"job-{i}"
    labels = {
        "aladdin/user": str(user),
        "aladdin/kind": "job" if i % 4 else "workshop",
        "aladdin/owner": name,
        GROUP_LABEL: str(i % GROUPS),
    }
    resources = {
        "limits": {"cpu": "10", "memory": "121Gi", "nvidia.com/gpu": "1"},
        "requests": {"cpu": "10", "memory": "121Gi", "nvidia.com/gpu": "1"},
    }
    env = [{"name": k, "value": v} for k, v in (("ALADDIN_JOB", str(i)), ("HOME", "/root"))]
    env += [{"name": f"SECRET_{n}", "value": "x" * 24} for n in range(4)]
    mounts = [{"name": "home", "mountPath": "/root"}, {"name": "shm", "mountPath": "/dev/shm"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": f"u-{user}",
            "labels": labels,
            "annotations": {TS_ANNOTATION: "0"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Never",
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
            "containers": [
                {
                    "name": "main",
                    "image": "registry.example/aladdin/pytorch:2.13-cuda12",
                    "command": ["/bin/sh", "-c", "exec python /root/train.py --epochs 10"],
                    "workingDir": "/root",
                    "env": env,
                    "resources": resources,
                    "volumeMounts": mounts,
                },
                {
                    "name": "logs",
                    "image": "registry.example/aladdin/log-copier:1",
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                    "volumeMounts": mounts[:1],
                },
            ],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": "home"}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "121Gi"}},
            ],
        },
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": "2026-12-02T07:00:00Z"}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "hostIP": "10.0.0.7",
            "podIP": f"10.244.{i // 250 % 250}.{i % 250}",
            "startTime": "2026-12-02T07:00:00Z",
        },
    }


def change(obj: dict[str, Any]) -> None:
    """A status change: the phase flips, the annotation says when."""
    obj["status"]["phase"] = "Running" if obj["status"]["phase"] == "Pending" else "Pending"
    obj["metadata"].setdefault("annotations", {})[TS_ANNOTATION] = repr(time.time())


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- the informer's process ----------------------------------------------------------------


class LagHistogram:
    """Lags in fixed log buckets (1 % wide from 10 µs): memory does not grow with events."""

    BASE = 1e-5
    STEP = math.log(1.01)

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts = [0] * 2000  # up to 10 µs × 1.01**2000 ≈ 4 × 10³ s
        self.n = 0
        self.max = 0.0

    def add(self, lag: float) -> None:
        i = 0 if lag <= self.BASE else int(math.log(lag / self.BASE) / self.STEP) + 1
        self.counts[min(i, len(self.counts) - 1)] += 1
        self.n += 1
        self.max = max(self.max, lag)

    def quantile(self, q: float) -> float:
        if not self.n:
            return math.nan
        target, seen = q * self.n, 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= target:
                return self.BASE * math.exp(self.STEP * i)
        return self.max


class GcClock:
    """Time spent in the cyclic GC's full (generation 2) collections, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self.count = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.total += pause
            self.longest = max(self.longest, pause)
            self.count += 1

    def reset(self) -> None:
        self.total, self.longest, self.count = 0.0, 0.0, 0


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def relist_bench(
    configuration: client.Configuration, informer: PodInformer, selector: str, gc_clock: GcClock
) -> dict[str, Any]:
    """Time a full re-list into an informer's cache against json.loads of the same bytes."""
    api_client = client.ApiClient(configuration)
    api = client.CoreV1Api(api_client)
    if selector != informer.label_selector:
        # Another size: an informer of its own (never started), its re-list only.
        informer = PodInformer(api_client, label_selector=selector)
        informer._relist()  # noqa: SLF001 - the informer's own re-list is what is measured
    relist, fetch, loads, collecting, loads_gc = [], [], [], [], []
    for _ in range(RELIST_REPEATS):
        # The running informer's own re-list, as its thread would make it: the
        # old cache is held while the new one is built (and the GC scans both).
        gc_clock.reset()
        started = time.perf_counter()
        informer._relist()  # noqa: SLF001 - the informer's own re-list is what is measured
        relist.append(time.perf_counter() - started)
        collecting.append(gc_clock.total)
        # The same requests again, kept as bytes: the baseline decodes exactly these.
        pages, cont = [], None
        started = time.perf_counter()
        while True:
            kwargs = {"_continue": cont} if cont else {}
            resp = api.list_pod_for_all_namespaces(
                label_selector=selector, limit=500, _preload_content=False, **kwargs
            )
            pages.append(resp.data)
            # Not json.loads: the fetch alone is timed. The list's metadata
            # comes before its items, as the API server writes it.
            found = CONTINUE.search(pages[-1], 0, 4096)
            cont = found.group(1).decode() if found else None
            if not cont:
                break
        fetch.append(time.perf_counter() - started)
        gc_clock.reset()
        started = time.perf_counter()
        for page in pages:
            json.loads(page)
        loads.append(time.perf_counter() - started)
        loads_gc.append(gc_clock.total)
    started = time.perf_counter()
    models = 0
    cont = None
    while True:
        kwargs = {"_continue": cont} if cont else {}
        page = api.list_pod_for_all_namespaces(label_selector=selector, limit=500, **kwargs)
        models += len(page.items)
        cont = page.metadata._continue
        if not cont:
            break
    model_s = time.perf_counter() - started
    return {
        "pods": len(informer),
        "gc": statistics.median(collecting),
        "loads_gc": statistics.median(loads_gc),
        "bytes": sum(len(p) for p in pages),
        "pages": len(pages),
        "relist": statistics.median(relist),
        "fetch": statistics.median(fetch),
        "loads": statistics.median(loads),
        "models": model_s,
    }


def informer_main(host: str, sample: float) -> None:
    """The child: an informer, its samples on stdout, commands on stdin."""
    configuration = client.Configuration()
    configuration.host = host
    lags = LagHistogram()
    # The reconcilers' feed, as the portal wires it, its sends counted: every
    # change here is a phase change, so it sends once a second per kind.
    sends: dict[str, int] = {}
    feed = reconcile_feed(lambda kind: sends.__setitem__(kind, sends.get(kind, 0) + 1))

    def on_event(kind: str, pod: dict[str, Any]) -> None:
        stamp = float((pod["metadata"].get("annotations") or {}).get(TS_ANNOTATION) or 0)
        if stamp:
            lags.add(time.time() - stamp)
        feed(kind, pod)

    informer = PodInformer(
        client.ApiClient(configuration), label_selector=SELECTOR, on_event=on_event
    )
    started = time.perf_counter()
    informer.start()
    if not informer.wait_synced(300):
        say(error="no sync in 300 s")
        return
    say(synced=time.perf_counter() - started, pods=len(informer), rss_kib=rss_kib())
    gc_clock = GcClock()
    for selector in (SELECTOR, f"{SELECTOR},{GROUP_LABEL}=0"):
        say(relist=relist_bench(configuration, informer, selector, gc_clock), selector=selector)
    say(ready=True, rss_kib=rss_kib())

    load_started = threading.Event()
    t0 = [0.0]
    at_load = {"relists": 0, "cpu": 0.0}

    def cpu() -> float:
        times = os.times()
        return times.user + times.system

    snapshots: list[float] = []  # one per sample: bounded by the run's length, not its events

    def sampler() -> None:
        load_started.wait()
        while True:
            time.sleep(sample - (time.monotonic() - t0[0]) % sample)
            # What a reconcile pass reads (list_workloads): a snapshot of the cache.
            started = time.perf_counter()
            informer.list()
            snapshots.append(time.perf_counter() - started)
            say(
                t=round(time.monotonic() - t0[0]),
                events=informer.events,
                seen=lags.n,
                rss_kib=rss_kib(),
                pods=len(informer),
                relists=informer.relists - at_load["relists"],
                errors=informer.errors,
                cpu_s=cpu() - at_load["cpu"],
                gc_s=gc_clock.total,
                gc_n=gc_clock.count,
                gc_max=gc_clock.longest,
            )

    threading.Thread(target=sampler, daemon=True).start()
    for line in sys.stdin:
        command = line.split()
        if command[0] == "load":
            t0[0] = time.monotonic()
            lags.reset()
            sends.clear()
            gc_clock.reset()
            informer.events = 0
            at_load.update(relists=informer.relists, cpu=cpu())
            load_started.set()
        elif command[0] == "drain":
            target = int(command[1])
            started = time.monotonic()
            while int(informer.resource_version or 0) < target and time.monotonic() - started < 60:
                time.sleep(0.01)
            say(
                drained=int(informer.resource_version or 0) >= target,
                drain_s=time.monotonic() - started,
                events=informer.events,
                relists=informer.relists - at_load["relists"],
                errors=informer.errors,
                bookmarks=informer.bookmarks,
                cpu_s=cpu() - at_load["cpu"],
                gc_s=gc_clock.total,
                gc_n=gc_clock.count,
                gc_max=gc_clock.longest,
                lag_n=lags.n,
                lag_p50=lags.quantile(0.5),
                lag_p95=lags.quantile(0.95),
                lag_p99=lags.quantile(0.99),
                lag_max=lags.max,
                rss_kib=rss_kib(),
                pods=len(informer),
                sends=sends,
                snapshot_p50=statistics.median(snapshots) if snapshots else math.nan,
                snapshot_max=max(snapshots, default=math.nan),
            )
        elif command[0] == "stop":
            break
    informer.stop()


# --- the stub and the load ------------------------------------------------------------------


def fill(stub: KubeStub, pods: int, namespaces: int) -> None:
    """The namespaces and pods, through the store (the HTTP API would take minutes)."""
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for i in range(pods):
        pod = make_pod(i, namespaces)
        by_ns.setdefault(pod["metadata"]["namespace"], []).append(pod)
    for ns, items in by_ns.items():
        stub.store.create("namespaces", None, {"metadata": {"name": ns}}, copy=False)
        stub.store.bulk_create_pods(ns, items)


class Child:
    """The informer's process: JSON lines out, commands in."""

    def __init__(self, host: str, sample: float):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--informer", host, "--sample", str(sample)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.unexpected: list[dict[str, Any]] = []  # lines read while waiting for another
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))
        self.lines.put({"exited": self.proc.wait()})

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if "error" in msg or "exited" in msg:
                raise SystemExit(f"informer process: {msg}")
            if key in msg:
                return msg
            self.unexpected.append(msg)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("stop")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def generate(
    stub: KubeStub, pods: int, namespaces: int, rate: float, seconds: float
) -> dict[str, Any]:
    """``rate`` changes a second for ``seconds``, on schedule (catching up when late)."""
    store = stub.store
    keys = [(f"u-{i % namespaces}", f"job-{i}") for i in range(pods)]
    n = 0
    worst_backlog = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate)
        worst_backlog = max(worst_backlog, due - n)
        while n < due:
            ns, name = keys[n % pods]
            store.mutate("pods", ns, name, change)
            n += 1
        time.sleep(0.002)
    return {"changes": n, "seconds": time.monotonic() - started, "worst_backlog": worst_backlog}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--sample", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=60)
    parser.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--informer", metavar="HOST", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.informer:
        informer_main(args.informer, args.sample)
        return 0
    command = (".venv/bin/python bench/kube_watch.py " + " ".join(sys.argv[1:])).strip()
    load_before = os.getloadavg()[0]

    # Enough history for a watch to resume after a short gap, bounded so that
    # the stub's own memory does not grow through the run.
    stub = KubeStub(run_pods=False, history=max(10_000, int(args.rate * 10))).start()
    child = None
    try:
        started = time.perf_counter()
        fill(stub, args.pods, args.namespaces)
        # The stub's own heap (every pod, parsed and as bytes, and its history)
        # is not what is measured; a full collection over it stalled the stub,
        # and so every event, for 0.5 s (a first run). Frozen, the collector
        # skips what the setup made.
        gc.collect()
        gc.freeze()
        print(
            f"stub: {args.pods} pods in {args.namespaces} namespaces in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        child = Child(stub.configuration().host, args.sample)
        synced = child.expect("synced", 600)
        print(f"informer synced: {synced['pods']} pods in {synced['synced']:.2f} s", flush=True)
        relists = [child.expect("relist", 600)["relist"] for _ in range(2)]
        ready = child.expect("ready", 60)
        rss_ready = ready["rss_kib"]

        stub_gc = GcClock()
        child.send("load")
        load = {}
        thread = threading.Thread(
            target=lambda: load.update(
                generate(stub, args.pods, args.namespaces, args.rate, args.seconds)
            )
        )
        thread.start()
        samples = []
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                msg = child.lines.get(timeout=0.5)
                if "exited" in msg:
                    raise SystemExit(f"informer process: {msg}")
                if "t" in msg:
                    samples.append(msg)
                    print(
                        f"t={msg['t']:>4} s events {msg['events']} rss {msg['rss_kib'] / 1024:.1f} MiB "
                        f"pods {msg['pods']} relists {msg['relists']} errors {msg['errors']} "
                        f"cpu {msg['cpu_s']:.1f} s gc2 {msg['gc_n']}x {msg['gc_s']:.2f} s "
                        f"(max {msg['gc_max'] * 1000:.0f} ms); stub gc2 {stub_gc.count}x "
                        f"{stub_gc.total:.2f} s (max {stub_gc.longest * 1000:.0f} ms)",
                        flush=True,
                    )
        thread.join()
        load.update(stub_gc_n=stub_gc.count, stub_gc_max=stub_gc.longest)
        child.send(f"drain {stub.store.resource_version}")
        final = child.expect("drained", 120)
        for msg in child.unexpected:
            if "t" in msg:
                samples.append(msg)
    finally:
        if child is not None:
            child.close()
        stub.stop()

    lines = report(args, relists, load, final, samples, rss_ready)
    for line in lines:
        print(line)
    if not args.no_record:
        notes = (
            f"Machine: {machine()}; load average {load_before:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after."
        )
        record_run(section=SECTION, intro=INTRO, command=command, lines=lines, notes=notes)
        print("recorded in docs/benchmarks.md")
    return 0


def report(
    args: argparse.Namespace,
    relists: list[dict[str, Any]],
    load: dict[str, Any],
    final: dict[str, Any],
    samples: list[dict[str, Any]],
    rss_ready: int,
) -> list[str]:
    ms = 1000
    lines = []
    for r in relists:
        lines.append(
            f"re-list {r['pods']} pods ({r['pages']} pages, {r['bytes'] / 1e6:.1f} MB): "
            f"{r['relist'] * ms:.0f} ms vs json.loads of the same bytes {r['loads'] * ms:.0f} ms: "
            f"ratio {r['relist'] / r['loads']:.2f}x"
        )
        lines.append(
            f"  of which full GC {r['gc'] * ms:.0f} ms (json.loads: {r['loads_gc'] * ms:.0f} ms); "
            f"the requests alone {r['fetch'] * ms:.0f} ms; the client's model classes instead "
            f"{r['models'] * ms:.0f} ms = {r['models'] / r['loads']:.0f}x json.loads"
        )
    if len(relists) == 2 and relists[1]["pods"]:
        a, b = relists[1], relists[0]
        lines.append(
            f"growth {a['pods']} -> {b['pods']} pods (x{b['pods'] / a['pods']:.0f}): "
            f"re-list x{b['relist'] / a['relist']:.1f}, json.loads x{b['loads'] / a['loads']:.1f}"
        )
    seconds = load["seconds"]
    lines.append(
        f"load: {load['changes']} changes in {seconds:.0f} s = {load['changes'] / seconds:.0f}/s "
        f"generated (worst backlog {load['worst_backlog']}); the informer's on_event saw "
        f"{final['lag_n']} = {final['lag_n'] / seconds:.0f}/s ({final['events']} watch events, "
        f"{final['lag_n'] - final['events']} through its re-lists); caught up "
        f"{'yes' if final['drained'] else 'NO'} {final['drain_s']:.2f} s after; "
        f"re-lists {final['relists']}, errors {final['errors']}"
    )
    windows = [
        (b["seen"] - a["seen"]) / (b["t"] - a["t"])
        for a, b in zip(samples, samples[1:], strict=False)
        if b["t"] > a["t"]
    ]
    if windows:
        lines.append(
            f"seen per {args.sample:g} s window: min {min(windows):.0f}/s, "
            f"median {statistics.median(windows):.0f}/s, max {max(windows):.0f}/s"
        )
    lines.append(
        f"lag change -> on_event ({final['lag_n']} changes): p50 {final['lag_p50'] * ms:.1f} ms, "
        f"p95 {final['lag_p95'] * ms:.1f} ms, p99 {final['lag_p99'] * ms:.1f} ms, "
        f"max {final['lag_max'] * ms:.0f} ms"
    )
    lines.append(
        f"informer CPU {final['cpu_s']:.1f} s = {100 * final['cpu_s'] / seconds:.1f} % of a core; "
        f"full GC {final['gc_n']}x, {final['gc_s']:.2f} s (longest {final['gc_max'] * ms:.0f} ms); "
        f"the stub's full GC {load['stub_gc_n']}x, longest {load['stub_gc_max'] * ms:.0f} ms"
    )
    sends = final["sends"]
    lines.append(
        f"reconcile feed: {sum(sends.values())} sends ("
        + ", ".join(f"{kind} {n}" for kind, n in sorted(sends.items()))
        + f") for {final['events']} changes; a snapshot of the cache (informer.list()) "
        f"{final['snapshot_p50'] * ms:.1f} ms median, {final['snapshot_max'] * ms:.1f} ms max"
    )
    warm = [s for s in samples if s["t"] >= args.warmup] or samples
    if warm:
        first, last = warm[0]["rss_kib"], samples[-1]["rss_kib"]
        peak = max(s["rss_kib"] for s in samples)
        lines.append(
            f"informer RSS: {rss_ready / 1024:.1f} MiB synced before the load; "
            f"{first / 1024:.1f} MiB at t={warm[0]['t']} s, {last / 1024:.1f} MiB at "
            f"t={samples[-1]['t']} s: {100 * (last - first) / first:+.1f} %; max {peak / 1024:.1f} MiB; "
            f"pods held {final['pods']}"
        )
        every = max(1, round(60 / args.sample))
        lines.append(
            "RSS MiB each minute: "
            + " ".join(f"{s['rss_kib'] / 1024:.1f}" for s in samples[every - 1 :: every])
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
