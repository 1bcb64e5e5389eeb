"""Outbound network for sandboxed workloads on the local backend (SPEC §9, "Decision — network").

bwrap gives each workload its own network namespace with loopback only.
Where the host can, the agent attaches user-mode networking to it
(slirp4netns: a tap device inside, ordinary sockets of the host outside)
and, before the workload's command runs, loads a deny policy into that
namespace with nftables:

- the sandbox's own loopback is always allowed (a student's servers and
  their clients in the same workload);
- the operator's allow-list (``ALADDIN_LOCAL_EGRESS_ALLOW``: CIDRs or
  ``IP:port``, an internal mirror) comes next, then the resolvers;
- refused: loopback, private, shared (CGNAT), link-local (the cloud
  metadata address), multicast and reserved ranges, IPv6 ULA/link-local,
  every address the host itself has (the portal, Redis and PostgreSQL
  listen there, whatever the interface) and the operator's
  ``ALADDIN_LOCAL_EGRESS_DENY``;
- the rest (the internet) is allowed.

A refused connection fails at once (a TCP reset, an ICMP "administratively
prohibited" otherwise), never a silent drop that hangs pip for minutes.

Who can change the rules: the namespace belongs to the sandbox's outer user
namespace; the workload runs in a nested one with no capabilities at all
(bwrap's ``--disable-userns``), so it holds no CAP_NET_ADMIN over it. The
agent (root) loads the rules through ``nsenter --net``; slirp4netns runs as
root too (the host's ``/dev/net/tun`` is not open to sandbox uids), with its
own sandbox and seccomp filter, and nothing a student controls reaches its
command line.

Run Task (a later issue): the workers of one task must reach each other and
nothing else. Decision: on this backend they share one network namespace
(the first worker's, joined by the others as terminals join today), so they
talk over that namespace's loopback and the same policy holds for all of
them; no rule ever opens one sandbox to another.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import select
import subprocess
import tempfile
from dataclasses import dataclass, field

from .sandbox import HOST_ENV, NSENTER, host_program

SLIRP4NETNS = host_program("slirp4netns")
NFT = host_program("nft")
UNSHARE = host_program("unshare")
IP = host_program("ip")
# slirp4netns's defaults: the guest is 10.0.2.100 behind 10.0.2.2, its DNS
# forwarder (to the host's own resolvers) answers at 10.0.2.3.
SLIRP_DNS = "10.0.2.3"
TAP = "tap0"
MTU = 65520
ATTACH_TIMEOUT_SECONDS = 10
# ioctl(NS_GET_PARENT) on a namespace fd: _IO(0xb7, 0x2).
NS_GET_PARENT = 0xB702

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never reachable from a workload (unless the operator allows a part of one).
DENY_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local: the cloud metadata address 169.254.169.254
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
DENY_V6 = ("::/127", "::ffff:0:0/96", "fc00::/7", "fe80::/10", "ff00::/8")


@dataclass(frozen=True)
class Allow:
    """One opening of the operator's allow-list: a network, and a port (None: every port)."""

    network: Network
    port: int | None = None


def _network(text: str, setting: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{setting}: {text!r} is not an IP address or CIDR") from exc


def parse_allow(item: str) -> Allow:
    """``CIDR``, ``IP``, ``IP:port`` or ``[IPv6]:port``. Names are refused: the rules hold addresses."""
    item = item.strip()
    host, port = item, None
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"ALADDIN_LOCAL_EGRESS_ALLOW: {item!r} is not [IPv6]:port")
        port = rest[1:] or None
    elif item.count(":") == 1:
        host, port = item.split(":")
    allow = Allow(_network(host, "ALADDIN_LOCAL_EGRESS_ALLOW"))
    if port is None:
        return allow
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ALADDIN_LOCAL_EGRESS_ALLOW: bad port in {item!r}")
    return Allow(allow.network, int(port))


def _split(value: str | list[str] | tuple[str, ...]) -> list[str]:
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    return [i for i in (s.strip() for s in items) if i]


