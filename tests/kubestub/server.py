"""The stub Kubernetes API server: plain HTTP/1.1 on loopback, the real wire format.

``KubeStub`` serves the core/v1 and networking.k8s.io/v1 REST paths the portal's
backend uses, through :class:`tests.kubestub.store.Store`, and hands the pod
subresources (log, exec, port-forward, node stats, pod metrics) to the simulated
kubelet (:mod:`tests.kubestub.kubelet`) when ``run_pods`` is true.

Connections are kept alive (the client's urllib3 pool reuses them), so every
answer carries a Content-Length or is chunked; Nagle is off, or each small answer
would wait out the peer's delayed ACK (40 ms a request).
"""

from __future__ import annotations

import collections
import json
import queue
import select
import shutil
import socket
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.kubestub.store import (
    RESOURCES,
    ApiError,
    ResourceInfo,
    Store,
    bad_request,
    conflict,
    forbidden,
    not_found,
)

__all__ = ["DEFAULT_NODES", "KubeStub"]

DEFAULT_NODES: list[dict] = [
    {
        "name": "node-1",
        "labels": {"kubernetes.io/hostname": "node-1", "aladdin.io/gpu-model": "80g"},
        "allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "1", "pods": "110"},
    },
    {
        "name": "node-2",
        "labels": {"kubernetes.io/hostname": "node-2", "aladdin.io/gpu-model": "40g"},
        "allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "2", "pods": "110"},
    },
]

_SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_WATCH_DEFAULT_SECONDS = 1800  # the real server's --min-request-timeout
_IDLE_POLL = 0.5  # how often an idle watch looks for a client that went away
_CORE = {name: info for name, info in RESOURCES.items() if not info.group}
_GROUPS = {
    "networking.k8s.io": {
        name: info for name, info in RESOURCES.items() if info.group == "networking.k8s.io"
    }
}


