"""Outbound network of local workloads (issue 15, SPEC §9 "Decision — network"): a real agent and sandboxes.

The test makes its own "internet" (DESIGN, "Network"): a network namespace
joined to the host by a veth pair, with an HTTP server and a DNS server
that answers ``mirror.test``, and points the agent at that resolver. The
private-range address is one the test adds to the host (on its end
of the veth). No traffic ever goes to an address the test did not create:
the refused ones are refused inside the sandbox's own namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aladdin.cluster import egress
from aladdin.cluster.base import Phase

from .conftest import spec
from .test_exec import run
from .test_local_agent import alive, run_job, wait_for_phase

FAKE_INTERNET = Path(__file__).with_name("fake_internet.py")
IP = egress.IP
FAST_SECONDS = 2
# Runs in the sandbox (the host's /usr/bin/python3): fetch the page by name,
# then try each of $TARGETS, timing each, and report as one JSON line.
PROBE = r"""
import errno, json, os, socket, subprocess, time, urllib.request
out = {}
try:
    out["page"] = urllib.request.urlopen("http://mirror.test/", timeout=10).read().decode()
except Exception as exc:
    out["page"] = repr(exc)
for target in os.environ.get("TARGETS", "").split():
    host, port = target.rsplit(":", 1)
    start = time.monotonic()
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
        result = "connected"
    except OSError as exc:
        result = errno.errorcode.get(exc.errno, repr(exc))
    out[target] = [result, time.monotonic() - start]
