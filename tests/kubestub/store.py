"""The stub API server's object store: REST semantics, quota admission and watch history.

Invariants the tests and the benchmark rely on:

- One global resource version (an increasing integer, a string on the wire, like
  etcd's); every write bumps it and records one event in a bounded history, in
  order, under ``lock``.
- Each stored object is serialized once per version (``_Entry.raw``): lists join
  cached bytes, watch events wrap them, ``get`` copies by parsing them. Nothing
  hands out a reference to a stored dict, so callers cannot edit the store behind
  its back.
- Watchers get events through their own unbounded queue, filled under the lock
  in resource-version order; a slow reader never blocks a writer.
- A namespace's ResourceQuota ``status.used`` is the sum over its pods that count
  (not Succeeded/Failed, not being deleted), kept incrementally so that the
  benchmark's 1,000 status writes a second do not re-add 10,000 pods each.
"""

from __future__ import annotations

import base64
import binascii
import json
import queue
import random
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.kubestub.selectors import (
    Quantity,
    SelectorError,
    add_quantities,
    parse_field_selector,
    parse_label_selector,
    parse_quantity,
)

__all__ = ["RESOURCES", "ApiError", "ResourceInfo", "Store", "Watcher", "now_rfc3339"]


@dataclass(frozen=True)
class ResourceInfo:
    resource: str
    group: str
    version: str
    kind: str
    namespaced: bool
    has_status: bool
    fields: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: ``pods``, ``networkpolicies.networking.k8s.io``."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def _info(resource, kind, *, group="", version="v1", namespaced=True, status=False, fields=()):
    return ResourceInfo(
        resource, group, version, kind, namespaced, status, _META_FIELDS | frozenset(fields)
    )


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

RESOURCES: dict[str, ResourceInfo] = {
    info.resource: info
    for info in (
        _info("namespaces", "Namespace", namespaced=False, status=True, fields=["status.phase"]),
        _info("nodes", "Node", namespaced=False, status=True, fields=["spec.unschedulable"]),
        _info("pods", "Pod", status=True, fields=_POD_FIELDS),
        _info("services", "Service", status=True),
        _info("persistentvolumeclaims", "PersistentVolumeClaim", status=True),
        _info("resourcequotas", "ResourceQuota", status=True),
        _info("limitranges", "LimitRange"),
        _info("events", "Event", fields=_EVENT_FIELDS),
        _info("configmaps", "ConfigMap"),
        _info("secrets", "Secret", fields=["type"]),
        _info("serviceaccounts", "ServiceAccount"),
        _info("networkpolicies", "NetworkPolicy", group="networking.k8s.io"),
    )
}

# Deleting these answers with the deleted object; the others answer with a Status
# (the registries' ReturnDeletedObject), which is what the typed client expects.
RETURNS_DELETED_OBJECT = frozenset({"pods", "services", "persistentvolumeclaims", "namespaces"})


