"""Benchmark: scp and keystrokes through the SSH gateway vs. Debian's own sshd, in the same run (issue 13).

    .venv/bin/python bench/ssh_transfer.py [--sizes 256 1024] [--repeats 2]
                                           [--keystrokes 300] [--profile]

Set-up, as tests/sshgw/conftest.py does it: a private agent that sandboxes,
a migrated SQLite file, one user with an ed25519 key and a running workshop
(a real sandboxed workload), ``manage.py ssh_gateway`` as Procfile.dev
starts it. The baseline: ``/usr/sbin/sshd -D -e -f <config>`` on a free
loopback port, its own ed25519 host key and an ``AuthorizedKeysFile`` in a
temp dir holding the same client key, root login with that key only (a
bench, not a service), OpenSSH's SFTP server (``internal-sftp``: see the
config for why). Both are driven with the
same ``scp``/``ssh`` command lines: same client key, the client's default
ciphers and MACs, ``-F /dev/null``.

For each size (MiB): a file of random bytes is uploaded with ``scp`` (SFTP
mode, OpenSSH's default) into the workshop's /root and into the sshd's temp
dir, then downloaded back; gateway and sshd alternate, ``--repeats`` times;
the best time of each counts (the least disturbed on a shared machine) and
the median of the per-repeat ratios is printed beside it. Every copy is
checked byte for byte (sha256).

Keystrokes: an interactive login shell under a PTY (``ssh -tt``) on each
side; one byte is written, and the time until the remote shell's echo of it
comes back is one sample (bash's readline echoes it; the line is cleared
every 40 bytes). ``--keystrokes`` samples per side, in two alternating
halves; median and p95.

Where the time goes (``--profile``): the CPU seconds each process spent per
GiB during one gateway upload and download (the scp client with its ssh, the
gateway, the agent and the sandboxed sftp-server it spawned) and the same for
sshd; py-spy samples of the gateway and the agent during a transfer, with
the share of samples in base64/JSON (the agent protocol), in asyncssh's
crypto, and in socket I/O.

One RESULT line per size, one for the keystrokes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pty
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import termios
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' helpers start the agent and the gateway

from bench.benchdocs import machine as base_machine  # noqa: E402
from tests.cluster.conftest import BuiltImages, RunningAgent  # noqa: E402
from tests.servers import copy_db, manage, portal_env  # noqa: E402
from tests.services_plugin import free_port  # noqa: E402
from tests.sshgw.conftest import SEED, Portal, keygen  # noqa: E402

MIB = 1 << 20
SSHD = "/usr/sbin/sshd"
SCP = "/usr/bin/scp"
SSH = "/usr/bin/ssh"


# --cipher: the client asks both servers for this cipher (the default: the
# client's own order, as a student's scp does).
CLIENT_CIPHER: list[str] = []


def client_options(port: int, key: Path, *, scp: bool = False) -> list[str]:
    """The same client command line for both servers: only the port differs."""
    return [
        "-F", "/dev/null", "-P" if scp else "-p", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentityAgent=none",
        "-o", "IdentitiesOnly=yes", "-i", str(key), *CLIENT_CIPHER,
    ]  # fmt: skip


class Sshd:
    """Debian's sshd on a loopback port, private config, host key and authorized keys."""

    def __init__(self, base: Path, client_pub: str):
        self.dir = base / "sshd"
        self.dir.mkdir(mode=0o700)
        self.files = base / "sshd-files"  # the transfers' target, on the same disk as volumes
        self.files.mkdir(mode=0o700)
        self.port = free_port()
        host_key = self.dir / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
        (self.dir / "authorized_keys").write_text(client_pub + "\n")
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {host_key}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            # internal-sftp: the same SFTP server code, in sshd's session
            # process. sshd runs an external subsystem through the user's
            # shell, and Debian's bash then sources root's ~/.bashrc (here a
            # pyenv init of ~0.25 s) before every scp: that would slow the
            # baseline, not measure it.
            "Subsystem sftp internal-sftp\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # sshd refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.log = (self.dir / "sshd.log").open("ab")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_banner(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def wait_banner(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "no SSH banner"
        time.sleep(0.2)