@dataclass(frozen=True)
class Policy:
    """What workloads may reach (the operator's settings, parsed once)."""

    enabled: bool = True
    # Resolvers the sandbox's resolv.conf names; empty: slirp4netns's forwarder.
    dns: tuple[str, ...] = ()
    deny: tuple[Network, ...] = ()
    allow: tuple[Allow, ...] = field(default_factory=tuple)

    @classmethod
    def parse(
        cls,
        *,
        enabled: bool = True,
        dns: str | list[str] = "",
        deny: str | list[str] = "",
        allow: str | list[str] = "",
    ) -> Policy:
        """The policy from the settings' values (lists or comma/space separated); ValueError if one is bad."""
        resolvers = []
        for item in _split(dns):
            try:
                resolvers.append(str(ipaddress.ip_address(item)))
            except ValueError as exc:
                raise ValueError(f"ALADDIN_LOCAL_DNS: {item!r} is not an IP address") from exc
        return cls(
            enabled=enabled,
            dns=tuple(resolvers),
            deny=tuple(_network(i, "ALADDIN_LOCAL_EGRESS_DENY") for i in _split(deny)),
            allow=tuple(parse_allow(i) for i in _split(allow)),
        )

    @property
    def resolvers(self) -> tuple[str, ...]:
        return self.dns or (SLIRP_DNS,)

    def resolv_conf(self) -> bytes:
        """The sandbox's /etc/resolv.conf."""
        return "".join(f"nameserver {r}\n" for r in self.resolvers).encode()


def host_addresses() -> list[Network]:
    """Every address of every interface of the host, as /32 or /128 networks."""
    out = subprocess.run(
        [IP, "-json", "address", "show"],
        env=HOST_ENV,
        capture_output=True,
        check=True,
        timeout=10,
    ).stdout
    found: list[Network] = []
    for link in json.loads(out or b"[]"):
        for info in link.get("addr_info", []):
            with contextlib.suppress(KeyError, ValueError):
                found.append(ipaddress.ip_network(info["local"]))
    return found


def _elements(networks: list[Network], version: int) -> str:
    # Overlapping intervals (a host address inside 10.0.0.0/8) are an error
    # in an nft interval set: collapse them first.
    if version == 4:
        v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
        return ", ".join(str(n) for n in ipaddress.collapse_addresses(v4))
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return ", ".join(str(n) for n in ipaddress.collapse_addresses(v6))


