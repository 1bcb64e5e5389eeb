"""A Kubernetes API server stub on loopback, for tests and benchmarks only (issue 19).

It speaks the real wire format to the real ``kubernetes`` client: JSON
objects with ``resourceVersion``, ``Status`` objects for errors (404, 409, a
quota 403 with the API server's own message, 410 Expired), list with label
and field selectors and ``limit``/``continue``, watch streams with ADDED /
MODIFIED / DELETED / BOOKMARK events and an ERROR event carrying a 410 Status
inside a 200 response, chunked log follow, exec and port-forward over the
websocket channel protocols (``v4.channel.k8s.io``, ``v5.channel.k8s.io``).

Two parts, two modules:

- :mod:`tests.kubestub.server` and :mod:`tests.kubestub.store`: the API
  server and its object store (REST semantics, selectors, quota admission,
  watch history). ``KubeStub`` is the entry point.
- :mod:`tests.kubestub.kubelet`: a simulated scheduler and kubelet. It places
  pods on the stub's nodes by their GPU requests and node selectors, runs each
  container's command as a local process (under bubblewrap, the user's PVC
  directory bound at ``/root``), and serves the pod subresources: log, exec,
  port-forward, the node's ``stats/summary`` and ``metrics.k8s.io`` pod metrics.

The seam between them (both sides keep it exactly)::

    class Store:                                   # tests/kubestub/store.py
        lock: threading.RLock
        def get(self, resource, namespace, name) -> dict | None          # a deep copy
        def list(self, resource, namespace=None, label_selector="", field_selector="") -> list[dict]
        def mutate(self, resource, namespace, name, fn) -> dict | None    # fn(obj) edits in place
            # under the lock; bumps resourceVersion, emits MODIFIED; None if missing
        def remove(self, resource, namespace, name) -> dict | None       # emits DELETED

    class Kubelet:                                 # tests/kubestub/kubelet.py
        def __init__(self, store, root: pathlib.Path, nodes: list[dict]): ...
        def pod_created(self, pod: dict) -> None          # after the store holds it; not under the lock
        def pod_deleting(self, namespace, name, grace_seconds: int) -> None
            # the store has set metadata.deletionTimestamp; the kubelet stops the
            # containers (SIGTERM, SIGKILL after the grace) and then calls store.remove()
        def namespace_deleted(self, namespace) -> None    # its PVC directories go
        def serve_log(self, handler, namespace, name, query) -> None
        def serve_exec(self, handler, namespace, name, query) -> None         # websocket upgrade
        def serve_portforward(self, handler, namespace, name, query) -> None  # websocket upgrade
        def stats_summary(self, node_name) -> dict | None
        def pod_metrics(self, namespace, name) -> dict | None
        def close(self) -> None

    ``handler`` is the server's ``http.server.BaseHTTPRequestHandler`` (HTTP/1.1);
    ``query`` is ``urllib.parse.parse_qs`` of the request's query string.
    Resource names are the API's plural lower-case ones: "pods", "services",
    "namespaces", "nodes", "persistentvolumeclaims", "resourcequotas",
    "limitranges", "networkpolicies", "events". Cluster-scoped: namespace None.

``KubeStub(run_pods=False)`` has no kubelet: pods stay as created (the scale
benchmark drives their status itself through the store).
"""