class Target:
    """One server under test: where scp puts a file, and how to read it back."""

    def __init__(
        self, name: str, port: int, user: str, key: Path, remote_dir: str, local_dir: Path
    ):
        self.name, self.port, self.user, self.key = name, port, user, key
        self.remote_dir = remote_dir  # as scp names it
        self.local_dir = local_dir  # the same directory on this machine's disk

    def scp(self, src: str, dst: str) -> float:
        argv = [SCP, *client_options(self.port, self.key, scp=True), src, dst]
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=3600)
        return time.perf_counter() - start

    def remote(self, name: str) -> str:
        return f"{self.user}@127.0.0.1:{self.remote_dir}{name}"

    def ssh_argv(self, *extra: str) -> list[str]:
        return [SSH, *client_options(self.port, self.key), *extra, f"{self.user}@127.0.0.1"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def make_payload(path: Path, size: int) -> str:
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MIB))
            out.write(chunk)
            left -= len(chunk)
    return sha256(path)


def transfer_round(target: Target, payload: Path, digest: str, work: Path) -> tuple[float, float]:
    """One upload and one download through ``target``: seconds each, both checked."""
    name = "bench-upload.bin"
    up = target.scp(str(payload), target.remote(name))
    uploaded = target.local_dir / name
    assert sha256(uploaded) == digest, f"{target.name}: the upload differs"
    back = work / f"back-{target.name}.bin"
    down = target.scp(target.remote(name), str(back))
    assert sha256(back) == digest, f"{target.name}: the download differs"
    back.unlink()
    uploaded.unlink()
    return up, down


# --- keystrokes ----------------------------------------------------------------------