def ruleset(policy: Policy, host: list[Network]) -> str:
    """The nftables ruleset loaded into a workload's network namespace."""
    deny: list[Network] = [
        *(ipaddress.ip_network(n) for n in (*DENY_V4, *DENY_V6)),
        *policy.deny,
        *host,
    ]
    accept = []
    for allow in policy.allow:
        family = "ip" if allow.network.version == 4 else "ip6"
        port = f" meta l4proto {{ tcp, udp }} th dport {allow.port}" if allow.port else ""
        accept.append(f"{family} daddr {allow.network}{port} accept")
    for resolver in policy.resolvers:
        family = "ip" if ipaddress.ip_address(resolver).version == 4 else "ip6"
        accept.append(f"{family} daddr {resolver} meta l4proto {{ tcp, udp }} th dport 53 accept")
    lines = [
        "table inet aladdin {",
        f"  set deny4 {{ type ipv4_addr; flags interval; elements = {{ {_elements(deny, 4)} }} }}",
        f"  set deny6 {{ type ipv6_addr; flags interval; elements = {{ {_elements(deny, 6)} }} }}",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        '    oifname "lo" accept',
        *(f"    {rule}" for rule in accept),
        "    ip daddr @deny4 meta l4proto tcp reject with tcp reset",
        "    ip daddr @deny4 reject with icmpx type admin-prohibited",
        "    ip6 daddr @deny6 meta l4proto tcp reject with tcp reset",
        "    ip6 daddr @deny6 reject with icmpx type admin-prohibited",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def probe(policy: Policy, *, sandboxed: bool) -> tuple[str, str]:
    """How workloads reach the network here: ("slirp4netns", "") or ("", why not).

    The rules are loaded once into a throw-away namespace, so a kernel
    without nftables (or its reject module) says so now, not at a start.
    """
    if not sandboxed:
        # Not our namespace to filter: the sandbox notice already says
        # that workloads share the host.
        return "", "workloads are not sandboxed on this host"
    if not policy.enabled:
        return "", "turned off by ALADDIN_LOCAL_NETWORK=off"
    if os.geteuid() != 0:
        return "", "the agent is not root"
    if not os.access(SLIRP4NETNS, os.X_OK):
        return "", "slirp4netns is not installed"
    if not os.access(NFT, os.X_OK):
        return "", "nftables (nft) is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "", "the host has no /dev/net/tun"
    try:
        rules = ruleset(policy, host_addresses())
        result = subprocess.run(
            [UNSHARE, "--net", "--", NFT, "-f", "-"],
            input=rules.encode(),
            env=HOST_ENV,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return "", f"cannot load the network rules: {exc}"
    if result.returncode != 0:
        why = result.stderr.decode(errors="replace").strip()[-300:]
        return "", f"cannot load the network rules: {why}"
    return "slirp4netns", ""


class Attachment:
    """A workload's slirp4netns, for as long as the workload runs."""

    def __init__(self, proc: subprocess.Popen, exit_fd: int):
        self.proc = proc
        self._exit_fd: int | None = exit_fd

    def close(self) -> None:
        """Stop slirp4netns (EOF on its exit fd; killed if it lingers) and reap it."""
        fd, self._exit_fd = self._exit_fd, None
        if fd is not None:
            os.close(fd)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def attach(pid: int, net_namespace: int | None, policy: Policy) -> Attachment:
    """Load the rules into ``pid``'s network namespace, then give it slirp4netns; raises OSError.

    ``net_namespace`` (bwrap's info) guards against a recycled pid. The
    rules go first: the tap device appears only once they are in place.
    """
    net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fds = [net]
    try:
        if net_namespace is not None and os.fstat(net).st_ino != net_namespace:
            raise OSError(f"process {pid} left its network namespace")
        # slirp4netns creates the tap device from inside the namespace's
        # owner, bwrap's outer user namespace (the workload's is nested in
        # it and has no say over the network).
        user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        fds.append(user)
        owner = fcntl.ioctl(user, NS_GET_PARENT)
        fds.append(owner)
        result = subprocess.run(
            [NSENTER, f"--net=/proc/self/fd/{net}", NFT, "-f", "-"],
            input=ruleset(policy, host_addresses()).encode(),
            env=HOST_ENV,
            pass_fds=(net,),
            capture_output=True,
            timeout=ATTACH_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            why = result.stderr.decode(errors="replace").strip()[-300:]
            raise OSError(f"cannot load the network rules: {why}")
        return _start_slirp(net, owner, policy)
    except subprocess.SubprocessError as exc:
        raise OSError(f"cannot attach the network: {exc}") from exc
    finally:
        for fd in fds:
            os.close(fd)


def _start_slirp(net: int, owner: int, policy: Policy) -> Attachment:
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    argv = [
        SLIRP4NETNS,
        "--configure",
        f"--mtu={MTU}",
        "--disable-host-loopback",
        "--enable-sandbox",
        "--enable-seccomp",
        f"--ready-fd={ready_w}",
        f"--exit-fd={exit_r}",
        f"--userns-path=/proc/self/fd/{owner}",
        "--netns-type=path",
    ]
    if policy.dns:
        argv.append("--disable-dns")  # the operator's resolvers are used instead
    argv += [f"/proc/self/fd/{net}", TAP]
    # Its messages go to an unlinked file, read only to say why it failed
    # (a pipe nobody reads once it runs could fill, or SIGPIPE it).
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, its copy lives on in slirp
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=HOST_ENV,
            pass_fds=(ready_w, exit_r, net, owner),
            start_new_session=True,  # the agent's Ctrl-C is not its end: the exit fd is
        )
    except OSError:
        for fd in (ready_r, ready_w, exit_r, exit_w):
            os.close(fd)
        errors.close()
        raise
    os.close(ready_w)
    os.close(exit_r)
    attachment = Attachment(proc, exit_w)
    try:
        ready, _, _ = select.select([ready_r], [], [], ATTACH_TIMEOUT_SECONDS)
        if not ready or os.read(ready_r, 1) != b"1":
            attachment.close()
            errors.seek(0)
            why = errors.read()[-300:].decode(errors="replace").strip()
            raise OSError(f"slirp4netns did not start: {why or 'no answer'}")
    except BaseException:
        attachment.close()
        raise
    finally:
        os.close(ready_r)
        errors.close()
    return attachment
