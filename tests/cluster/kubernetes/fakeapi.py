"""A temporary pods-only list/watch server, until tests/kubestub lands (to be removed)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from kubernetes import client


class FakeStore:
    def __init__(self):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1
        self.pods: dict[tuple[str, str], dict] = {}
        self.history: list[tuple[int, str, dict]] = []
        self.floor = 1
        self.bookmark_due = False

    def _event(self, kind, obj):
        self.history.append((self.rv, kind, json.loads(json.dumps(obj))))
        self.cond.notify_all()

    def create(self, resource, pod):
        with self.lock:
            self.rv += 1
            pod["metadata"]["resourceVersion"] = str(self.rv)
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            self.pods[key] = pod
            self._event("ADDED", pod)
            return pod

    def mutate(self, resource, namespace, name, fn):
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return None
            fn(pod)
            self.rv += 1
            pod["metadata"]["resourceVersion"] = str(self.rv)
            self._event("MODIFIED", pod)
            return pod

    def remove(self, resource, namespace, name):
        with self.lock:
            pod = self.pods.pop((namespace, name), None)
            if pod is None:
                return None
            self.rv += 1
            pod["metadata"]["resourceVersion"] = str(self.rv)
            self._event("DELETED", pod)
            return pod


class FakeApi:
    def __init__(self):
        self.store = FakeStore()
        store = self.store

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                if q.get("watch", "").lower() == "true":
                    return self.watch(q)
                sel = q.get("labelSelector", "")
                with store.lock:
                    items = sorted(
                        (k, p) for k, p in store.pods.items() if sel in p["metadata"]["labels"]
                    )
                    rv = store.rv
                start = int(q.get("continue") or 0)
                limit = int(q.get("limit") or 0) or len(items)
                page = [json.loads(json.dumps(p)) for _, p in items[start : start + limit]]
                meta = {"resourceVersion": str(rv)}
                if start + limit < len(items):
                    meta["continue"] = str(start + limit)
                body = json.dumps({"kind": "PodList", "items": page, "metadata": meta}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def chunk(self, obj):
                data = json.dumps(obj).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def watch(self, q):
                since = int(q.get("resourceVersion") or 0)
                sel = q.get("labelSelector", "")
                deadline = time.monotonic() + int(q.get("timeoutSeconds") or 60)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    if since < store.floor:
                        self.chunk(
                            {
                                "type": "ERROR",
                                "object": {"kind": "Status", "code": 410, "reason": "Expired"},
                            }
                        )
                    else:
                        while time.monotonic() < deadline:
                            with store.lock:
                                out = [(r, k, o) for r, k, o in store.history if r > since]
                                if not out and not store.bookmark_due:
                                    store.cond.wait(0.2)
                                    continue
                                bookmark = store.bookmark_due and q.get("allowWatchBookmarks")
                                store.bookmark_due = False
                                rv = store.rv
                            for r, k, o in out:
                                since = r
                                if sel not in o["metadata"]["labels"]:
                                    continue
                                self.chunk({"type": k, "object": o})
                                since = r
                            if bookmark:
                                self.chunk(
                                    {
                                        "type": "BOOKMARK",
                                        "object": {"metadata": {"resourceVersion": str(rv)}},
                                    }
                                )
                                since = max(since, rv)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def expire_history(self):
        with self.store.lock:
            self.store.history.clear()
            self.store.floor = self.store.rv + 1

    def bookmark(self):
        with self.store.lock:
            self.store.bookmark_due = True
            self.store.cond.notify_all()

    def configuration(self):
        c = client.Configuration()
        c.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return c

    def close(self):
        self.server.shutdown()
        self.server.server_close()
