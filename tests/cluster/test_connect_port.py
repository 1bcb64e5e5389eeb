"""The driver's connect_port (what the SSH gateway's ``ssh -L`` reaches), against a real agent (issue 13).

The connection is made inside the workload's own network namespace: its
127.0.0.1 is the sandbox's loopback, never the host's.
"""

from __future__ import annotations

import socket

import pytest

from aladdin.cluster.base import DriverError
from tests.cluster.conftest import spec
from tests.services_plugin import free_port

# An upper-casing echo server, one connection; it prints "ready" once it listens.
ECHO = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
data = b""
while chunk := c.recv(65536):
    data += chunk
c.sendall(data.upper()); c.close()
"""


@pytest.fixture
def workshop(agent):
    agent.driver.start_workload(spec("ws-1", user_id=7))
    return agent


def read_all(stream) -> bytes:
    out = b""
    while chunk := stream.read():
        out += chunk
    return out


def serve_in_workshop(driver, port: int):
    session = driver.exec_in_workload(name="ws-1", command=["python3", "-c", ECHO, str(port)])
    stream, data = session.read(timeout=20)
    assert (stream, data) == (1, b"ready\n"), data
    return session


def test_a_port_inside_the_workload_is_reached_both_ways_with_half_close(workshop):
    port = free_port()
    server = serve_in_workshop(workshop.driver, port)

    stream = workshop.driver.connect_port(name="ws-1", port=port)
    stream.write(b"hello " * 50_000)
    stream.close_write()

    assert read_all(stream) == b"HELLO " * 50_000
    stream.close()
    server.close()


def test_the_hosts_loopback_is_not_the_workloads(workshop):
    # given a server on the host's 127.0.0.1
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        # then the workload's 127.0.0.1 has nothing on that port
        with pytest.raises(DriverError) as refused:
            workshop.driver.connect_port(name="ws-1", port=port)
        assert refused.value.code == "connection_refused"
        assert refused.value.permanent
    finally:
        listener.close()


@pytest.mark.parametrize("port", [0, 65536, -1, True, "22"])
def test_a_bad_port_is_refused_by_the_driver_and_by_the_agent(workshop, port):
    with pytest.raises(DriverError) as refused:
        workshop.driver.connect_port(name="ws-1", port=port)
    assert refused.value.code == "invalid"

    with pytest.raises(DriverError) as by_agent:
        workshop.driver._call("connect_port", name="ws-1", port=port)
    assert by_agent.value.code == "invalid"


def test_a_workload_that_does_not_run_is_refused(workshop):
    with pytest.raises(DriverError) as refused:
        workshop.driver.connect_port(name="ws-404", port=8080)
    assert refused.value.code == "not_running"
    # and a bad name never reaches the file system
    with pytest.raises(DriverError) as bad:
        workshop.driver.connect_port(name="../ws-1", port=8080)
    assert bad.value.code == "invalid"