def read_until(fd: int, pattern: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(seen[-500:])
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError(seen[-500:])
            seen += chunk
    return seen


def drain(fd: int, quiet: float = 0.2) -> None:
    while select.select([fd], [], [], quiet)[0]:
        if not os.read(fd, 65536):
            return


def keystroke_samples(target: Target, count: int) -> list[float]:
    """Round trips (seconds) of ``count`` single bytes echoed by the remote shell."""
    pid, master = pty.fork()
    if pid == 0:  # the child: ssh on the PTY, as a person's terminal would run it
        os.execv(SSH, target.ssh_argv("-tt"))
    try:
        attrs = termios.tcgetattr(master)
        os.write(master, b"stty cols 200; echo RE''ADY\n")
        read_until(master, rb"READY\r?\n")
        drain(master, 0.5)
        samples = []
        typed = 0
        while len(samples) < count:
            start = time.perf_counter()
            os.write(master, b"x")
            read_until(master, b"x", timeout=10)
            samples.append(time.perf_counter() - start)
            typed += 1
            if typed == 40:  # keep the line short: Ctrl-U clears it
                os.write(master, b"\x15")
                drain(master, 0.1)
                typed = 0
            time.sleep(0.01)  # a fast typist: ~100 keys a second at most
        os.write(master, b"\x15exit\n")
        del attrs
        return samples
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(master)


def negotiated(target: Target) -> str:
    """The cipher and MAC the client and ``target`` agreed on (``ssh -v``'s kex lines)."""
    done = subprocess.run(
        [arg.replace("LogLevel=ERROR", "LogLevel=DEBUG1") for arg in target.ssh_argv()] + ["true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"kex: server->client cipher: (\S+) MAC: (\S+)", done.stderr)
    return f"{found.group(1)} (MAC {found.group(2)})" if found else "?"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


# --- where the time goes -------------------------------------------------------------


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """utime + stime of ``pid`` (and of its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / tick


def own_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def profile_cpu(target: Target, payload: Path, digest: str, work: Path, pids: dict[str, int]):
    """CPU seconds per process for one upload + download through ``target``."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    client_before = own_children_cpu()
    up, down = transfer_round(target, payload, digest, work)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    used["scp+ssh client"] = own_children_cpu() - client_before
    return up, down, used


BUCKETS = {
    "base64": re.compile(r"b64|base64|binascii"),
    "json": re.compile(r"json"),
    "crypto (asyncssh/cryptography)": re.compile(
        r"crypto|cipher|encrypt|decrypt|chacha|poly1305|aes|gcm|hmac|umac|_mac\b|mac\.py"
    ),
    "socket I/O": re.compile(r"\b(recv|send|sendall|recv_into|_sock_|sock_recv)\b|socket\.py"),
    "asyncssh (all)": re.compile(r"asyncssh"),
    "protocol.py (agent messages)": re.compile(r"cluster/protocol\.py"),
}


def py_spy(pid: int, seconds: int, out: Path) -> subprocess.Popen | None:
    spy = shutil.which("py-spy", path=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    if spy is None:
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
         "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def spy_summary(raw: Path) -> str:
    """Shares of samples (stacks, collapsed) by bucket, and the top leaf functions."""
    if not raw.exists():
        return "  (no py-spy samples)"
    total = 0
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        threads[frames[0][:40]] += count
        for name, pattern in BUCKETS.items():
            if pattern.search(stack):
                buckets[name] += count
        leaves[frames[-1][:90]] += count
    if not total:
        return "  (no py-spy samples)"
    lines = [f"  {total} samples (all threads, idle excluded)"]
    lines += [f"  {name}: {100 * n / total:.0f}%" for name, n in buckets.most_common()]
    lines.append("  top functions (self):")
    lines += [f"    {100 * n / total:4.1f}%  {leaf}" for leaf, n in leaves.most_common(8)]
    return "\n".join(lines)


# --- set-up --------------------------------------------------------------------------


def start_portal(base: Path, client_pub: str) -> tuple[Portal, Path]:
    # Workshops run on the catalog's python image (issue 14): built first, in
    # a directory of its own (as tests/conftest.py's built_images), or the
    # seeded workshop stays "creating".
    images_base = base / "images"
    images_base.mkdir(mode=0o711)
    (images_base / "var").mkdir(mode=0o700)
    images = BuiltImages(images_base)
    images.build_catalog_defaults()
    agent = RunningAgent(base, images.agent_env())
    agent.start()
    if not agent.health["sandbox"]:
        agent.stop()
        raise SystemExit(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    migrated = base / "migrated" / "var"
    manage(portal_env(migrated, DEBUG="1"), "migrate", "--noinput")
    copy_db(migrated / "db.sqlite3", base / "var")
    port = free_port()
    env = portal_env(
        base / "var",
        REDIS_URL=os.environ.get("REDIS_URL", ""),
        ALADDIN_LOCAL_AGENT_SOCKET=str(agent.socket),
        ALADDIN_LOCAL_VOLUMES_DIR=str(agent.volumes_dir),
        ALADDIN_SSH_PORT=str(port),
        CELERY_TASK_ALWAYS_EAGER="1",
    )
    plan = {"bench": {"keys": {"bench": client_pub}, "workshops": {"bench": "running"}}}
    output = manage({**env, "SEED": json.dumps(plan)}, "shell", "-c", SEED)
    seeded = json.loads(output.split("SEEDED ", 1)[1].splitlines()[0])
    portal = Portal(base=base, env=env, agent=agent, port=port, keys_dir=base, seeded=seeded)
    portal.start_gateway()
    volume = agent.volumes_dir / str(seeded["bench"]["id"])
    return portal, volume


def machine() -> str:
    import asyncssh

    ssh_version = subprocess.run([SSH, "-V"], capture_output=True, text=True).stderr.strip()
    return base_machine(ssh_version, f"asyncssh {asyncssh.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16], help="MiB")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keystrokes", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--cipher",
        default="",
        help="ask both servers for this cipher (ssh -c); default: the client's order",
    )
    args = parser.parse_args()
    if args.cipher:
        CLIENT_CIPHER[:] = ["-c", args.cipher]

    base = Path(tempfile.mkdtemp(prefix="aladdin-bench-ssh-"))
    os.chmod(base, 0o711)  # sandbox uids traverse to their volumes
    (base / "var").mkdir(mode=0o711)
    portal = sshd = None
    try:
        key = base / "client"
        client_pub = keygen(key)
        portal, volume = start_portal(base, client_pub)
        sshd = Sshd(base, client_pub)
        sshd.start()
        targets = {
            "gateway": Target("gateway", portal.port, "bench", key, "", volume),
            "sshd": Target("sshd", sshd.port, "root", key, f"{sshd.files}/", sshd.files),
        }
        print(f"machine: {machine()}", flush=True)
        print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
        print(f"command: {' '.join(['python', *sys.argv])}", flush=True)
        for name, target in targets.items():
            logins = []
            for _ in range(5):  # what every scp pays before its first byte
                start = time.perf_counter()
                subprocess.run([*target.ssh_argv(), "true"], check=True, timeout=60)
                logins.append(time.perf_counter() - start)
            print(
                f"{name}: cipher {negotiated(target)}; `ssh host true` median "
                f"{1000 * statistics.median(logins):.0f} ms",
                flush=True,
            )
        work = base / "work"
        work.mkdir()
        transfer_results = []
        for size_mib in args.sizes:
            payload = work / "payload.bin"
            digest = make_payload(payload, size_mib * MIB)
            runs: dict[str, list[tuple[float, float]]] = {"gateway": [], "sshd": []}
            for repeat in range(args.repeats):
                order = ["gateway", "sshd"] if repeat % 2 == 0 else ["sshd", "gateway"]
                for name in order:
                    runs[name].append(transfer_round(targets[name], payload, digest, work))
            result = {"size_mib": size_mib}
            for i, direction in enumerate(("upload", "download")):
                gw = min(run[i] for run in runs["gateway"])
                sd = min(run[i] for run in runs["sshd"])
                ratios = [s[i] / g[i] for g, s in zip(runs["gateway"], runs["sshd"], strict=True)]
                result[direction] = {
                    "gateway_mib_s": size_mib / gw,
                    "sshd_mib_s": size_mib / sd,
                    "ratio": sd / gw,
                    "median_ratio": statistics.median(ratios),
                }
            transfer_results.append(result)
            print(
                f"RESULT scp {size_mib} MiB: "
                + "  ".join(
                    f"{d} gateway {result[d]['gateway_mib_s']:.0f} MiB/s, sshd "
                    f"{result[d]['sshd_mib_s']:.0f} MiB/s = {100 * result[d]['ratio']:.0f}% "
                    f"(median of repeats {100 * result[d]['median_ratio']:.0f}%)"
                    for d in ("upload", "download")
                )
                + (
                    ""
                    if min(result[d]["ratio"] for d in ("upload", "download")) >= 0.5
                    else "  (goal >= 50 %: MISSED)"
                ),  # fmt: skip
                flush=True,
            )
            payload.unlink()

        samples: dict[str, list[float]] = {"gateway": [], "sshd": []}
        half = max(1, args.keystrokes // 2)
        for name in ["gateway", "sshd", "sshd", "gateway"]:
            samples[name] += keystroke_samples(targets[name], half)
        line = "RESULT keystroke round trip (PTY, one byte to its echo): " + "  ".join(
            f"{name} median {1000 * statistics.median(s):.2f} ms p95 {1000 * p95(s):.2f} ms"
            f" (n={len(s)})"
            for name, s in samples.items()
        )
        ratio = statistics.median(samples["gateway"]) / statistics.median(samples["sshd"])
        print(f"{line}  gateway/sshd median {ratio:.1f}x", flush=True)

        if args.profile:
            size_mib = min(args.sizes)
            payload = work / "payload.bin"
            digest = make_payload(payload, size_mib * MIB)
            assert portal.gateway is not None and portal.agent.proc is not None and sshd.proc
            pids = {"gateway": portal.gateway.pid, "agent (+ sftp-server)": portal.agent.proc.pid}
            print(f"\nCPU seconds per GiB, one upload + one download of {size_mib} MiB:")
            for name, target, who in (
                ("gateway", targets["gateway"], pids),
                ("sshd", targets["sshd"], {"sshd (+ its session, sftp-server)": sshd.proc.pid}),
            ):
                up, down, used = profile_cpu(target, payload, digest, work, who)
                scale = 1024 / size_mib
                print(
                    f"  {name}: {up + down:.1f} s wall; "
                    + ", ".join(f"{k} {v * scale:.1f}" for k, v in used.items())
                )
            spies = {
                "gateway": py_spy(portal.gateway.pid, 60, work / "gateway.spy"),
                "agent": py_spy(portal.agent.proc.pid, 60, work / "agent.spy"),
            }
            time.sleep(1)
            start = time.monotonic()
            while time.monotonic() - start < 20:
                transfer_round(targets["gateway"], payload, digest, work)
            for name, spy in spies.items():
                if spy is None:
                    print("  (py-spy not installed: no samples)")
                    continue
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
                print(f"\npy-spy, {name}, during gateway uploads and downloads:")
                print(spy_summary(work / f"{name}.spy"))
    finally:
        if sshd is not None:
            sshd.stop()
        if portal is not None:
            portal.stop_gateway()
            portal.agent.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
