"""A real SSH gateway process, a real agent and Debian's OpenSSH client (issue 13).

One setup per module, because each piece is a process that takes seconds to
start: a private agent (tests/cluster/conftest.py's RunningAgent) that can
sandbox, a SQLite file migrated once (tests/servers.py), rows seeded by a
``manage.py shell`` of that database (users, keys, workshops started through
the real driver, so each is a sandboxed workload of the agent), and
``manage.py ssh_gateway`` started exactly as Procfile.dev says. The tests
talk to it with ``/usr/bin/ssh`` only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cluster.conftest import RunningAgent
from tests.servers import REPO, copy_db, manage, portal_env, procfile_command
from tests.services_plugin import free_port

SSH = "/usr/bin/ssh"
SSH_KEYGEN = "/usr/bin/ssh-keygen"

SEED = r"""
import json, os
from django.utils import timezone
from tests import factories
from workshops import services
from workshops.models import Workshop
from workshops.choices import WorkshopState

plan = json.loads(os.environ["SEED"])
out = {}
for who, spec in plan.items():
    user = factories.UserFactory()
    keys = {}
    for label, line in spec["keys"].items():
        key = services.ssh_key_add(user=user, public_key=line, name=label)
        if label.startswith("revoked"):
            services.ssh_key_revoke(key=key)
        keys[label] = key.pk
    workshops = {}
    for name, state in spec["workshops"].items():
        ws = factories.WorkshopFactory(user=user, name=name, run=(state == "running"))
        if state == "stopped":
            Workshop.objects.filter(pk=ws.pk).update(state=WorkshopState.STOPPED, stopped_at=timezone.now())
        ws.refresh_from_db()
        workshops[name] = {"id": ws.pk, "state": ws.state, "workload": ws.workload_name}
    out[who] = {"id": user.pk, "keys": keys, "workshops": workshops}
print("SEEDED " + json.dumps(out))
"""


@dataclass
class Portal:
    """The gateway's world: its processes, the seeded rows, the client's keys."""

    base: Path
    env: dict[str, str]
    agent: RunningAgent
    port: int
    keys_dir: Path
    seeded: dict = field(default_factory=dict)
    gateway: subprocess.Popen | None = None
    log: Path | None = None

    def key(self, label: str) -> Path:
        return self.keys_dir / label

    def start_gateway(self) -> None:
        self.log = self.base / "gateway.log"
        with self.log.open("ab") as out:
            self.gateway = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {procfile_command('ssh')}"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.gateway.poll() is None, self.log.read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def stop_gateway(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            os.killpg(self.gateway.pid, signal.SIGTERM)
            try:
                self.gateway.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.gateway.pid, signal.SIGKILL)
                self.gateway.wait()

    def ssh_argv(self, user: str, key: str | None, *options: str) -> list[str]:
        argv = [
            SSH, "-F", "/dev/null", "-p", str(self.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentityAgent=none",
            "-o", "ConnectTimeout=10",
        ]  # fmt: skip
        if key is not None:
            argv += ["-o", "IdentitiesOnly=yes", "-i", str(self.key(key))]
        return [*argv, *options, f"{user}@127.0.0.1"]

    def ssh(self, user: str, key: str | None, *command: str, stdin: bytes = b"", options=()):
        """``ssh user@gateway command``: the completed process (bytes)."""
        return subprocess.run(
            [*self.ssh_argv(user, key, *options), *command],
            input=stdin,
            capture_output=True,
            timeout=60,
        )


def keygen(path: Path, kind: str = "ed25519") -> str:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def portal(migrated_db, built_images):
    # Under /tmp, 0711: sandbox uids traverse to their volumes (tests/cluster/conftest.py).
    base = Path(tempfile.mkdtemp(prefix="aladdin-sshgw-"))
    os.chmod(base, 0o711)
    (base / "var").mkdir(mode=0o711)
    # Workshops run on the catalog's python image, built once a session.
    built_images.build_catalog_defaults()
    agent = RunningAgent(base, built_images.agent_env())
    agent.start()
    try:
        if not agent.health["sandbox"]:
            pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
        copy_db(migrated_db, base / "var")
        port = free_port()
        env = portal_env(
            base / "var",
            REDIS_URL=os.environ.get("REDIS_URL", ""),
            ALADDIN_LOCAL_AGENT_SOCKET=str(agent.socket),
            ALADDIN_LOCAL_VOLUMES_DIR=str(agent.volumes_dir),
            ALADDIN_SSH_PORT=str(port),
            CELERY_TASK_ALWAYS_EAGER="1",
        )
        keys_dir = base / "client-keys"
        keys_dir.mkdir(mode=0o700)
        lines = {label: keygen(keys_dir / label) for label in ("a", "b", "revoked-a")}
        plan = {
            "a": {
                "keys": {"a": lines["a"], "revoked-a": lines["revoked-a"]},
                "workshops": {"off": "stopped", "dev": "running"},
            },
            "b": {"keys": {"b": lines["b"]}, "workshops": {"theirs": "running"}},
        }
        output = manage({**env, "SEED": json.dumps(plan)}, "shell", "-c", SEED)
        seeded = json.loads(output.split("SEEDED ", 1)[1].splitlines()[0])
        running = Portal(
            base=base, env=env, agent=agent, port=port, keys_dir=keys_dir, seeded=seeded
        )
        running.start_gateway()
        yield running
        running.stop_gateway()
    finally:
        agent.stop()
        shutil.rmtree(base, ignore_errors=True)
