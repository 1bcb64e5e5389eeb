"""The stub's scheduler and kubelet, driven through the real ``kubernetes`` client
against ``KubeStub`` on loopback. Workloads use the system's
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
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlencode

import pytest
import websocket
from kubernetes import client
from kubernetes.stream import portforward, stream

from tests.kubestub.server import KubeStub

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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("kubestub")
    with KubeStub(root=root, nodes=copy.deepcopy(NODES)) as server:
        with client.ApiClient(server.configuration()) as api_client:
            yield server, client.CoreV1Api(api_client)


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
    got = _raw_exec(server, ns, "shell", ["sh", "-c", "exit 3"], [], ["v4.channel.k8s.io"])
    assert json.loads(got[3]) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        "[sh -c exit 3], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }

    got = _raw_exec(server, ns, "shell", ["no-such-tool"], [], ["v5.channel.k8s.io"])
    status = json.loads(got[3])
    assert (status["status"], status["reason"], status["code"]) == ("Failure", "InternalError", 500)
    assert 'exec: "no-such-tool": executable file not found in $PATH' in status["message"]

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


def _raw_exec(server, ns, name, command, frames, protocols):
    """Every channel's bytes of one exec, over a websocket of our own."""
    query = urlencode([("command", c) for c in command])
    query += "&stdin=true&stdout=true&stderr=true"
    ws = websocket.create_connection(
        f"ws{server.url[4:]}/api/v1/namespaces/{ns}/pods/{name}/exec?{query}",
        subprotocols=protocols,
        timeout=10,
    )
    assert ws.getsubprotocol() == protocols[0]
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
    frames = [b"\x00abc", b"\x00de", b"\xff\x00"]
    got = _raw_exec(
        server, ns, "v5", ["wc", "-c"], frames, ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    )
    assert got[1].strip() == b"5"
    assert json.loads(got[3]) == {"metadata": {}, "status": "Success"}

    # As the API server: the client's first choice that it speaks.
    ws = websocket.create_connection(
        f"ws{server.url[4:]}/api/v1/namespaces/{ns}/pods/v5/exec?command=true&stdout=true",
        subprotocols=["v4.channel.k8s.io", "v5.channel.k8s.io"],
    )
    assert ws.getsubprotocol() == "v4.channel.k8s.io"
    ws.close()


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
    assert time.monotonic() - start < 2  # no grace: SIGKILL at once


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


def test_exec_sees_the_containers_volumes_and_dies_with_its_websocket(cluster, ns):
    server, api = cluster
    body = pod_manifest("dev", ["sleep", "30"])
    body["spec"]["volumes"].append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    main = body["spec"]["containers"][0]
    main["volumeMounts"].append({"name": "dshm", "mountPath": "/dev/shm"})
    main["workingDir"] = "/root/work"
    api.create_namespaced_pod(ns, body)
    wait_phase(api, ns, "dev", "Running")
    out = stream(
        api.connect_get_namespaced_pod_exec,
        "dev",
        ns,
        command=["sh", "-c", "pwd; echo x > /dev/shm/seen; ls /dev/shm"],
        stdout=True,
        stderr=True,
    )
    # Memory-backed and fresh: only what this pod wrote is there.
    assert out == "/root/work\nseen\n"

    rt = server.kubelet._find(ns, "dev")
    query = "command=sleep&command=30&stdout=true"
    ws = websocket.create_connection(
        f"ws{server.url[4:]}/api/v1/namespaces/{ns}/pods/dev/exec?{query}",
        subprotocols=["v4.channel.k8s.io"],
    )
    wait_for(lambda: rt.execs, 5, "the exec to start")
    (proc,) = rt.execs
    ws.close()
    wait_for(lambda: proc.poll() is not None, 5, "the exec'd command to die")


def test_an_unschedulable_pod_goes_at_once_and_a_namespace_takes_its_volumes(cluster, ns):
    server, api = cluster
    api.create_namespaced_pod(ns, sleeper("too-big", gpu=4))

    def unschedulable():
        conds = api.read_namespaced_pod("too-big", ns).status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conds)

    wait_for(unschedulable, 5, "too-big unschedulable")
    api.delete_namespaced_pod("too-big", ns)
    wait_for(lambda: _absent(api, ns, "too-big"), 2, "the pending pod to go")

    api.create_namespaced_pod(ns, pod_manifest("w", ["sh", "-c", "echo 1 > /root/f"]))
    wait_phase(api, ns, "w", "Succeeded")
    volumes = server.kubelet.root / "volumes" / ns
    assert (volumes / "home" / "f").exists()
    api.delete_namespace(ns)
    wait_for(lambda: not volumes.exists(), 5, "the namespace's volumes to go")


def test_a_pod_without_a_command_fails_to_start_unless_its_image_has_an_entrypoint(cluster, ns):
    server, api = cluster
    body = pod_manifest("bare", None)
    del body["spec"]["containers"][0]["command"]
    api.create_namespaced_pod(ns, body)
    pod = wait_phase(api, ns, "bare", "Failed")
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (128, "StartError")
    assert "has no command" in term.message

    api.create_namespaced_pod(ns, pod_manifest("typo", ["/usr/bin/no-such-tool"]))
    pod = wait_phase(api, ns, "typo", "Failed")
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (128, "StartError")
    assert 'exec: "/usr/bin/no-such-tool": stat /usr/bin/no-such-tool' in term.message

    server.kubelet.entrypoints["registry.example/echo:1"] = ["echo"]
    body = pod_manifest("entry", None)
    container = body["spec"]["containers"][0]
    del container["command"]
    container.update(image="registry.example/echo:1", args=["from", "$(WHO)"])
    container["env"] = [{"name": "WHO", "value": "entrypoint"}]
    api.create_namespaced_pod(ns, body)
    wait_phase(api, ns, "entry", "Succeeded")
    assert api.read_namespaced_pod_log("entry", ns) == "from entrypoint\n"


def test_a_tainted_node_takes_only_pods_that_tolerate_it():
    from tests.kubestub.kubelet import _untolerated

    node = {
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}
    }
    pod = {"spec": {}}
    assert _untolerated(pod, node) == "nvidia.com/gpu: present"
    pod["spec"]["tolerations"] = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert _untolerated(pod, node) is None


def test_init_containers_run_first_in_the_same_volumes(cluster, ns):
    server, api = cluster
    body = pod_manifest("with-init", ["cat", "/tools/marker"])
    body["spec"]["volumes"].append({"name": "tools", "emptyDir": {}})
    body["spec"]["containers"][0]["volumeMounts"].append({"name": "tools", "mountPath": "/tools"})
    body["spec"]["initContainers"] = [
        {
            "name": "copy",
            "image": "registry.example/tools:1",
            "command": ["sh", "-c", "echo copied > /tools/marker"],
            "volumeMounts": [{"name": "tools", "mountPath": "/tools"}],
        }
    ]
    api.create_namespaced_pod(ns, body)
    wait_phase(api, ns, "with-init", "Succeeded")
    assert api.read_namespaced_pod_log("with-init", ns) == "copied\n"


def test_without_bubblewrap_a_pod_fails_and_says_why(cluster, ns, monkeypatch):
    from tests.kubestub import kubelet as kubelet_module

    server, api = cluster
    monkeypatch.setattr(kubelet_module, "BWRAP", None)
    api.create_namespaced_pod(ns, sleeper("no-bwrap"))
    pod = wait_phase(api, ns, "no-bwrap", "Failed")
    assert "bubblewrap (bwrap) is not installed" in pod.status.message