out["agent_socket_visible"] = os.path.exists(os.environ.get("AGENT_SOCKET", "/nonexistent"))
out["cap_eff"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
nft = subprocess.run(["/usr/sbin/nft", "flush", "ruleset"], capture_output=True)
out["nft_flush_rc"] = nft.returncode
out["resolv_conf"] = open("/etc/resolv.conf").read()
print("RESULT " + json.dumps(out), flush=True)
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


class Internet:
    """The test's internet: a namespace with a veth to the host, a page and a DNS answer; a private host address."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        # A random /24 of the benchmarking range (198.18.0.0/15, in no deny
        # list), so that parallel runs on one host never share a subnet.
        third = int(tag[:2], 16)
        self.subnet = f"198.18.{third}"
        self.server = f"{self.subnet}.2"  # mirror.test, and the resolver
        self.host_side = f"{self.subnet}.1"
        self.private = f"10.213.{third}.1"  # a private address of the test host
        self.netns = f"aladdin-egress-{tag}"
        self.veth = f"aegh{tag}"
        self.server_proc: subprocess.Popen | None = None

    def up(self) -> None:
        sh(IP, "netns", "add", self.netns)
        sh(
            IP,
            "link",
            "add",
            self.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.netns,
        )
        sh(IP, "address", "add", f"{self.host_side}/24", "dev", self.veth)
        sh(IP, "link", "set", self.veth, "up")
        inside = (IP, "netns", "exec", self.netns)
        sh(*inside, IP, "address", "add", f"{self.server}/24", "dev", "eth0")
        sh(*inside, IP, "link", "set", "eth0", "up")
        sh(*inside, IP, "link", "set", "lo", "up")
        # A private address of the host: a second one on the host's end of
        # the veth (it goes with it; kernels here may lack the dummy driver).
        sh(IP, "address", "add", f"{self.private}/32", "dev", self.veth)
        self.server_proc = subprocess.Popen(
            [*inside, sys.executable, str(FAKE_INTERNET), self.server],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.server_proc.stdout is not None
        assert self.server_proc.stdout.readline().strip() == "ready"

    def down(self) -> None:
        if self.server_proc is not None:
            self.server_proc.kill()
            self.server_proc.wait()
        # Deleting the namespace deletes its end of the veth, and so the pair.
        sh(IP, "netns", "delete", self.netns, check=False)
        sh(IP, "link", "delete", self.veth, check=False)


class Listener:
    """A TCP listener on the host (a stand-in for the portal, Redis, PostgreSQL): accepts and closes."""

    def __init__(self, address: str):
        self.sock = socket.create_server((address, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def internet():
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    net = Internet()
    try:
        net.up()
        yield net
    finally:
        net.down()


@pytest.fixture
def listeners():
    made: list[Listener] = []

    def _listen(address: str) -> Listener:
        listener = Listener(address)
        made.append(listener)
        return listener

    yield _listen
    for listener in made:
        listener.close()


def networked_agent(start_agent, internet: Internet, **env: str):
    agent = start_agent(ALADDIN_LOCAL_DNS=internet.server, **env)
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    if not agent.health["network"]:
        pytest.skip(f"no network for workloads here: {agent.health['network_reason']}")
    return agent


def host_global_ipv4(exclude: set[str]) -> list[str]:
    """The host's own non-loopback IPv4 addresses (those the test made aside)."""
    found = []
    for net in egress.host_addresses():
        address = str(net.network_address)
        if net.version == 4 and not net.network_address.is_loopback and address not in exclude:
            found.append(address)
    return found


def probe(agent, name: str, targets: list[str], *, user_id: int = 1) -> dict:
    env = {"TARGETS": " ".join(targets), "AGENT_SOCKET": str(agent.socket), "PROBE": PROBE}
    output = run_job(agent, name, 'exec /usr/bin/python3 -c "$PROBE"', user_id=user_id, env=env)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_a_workload_reaches_the_internet_by_name_and_nothing_of_the_host_or_other_users(
    start_agent, internet, listeners
):
    agent = networked_agent(start_agent, internet)
    portal = listeners("127.0.0.1")  # the portal, Redis: on the host's loopback
    anywhere = listeners("0.0.0.0")  # noqa: S104 - a service on every host address
    driver = agent.driver
    # Another user's workload, listening on every address of its sandbox.
    driver.ensure_user_space(user_id=2, storage_gib=1, quota=None)
    other = spec(
        "other-ws",
        user_id=2,
        command=["/usr/bin/python3", "-m", "http.server", "8123", "--bind", "0.0.0.0"],
    )
    assert driver.start_workload(other).phase == Phase.RUNNING
    check = "import socket,time\nfor _ in range(50):\n try: socket.create_connection(('127.0.0.1',8123),1).close(); print('UP'); break\n except OSError: time.sleep(0.1)"
    out, _err, _code = run(
        driver.exec_in_workload(name="other-ws", command=["/usr/bin/python3", "-c", check])
    )
    assert b"UP" in out  # it does listen: what follows is refused by the policy
    own = [f"{a}:{anywhere.port}" for a in host_global_ipv4({internet.host_side})]
    refused = [
        f"127.0.0.1:{portal.port}",  # the sandbox's own loopback: not the host's
        f"10.0.2.2:{portal.port}",  # slirp's gateway, the way to the host's loopback
        *own,  # the host's own non-loopback addresses
        f"{internet.host_side}:{anywhere.port}",  # the host's end of the test's veth
        f"{internet.private}:{anywhere.port}",  # a private address of the host
        "169.254.169.254:80",  # the cloud metadata address
        "10.0.2.100:8123",  # the other user's workload (every sandbox has this address)
        "10.0.2.2:8123",
    ]

    # The page is the probe's first act: the command never runs before its network.
    result = probe(agent, "probe-1", refused)

    assert result["page"] == "hello from the test's internet\n", result
    assert result["resolv_conf"] == f"nameserver {internet.server}\n"
    for target in refused:
        error, seconds = result[target]
        assert error == "ECONNREFUSED" and seconds < FAST_SECONDS, (target, result[target])
    assert portal.accepted == 0 and anywhere.accepted == 0
    assert result["agent_socket_visible"] is False
    # The workload cannot change its rules: no capability, and nft says so.
    assert int(result["cap_eff"], 16) == 0 and result["nft_flush_rc"] != 0
    # Its network ends with it: no slirp4netns of it is left.
    status = wait_for_phase(driver, "probe-1", {Phase.SUCCEEDED, Phase.FAILED})
    assert status.phase == Phase.SUCCEEDED
    driver.stop_workload(name="other-ws", grace_seconds=2)
    assert not slirps_of(agent)


def slirps_of(agent) -> list[int]:
    """The pids of slirp4netns processes the agent started that still run."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/exe") != egress.SLIRP4NETNS:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
            ppid = int(
                next(line.split()[1] for line in status.splitlines() if line.startswith("PPid"))
            )
            if agent.proc is not None and ppid == agent.proc.pid:
                found.append(int(entry))
    return found


def test_slirp4netns_ends_with_the_agent_even_when_it_is_killed(start_agent, internet):
    agent = networked_agent(start_agent, internet)
    agent.driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    assert agent.driver.start_workload(spec("ws-1")).phase == Phase.RUNNING
    (slirp,) = slirps_of(agent)
    if agent.health["limits"]:
        # Its CPU and memory count against the workload's limits.
        assert "ws-1" in Path(f"/proc/{slirp}/cgroup").read_text()

    agent.stop(signal.SIGKILL)

    # Its exit descriptor was the agent's: the kernel closed it.
    deadline = time.monotonic() + 5
    while alive(slirp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(slirp)


def test_the_operator_opens_an_internal_mirror_and_closes_more_ranges(
    start_agent, internet, listeners
):
    mirror = listeners("0.0.0.0")  # noqa: S104 - reached at the private address only
    agent = networked_agent(
        start_agent,
        internet,
        ALADDIN_LOCAL_EGRESS_ALLOW=f"{internet.private}/24",
        # The test's internet itself, past its resolver's port: the page is refused.
        ALADDIN_LOCAL_EGRESS_DENY=f"{internet.server}/32",
    )

    result = probe(agent, "probe-2", [f"{internet.private}:{mirror.port}"])

    assert result[f"{internet.private}:{mirror.port}"][0] == "connected"
    assert mirror.accepted == 1
    # The name still resolves (the resolver's port stays open), the page is refused.
    assert "Connection refused" in result["page"], result["page"]


def test_without_network_a_workload_has_loopback_only_and_the_portal_says_why(start_agent):
    agent = start_agent(ALADDIN_LOCAL_NETWORK="off")
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")

    portal_view = agent.driver.health()

    assert agent.health["network"] == ""
    assert agent.health["network_reason"] == "turned off by ALADDIN_LOCAL_NETWORK=off"
    assert portal_view["network"] == "off"
    assert portal_view["network_reason"] == agent.health["network_reason"]
    # /proc/net/dev lists the namespace's interfaces after two header lines.
    output = run_job(agent, "job-1", "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert output.split() == ["lo"]


def test_the_deny_rules_load_and_cover_the_host_and_the_operators_ranges():
    policy = egress.Policy.parse(
        dns="192.0.2.53", deny="203.0.113.0/24", allow="10.1.2.3:3128, 10.9.0.0/16, [fd00::1]:80"
    )
    host = [ipaddress.ip_network("10.5.5.5/32"), ipaddress.ip_network("2001:db8::7/128")]

    rules = egress.ruleset(policy, host)

    assert "ip daddr 10.1.2.3/32 meta l4proto { tcp, udp } th dport 3128 accept" in rules
    assert "ip daddr 10.9.0.0/16 accept" in rules
    assert "ip6 daddr fd00::1/128 meta l4proto { tcp, udp } th dport 80 accept" in rules
    assert "ip daddr 192.0.2.53 meta l4proto { tcp, udp } th dport 53 accept" in rules
    # 10.5.5.5 is inside 10.0.0.0/8 (collapsed: nft refuses overlaps).
    assert "203.0.113.0/24" in rules and "2001:db8::7/128" in rules and "10.5.5.5" not in rules
    assert policy.resolv_conf() == b"nameserver 192.0.2.53\n"
    if os.geteuid() != 0 or not os.access(egress.NFT, os.X_OK):
        pytest.skip("loading rules needs root and nft")
    # Loaded into a throw-away namespace: the kernel accepts them as written.
    loaded = subprocess.run(
        [egress.UNSHARE, "--net", "--", egress.NFT, "-f", "-"], input=rules.encode(), check=False
    )
    assert loaded.returncode == 0


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("ALADDIN_LOCAL_EGRESS_ALLOW", "mirror.internal:80"),
        ("ALADDIN_LOCAL_EGRESS_ALLOW", "10.0.0.1:99999"),
        ("ALADDIN_LOCAL_EGRESS_DENY", "10.0.0.0/33"),
        ("ALADDIN_LOCAL_DNS", "dns.example"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(setting, value):
    key = {
        "ALADDIN_LOCAL_EGRESS_ALLOW": "allow",
        "ALADDIN_LOCAL_EGRESS_DENY": "deny",
        "ALADDIN_LOCAL_DNS": "dns",
    }[setting]
    with pytest.raises(ValueError, match=setting):
        egress.Policy.parse(**{key: value})


def test_the_probe_says_why_workloads_have_no_network(monkeypatch):
    policy = egress.Policy()

    assert egress.probe(policy, sandboxed=False) == (
        "",
        "workloads are not sandboxed on this host",
    )
    assert egress.probe(egress.Policy(enabled=False), sandboxed=True)[1] == (
        "turned off by ALADDIN_LOCAL_NETWORK=off"
    )
    if os.geteuid() != 0:
        assert egress.probe(policy, sandboxed=True) == ("", "the agent is not root")
        return
    monkeypatch.setattr(egress, "SLIRP4NETNS", "/nonexistent/slirp4netns")
    assert egress.probe(policy, sandboxed=True) == ("", "slirp4netns is not installed")
