"""The stub's scheduler and kubelet, driven through the real ``kubernetes`` client.

Runs against ``tests.kubestub.server.KubeStub`` when that module exists, else
against a small in-test API server that keeps the seam's contract (the
kubelet only sees the four store methods). Workloads use the system's
``/usr/bin/python3``: the PVC is bound over ``/root``, where this machine's
pyenv interpreter lives.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import websocket
from kubernetes import client
from kubernetes.stream import portforward, stream

from tests.kubestub import kubelet as kubelet_mod
from tests.kubestub.kubelet import Kubelet

PY = "/usr/bin/python3"

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
    pytest.mark.skipif(not pathlib.Path(PY).exists(), reason=f"{PY} is needed inside the sandbox"),
]

NODES = [
    {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "gpu-node", "labels": {"aladdin/gpu": "a100-80g"}},
        "status": {
            "allocatable": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "1"},
            "capacity": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "1"},
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "cpu-node", "labels": {"aladdin/pool": "cpu"}},
        "status": {
            "allocatable": {"cpu": "8", "memory": "32Gi"},
            "capacity": {"cpu": "8", "memory": "32Gi"},
        },
    },
]


# --------------------------------------------------------------------------
# A minimal API server for the seam, used until the real stub server exists.


class MiniStore:
    def __init__(self):
        self.lock = threading.RLock()
        self.objs: dict[tuple, dict] = {}
        self.rv = 0

    def get(self, resource, namespace, name):
        with self.lock:
            obj = self.objs.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, resource, namespace=None, label_selector="", field_selector=""):
        with self.lock:
            return [
                copy.deepcopy(o)
                for (r, ns, _), o in self.objs.items()
                if r == resource and (namespace is None or ns == namespace)
            ]

    def mutate(self, resource, namespace, name, fn):
        with self.lock:
            obj = self.objs.get((resource, namespace, name))
            if obj is None:
                return None
            fn(obj)
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            return copy.deepcopy(obj)

    def remove(self, resource, namespace, name):
        with self.lock:
            return self.objs.pop((resource, namespace, name), None)

    def create(self, resource, namespace, body):
        with self.lock:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            meta["namespace"] = namespace
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = kubelet_mod._now()
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objs[(resource, namespace, meta["name"])] = obj
            return copy.deepcopy(obj)


class MiniServer:
    def __init__(self, root: pathlib.Path):
        self.store = MiniStore()
        for node in NODES:
            self.store.objs[("nodes", None, node["metadata"]["name"])] = copy.deepcopy(node)
        self.kubelet = Kubelet(self.store, root, copy.deepcopy(NODES))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else {}

            def do_GET(self):
                outer.route(self, "GET")

            def do_POST(self):
                outer.route(self, "POST")

            def do_DELETE(self):
                outer.route(self, "DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, h, method):
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        path = parts.path
        k = self.kubelet
        m = re.fullmatch(
            r"/api/v1/namespaces/([^/]+)/(pods|services)(?:/([^/]+))?(?:/(\w+))?", path
        )
        if path == "/api/v1/namespaces" and method == "POST":
            body = h._body()
            return h._json(201, self.store.create("namespaces", None, body))
        if m is None:
            return h._json(404, {"kind": "Status", "status": "Failure", "code": 404})
        ns, resource, name, sub = m.groups()
        if sub == "log":
            return k.serve_log(h, ns, name, query)
        if sub == "exec":
            return k.serve_exec(h, ns, name, query)
        if sub == "portforward":
            return k.serve_portforward(h, ns, name, query)
        if method == "POST" and name is None:
            obj = self.store.create(resource, ns, h._body())
            if resource == "pods":
                self.store.mutate("pods", ns, obj["metadata"]["name"], _pending)
                obj = self.store.get("pods", ns, obj["metadata"]["name"])
                k.pod_created(obj)
            return h._json(201, obj)
        if method == "GET" and name:
            obj = self.store.get(resource, ns, name)
            if obj is None:
                return kubelet_mod.send_status(h, 404, "NotFound", f'{resource} "{name}" not found')
            return h._json(200, obj)
        if method == "DELETE" and name:
            body = h._body()
            grace = body.get("gracePeriodSeconds")
            if "gracePeriodSeconds" in query:
                grace = int(query["gracePeriodSeconds"][0])
            obj = self.store.mutate(
                resource,
                ns,
                name,
                lambda o: o["metadata"].update(deletionTimestamp=kubelet_mod._now()),
            )
            if obj is None:
                return kubelet_mod.send_status(h, 404, "NotFound", f'{resource} "{name}" not found')
            if resource == "pods":
                k.pod_deleting(ns, name, 30 if grace is None else grace)
            else:
                self.store.remove(resource, ns, name)
            return h._json(200, obj)
        return h._json(405, {"kind": "Status", "status": "Failure", "code": 405})

    def close(self):
        self.kubelet.close()
        self.httpd.shutdown()
        self.httpd.server_close()


def _pending(obj):
    obj.setdefault("status", {})["phase"] = "Pending"


# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("kubestub")
    try:
        from tests.kubestub.server import KubeStub
    except ImportError:
        KubeStub = None
    if KubeStub is not None:
        server = KubeStub(root=root, nodes=copy.deepcopy(NODES)).start()
        config = server.configuration()
    else:
        server = MiniServer(root)
        config = client.Configuration()
        config.host = server.url
    api_client = client.ApiClient(config)
    api = client.CoreV1Api(api_client)
    try:
        yield server, api
    finally:
        api_client.close()
        server.stop() if KubeStub is not None else server.close()


@pytest.fixture
def ns(cluster):
    server, api = cluster
    name = f"u-{uuid.uuid4().hex[:8]}"
    api.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def pod_manifest(name, command, *, claim="home", gpu=0, selector=None, env=None, **spec):
    container = {
        "name": "main",
        "image": "registry.example/aladdin/python:3.11",
        "command": command,
        "volumeMounts": [{"name": "home", "mountPath": "/root"}],
        "env": env or [],
    }
    if gpu:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpu)}}
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}],
            **spec,
        },
    }
    if selector:
        body["spec"]["nodeSelector"] = selector
    return body


def wait_for(fn, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what}")


def phase(api, ns, name):
    return api.read_namespaced_pod(name, ns).status.phase


def wait_phase(api, ns, name, *phases, timeout=10.0):
    return wait_for(
        lambda: phase(api, ns, name) in phases and api.read_namespaced_pod(name, ns),
        timeout,
        f"{name} in {phases}",
    )


def raw_get(server, path):
    try:
        with urllib.request.urlopen(server.url + path, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def sleeper(name, seconds=30, **kw):
    return pod_manifest(name, ["sleep", str(seconds)], **kw)


# --------------------------------------------------------------------------


def test_a_pods_log_follows_live_and_its_exit_code_sets_the_phase(cluster, ns):
    server, api = cluster
    script = "import time; print('first', flush=True); time.sleep(1.5); print('second'); raise SystemExit(3)"
    api.create_namespaced_pod(ns, pod_manifest("job-1", [PY, "-c", script]))
    wait_phase(api, ns, "job-1", "Running")

    resp = api.read_namespaced_pod_log("job-1", ns, follow=True, _preload_content=False)
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    chunks = resp.read_chunked()
    first = next(chunks)
    # The first line arrives while the process still sleeps.
    assert first == b"first\n"
    assert phase(api, ns, "job-1") == "Running"
    rest = b"".join(chunks)
    assert rest == b"second\n"
    resp.release_conn()

    pod = wait_phase(api, ns, "job-1", "Failed")
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (3, "Error")
    assert pod.status.pod_ip == "127.0.0.1"
    assert pod.status.container_statuses[0].image == "registry.example/aladdin/python:3.11"
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    conds = {c.type: c.status for c in pod.status.conditions}
    assert conds["PodScheduled"] == "True" and conds["Ready"] == "False"
    limited = api.read_namespaced_pod_log("job-1", ns, limit_bytes=3)
    assert limited == "fir"
    assert api.read_namespaced_pod_log("job-1", ns, tail_lines=1) == "second\n"
    stamped = api.read_namespaced_pod_log("job-1", ns, timestamps=True)
    assert re.fullmatch(r"(\d{4}-\d\d-\d\dT[\d:.]+Z \w+\n){2}", stamped)


def test_a_successful_pod_completes_and_files_under_its_claim_persist(cluster, ns):
    server, api = cluster
    write = "echo kept > /root/notes.txt; head -c 200000 /dev/zero > /root/blob; pwd; echo $POD_NAME $NS"
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    api.create_namespaced_pod(ns, pod_manifest("writer", ["sh", "-c", write], env=env))
    pod = wait_phase(api, ns, "writer", "Succeeded")
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (0, "Completed")
    assert api.read_namespaced_pod_log("writer", ns) == f"/\nwriter {ns}\n"
    assert (server.kubelet.root / "volumes" / ns / "home" / "notes.txt").read_text() == "kept\n"

    api.create_namespaced_pod(ns, pod_manifest("reader", ["cat", "/root/notes.txt"]))
    wait_phase(api, ns, "reader", "Succeeded")
    assert api.read_namespaced_pod_log("reader", ns) == "kept\n"

    node = api.read_namespaced_pod("reader", ns).spec.node_name
    summary = server.kubelet.stats_summary(node)
    vols = [
        v for p in summary["pods"] for v in p.get("volume", []) if p["podRef"]["namespace"] == ns
    ]
    assert vols and vols[0]["pvcRef"] == {"name": "home", "namespace": ns}
    assert vols[0]["usedBytes"] >= 200000
    assert summary["node"]["fs"]["capacityBytes"] > summary["node"]["fs"]["availableBytes"] > 0
    assert server.kubelet.stats_summary("no-such-node") is None

    # Exec into a completed pod is refused before any upgrade, as the API server does.
    code, body = raw_get(server, f"/api/v1/namespaces/{ns}/pods/reader/exec?command=true")
    assert code == 400
    assert (
        body["message"]
        == "cannot exec into a container in a completed pod; current phase is Succeeded"
    )
    code, body = raw_get(server, f"/api/v1/namespaces/{ns}/pods/nope/log")
    assert (code, body["message"]) == (404, 'pods "nope" not found')


def test_exec_over_v4_separates_stdout_stderr_and_reports_the_exit_code(cluster, ns):
    server, api = cluster
    api.create_namespaced_pod(ns, sleeper("shell", hostname="box"))
    wait_phase(api, ns, "shell", "Running")
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "shell",
        ns,
        command=["sh", "-c", 'read line; echo "got $line on $(hostname)"; echo oops >&2; exit 3'],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("hello\n")
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == "got hello on box\n"
    assert resp.read_stderr() == "oops\n"
    assert resp.returncode == 3
    resp.close()
    status = json.loads(resp.read_channel(3) or "{}") or None
    assert status is None  # returncode consumed it

    out = stream(
        api.connect_get_namespaced_pod_exec,
        "shell",
        ns,
        command=["sh", "-c", "echo $HOME; ls -d /root"],
        stdout=True,
        stderr=True,
    )
    assert out == "/root\n/root\n"

    metrics = server.kubelet.pod_metrics(ns, "shell")
    assert metrics["apiVersion"] == "metrics.k8s.io/v1beta1"
    usage = metrics["containers"][0]["usage"]
    assert re.fullmatch(r"\d+n", usage["cpu"]) and int(usage["memory"][:-2]) > 0


def _v5_exec(server, ns, name, command, frames):
    query = "&".join(f"command={c}" for c in command) + "&stdin=true&stdout=true&stderr=true"
    ws = websocket.create_connection(
        f"ws{server.url[4:]}/api/v1/namespaces/{ns}/pods/{name}/exec?{query}",
        subprotocols=["v5.channel.k8s.io", "v4.channel.k8s.io"],
        timeout=10,
    )
    assert ws.getsubprotocol() == "v5.channel.k8s.io"
    for f in frames:
        ws.send_binary(f)
    got: dict[int, bytes] = {}
    while True:
        try:
            op, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        if data:
            got[data[0]] = got.get(data[0], b"") + data[1:]
    ws.close()
    return got


def test_exec_over_v5_closes_stdin(cluster, ns):
    server, api = cluster
    api.create_namespaced_pod(ns, sleeper("v5"))
    wait_phase(api, ns, "v5", "Running")
    got = _v5_exec(server, ns, "v5", ["wc", "-c"], [b"\x00abc", b"\x00de", b"\xff\x00"])
    assert got[1].strip() == b"5"
    assert json.loads(got[3]) == {"metadata": {}, "status": "Success"}


def test_a_tty_exec_echoes_and_takes_resizes(cluster, ns):
    server, api = cluster
    api.create_namespaced_pod(ns, sleeper("tty"))
    wait_phase(api, ns, "tty", "Running")
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "tty",
        ns,
        command=["sh", "-c", "read x; stty size; echo done-$x"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=True,
        _preload_content=False,
    )
    resp.write_channel(4, json.dumps({"Width": 100, "Height": 40}))
    time.sleep(0.1)
    resp.write_stdin("go\n")
    resp.run_forever(timeout=10)
    out = resp.read_stdout()
    # The terminal echoes the typed line; the command sees the size it was given.
    assert out == "go\r\n40 100\r\ndone-go\r\n"
    assert resp.returncode == 0
    resp.close()


def test_delete_with_grace_terms_then_kills_and_removes(cluster, ns):
    server, api = cluster
    api.create_namespaced_pod(ns, pod_manifest("stubborn", ["sh", "-c", "trap '' TERM; sleep 30"]))
    wait_phase(api, ns, "stubborn", "Running")
    rt = server.kubelet._find(ns, "stubborn")
    start = time.monotonic()
    api.delete_namespaced_pod("stubborn", ns, grace_period_seconds=1)

    def gone():
        try:
            api.read_namespaced_pod("stubborn", ns)
        except client.ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, 5, "the pod to go")
    took = time.monotonic() - start
    assert 0.9 <= took < 3, took
    assert rt.exit_code == 137  # SIGKILL after the grace, as a runtime reports it
    assert not rt.log_path.exists()

    api.create_namespaced_pod(ns, sleeper("quick"))
    wait_phase(api, ns, "quick", "Running")
    start = time.monotonic()
    api.delete_namespaced_pod("quick", ns, grace_period_seconds=0)
    wait_for(lambda: _absent(api, ns, "quick"), 3, "quick to go")
    assert time.monotonic() - start < 1


def _absent(api, ns, name):
    try:
        api.read_namespaced_pod(name, ns)
    except client.ApiException as e:
        return e.status == 404
    return False


def test_a_second_pod_for_the_only_gpu_waits_until_the_first_goes(cluster, ns):
    server, api = cluster
    sel = {"aladdin/gpu": "a100-80g"}
    api.create_namespaced_pod(ns, sleeper("gpu-1", gpu=1, selector=sel))
    first = wait_phase(api, ns, "gpu-1", "Running")
    assert first.spec.node_name == "gpu-node"
    api.create_namespaced_pod(ns, sleeper("gpu-2", gpu=1, selector=sel))

    def unschedulable():
        pod = api.read_namespaced_pod("gpu-2", ns)
        conds = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
        return conds and conds[0].status == "False" and (pod, conds[0])

    pod, cond = wait_for(unschedulable, 5, "gpu-2 unschedulable")
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    assert cond.reason == "Unschedulable"
    assert cond.message == (
        "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match "
        "Pod's node affinity/selector. preemption: 0/2 nodes are available: 1 No preemption "
        "victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    )
    events = [e for e in server.store.list("events", ns) if e["involvedObject"]["name"] == "gpu-2"]
    assert [e["reason"] for e in events] == ["FailedScheduling"]
    code, body = raw_get(server, f"/api/v1/namespaces/{ns}/pods/gpu-2/log")
    assert (code, body["message"]) == (
        400,
        'container "main" in pod "gpu-2" is waiting to start: ContainerCreating',
    )

    api.delete_namespaced_pod("gpu-1", ns, grace_period_seconds=0)
    second = wait_phase(api, ns, "gpu-2", "Running", timeout=5)
    assert second.spec.node_name == "gpu-node"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_worker_reaches_worker_0_by_its_headless_service_name(cluster, ns):
    server, api = cluster
    port = _free_port()
    api.create_namespaced_service(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "job-7"},
            "spec": {"clusterIP": "None", "selector": {"job": "7"}, "ports": [{"port": port}]},
        },
    )
    listen = (
        "import socket\n"
        f"s = socket.create_server(('0.0.0.0', {port}))\n"
        "print('listening', socket.gethostname(), flush=True)\n"
        "c, _ = s.accept(); c.sendall(b'hello from 0'); c.close()\n"
    )
    connect = (
        "import socket, time\n"
        "for _ in range(50):\n"
        "    try:\n"
        f"        c = socket.create_connection(('w-0.job-7', {port})); break\n"
        "    except OSError: time.sleep(0.1)\n"
        "ns = __import__('os').environ['NS']\n"
        "names = ['w-0.job-7.' + ns + '.svc', 'w-0.job-7.' + ns + '.svc.cluster.local']\n"
        "print(c.recv(100).decode(), *[socket.gethostbyname(n) for n in names])\n"
    )
    ns_env = [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    api.create_namespaced_pod(
        ns, pod_manifest("w0", [PY, "-c", listen], hostname="w-0", subdomain="job-7")
    )
    wait_for(
        lambda: api.read_namespaced_pod_log("w0", ns) if phase(api, ns, "w0") == "Running" else "",
        5,
    )
    api.create_namespaced_pod(
        ns,
        pod_manifest("w1", [PY, "-c", connect], hostname="w-1", subdomain="job-7", env=ns_env),
    )
    wait_phase(api, ns, "w1", "Succeeded", "Failed")
    assert api.read_namespaced_pod_log("w1", ns) == "hello from 0 127.0.0.1 127.0.0.1\n"
    assert api.read_namespaced_pod_log("w0", ns) == "listening w-0\n"


def test_port_forward_reaches_a_listening_process_and_reports_refusal(cluster, ns):
    server, api = cluster
    port, closed = _free_port(), _free_port()
    echo = (
        "import socket\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\n"
        "while True:\n"
        "    c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()\n"
    )
    api.create_namespaced_pod(ns, pod_manifest("web", [PY, "-c", echo]))
    wait_phase(api, ns, "web", "Running")

    def connect_once():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(connect_once, 5, "the server to listen")
    pf = portforward(api.connect_get_namespaced_pod_portforward, "web", ns, ports=str(port))
    sock = pf.socket(port)
    sock.sendall(b"ping")
    data = b""
    while len(data) < 4:
        more = sock.recv(100)
        if not more:
            break
        data += more
    assert data == b"PING"
    sock.close()

    pf = portforward(api.connect_get_namespaced_pod_portforward, "web", ns, ports=str(closed))
    wait_for(lambda: pf.error(closed), 5, "the error channel")
    assert f"dial tcp4 127.0.0.1:{closed}: connect: connection refused" in pf.error(closed)
    pf.close()
