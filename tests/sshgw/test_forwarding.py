"""``ssh -L`` through the gateway with Debian's OpenSSH client: own workshop and jobs only (issue 13)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.cluster.conftest import spec
from tests.servers import manage
from tests.services_plugin import free_port

SEED_JOBS = r"""
import json, os
from aladdin.accounts.models import User
from tests import factories
ids = json.loads(os.environ["USERS"])
made = {who: factories.JobFactory(user=User.objects.get(pk=uid)).pk for who, uid in ids.items()}
print("JOBS " + json.dumps(made))
"""


@pytest.fixture(scope="module")
def jobs(portal):
    """A running job of A's (a real workload named as the job) and a job row of B's."""
    users = {who: portal.seeded[who]["id"] for who in ("a", "b")}
    output = manage({**portal.env, "USERS": json.dumps(users)}, "shell", "-c", SEED_JOBS)
    ids = json.loads(output.split("JOBS ", 1)[1].splitlines()[0])
    portal.agent.driver.start_workload(spec(f"job-{ids['a']}", user_id=users["a"], kind="job"))
    return ids


def gateway_log(portal) -> str:
    return portal.log.read_text()


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def serve_http(portal, workload_port: int, *, job: str | None = None) -> subprocess.Popen:
    """``python3 -m http.server`` on 127.0.0.1 inside the workshop (over ssh), or a job (the driver)."""
    server = f"exec python3 -m http.server {workload_port} --bind 127.0.0.1"
    if job is None:
        argv = portal.ssh_argv("dev", "a")
        proc = subprocess.Popen([*argv, f"mkdir -p site && cd site && echo hi > page.txt && {server}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    else:
        session = portal.agent.driver.exec_in_workload(
            name=job, command=["/bin/bash", "-c", f"mkdir -p site && cd site && echo job > page.txt && {server}"]
        )  # fmt: skip
        return session
    return proc


def http_get(port: int, path: str = "/page.txt") -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as answer:
        return answer.read()


def wait_http(port: int, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(port)
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.3)


def close_tunnel(tunnel: subprocess.Popen) -> None:
    """End an ``ssh -N -L`` client: SIGTERM, then SIGKILL after 10 s.

    The tests are about what the gateway lets through, not how fast
    OpenSSH's client exits: once, under CI load, a client that had been
    refused a channel was still running 10 s after its SIGTERM.
    """
    tunnel.terminate()
    try:
        tunnel.wait(10)
    except subprocess.TimeoutExpired:
        tunnel.kill()
        tunnel.wait(10)


def forward(portal, *forwards: str) -> subprocess.Popen:
    options = ["-N", "-o", "ExitOnForwardFailure=yes"]
    for spec_ in forwards:
        options += ["-L", spec_]
    return subprocess.Popen(portal.ssh_argv("dev", "a", *options), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip


def test_a_local_forward_reaches_an_http_server_inside_the_workshop(portal):
    inside = free_port()
    server = serve_http(portal, inside)
    local, local_ip = free_port(), free_port()
    tunnel = forward(portal, f"{local}:localhost:{inside}", f"{local_ip}:127.0.0.1:{inside}")
    try:
        wait_listening(local, tunnel)
        assert wait_http(local) == b"hi\n"
        assert http_get(local_ip) == b"hi\n"
    finally:
        close_tunnel(tunnel)
        server.terminate()
        server.wait(10)


def test_a_forward_reaches_the_users_running_job_and_not_another_users(portal, jobs):
    inside = free_port()
    server = serve_http(portal, inside, job=f"job-{jobs['a']}")
    mine, theirs = free_port(), free_port()
    tunnel = forward(
        portal, f"{mine}:job-{jobs['a']}:{inside}", f"{theirs}:job-{jobs['b']}:{inside}"
    )
    try:
        wait_listening(mine, tunnel)
        assert wait_http(mine) == b"job\n"
        with pytest.raises(OSError):
            http_get(theirs)
    finally:
        close_tunnel(tunnel)
        server.close()
    assert f"ssh forward refused: client=127.0.0.1 job={jobs['b']} " in gateway_log(portal)


@pytest.mark.parametrize(
    "host", ["10.1.2.3", "example.com", "job-999999", "ws-1", "127.0.0.2", "job-01"]
)
def test_a_forward_to_anything_else_is_refused(portal, host):
    local = free_port()
    tunnel = forward(portal, f"{local}:{host}:80")
    try:
        wait_listening(local, tunnel)
        with pytest.raises(OSError):
            http_get(local, "/")
    finally:
        close_tunnel(tunnel)
    assert f"to={host!r}:80" in gateway_log(portal) or f"job={host[4:]} port=80" in gateway_log(
        portal
    )


def test_a_port_with_nothing_listening_in_the_workshop_is_refused(portal):
    # The host's own loopback has a listener on this port; the workshop's has none.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    host_port = listener.getsockname()[1]
    local = free_port()
    tunnel = forward(portal, f"{local}:localhost:{host_port}")
    try:
        wait_listening(local, tunnel)
        with pytest.raises(OSError):
            http_get(local, "/")
    finally:
        close_tunnel(tunnel)
        listener.close()
    assert f"port={host_port}: nothing listens" in gateway_log(portal)