def now_rfc3339(delta_seconds: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=delta_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- errors: metav1.Status as the API server writes it ---------------------------------------


class ApiError(Exception):
    """An API error; ``status()`` is the ``Status`` object the server sends."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(info: ResourceInfo, name: str, **more: Any) -> dict:
    details: dict[str, Any] = {"name": name}
    if info.group:
        details["group"] = info.group
    details["kind"] = info.resource
    details.update(more)
    return details


def not_found(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{info.qualified} "{name}" not found', _details(info, name))


def already_exists(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{info.qualified} "{name}" already exists', _details(info, name)
    )


def conflict(info: ResourceInfo, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {info.qualified} "{name}": {why}',
        _details(info, name),
    )


def forbidden(info: ResourceInfo, name: str, why: str, causes: list | None = None) -> ApiError:
    details = _details(info, name)
    if causes:
        details["causes"] = causes
    return ApiError(403, "Forbidden", f'{info.qualified} "{name}" is forbidden: {why}', details)


def invalid(info: ResourceInfo, name: str, errors: list[tuple[str, str, str]]) -> ApiError:
    """``errors``: (field, reason, detail), e.g. ("metadata.name", "FieldValueRequired", "Required value: ...")."""
    texts = [f"{field}: {detail}" for field, _, detail in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    # StatusDetails' fields are omitempty: an unnamed object's details have no "name".
    details: dict[str, Any] = {"name": name, "group": info.group, "kind": info.kind}
    details = {k: v for k, v in details.items() if v}
    details["causes"] = [
        {"reason": reason, "message": detail, "field": field} for field, reason, detail in errors
    ]
    return ApiError(422, "Invalid", f'{info.kind} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


# --- names -----------------------------------------------------------------------------------

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def _name_errors(resource: str, name: str) -> list[tuple[str, str, str]]:
    if resource == "namespaces":
        ok, msg, limit = _DNS1123_LABEL.match(name), _LABEL_MSG, 63
    elif resource == "services":
        ok, msg, limit = _DNS1035_LABEL.match(name), _DNS1035_MSG, 63
    else:
        ok, msg, limit = _DNS1123_SUBDOMAIN.match(name), _SUBDOMAIN_MSG, 253
    if ok and len(name) <= limit:
        return []
    if not ok:
        return [("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {msg}')]
    return [
        (
            "metadata.name",
            "FieldValueInvalid",
            f'Invalid value: "{name}": must be no more than {limit} characters',
        )
    ]


_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# --- patches ---------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Lists the strategic merge patch merges item by item (the Go types' patchMergeKey);
# every other list is replaced whole, as in a merge patch.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "imagePullSecrets": "name",
    "conditions": "type",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "ownerReferences": "uid",
    "hostAliases": "ip",
}
_PRIMITIVE_MERGE = frozenset({"finalizers"})


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        current = result.get(key)
        if isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(current, value)
        elif isinstance(value, list) and isinstance(current, list):
            result[key] = _merge_list(key, current, value)
        else:
            result[key] = value
    return result


def _merge_list(key: str, current: list, patch: list) -> list:
    if key in _PRIMITIVE_MERGE:
        return current + [v for v in patch if v not in current]
    merge_key = _MERGE_KEYS.get(key)
    if key == "ports":
        sample = next((p for p in patch + current if isinstance(p, dict)), {})
        merge_key = "containerPort" if "containerPort" in sample else "port"
    if merge_key is None or not all(isinstance(v, dict) for v in patch):
        return [v for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    merged = [dict(item) if isinstance(item, dict) else item for item in current]
    for item in patch:
        directive = item.get("$patch")
        if directive == "replace":
            return [v for v in patch if not (isinstance(v, dict) and "$patch" in v)]
        index = next(
            (
                i
                for i, have in enumerate(merged)
                if isinstance(have, dict) and have.get(merge_key) == item.get(merge_key)
            ),
            None,
        )
        if directive == "delete":
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append({k: v for k, v in item.items() if not k.startswith("$")})
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = json.loads(json.dumps(doc))
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        try:
            if kind == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise ApiError(
                        422,
                        "Invalid",
                        f"the server rejected our request due to an error in our request: testing value {op.get('path')} failed",
                    )
                continue
            if kind in ("move", "copy"):
                source = _pointer(op.get("from", ""))
                value = json.loads(json.dumps(_walk(doc, source)))
                if kind == "move":
                    _remove(doc, source)
                _add(doc, parts, value)
            elif kind == "add":
                _add(doc, parts, op.get("value"))
            elif kind == "remove":
                _remove(doc, parts)
            elif kind == "replace":
                _walk(doc, parts)  # must exist
                _remove(doc, parts)
                _add(doc, parts, op.get("value"))
            else:
                raise bad_request(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: "
                f"{kind} operation does not apply: doc is missing path: {op.get('path')}",
            ) from None
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> None:
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        parent[last] = value


def _remove(doc: Any, parts: list[str]) -> None:
    parent = _walk(doc, parts[:-1])
    if isinstance(parent, list):
        parent.pop(int(parts[-1]))
    else:
        del parent[parts[-1]]


# --- quota usage -----------------------------------------------------------------------------

# Quota names that a pod without an explicit value for them is refused under
# (the pod evaluator's "validationSet": a backward-compatibility rule of the real one).
_MUST_SPECIFY = frozenset(
    {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
)
_TERMINAL = frozenset({"Succeeded", "Failed"})
_ONE = Quantity(1)
_ZERO = Quantity(0)


def _container_usage(container: dict) -> dict[str, Quantity]:
    resources = container.get("resources") or {}
    usage: dict[str, Quantity] = {}
    for res, text in (resources.get("requests") or {}).items():
        q = parse_quantity(text)
        if res in ("cpu", "memory", "ephemeral-storage"):
            usage[res] = q
        usage[f"requests.{res}"] = q
    for res, text in (resources.get("limits") or {}).items():
        usage[f"limits.{res}"] = parse_quantity(text)
    return usage


def pod_usage(pod: dict) -> dict[str, Quantity]:
    """What a pod counts against a quota: containers summed, each init container a floor."""
    spec = pod.get("spec") or {}
    total: dict[str, Quantity] = {}
    for container in spec.get("containers") or []:
        add_quantities(total, _container_usage(container))
    for container in spec.get("initContainers") or []:
        for key, q in _container_usage(container).items():
            if key not in total or q > total[key]:
                total[key] = q
    total["pods"] = _ONE
    total["count/pods"] = _ONE
    return total


def _pod_counts(pod: dict) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") not in _TERMINAL and not pod["metadata"].get("deletionTimestamp")


def _pretty(usage: dict[str, Quantity]) -> str:
    return ",".join(f"{key}={usage[key]}" for key in sorted(usage))


def _is_pod_resource(name: str) -> bool:
    return (
        name in ("pods", "count/pods", "cpu", "memory", "ephemeral-storage")
        or name.startswith(("requests.", "limits."))
        and name != "requests.storage"
    )


# --- the store -------------------------------------------------------------------------------


class _Entry:
    __slots__ = ("obj", "raw", "labels", "fields", "usage", "counted")

    def __init__(self, obj: dict, raw: bytes, labels: dict, fields: dict):
        self.obj, self.raw, self.labels, self.fields = obj, raw, labels, fields
        self.usage: dict[str, Quantity] | None = None
        self.counted = False


class _Event:
    __slots__ = ("rv", "resource", "namespace", "type", "raw", "labels", "fields", "prev", "_line")

    def __init__(self, rv, resource, namespace, etype, raw, labels, fields, prev):
        self.rv, self.resource, self.namespace, self.type = rv, resource, namespace, etype
        self.raw, self.labels, self.fields, self.prev = raw, labels, fields, prev
        self._line: bytes | None = None

    def line(self) -> bytes:
        if self._line is None:
            self._line = b'{"type":"' + self.type.encode() + b'","object":' + self.raw + b"}\n"
        return self._line


def _get_path(obj: dict, dotted: str) -> str:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


class Watcher:
    """One watch stream's filter and queue. The server thread drains ``queue``;
    ``None`` in it means the store is closing."""

    def __init__(self, store: Store, info: ResourceInfo, namespace: str | None, labels, fields):
        self.store, self.info, self.namespace = store, info, namespace
        self._labels, self._fields = labels, fields
        self.queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.expired: str | None = None  # the 410 message when the start was too old

    def _match(self, labels: dict, fields: dict) -> bool:
        return self._labels(labels) and self._fields(fields)

    def offer(self, ev: _Event) -> None:
        """Called under the store's lock, in resource-version order."""
        if self.namespace is not None and ev.namespace != self.namespace:
            return
        now = self._match(ev.labels, ev.fields)
        if ev.prev is not None:
            before = self._match(ev.prev[0], ev.prev[1])
            if now and not before:
                line = b'{"type":"ADDED","object":' + ev.raw + b"}\n"
            elif before and not now:
                # Left the selection: the watch cache sends DELETED with the previous
                # content at the new resource version.
                old = json.loads(ev.prev[2])
                old["metadata"]["resourceVersion"] = str(ev.rv)
                line = b'{"type":"DELETED","object":' + _dumps(old) + b"}\n"
            elif now:
                line = ev.line()
            else:
                return
        elif now:
            line = ev.line()
        else:
            return
        self.queue.put(line)

    def bookmark_rv(self) -> str | None:
        """The resource version a BOOKMARK may claim: everything up to it was delivered."""
        with self.store.lock:
            if self.queue.empty():
                return str(self.store.resource_version)
        return None

    def close(self) -> None:
        self.store._unwatch(self)


class Store:
    """Objects by (resource, namespace, name); cluster-scoped objects have namespace None."""

    def __init__(self, history: int = 10000) -> None:
        self.lock = threading.RLock()
        self.resource_version = 0
        self._objects: dict[str, dict[str, dict[str, _Entry]]] = {r: {} for r in RESOURCES}
        self._history: deque[_Event] = deque(maxlen=max(1, history))
        self._history_start = 0  # every event after this resource version is still kept
        self._watchers: dict[str, set[Watcher]] = {r: set() for r in RESOURCES}
        self._ns_usage: dict[str, dict[str, Quantity]] = {}
        self._closed = False
        self._cluster_ip = 0
        self._usage_hint: dict[str, Quantity] | None = None  # the admitted pod's, for _commit
        self._deferred_quotas: set[str] | None = None  # bulk writes refresh quotas once, at the end

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _info(resource: str) -> ResourceInfo:
        try:
            return RESOURCES[resource]
        except KeyError:
            raise ApiError(
                404, "NotFound", "the server could not find the requested resource"
            ) from None

    def _entry(self, resource: str, namespace: str | None, name: str) -> _Entry | None:
        bucket = self._objects[resource].get(namespace or "")
        return bucket.get(name) if bucket else None

    def _view(self, info: ResourceInfo, obj: dict) -> tuple[dict, dict]:
        meta = obj["metadata"]
        labels = dict(meta.get("labels") or {})
        fields = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
        }
        for f in info.fields:
            if f not in fields:
                fields[f] = _get_path(obj, f)
        return labels, fields

    def _commit(
        self, info: ResourceInfo, obj: dict, etype: str, prev: _Entry | None = None
    ) -> _Entry:
        """Store a new version of ``obj`` (or forget it, for DELETED) and emit its event."""
        self.resource_version += 1
        rv = self.resource_version
        meta = obj["metadata"]
        meta["resourceVersion"] = str(rv)
        raw = _dumps(obj)
        labels, fields = self._view(info, obj)
        entry = _Entry(obj, raw, labels, fields)
        ns = meta.get("namespace") or ""
        if etype == "DELETED":
            bucket = self._objects[info.resource].get(ns)
            if bucket is not None:
                bucket.pop(meta["name"], None)
                if not bucket:
                    del self._objects[info.resource][ns]
        else:
            self._objects[info.resource].setdefault(ns, {})[meta["name"]] = entry
        prev_view = (prev.labels, prev.fields, prev.raw) if etype == "MODIFIED" and prev else None
        if info.resource == "pods":
            self._account_pod(ns, prev, entry if etype != "DELETED" else None)
        self._record(
            _Event(rv, info.resource, meta.get("namespace"), etype, raw, labels, fields, prev_view)
        )
        return entry

    def _record(self, ev: _Event) -> None:
        if len(self._history) == self._history.maxlen:
            self._history_start = self._history[0].rv
        self._history.append(ev)
        for watcher in self._watchers[ev.resource]:
            watcher.offer(ev)

    def _copy(self, entry: _Entry) -> dict:
        return json.loads(entry.raw)

    # -- quota ----------------------------------------------------------------------------

    def _account_pod(self, ns: str, before: _Entry | None, after: _Entry | None) -> None:
        if after is not None:
            if before is not None and before.usage is not None:
                after.usage = before.usage  # a pod's resources do not change after creation
            else:
                after.usage, self._usage_hint = self._usage_hint or pod_usage(after.obj), None
            after.counted = _pod_counts(after.obj)
        was = before is not None and before.counted
        now = after is not None and after.counted
        if was == now:
            return
        totals = self._ns_usage.setdefault(ns, {})
        if now:
            add_quantities(totals, after.usage)  # type: ignore[union-attr, arg-type]
        else:
            for key, q in before.usage.items():  # type: ignore[union-attr]
                totals[key] = totals[key] - q
        if self._deferred_quotas is not None:
            self._deferred_quotas.add(ns)
        else:
            self._refresh_quotas(ns)

    def _quota_status(self, ns: str, quota: dict) -> dict:
        hard = (quota.get("spec") or {}).get("hard") or {}
        totals = self._ns_usage.get(ns, {})
        used = {}
        for key in hard:
            if _is_pod_resource(key):
                used[key] = str(totals.get(key, _ZERO))
            else:
                used[key] = self._count_used(ns, key)
        return {"hard": dict(hard), "used": used}

    def _count_used(self, ns: str, key: str) -> str:
        resource = key[len("count/") :] if key.startswith("count/") else key
        if resource in RESOURCES and resource != "pods":
            return str(len(self._objects[resource].get(ns, {})))
        if key == "requests.storage":
            total = Quantity(0)
            for entry in self._objects["persistentvolumeclaims"].get(ns, {}).values():
                request = ((entry.obj.get("spec") or {}).get("resources") or {}).get(
                    "requests"
                ) or {}
                if "storage" in request:
                    total = total + parse_quantity(request["storage"])
            return str(total)
        return "0"

    def _refresh_quotas(self, ns: str) -> None:
        info = RESOURCES["resourcequotas"]
        for entry in list(self._objects["resourcequotas"].get(ns, {}).values()):
            status = self._quota_status(ns, entry.obj)
            if entry.obj.get("status") != status:
                obj = self._copy(entry)
                obj["status"] = status
                self._commit(info, obj, "MODIFIED", entry)

    def _admit_pod(self, ns: str, pod: dict, delta: dict[str, Quantity]) -> None:
        """The ResourceQuota admission plugin, for a pod being created."""
        info = RESOURCES["pods"]
        name = pod["metadata"]["name"]
        if pod.get("status", {}).get("phase") in _TERMINAL:
            return
        totals = self._ns_usage.get(ns, {})
        for entry in sorted(
            self._objects["resourcequotas"].get(ns, {}).values(),
            key=lambda e: e.obj["metadata"]["name"],
        ):
            quota = entry.obj
            qname = quota["metadata"]["name"]
            hard = {
                k: parse_quantity(v)
                for k, v in ((quota.get("spec") or {}).get("hard") or {}).items()
                if _is_pod_resource(k)
            }
            if not hard:
                continue
            required = set(hard) & _MUST_SPECIFY
            missing: dict[str, set[str]] = {}
            spec = pod.get("spec") or {}
            for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                have = set(_container_usage(container))
                for res in required - have:
                    missing.setdefault(res, set()).add(container.get("name", ""))
            if missing:
                parts = [f"{res} for: {','.join(sorted(missing[res]))}" for res in sorted(missing)]
                raise forbidden(
                    info, name, f"failed quota: {qname}: must specify {'; '.join(parts)}"
                )
            requested = {k: q for k, q in delta.items() if k in hard and q.value != 0}
            exceeded = [
                k
                for k, q in requested.items()
                if totals.get(k, _ZERO).nanos + q.nanos > hard[k].nanos
            ]
            if exceeded:
                used = {k: totals.get(k, _ZERO) for k in exceeded}
                raise forbidden(
                    info,
                    name,
                    f"exceeded quota: {qname}, requested: {_pretty({k: requested[k] for k in exceeded})}, "
                    f"used: {_pretty(used)}, limited: {_pretty({k: hard[k] for k in exceeded})}",
                )

    # -- defaults and validation ----------------------------------------------------------

    def _defaults(self, info: ResourceInfo, obj: dict) -> None:
        meta = obj["metadata"]
        if info.resource == "namespaces":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif info.resource == "pods":
            self._pod_defaults(obj)
        elif info.resource == "persistentvolumeclaims":
            spec = obj.setdefault("spec", {})
            spec.setdefault("volumeMode", "Filesystem")
            spec.setdefault("volumeName", f"pvc-{meta['uid']}")
            request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
            status = {"phase": "Bound", "accessModes": list(spec.get("accessModes") or [])}
            if request is not None:
                status["capacity"] = {"storage": str(parse_quantity(request))}
            obj["status"] = status
        elif info.resource == "services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                self._cluster_ip += 1
                ip = f"10.96.{self._cluster_ip // 250}.{self._cluster_ip % 250 + 2}"
                spec["clusterIP"] = ip
            if spec.get("clusterIP"):
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            spec.setdefault("sessionAffinity", "None")
            obj.setdefault("status", {"loadBalancer": {}})
        elif info.resource == "resourcequotas":
            hard = (obj.setdefault("spec", {})).get("hard") or {}
            obj["spec"]["hard"] = {k: str(parse_quantity(v)) for k, v in hard.items()}
        elif info.resource == "limitranges":
            for item in (obj.setdefault("spec", {})).get("limits") or []:
                if item.get("type") != "Container":
                    continue
                # The API's defaulting: default from max, defaultRequest from default.
                default = item.setdefault("default", {})
                for key, value in (item.get("max") or {}).items():
                    default.setdefault(key, value)
                request = item.setdefault("defaultRequest", {})
                for key, value in default.items():
                    request.setdefault(key, value)
                for key, value in (item.get("min") or {}).items():
                    request.setdefault(key, value)

    @staticmethod
    def _pod_defaults(pod: dict) -> None:
        spec = pod.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            resources = container.setdefault("resources", {})
            limits = resources.get("limits") or {}
            requests = resources.get("requests") or {}
            for key, value in limits.items():  # requests default to limits
                requests.setdefault(key, value)
            if requests:
                resources["requests"] = requests
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            image = container.get("image") or ""
            tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
            latest = not tagged or image.endswith(":latest")
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        pod.setdefault("status", {}).setdefault("phase", "Pending")

    @staticmethod
    def _qos_class(pod: dict) -> str:
        spec = pod.get("spec") or {}
        classes = []
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            resources = container.get("resources") or {}
            limits = resources.get("limits") or {}
            requests = resources.get("requests") or {}
            if not requests and not limits:
                classes.append("BestEffort")
            elif all(
                k in limits
                and parse_quantity(limits[k]) == parse_quantity(requests.get(k, limits[k]))
                for k in ("cpu", "memory")
            ) and set(requests) <= set(limits):
                classes.append("Guaranteed")
            else:
                classes.append("Burstable")
        if not classes or all(c == "BestEffort" for c in classes):
            return "BestEffort"
        if all(c == "Guaranteed" for c in classes):
            return "Guaranteed"
        return "Burstable"

    def _apply_limit_ranges(self, ns: str, pod: dict) -> None:
        """The LimitRanger admission plugin for type Container: defaults, then min and max."""
        items = []
        for entry in sorted(
            self._objects["limitranges"].get(ns, {}).values(),
            key=lambda e: e.obj["metadata"]["name"],
        ):
            for item in (entry.obj.get("spec") or {}).get("limits") or []:
                if item.get("type") == "Container":
                    items.append(item)
        if not items:
            return
        spec = pod.get("spec") or {}
        containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
        for item in items:
            for container in containers:
                resources = container.setdefault("resources", {})
                limits = resources.get("limits") or {}
                requests = resources.get("requests") or {}
                for key, value in (item.get("default") or {}).items():
                    limits.setdefault(key, value)
                for key, value in (item.get("defaultRequest") or {}).items():
                    requests.setdefault(key, value)
                if limits:
                    resources["limits"] = limits
                if requests:
                    resources["requests"] = requests
        errors = []
        for item in items:
            for container in containers:
                resources = container.get("resources") or {}
                limits = resources.get("limits") or {}
                requests = resources.get("requests") or {}
                for key, bound in sorted((item.get("min") or {}).items()):
                    have = requests.get(key)
                    least = parse_quantity(bound)
                    if have is None:
                        errors.append(
                            f"minimum {key} usage per Container is {least}.  No request is specified"
                        )
                    elif parse_quantity(have) < least:
                        errors.append(
                            f"minimum {key} usage per Container is {least}, "
                            f"but request is {parse_quantity(have)}"
                        )
                for key, bound in sorted((item.get("max") or {}).items()):
                    have = limits.get(key)
                    most = parse_quantity(bound)
                    if have is None:
                        errors.append(
                            f"maximum {key} usage per Container is {most}.  No limit is specified"
                        )
                    elif parse_quantity(have) > most:
                        errors.append(
                            f"maximum {key} usage per Container is {most}, "
                            f"but limit is {parse_quantity(have)}"
                        )
        if errors:
            why = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
            raise forbidden(RESOURCES["pods"], pod["metadata"]["name"], why)

    @staticmethod
    def _validate(info: ResourceInfo, obj: dict) -> list[tuple[str, str, str]]:
        errors = _name_errors(info.resource, obj["metadata"]["name"])
        if info.resource == "pods":
            containers = (obj.get("spec") or {}).get("containers")
            if not containers:
                errors.append(("spec.containers", "FieldValueRequired", "Required value"))
            for i, container in enumerate(containers or []):
                if not container.get("name"):
                    errors.append(
                        (f"spec.containers[{i}].name", "FieldValueRequired", "Required value")
                    )
                if not container.get("image"):
                    errors.append(
                        (f"spec.containers[{i}].image", "FieldValueRequired", "Required value")
                    )
                try:
                    _container_usage(container)
                except SelectorError as e:
                    errors.append((f"spec.containers[{i}].resources", "FieldValueInvalid", str(e)))
        return errors

    # -- the seam (see tests/kubestub/__init__.py) ----------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> dict | None:
        with self.lock:
            entry = self._entry(resource, namespace, name)
            return None if entry is None else self._copy(entry)

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[dict]:
        items, _, _, _ = self.list_raw(resource, namespace, label_selector, field_selector)
        return [json.loads(raw) for raw in items]

    def mutate(
        self, resource: str, namespace: str | None, name: str, fn: Callable[[dict], Any]
    ) -> dict | None:
        """Edit an object in place under the lock; bumps its version and emits MODIFIED."""
        info = self._info(resource)
        with self.lock:
            entry = self._entry(resource, namespace, name)
            if entry is None:
                return None
            obj = json.loads(entry.raw)
            fn(obj)
            if resource == "resourcequotas":
                self._defaults(info, obj)
                obj["status"] = self._quota_status(namespace or "", obj)
            new = self._commit(info, obj, "MODIFIED", entry)
            return json.loads(new.raw)

    def remove(self, resource: str, namespace: str | None, name: str) -> dict | None:
        """Forget an object now; emits DELETED (the object at the deletion's version)."""
        info = self._info(resource)
        with self.lock:
            entry = self._entry(resource, namespace, name)
            if entry is None:
                return None
            obj = json.loads(entry.raw)
            self._commit(info, obj, "DELETED", entry)
            # Object-count quotas (count/configmaps, services...) follow removals too;
            # pods keep theirs through _account_pod.
            if resource not in ("pods", "resourcequotas") and self._objects["resourcequotas"].get(
                namespace or ""
            ):
                self._refresh_quotas(namespace or "")
            return obj

    # -- REST verbs -----------------------------------------------------------------------

    def create(
        self,
        resource: str,
        namespace: str | None,
        body: dict,
        *,
        copy: bool = True,
        dry_run: bool = False,
    ) -> dict | None:
        """POST: validation, defaults, LimitRanger and quota admission, then ADDED.

        ``dry_run`` (the ``dryRun=All`` query) answers what would be stored, storing nothing."""
        info = self._info(resource)
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        obj = body
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if info.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for key in (
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            meta.pop(key, None)
        obj["kind"], obj["apiVersion"] = info.kind, info.api_version
        with self.lock:
            if info.namespaced:
                ns_entry = self._entry("namespaces", None, namespace or "")
                if ns_entry is None:
                    raise not_found(RESOURCES["namespaces"], namespace or "")
            name = meta.get("name")
            if not name:
                prefix = meta.get("generateName")
                if not prefix:
                    raise invalid(
                        info,
                        "",
                        [
                            (
                                "metadata.name",
                                "FieldValueRequired",
                                "Required value: name or generateName is required",
                            )
                        ],
                    )
                while True:
                    name = prefix + "".join(random.choices(_GENERATE_ALPHABET, k=5))
                    if self._entry(resource, namespace, name) is None:
                        break
                meta["name"] = name
            errors = self._validate(info, obj)
            if errors:
                raise invalid(info, name, errors)
            if self._entry(resource, namespace, name) is not None:
                raise already_exists(info, name)
            if info.namespaced and ns_entry.obj.get("status", {}).get("phase") == "Terminating":
                why = f"unable to create new content in namespace {namespace} because it is being terminated"
                raise forbidden(
                    info,
                    name,
                    why,
                    [
                        {
                            "reason": "NamespaceTerminating",
                            "message": why,
                            "field": "metadata.namespace",
                        }
                    ],
                )
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if resource == "pods":
                meta.setdefault("generation", 1)
            self._defaults(info, obj)
            if resource == "pods":
                self._apply_limit_ranges(namespace or "", obj)
                obj["status"].setdefault("qosClass", self._qos_class(obj))
                usage = pod_usage(obj)
                self._admit_pod(namespace or "", obj, usage)
                self._usage_hint = usage
            if resource == "resourcequotas":
                obj["status"] = self._quota_status(namespace or "", obj)
            if dry_run:
                self._usage_hint = None
                return json.loads(json.dumps(obj))
            entry = self._commit(info, obj, "ADDED")
            if resource == "namespaces" and name not in (
                "kube-system",
                "kube-public",
                "kube-node-lease",
            ):
                self._create_default_serviceaccount(name)
            elif resource not in ("pods", "resourcequotas") and info.namespaced:
                if self._objects["resourcequotas"].get(namespace or ""):
                    self._refresh_quotas(namespace or "")
            return self._copy(entry) if copy else None

    def _create_default_serviceaccount(self, namespace: str) -> None:
        self.create("serviceaccounts", namespace, {"metadata": {"name": "default"}}, copy=False)

    def bulk_create_pods(self, namespace: str, pods: Iterable[dict]) -> list[str]:
        """Create many pods fast (benchmark setup): one lock hold, no copies back."""
        names = []
        with self.lock:
            self._deferred_quotas = set()
            try:
                for pod in pods:
                    self.create("pods", namespace, pod, copy=False)
                    names.append(pod["metadata"]["name"])
            finally:
                dirty, self._deferred_quotas = self._deferred_quotas, None
                for ns in dirty:
                    self._refresh_quotas(ns)
        return names

    def _prepare_update(
        self, info: ResourceInfo, old: dict, new: dict, subresource: str | None
    ) -> dict:
        old_meta = old["metadata"]
        if subresource == "status":
            result = json.loads(json.dumps(old))
            result["status"] = new.get("status") or {}
            meta = new.get("metadata") or {}
            for key in ("labels", "annotations"):
                if key in meta:
                    result["metadata"][key] = meta[key]
            new = result
        else:
            if not isinstance(new.get("metadata"), dict):
                new["metadata"] = {}
            meta = new["metadata"]
            for key in (
                "uid",
                "creationTimestamp",
                "namespace",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generateName",
                "generation",
            ):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            meta["name"] = old_meta["name"]
            if info.has_status and info.resource != "resourcequotas":
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
        new["kind"], new["apiVersion"] = info.kind, info.api_version
        if info.resource == "services" and subresource is None:
            # An update that leaves the allocated IP out keeps it (as the real registry does).
            old_spec, new_spec = old.get("spec") or {}, new.setdefault("spec", {})
            for key in ("clusterIP", "clusterIPs"):
                if key in old_spec and not new_spec.get(key):
                    new_spec[key] = old_spec[key]
        if info.resource == "persistentvolumeclaims" and subresource is None:
            self._resize_pvc(info, old, new)
        if info.resource == "namespaces":
            new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = old_meta[
                "name"
            ]
        if info.resource == "resourcequotas":
            self._defaults(info, new)
            new["status"] = self._quota_status(old_meta.get("namespace") or "", new)
        return new

    @staticmethod
    def _resize_pvc(info: ResourceInfo, old: dict, new: dict) -> None:
        def request(obj: dict) -> str | None:
            return (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
                "storage"
            )

        new_text = request(new)
        if new_text is None:
            return
        size = parse_quantity(new_text)
        capacity_text = ((old.get("status") or {}).get("capacity") or {}).get("storage")
        capacity = parse_quantity(capacity_text) if capacity_text else None
        if capacity is not None and size < capacity:
            raise invalid(
                info,
                old["metadata"]["name"],
                [
                    (
                        "spec.resources.requests.storage",
                        "FieldValueForbidden",
                        "Forbidden: field can not be less than status.capacity",
                    )
                ],
            )
        # The stub's storage resizes at once: capacity follows the request.
        new.setdefault("status", {}).setdefault("capacity", {})["storage"] = str(size)

    def _check_rv(self, info: ResourceInfo, entry: _Entry, body: dict) -> None:
        meta = body.get("metadata") if isinstance(body, dict) else None
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if rv and rv != entry.obj["metadata"]["resourceVersion"]:
            raise conflict(info, entry.obj["metadata"]["name"])

    def replace(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        body: dict,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
    ) -> dict:
        info = self._info(resource)
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if info.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        with self.lock:
            entry = self._entry(resource, namespace, name)
            if entry is None:
                raise not_found(info, name)
            self._check_rv(info, entry, body)
            new = self._prepare_update(info, self._copy(entry), body, subresource)
            if dry_run:
                return new
            return self._copy(self._commit(info, new, "MODIFIED", entry))

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        body: bytes,
        content_type: str,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
    ) -> dict:
        info = self._info(resource)
        try:
            patch = json.loads(body or b"null")
        except ValueError as e:
            raise bad_request(f"error decoding patch: {e}") from None
        kind = content_type.split(";")[0].strip().lower()
        with self.lock:
            entry = self._entry(resource, namespace, name)
            if entry is None:
                raise not_found(info, name)
            current = self._copy(entry)
            if kind == "application/json-patch+json":
                new = json_patch(current, patch)
            elif kind == "application/merge-patch+json":
                new = merge_patch(current, patch)
            elif kind == "application/strategic-merge-patch+json":
                new = strategic_merge_patch(current, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
                    f'application/strategic-merge-patch+json (got "{kind}")',
                )
            if not isinstance(new, dict):
                raise bad_request("the patch produced something that is not an object")
            if kind != "application/json-patch+json":
                self._check_rv(info, entry, patch if isinstance(patch, dict) else {})
            elif (new.get("metadata") or {}).get("resourceVersion") != entry.obj["metadata"][
                "resourceVersion"
            ]:
                self._check_rv(info, entry, new)
            if (new.get("metadata") or {}).get("name") != name:
                raise bad_request("metadata.name: the name of the object may not change in a patch")
            new = self._prepare_update(info, current, new, subresource)
            if dry_run:
                return new
            return self._copy(self._commit(info, new, "MODIFIED", entry))

    def check_preconditions(self, info: ResourceInfo, entry: _Entry, options: dict) -> None:
        pre = options.get("preconditions") or {}
        meta = entry.obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(
                info,
                meta["name"],
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(
                info,
                meta["name"],
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )

    def delete(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        options: dict | None = None,
        *,
        dry_run: bool = False,
    ) -> dict:
        """Delete now (not graceful): the deleted object or a Status Success."""
        info = self._info(resource)
        with self.lock:
            entry = self._entry(resource, namespace, name)
            if entry is None:
                raise not_found(info, name)
            self.check_preconditions(info, entry, options or {})
            obj = self._copy(entry) if dry_run else self.remove(resource, namespace, name)
        return self.deleted_answer(info, obj)  # type: ignore[arg-type]

    @staticmethod
    def deleted_answer(info: ResourceInfo, obj: dict) -> dict:
        if info.resource in RETURNS_DELETED_OBJECT:
            return obj
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": _details(info, obj["metadata"]["name"], uid=obj["metadata"].get("uid")),
        }

    def begin_pod_deletion(
        self, namespace: str, name: str, grace: int, options: dict | None = None
    ) -> tuple[dict, bool]:
        """Graceful pod deletion: stamp deletionTimestamp (the kubelet finishes it).

        Returns the pod and whether the kubelet has news: a first deletion, or a
        second one that shortens the grace (a longer one changes nothing, as in the
        real registry)."""
        info = RESOURCES["pods"]
        with self.lock:
            entry = self._entry("pods", namespace, name)
            if entry is None:
                raise not_found(info, name)
            self.check_preconditions(info, entry, options or {})
            meta = entry.obj["metadata"]
            current = meta.get("deletionGracePeriodSeconds")
            if meta.get("deletionTimestamp") and current is not None and current <= grace:
                return self._copy(entry), False
            obj = self._copy(entry)
            obj["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
            obj["metadata"]["deletionGracePeriodSeconds"] = grace
            return self._copy(self._commit(info, obj, "MODIFIED", entry)), True

    def set_namespace_terminating(self, name: str) -> dict:
        info = RESOURCES["namespaces"]
        with self.lock:
            entry = self._entry("namespaces", None, name)
            if entry is None:
                raise not_found(info, name)
            if entry.obj.get("status", {}).get("phase") == "Terminating":
                return self._copy(entry)
            obj = self._copy(entry)
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj["status"] = {"phase": "Terminating"}
            return self._copy(self._commit(info, obj, "MODIFIED", entry))

    def names_in(self, resource: str, namespace: str) -> list[str]:
        with self.lock:
            return list(self._objects[resource].get(namespace, {}))

    # -- list and watch -------------------------------------------------------------------

    def _compile(self, info: ResourceInfo, label_selector: str, field_selector: str):
        try:
            return (
                parse_label_selector(label_selector),
                parse_field_selector(field_selector, info.fields),
            )
        except SelectorError as e:
            raise bad_request(str(e)) from None

    def _sorted_entries(self, resource: str, namespace: str | None) -> list[tuple[str, _Entry]]:
        buckets = self._objects[resource]
        if namespace is not None:
            bucket = buckets.get(namespace, {})
            return [(f"{namespace}/{n}", bucket[n]) for n in sorted(bucket)]
        pairs = [
            (f"{ns}/{n}" if ns else n, entry)
            for ns, bucket in buckets.items()
            for n, entry in bucket.items()
        ]
        pairs.sort(key=lambda p: p[0])
        return pairs

    def list_raw(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> tuple[list[bytes], str, str | None, int | None]:
        """(items' JSON, list resourceVersion, continue token, remainingItemCount)."""
        info = self._info(resource)
        labels, fields = self._compile(info, label_selector, field_selector)
        start = ""
        if continue_token:
            try:
                token = json.loads(
                    base64.urlsafe_b64decode(continue_token + "=" * (-len(continue_token) % 4))
                )
                start = token["start"]
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise bad_request(
                    "continue key is not valid: illegal base64 data at input byte 0"
                ) from None
        with self.lock:
            rv = str(self.resource_version)
            pairs = self._sorted_entries(resource, namespace)
            selected = [
                (key, entry)
                for key, entry in pairs
                if key >= start and labels(entry.labels) and fields(entry.fields)
            ]
        token_out, remaining = None, None
        if limit and len(selected) > limit:
            last_key = selected[limit - 1][0]
            remaining_count = len(selected) - limit
            selected = selected[:limit]
            token_out = (
                base64.urlsafe_b64encode(
                    json.dumps(
                        {"v": "meta.k8s.io/v1", "rv": int(rv), "start": last_key + "\x00"}
                    ).encode()
                )
                .decode()
                .rstrip("=")
            )
            if not label_selector and not field_selector:
                remaining = remaining_count
        return [entry.raw for _, entry in selected], rv, token_out, remaining

    def watch(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str | None = None,
    ) -> Watcher:
        info = self._info(resource)
        labels, fields = self._compile(info, label_selector, field_selector)
        watcher = Watcher(self, info, namespace, labels, fields)
        with self.lock:
            if self._closed:
                watcher.queue.put(None)
                return watcher
            if resource_version in (None, "", "0"):
                for _, entry in self._sorted_entries(resource, namespace):
                    if labels(entry.labels) and fields(entry.fields):
                        watcher.queue.put(b'{"type":"ADDED","object":' + entry.raw + b"}\n")
            else:
                try:
                    since = int(resource_version)
                except ValueError:
                    raise bad_request(
                        f'resourceVersion: Invalid value: "{resource_version}": strconv.ParseUint: parsing '
                        f'"{resource_version}": invalid syntax'
                    ) from None
                if since < self._history_start:
                    watcher.expired = f"too old resource version: {since} ({self._history_start})"
                    return watcher
                for ev in self._history:
                    if ev.rv > since and ev.resource == resource:
                        watcher.offer(ev)
            self._watchers[resource].add(watcher)
        return watcher

    def _unwatch(self, watcher: Watcher) -> None:
        with self.lock:
            self._watchers[watcher.info.resource].discard(watcher)

    def expire_history(self) -> None:
        with self.lock:
            self._history.clear()
            self._history_start = self.resource_version

    def close(self) -> None:
        with self.lock:
            self._closed = True
            for watchers in self._watchers.values():
                for watcher in watchers:
                    watcher.queue.put(None)
                watchers.clear()
