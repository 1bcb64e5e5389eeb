"""What the API server's refusals mean to the portal (issue 19).

A quota refusal is a 403 whose Status message is the admission plugin's own
text::

    pods "job-7" is forbidden: exceeded quota: compute, requested:
    limits.cpu=2,limits.memory=4Gi, used: limits.cpu=3,limits.memory=6Gi,
    limited: limits.cpu=4,limits.memory=8Gi

It becomes :class:`QuotaExceeded` with those numbers as :class:`Resources`,
so a student refused by the cluster reads the same message as one refused
by the portal's own check or by the local backend. Everything else is a
:class:`DriverError`: 5xx, 429, 409 and a lost connection are transient (the
next try may succeed), other 4xx permanent, with the Status message.
"""

from __future__ import annotations

import json
import re

import urllib3
from kubernetes.client.exceptions import ApiException

from ..base import DriverError, QuotaExceeded, Resources
from . import quantity

GPU_RESOURCE = "nvidia.com/gpu"

_QUOTA = re.compile(
    r"exceeded quota: (?P<quota>[^,]+), requested: (?P<requested>.*?), "
    r"used: (?P<used>.*?), limited: (?P<limited>[^\s]*)",
    re.S,
)


def status_message(exc: ApiException) -> str:
    """The Status object's message, or the HTTP reason when the body is not one."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            status = json.loads(body)
        except ValueError:
            return str(body)[:500]
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    return str(exc.reason or exc.status)


def _resources(text: str, gpu_model: str) -> Resources:
    """``limits.cpu=2,limits.memory=4Gi,requests.nvidia.com/gpu=1`` as Resources."""
    cpu = memory = gpus = 0
    for item in text.split(","):
        name, _, value = item.strip().partition("=")
        if not value:
            continue
        if name in ("limits.cpu", "requests.cpu", "cpu"):
            cpu = max(cpu, quantity.millicores(value))
        elif name in ("limits.memory", "requests.memory", "memory"):
            memory = max(memory, quantity.mebibytes(value))
        elif name in (f"requests.{GPU_RESOURCE}", f"limits.{GPU_RESOURCE}", GPU_RESOURCE):
            gpus = max(gpus, quantity.count(value))
    return Resources(cpu, memory, {gpu_model or GPU_RESOURCE: gpus} if gpus else {})


def parse_quota_message(message: str, gpu_model: str = "") -> QuotaExceeded | None:
    """The QuotaExceeded a quota refusal's message says, or None when it is not one.

    ``gpu_model`` names the cards of a GPU count in it (a ResourceQuota counts
    ``nvidia.com/gpu`` whatever the model): the spec's model.
    """
    match = _QUOTA.search(message)
    if not match:
        return None
    try:
        return QuotaExceeded(
            _resources(match.group("requested"), gpu_model),
            _resources(match.group("used"), gpu_model),
            _resources(match.group("limited"), gpu_model),
        )
    except ValueError:
        return None


def driver_error(exc: BaseException, doing: str, *, gpu_model: str = "") -> DriverError:
    """``exc`` (from the kubernetes client) as the DriverError the portal understands."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, ApiException):
        message = status_message(exc)
        status = int(exc.status or 0)
        if status == 403 and (quota := parse_quota_message(message, gpu_model)) is not None:
            return quota
        # 0: the client gave up before an answer (no status).
        transient = status in (0, 409, 429) or status >= 500
        code = "not_found" if status == 404 else ""
        return DriverError(
            f"{doing}: the Kubernetes API answered {status}: {message}",
            permanent=not transient,
            code=code,
        )
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        return DriverError(
            f"{doing}: the Kubernetes API cannot be reached: {exc!r}", permanent=False
        )
    return DriverError(f"{doing}: {exc!r}", permanent=False)