def _node_object(node: dict) -> dict:
    """A Node from either a full Node object or the short form {name, labels, allocatable}."""
    if "metadata" in node:
        obj = json.loads(json.dumps(node))
    else:
        allocatable = dict(node.get("allocatable") or {})
        obj = {
            "metadata": {"name": node["name"], "labels": dict(node.get("labels") or {})},
            "spec": {},
            "status": {
                "capacity": dict(node.get("capacity") or allocatable),
                "allocatable": allocatable,
            },
        }
    status = obj.setdefault("status", {})
    status.setdefault(
        "conditions",
        [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        ],
    )
    status.setdefault("addresses", [{"type": "InternalIP", "address": "127.0.0.1"}])
    status.setdefault(
        "nodeInfo",
        {
            "machineID": obj["metadata"]["name"],
            "systemUUID": obj["metadata"]["name"],
            "bootID": obj["metadata"]["name"],
            "kernelVersion": "6.1.0",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "containerRuntimeVersion": "kubestub://1",
            "kubeletVersion": "v1.34.1",
            "kubeProxyVersion": "v1.34.1",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    )
    return obj


def _q1(query: dict, key: str, default: str | None = None) -> str | None:
    values = query.get(key)
    return values[0] if values else default


def _truthy(value: str | None) -> bool:
    """Go's strconv.ParseBool, as the API server reads flags (the Python client sends "True")."""
    return value in ("1", "t", "T", "true", "True", "TRUE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops connects when a benchmark opens many at once
    stub: KubeStub

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "kubestub/1.34"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing -------------------------------------------------------------------------

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, code: int, payload: Any) -> None:
        data = (
            payload
            if isinstance(payload, bytes)
            else json.dumps(payload, separators=(",", ":")).encode()
        )
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_text(self, code: int, text: bytes, content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def peer_gone(self) -> bool:
        """True once the client closed its end (an idle watch has nothing else to tell by)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _dispatch(self, method: str) -> None:
        stub = self.server.stub
        body = b""
        try:
            body = self.read_body()
            stub._route(self, method, body)
        except ApiError as e:
            self._try_send(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # the stub's own bug: answer as the API server would, keep serving
            traceback.print_exc()
            self._try_send(
                500,
                ApiError(500, "InternalError", f"Internal error occurred: {e!r}", {}).status(),
            )

    def _try_send(self, code: int, payload: dict) -> None:
        try:
            self.send_json(code, payload)
        except OSError:
            self.close_connection = True


class KubeStub:
    """An API server on 127.0.0.1 for tests and benchmarks; a context manager."""

    def __init__(
        self,
        *,
        run_pods: bool = True,
        root: Path | None = None,
        nodes: list[dict] | None = None,
        bookmark_seconds: float = 1.0,
        history: int = 10000,
    ) -> None:
        self.run_pods = run_pods
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="kubestub-"))
        self.nodes = [_node_object(n) for n in (nodes if nodes is not None else DEFAULT_NODES)]
        self.bookmark_seconds = bookmark_seconds
        self.store = Store(history=history)
        self.kubelet: Any = None  # tests.kubestub.kubelet.Kubelet when run_pods
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._requests_lock = threading.Lock()
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._cleanups: list[threading.Thread] = []
        for name in _SYSTEM_NAMESPACES:
            self.store.create("namespaces", None, {"metadata": {"name": name}}, copy=False)
        for node in self.nodes:
            self.store.create("nodes", None, json.loads(json.dumps(node)), copy=False)
        if run_pods:
            from tests.kubestub.kubelet import Kubelet  # the other half; imported only when asked

            stored = [self.store.get("nodes", None, n["metadata"]["name"]) for n in self.nodes]
            self.kubelet = Kubelet(self.store, self.root, stored)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> KubeStub:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.stub = self
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="kubestub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
        self.store.close()
        if self.kubelet is not None:
            self.kubelet.close()
        if server is not None:
            with server.connections_lock:
                open_connections = list(server.connections)
            for conn in open_connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for cleanup in self._cleanups:
            cleanup.join(timeout=5)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> KubeStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def configuration(self):
        import kubernetes.client

        config = kubernetes.client.Configuration()
        config.host = self.url
        return config

    def write_kubeconfig(self, path: Path) -> Path:
        # JSON is YAML: the client's kubeconfig loader reads it as is.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubestub", "cluster": {"server": self.url}}],
            "users": [{"name": "kubestub", "user": {}}],
            "contexts": [
                {
                    "name": "kubestub",
                    "context": {"cluster": "kubestub", "user": "kubestub", "namespace": "default"},
                }
            ],
            "current-context": "kubestub",
            "preferences": {},
        }
        path = Path(path)
        path.write_text(json.dumps(config, indent=2))
        return path

    def expire_history(self) -> None:
        self.store.expire_history()

    def _count(self, method: str, template: str) -> None:
        with self._requests_lock:  # Counter's += is not atomic across handler threads
            self.requests[(method, template)] += 1

    # -- routing --------------------------------------------------------------------------

    def _route(self, h: _Handler, method: str, body: bytes) -> None:
        split = urlsplit(h.path)
        path, query = split.path.rstrip("/") or "/", parse_qs(split.query, keep_blank_values=True)
        parts = [unquote(p) for p in path.split("/") if p]
        if path in ("/version", "/api", "/apis", "/api/v1", "/healthz", "/readyz", "/livez"):
            self._count(method, path)
            return self._discovery(h, path)
        if parts[:2] == ["api", "v1"]:
            prefix, resources, rest = "/api/v1", _CORE, parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            prefix, rest = f"/apis/{parts[1]}/{parts[2]}", parts[3:]
            if parts[1] == "metrics.k8s.io" and parts[2] == "v1beta1":
                return self._metrics(h, method, prefix, rest)
            resources = _GROUPS.get(parts[1]) if parts[2] == "v1" else None
            if resources is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if not rest:
                self._count(method, prefix)
                return self._discovery(h, prefix)
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

        namespace = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and rest[2] in resources
            and resources[rest[2]].namespaced
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or rest[0] not in resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        info = resources[rest[0]]
        name = rest[1] if len(rest) > 1 else None
        sub = "/".join(rest[2:]) or None
        if name is not None and info.namespaced and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

        template = (
            prefix
            + ("/namespaces/{namespace}" if namespace is not None else "")
            + f"/{info.resource}"
        )
        if name is not None:
            template += "/{name}"
        if sub:
            template += f"/{sub}"
        watching = method == "GET" and name is None and _truthy(_q1(query, "watch"))
        self._count("WATCH" if watching else method, template)

        if name is None:
            return self._collection(h, method, info, namespace, query, body, watching)
        if sub is None or sub == "status":
            return self._object(h, method, info, namespace, name, sub, query, body)
        return self._subresource(h, method, info, namespace, name, sub, query, body)

    def _discovery(self, h: _Handler, path: str) -> None:
        if path == "/version":
            return h.send_json(
                200,
                {
                    "major": "1",
                    "minor": "34",
                    "gitVersion": "v1.34.1",
                    "gitCommit": "kubestub",
                    "gitTreeState": "clean",
                    "buildDate": "2025-09-09T00:00:00Z",
                    "goVersion": "go1.24.6",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                },
            )
        if path in ("/healthz", "/readyz", "/livez"):
            return h.send_text(200, b"ok")
        if path == "/api":
            host = self.url.removeprefix("http://")
            return h.send_json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": host}
                    ],
                },
            )
        if path == "/apis":
            groups = []
            for group, version in (("networking.k8s.io", "v1"), ("metrics.k8s.io", "v1beta1")):
                gv = {"groupVersion": f"{group}/{version}", "version": version}
                groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
            return h.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        resources = _CORE if path == "/api/v1" else _GROUPS["networking.k8s.io"]
        group_version = "v1" if path == "/api/v1" else "networking.k8s.io/v1"
        listed = []
        for info in resources.values():
            verbs = [
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
            listed.append(
                {
                    "name": info.resource,
                    "singularName": info.kind.lower(),
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": verbs,
                }
            )
            if info.has_status:
                listed.append(
                    {
                        "name": f"{info.resource}/status",
                        "singularName": "",
                        "namespaced": info.namespaced,
                        "kind": info.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return h.send_json(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": listed,
            },
        )

    # -- collections ----------------------------------------------------------------------

    def _collection(self, h, method, info: ResourceInfo, namespace, query, body, watching) -> None:
        labels = _q1(query, "labelSelector", "") or ""
        fields = _q1(query, "fieldSelector", "") or ""
        if method == "GET" and watching:
            return self._watch(h, info, namespace, query, labels, fields)
        if method == "GET":
            try:
                limit = int(_q1(query, "limit", "0") or 0)
            except ValueError:
                raise bad_request("limit: Invalid value: must be an integer") from None
            items, rv, token, remaining = self.store.list_raw(
                info.resource, namespace, labels, fields, limit, _q1(query, "continue", "") or ""
            )
            meta: dict[str, Any] = {"resourceVersion": rv}
            if token:
                meta["continue"] = token
            if remaining is not None:
                meta["remainingItemCount"] = remaining
            head = json.dumps(
                {"kind": f"{info.kind}List", "apiVersion": info.api_version, "metadata": meta},
                separators=(",", ":"),
            ).encode()
            return h.send_json(200, head[:-1] + b',"items":[' + b",".join(items) + b"]}")
        if method == "POST":
            if info.namespaced and namespace is None:
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            obj = self._parse(body)
            dry_run = bool(query.get("dryRun"))
            created = self.store.create(info.resource, namespace, obj, dry_run=dry_run)
            assert created is not None
            if info.resource == "pods" and self.kubelet is not None and not dry_run:
                self.kubelet.pod_created(json.loads(json.dumps(created)))
            return h.send_json(201, created)
        if method == "DELETE":
            return self._delete_collection(h, info, namespace, query, labels, fields, body)
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _delete_collection(self, h, info, namespace, query, labels, fields, body) -> None:
        options = self._delete_options(query, body)
        deleted = []
        for obj in self.store.list(info.resource, namespace, labels, fields):
            meta = obj["metadata"]
            try:
                deleted.append(self._delete_one(info, meta.get("namespace"), meta["name"], options))
            except ApiError as e:
                if e.code != 404:
                    raise
        items = [d if d.get("kind") != "Status" else None for d in deleted]
        h.send_json(
            200,
            {
                "kind": f"{info.kind}List",
                "apiVersion": info.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": [i for i in items if i is not None],
            },
        )

    def _watch(self, h: _Handler, info: ResourceInfo, namespace, query, labels, fields) -> None:
        watcher = self.store.watch(
            info.resource, namespace, labels, fields, _q1(query, "resourceVersion")
        )
        try:
            timeout = float(_q1(query, "timeoutSeconds") or _WATCH_DEFAULT_SECONDS)
        except ValueError:
            timeout = _WATCH_DEFAULT_SECONDS
        if timeout <= 0:
            timeout = _WATCH_DEFAULT_SECONDS
        bookmarks = _truthy(_q1(query, "allowWatchBookmarks"))
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-cache, private")
        h.end_headers()
        try:
            if watcher.expired is not None:
                error = ApiError(410, "Expired", watcher.expired).status()
                h.write_chunk(
                    json.dumps({"type": "ERROR", "object": error}, separators=(",", ":")).encode()
                    + b"\n"
                )
                h.end_chunks()
                return
            self._pump(h, info, watcher, timeout, bookmarks)
            h.end_chunks()
        except OSError:
            h.close_connection = True
        finally:
            watcher.close()

    def _pump(
        self, h: _Handler, info: ResourceInfo, watcher, timeout: float, bookmarks: bool
    ) -> None:
        start = time.monotonic()
        deadline = start + timeout
        next_bookmark = start + self.bookmark_seconds
        bookmark_head = (
            b'{"type":"BOOKMARK","object":{"kind":"' + info.kind.encode() + b'","apiVersion":"'
        )
        bookmark_head += info.api_version.encode() + b'","metadata":{"resourceVersion":"'
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wake = min(deadline, next_bookmark if bookmarks else deadline, now + _IDLE_POLL)
            try:
                item = watcher.queue.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                item = b""
            if item is None:
                return
            if item:
                batch = [item]
                closing = False
                while len(batch) < 512:
                    try:
                        more = watcher.queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        closing = True
                        break
                    batch.append(more)
                h.write_chunk(b"".join(batch))
                if closing:
                    return
            elif h.peer_gone():
                raise BrokenPipeError
            if bookmarks and time.monotonic() >= next_bookmark:
                rv = watcher.bookmark_rv()
                if rv is not None:
                    h.write_chunk(bookmark_head + rv.encode() + b'"}}}\n')
                    next_bookmark = time.monotonic() + self.bookmark_seconds

    # -- single objects -------------------------------------------------------------------

    @staticmethod
    def _parse(body: bytes) -> Any:
        try:
            return json.loads(body or b"{}")
        except ValueError as e:
            raise bad_request(f"the body of the request was in an unknown format: {e}") from None

    def _object(self, h, method, info: ResourceInfo, namespace, name, sub, query, body) -> None:
        store = self.store
        dry_run = bool(query.get("dryRun"))
        if sub == "status" and not info.has_status:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            obj = store.get(info.resource, namespace, name)
            if obj is None:
                raise not_found(info, name)
            return h.send_json(200, obj)
        if method == "PUT":
            return h.send_json(
                200,
                store.replace(
                    info.resource, namespace, name, self._parse(body), sub, dry_run=dry_run
                ),
            )
        if method == "PATCH":
            content_type = h.headers.get("Content-Type") or "application/strategic-merge-patch+json"
            return h.send_json(
                200,
                store.patch(
                    info.resource, namespace, name, body, content_type, sub, dry_run=dry_run
                ),
            )
        if method == "DELETE" and sub is None:
            options = self._delete_options(query, body)
            return h.send_json(200, self._delete_one(info, namespace, name, options))
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    @staticmethod
    def _delete_options(query: dict, body: bytes) -> dict:
        options: dict[str, Any] = {}
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                raise bad_request("the body of the request was in an unknown format") from None
            if isinstance(parsed, dict):
                options.update(parsed)
        grace = _q1(query, "gracePeriodSeconds")
        if grace is not None and options.get("gracePeriodSeconds") is None:
            try:
                options["gracePeriodSeconds"] = int(grace)
            except ValueError:
                raise bad_request("gracePeriodSeconds: Invalid value: must be an integer") from None
        if query.get("dryRun") and not options.get("dryRun"):
            options["dryRun"] = query["dryRun"]
        if _q1(query, "propagationPolicy") and not options.get("propagationPolicy"):
            options["propagationPolicy"] = _q1(query, "propagationPolicy")
        return options

    def _delete_one(self, info: ResourceInfo, namespace, name, options: dict) -> dict:
        if options.get("dryRun"):
            return self.store.delete(info.resource, namespace, name, options, dry_run=True)
        if info.resource == "namespaces":
            return self._delete_namespace(name, options)
        if info.resource == "pods" and self.kubelet is not None:
            pod = self.store.get("pods", namespace, name)
            if pod is None:
                raise not_found(info, name)
            grace = options.get("gracePeriodSeconds")
            if grace is None:
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            grace = max(0, int(grace))
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                grace = 0  # the real strategy deletes finished pods at once
            obj, news = self.store.begin_pod_deletion(namespace, name, grace, options)
            if news:
                self.kubelet.pod_deleting(namespace, name, grace)
            return obj
        return self.store.delete(info.resource, namespace, name, options)

    def _delete_namespace(self, name: str, options: dict) -> dict:
        store = self.store
        info = RESOURCES["namespaces"]
        if name in ("default", "kube-system", "kube-public"):
            raise forbidden(info, name, "this namespace may not be deleted")
        with store.lock:
            entry = store._entry("namespaces", None, name)
            if entry is None:
                raise not_found(info, name)
            store.check_preconditions(info, entry, options)
            if entry.obj.get("status", {}).get("phase") == "Terminating":
                raise conflict(
                    info,
                    name,
                    "The system is ensuring all content is removed from this namespace.  "
                    "Upon completion, this namespace will automatically be purged by the system.",
                )
            terminating = store.set_namespace_terminating(name)
        # Quotas first, so the pods' going does not rewrite quota status one pod at a time.
        order = ["resourcequotas"] + [
            r
            for r, info in RESOURCES.items()
            if info.namespaced and r not in ("pods", "resourcequotas")
        ]
        for resource in order:
            for obj_name in store.names_in(resource, name):
                store.remove(resource, name, obj_name)
        pods = store.names_in("pods", name)
        if self.kubelet is None or not pods:
            for pod in pods:
                store.remove("pods", name, pod)
            store.remove("namespaces", None, name)
            if self.kubelet is not None:
                self.kubelet.namespace_deleted(name)
            return terminating
        for pod in pods:
            try:
                _, news = store.begin_pod_deletion(name, pod, 0)
            except ApiError:
                continue
            if news:
                self.kubelet.pod_deleting(name, pod, 0)
        # The namespace controller finishes once the kubelet has stopped the pods.
        cleanup = threading.Thread(target=self._finish_namespace, args=(name,), daemon=True)
        self._cleanups.append(cleanup)
        cleanup.start()
        return terminating

    def _finish_namespace(self, name: str) -> None:
        deadline = time.monotonic() + 60
        while self.store.names_in("pods", name) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pod in self.store.names_in("pods", name):
            self.store.remove("pods", name, pod)
        self.store.remove("namespaces", None, name)
        if self.kubelet is not None:
            self.kubelet.namespace_deleted(name)

    # -- subresources served by the kubelet -----------------------------------------------

    def _subresource(
        self, h, method, info: ResourceInfo, namespace, name, sub, query, body
    ) -> None:
        if info.resource == "pods" and sub in ("log", "exec", "portforward", "attach"):
            if self.store.get("pods", namespace, name) is None:
                raise not_found(info, name)
            if sub == "log":
                if self.kubelet is None:
                    return h.send_text(200, b"")
                return self.kubelet.serve_log(h, namespace, name, query)
            if self.kubelet is None:
                raise ApiError(
                    404, "NotFound", f"pods/{sub} needs the kubelet (KubeStub(run_pods=True))"
                )
            if sub == "portforward":
                return self.kubelet.serve_portforward(h, namespace, name, query)
            return self.kubelet.serve_exec(h, namespace, name, query)
        if info.resource == "nodes" and sub == "proxy/stats/summary":
            if self.store.get("nodes", None, name) is None:
                raise not_found(info, name)
            summary = self.kubelet.stats_summary(name) if self.kubelet is not None else None
            if summary is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return h.send_json(200, summary)
        if info.resource == "namespaces" and sub == "finalize" and method == "PUT":
            return h.send_json(200, self.store.replace("namespaces", None, name, self._parse(body)))
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _metrics(self, h: _Handler, method: str, prefix: str, rest: list[str]) -> None:
        template = (
            prefix
            + "/"
            + "/".join(
                "{namespace}" if i == 1 and len(rest) > 2 else ("{name}" if i == 3 else p)
                for i, p in enumerate(rest)
            )
        )
        self._count(method, template)
        not_found_error = ApiError(
            404, "NotFound", "the server could not find the requested resource"
        )
        if method != "GET" or len(rest) < 3 or rest[0] != "namespaces" or rest[2] != "pods":
            raise not_found_error
        namespace = rest[1]
        if len(rest) == 4:
            metrics = (
                self.kubelet.pod_metrics(namespace, rest[3]) if self.kubelet is not None else None
            )
            if metrics is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'podmetrics.metrics.k8s.io "{namespace}/{rest[3]}" not found',
                    {"name": f"{namespace}/{rest[3]}", "group": "metrics.k8s.io", "kind": "pods"},
                )
            return h.send_json(200, metrics)
        if len(rest) == 3:
            items = []
            if self.kubelet is not None:
                for pod in self.store.names_in("pods", namespace):
                    metrics = self.kubelet.pod_metrics(namespace, pod)
                    if metrics is not None:
                        items.append(metrics)
            return h.send_json(
                200,
                {
                    "kind": "PodMetricsList",
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": {},
                    "items": items,
                },
            )
        raise not_found_error
