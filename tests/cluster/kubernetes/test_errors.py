"""The API server's refusals as the portal's errors: a quota 403 reads as locally (issue 19)."""

from __future__ import annotations

import json

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from aladdin.cluster.base import DriverError, QuotaExceeded, Resources
from aladdin.cluster.kubernetes import quantity
from aladdin.cluster.kubernetes.errors import driver_error, parse_quota_message, status_message


def api_exception(status: int, message: str, reason: str = "Forbidden") -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": status,
        }
    )
    return exc


# Messages as kube-apiserver's ResourceQuota admission writes them.
CPU_AND_MEMORY = (
    'pods "job-7" is forbidden: exceeded quota: compute, requested: '
    "limits.cpu=2,limits.memory=4Gi, used: limits.cpu=3,limits.memory=6Gi, "
    "limited: limits.cpu=4,limits.memory=8Gi"
)
MEMORY_ONLY = (
    'pods "nginx" is forbidden: exceeded quota: compute-resources, requested: '
    "limits.memory=2Gi,requests.memory=1Gi, used: limits.memory=0,requests.memory=0, "
    "limited: limits.memory=1Gi,requests.memory=512Mi"
)
MILLICORES_AND_BYTES = (
    'pods "ws-3" is forbidden: exceeded quota: compute, requested: limits.cpu=1500m, '
    "used: limits.cpu=3500m, limited: limits.cpu=4"
)
GPUS = (
    'pods "job-9" is forbidden: exceeded quota: compute, requested: requests.nvidia.com/gpu=2, '
    "used: requests.nvidia.com/gpu=1, limited: requests.nvidia.com/gpu=2"
)


def test_a_quota_message_gives_the_numbers_as_resources():
    refused = parse_quota_message(CPU_AND_MEMORY)

    assert isinstance(refused, QuotaExceeded) and refused.permanent
    assert refused.requested == Resources(2000, 4096)
    assert refused.used == Resources(3000, 6144)
    assert refused.limit == Resources(4000, 8192)
    # the same words as the portal's own refusal and the local backend's
    assert (
        str(refused)
        == QuotaExceeded(
            Resources(2000, 4096), Resources(3000, 6144), Resources(4000, 8192)
        ).message()
    )


def test_a_quota_message_of_one_resource_and_millicores():
    memory = parse_quota_message(MEMORY_ONLY)
    cpu = parse_quota_message(MILLICORES_AND_BYTES)

    assert (memory.requested, memory.used, memory.limit) == (
        Resources(0, 2048),
        Resources(0, 0),
        Resources(0, 1024),
    )
    assert (cpu.requested, cpu.used, cpu.limit) == (
        Resources(1500, 0),
        Resources(3500, 0),
        Resources(4000, 0),
    )


def test_a_card_count_in_a_quota_message_is_the_specs_model():
    refused = parse_quota_message(GPUS, gpu_model="80g")

    assert refused.requested.gpus == {"80g": 2}
    assert refused.limit.gpus == {"80g": 2}


def test_a_403_with_a_quota_message_is_quota_exceeded():
    error = driver_error(api_exception(403, CPU_AND_MEMORY), "create pod job-7")

    assert isinstance(error, QuotaExceeded)
    assert error.limit == Resources(4000, 8192)


def test_other_403s_are_permanent_driver_errors_with_the_status_message():
    message = 'pods "x" is forbidden: failed quota: compute: must specify limits.cpu for: main'
    error = driver_error(api_exception(403, message), "create pod x")

    assert not isinstance(error, QuotaExceeded)
    assert error.permanent and message in str(error)
    assert parse_quota_message(message) is None


@pytest.mark.parametrize(
    ("status", "permanent", "code"),
    [
        (400, True, ""),
        (404, True, "not_found"),
        (422, True, ""),
        (409, False, ""),
        (429, False, ""),
        (500, False, ""),
        (503, False, ""),
    ],
)
def test_4xx_are_permanent_and_5xx_409_429_transient(status, permanent, code):
    error = driver_error(api_exception(status, "the message", reason="x"), "doing it")

    assert type(error) is DriverError
    assert (error.permanent, error.code) == (permanent, code)
    assert "the message" in str(error) and str(status) in str(error)


def test_an_unreachable_api_server_is_transient():
    error = driver_error(urllib3.exceptions.MaxRetryError(None, "/api"), "list pods")
    assert not error.permanent and "cannot be reached" in str(error)


def test_a_body_that_is_not_a_status_is_quoted():
    exc = ApiException(status=502, reason="Bad Gateway")
    exc.body = b"<html>bad gateway</html>"
    assert status_message(exc) == "<html>bad gateway</html>"
    assert status_message(ApiException(status=502, reason="Bad Gateway")) == "Bad Gateway"


@pytest.mark.parametrize(
    ("text", "millicores", "mib"),
    [("2", 2000, 0), ("500m", 500, 0), ("1.5", 1500, 0), ("4Gi", 4_294_967_296_000, 4096)],
)
def test_quantities(text, millicores, mib):
    assert quantity.millicores(text) == millicores
    if mib:
        assert quantity.mebibytes(text) == mib


def test_quantities_both_ways():
    assert quantity.mebibytes("4294967296") == 4096
    assert quantity.mebibytes("1e9") == 954
    assert (quantity.cpu(2000), quantity.cpu(1500)) == ("2", "1500m")
    assert (quantity.memory(4096), quantity.memory(1536)) == ("4Gi", "1536Mi")
    with pytest.raises(ValueError):
        quantity.parse("lots")
