"""The pod informer: a cache of the portal's pods, kept by list + watch (issue 19).

One informer per process kind lists every pod that carries the portal's
label selector (all namespaces, in pages), then watches from the list's
``resourceVersion``. The cache is what the backend answers
``list_workloads()`` from: status is level-triggered (``base.py``), so the
cache must converge to the cluster whatever the watch missed. The loop keeps
these invariants, after client-go's reflector:

- a watch resumes from the last resourceVersion it saw, an event's or a
  BOOKMARK's, so a watch that ends normally (its ``timeoutSeconds``) costs
  one request, not a re-list of every pod;
- a 410 (Expired/Gone: the server no longer has history that old), whether
  it is the HTTP status or an ERROR event inside a 200 stream, re-lists;
- a re-list replaces every cached pod, page by page, forgets those no page
  had, and reports what changed in between, including a synthetic DELETED
  for a pod that vanished during the gap (nobody else will ever say it is
  gone);
- every ``resync_seconds`` the informer re-lists anyway (what client-go
  calls a restart), which repairs anything a bug or a lost event left;
- other failures back off (jittered, capped) and retry: a transport error
  re-watches from the last resourceVersion, an ERROR event re-lists.

Pods stay the plain dicts the JSON decodes to: building the client's model
classes for 10,000 pods costs many times the decoding itself
(``docs/benchmarks.md``, "Kubernetes watcher"). Callers must not mutate
what :meth:`PodInformer.get` and :meth:`PodInformer.list` return: the cache
replaces a pod's dict on each change and never edits one in place, so
handing out the stored dict is safe only read-only.

Memory grows with the number of pods only: no event is kept once applied.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# The client ships no type hints; unused-ignore: in case the project later ignores it in pyproject.
from kubernetes import client  # type: ignore[import-untyped,unused-ignore]

from aladdin.cluster.base import LABEL_KIND

log = logging.getLogger(__name__)

Pod = dict[str, Any]
Pods = list[Pod]  # spelled once here: PodInformer.list shadows the builtin in the class
Key = tuple[str, str]
OnEvent = Callable[[str, Pod], None]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
BOOKMARK = "BOOKMARK"
ERROR = "ERROR"

# A page of 500 pods is client-go's default; a list of 10,000 pods is 20
# requests, each small enough that the API server never holds a huge body.
PAGE_SIZE = 500
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
# A watch that sends nothing for this long past its own timeout is a dead
# connection (a half-open TCP peer never closes it): give up and re-watch.
READ_SLACK = 30
CONNECT_TIMEOUT = 10
LIST_TIMEOUT = 120


class _Expired(Exception):  # noqa: N818 - the API's own word for the condition
    """The server no longer has the history to resume from: re-list."""


class _StreamError(Exception):
    """The watch stream carried an ERROR other than 410: the state is unknown, re-list."""


def _key(pod: Pod) -> Key:
    meta = pod.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def drop_managed_fields(pod: Pod) -> Pod:
    """The default ``transform``: a pod without ``metadata.managedFields``.

    The API server's field-ownership records (server-side apply) are often a
    third of a pod's JSON and nothing the portal reads; client-go's
    informers drop them the same way (``SetTransform``).
    """
    (pod.get("metadata") or {}).pop("managedFields", None)
    return pod


def _rv(obj: Pod) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion") or ""


class _Backoff:
    """Exponential backoff, capped, each wait drawn from the upper half of its step; reset after a success."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP):
        self.first = first
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.first * (2**self.failures))
        self.failures = min(self.failures + 1, 30)
        # Jittered so that every portal process does not hit a recovering
        # API server in the same instant.
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class PodInformer:
    """A cache of the pods matching ``label_selector``, kept by one daemon thread.

    ``on_event(type, pod)`` is called, on the informer's thread and outside
    the cache lock, for every change applied: ADDED, MODIFIED, DELETED from
    the watch, and after a re-list ADDED for new pods, MODIFIED for pods
    whose resourceVersion changed and DELETED (synthetic) for pods that are
    gone. An exception in it is logged, never stops the informer.

    ``transform(pod)`` (default :func:`drop_managed_fields`) is applied to
    every pod before it is cached: what the portal never reads need not be
    held for every pod (client-go's ``SetTransform``).

    Counters (ints, read without a lock): ``relists`` (every list,
    the first included), ``events`` (watch events applied), ``bookmarks``,
    ``errors`` (failures that led to a backoff).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        label_selector: str,
        resync_seconds: float = 300,
        watch_timeout_seconds: int = 240,
        on_event: OnEvent | None = None,
        page_size: int = PAGE_SIZE,
        transform: Callable[[Pod], Pod] | None = drop_managed_fields,
    ):
        self._api = client.CoreV1Api(api_client)
        self.label_selector = label_selector
        self.resync_seconds = resync_seconds
        self.watch_timeout_seconds = watch_timeout_seconds
        self.page_size = page_size
        self._transform = transform
        self._on_event = on_event
        self._lock = threading.Lock()
        self._pods: dict[Key, Pod] = {}
        self._by_name: dict[str, Key] = {}
        self._rv = ""
        self._stopping = threading.Event()
        self._resp: Any = None  # the open watch response, for stop() to shut
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()
        self.relists = 0
        self.events = 0
        self.bookmarks = 0
        self.errors = 0

    # --- the cache ------------------------------------------------------------------

    def get(self, name: str) -> Pod | None:
        """The pod named ``name`` in any namespace (names are unique), or None. Read-only."""
        with self._lock:
            key = self._by_name.get(name)
            return self._pods.get(key) if key else None

    def list(self) -> Pods:
        """A snapshot of every cached pod (a new list of the stored, read-only dicts)."""
        with self._lock:
            return list(self._pods.values())

    def __len__(self) -> int:
        return len(self._pods)

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (a list's, an event's or a bookmark's)."""
        return self._rv

    def wait_synced(self, timeout: float | None = None) -> bool:
        """True once the first list has filled the cache; False if ``timeout`` passed first."""
        return self.synced.wait(timeout)

    # --- the thread -----------------------------------------------------------------

    def start(self) -> PodInformer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pod-informer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread, promptly even in an idle watch: its socket is shut under it."""
        self._stopping.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except (OSError, ValueError):  # already closed: the loop is ending anyway
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = _Backoff()
        need_list = True
        next_resync = listed_at = 0.0
        while not self._stopping.is_set():
            try:
                if need_list or time.monotonic() >= next_resync:
                    self._relist()
                    need_list = False
                    listed_at = time.monotonic()
                    next_resync = listed_at + self.resync_seconds
                    backoff.reset()
                timeout = max(
                    1, min(self.watch_timeout_seconds, math.ceil(next_resync - time.monotonic()))
                )
                started = time.monotonic()
                seen = self._watch(timeout)
                if seen:
                    backoff.reset()
                elif time.monotonic() - started < 1 and not self._stopping.is_set():
                    # A watch that ends at once with nothing in it, again and
                    # again, would otherwise spin on the API server.
                    self._stopping.wait(backoff.next())
            except _Expired:
                need_list = True
                if time.monotonic() - listed_at < 1:
                    # Expired right after a list: a server whose history is
                    # shorter than a list takes. Re-listing at once, again
                    # and again, would be a full list in a tight loop.
                    self._stopping.wait(backoff.next())
            except Exception as exc:
                if self._stopping.is_set():
                    break
                self.errors += 1
                if isinstance(exc, _StreamError):
                    need_list = True
                log.warning(
                    "pod informer: %s; retrying", exc, exc_info=not isinstance(exc, _StreamError)
                )
                self._stopping.wait(backoff.next())

    # --- list -----------------------------------------------------------------------

    def _relist(self) -> None:
        """List every pod, page by page, into the cache; then forget the pods no page had.

        Each page replaces its pods in the cache as it arrives, instead of a
        new cache built beside the old one: the process never holds two
        copies of every pod, so a re-list of 10,000 pods does not raise its
        memory's high-water mark (the allocator keeps what a peak took; a
        first version stepped the RSS up 9 % at each periodic re-list). Meanwhile
        each pod is at the old or the new list's version, both of them real
        states (level-triggered readers converge either way).
        """
        seen: set[Key] = set()
        cont: str | None = None
        limit: int | None = self.page_size
        list_rv: str | None = None
        while True:
            kwargs: dict[str, Any] = {}
            if limit:
                kwargs["limit"] = limit
            if cont:
                kwargs["_continue"] = cont
            try:
                resp = self._api.list_pod_for_all_namespaces(
                    label_selector=self.label_selector,
                    _preload_content=False,
                    _request_timeout=(CONNECT_TIMEOUT, LIST_TIMEOUT),
                    **kwargs,
                )
            except client.ApiException as exc:
                if exc.status == 410 and cont:
                    # The continue token outlived the server's snapshot: start
                    # over in one request, as client-go's pager does.
                    seen.clear()
                    cont, limit, list_rv = None, None, None
                    continue
                raise
            body = json.loads(resp.data)
            del resp
            meta = body.get("metadata") or {}
            if list_rv is None:
                # The first page's: the API server serves every page from
                # that snapshot; a server that does not (the stub) has had
                # changes since, which a watch from here replays.
                list_rv = meta.get("resourceVersion") or ""
            changes: list[tuple[str, Pod]] = []
            with self._lock:
                for item in body.get("items") or ():
                    pod = self._transform(item) if self._transform is not None else item
                    key = _key(pod)
                    seen.add(key)
                    before = self._pods.get(key)
                    if before is None:
                        changes.append((ADDED, pod))
                    elif _rv(before) != _rv(pod):
                        changes.append((MODIFIED, pod))
                    self._pods[key] = pod
                    self._by_name[key[1]] = key
            for change in changes:
                self._emit(*change)
            cont = meta.get("continue") or None
            if not cont:
                break
        with self._lock:
            gone = [(key, pod) for key, pod in self._pods.items() if key not in seen]
            for key, _pod in gone:
                del self._pods[key]
                if self._by_name.get(key[1]) == key:
                    del self._by_name[key[1]]
            self._rv = list_rv or ""
            self.relists += 1
        self.synced.set()
        for _, pod in gone:
            self._emit(DELETED, pod)

    # --- watch ----------------------------------------------------------------------

    def _watch(self, timeout: int) -> int:
        """One watch request from the current resourceVersion; how many lines it applied.

        Returns when the server ends the stream (its timeout); raises
        :class:`_Expired` on a 410, :class:`_StreamError` on another ERROR.
        """
        try:
            resp = self._api.list_pod_for_all_namespaces(
                label_selector=self.label_selector,
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=self._rv,
                timeout_seconds=timeout,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, timeout + READ_SLACK),
            )
        except client.ApiException as exc:
            if exc.status == 410:
                raise _Expired() from exc
            raise
        self._resp = resp
        seen = 0
        try:
            if self._stopping.is_set():  # stop() came between the request and now
                return 0
            for line in _lines(resp):
                self._apply(json.loads(line))
                seen += 1
        except Exception:
            if self._stopping.is_set():
                return seen
            raise
        finally:
            self._resp = None
            resp.close()
        return seen

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == BOOKMARK:
            self._rv = _rv(obj) or self._rv
            self.bookmarks += 1
            return
        if kind == ERROR:
            if obj.get("code") == 410:
                raise _Expired()
            raise _StreamError(f"watch ERROR {obj.get('code')}: {obj.get('message')}")
        if self._transform is not None:
            obj = self._transform(obj)
        key = _key(obj)
        with self._lock:
            if kind == DELETED:
                self._pods.pop(key, None)
                if self._by_name.get(key[1]) == key:
                    del self._by_name[key[1]]
            elif kind in (ADDED, MODIFIED):
                self._pods[key] = obj
                self._by_name[key[1]] = key
            else:
                log.warning("pod informer: unknown watch event %r", kind)
                return
            self._rv = _rv(obj) or self._rv
            self.events += 1
        self._emit(kind, obj)

    def _emit(self, kind: str, pod: Pod) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, pod)
        except Exception:
            log.exception("pod informer: on_event(%s) failed", kind)


def _lines(resp: Any) -> Iterator[bytes]:
    """The stream's lines, each yielded as soon as its newline arrives."""
    # Chunk by chunk, never a fixed-size read: read(65536) would wait for
    # 64 KiB of events before handing over the first.
    if resp.chunked and resp.supports_chunked_reads():
        chunks: Iterator[bytes] = resp.read_chunked(decode_content=False)
    else:
        chunks = iter(lambda: resp.read1(65536), b"")
    rest = b""
    for chunk in chunks:
        if b"\n" not in chunk:
            rest += chunk
            continue
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if rest.strip():
        yield rest


# --- feeding the reconcilers ----------------------------------------------------------


class ReconcileFeed:
    """An ``on_event`` callback: ``send(kind)`` when a pod of that kind changes phase or goes.

    At most one call per ``min_interval`` per kind: a burst of changes
    becomes one call at once and, if more changed during the interval, one
    more at its end (trailing edge), so the last change is never dropped. A
    reconcile pass reads the whole state (level-triggered), so one call after
    many changes does the work of all of them.
    """

    def __init__(self, send: Callable[[str], None], *, min_interval: float = 1.0):
        self.send = send
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._phases: dict[Key, str] = {}  # one entry per live pod, dropped on DELETED
        self._last: dict[str, float] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._closed = False

    def __call__(self, type_: str, pod: Pod) -> None:
        meta = pod.get("metadata") or {}
        kind = (meta.get("labels") or {}).get(LABEL_KIND)
        key = _key(pod)
        with self._lock:
            if type_ == DELETED:
                self._phases.pop(key, None)
            else:
                phase = (pod.get("status") or {}).get("phase") or ""
                if self._phases.get(key) == phase:
                    return
                self._phases[key] = phase
            if not kind or self._closed:
                return
            if kind in self._timers:
                return  # a trailing call is already due: it will cover this change
            wait = self._last.get(kind, -math.inf) + self.min_interval - time.monotonic()
            if wait > 0:
                timer = threading.Timer(wait, self._trailing, args=(kind,))
                timer.daemon = True
                self._timers[kind] = timer
                timer.start()
                return
            self._last[kind] = time.monotonic()
        self._send(kind)

    def _trailing(self, kind: str) -> None:
        with self._lock:
            self._timers.pop(kind, None)
            if self._closed:
                return
            self._last[kind] = time.monotonic()
        self._send(kind)

    def _send(self, kind: str) -> None:
        try:
            self.send(kind)
        except Exception:
            # The next change or the periodic reconcile pass tries again.
            log.exception("reconcile feed: send(%s) failed", kind)

    def close(self) -> None:
        """Cancel the trailing calls still due (at shutdown)."""
        with self._lock:
            self._closed = True
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()


def reconcile_feed(send: Callable[[str], None], *, min_interval: float = 1.0) -> ReconcileFeed:
    """The ``on_event`` callback that feeds the reconcilers (see :class:`ReconcileFeed`)."""
    return ReconcileFeed(send, min_interval=min_interval)
