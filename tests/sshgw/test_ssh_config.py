"""The ssh-config block works as written with Debian's OpenSSH client: no trust-on-first-use (issue 13)."""

from __future__ import annotations

import subprocess

from tests.sshgw.conftest import SSH
from workshops.models import SSHKey, Workshop
from workshops.selectors import SSH_CLIENT_DIR, workshop_ssh_config


def test_the_config_and_known_hosts_reach_the_workshop_with_strict_host_key_checking(
    portal, settings, tmp_path
):
    # given the block the API serves for this gateway (its host keys, its port)
    settings.SSH_HOST_KEYS_DIR = portal.base / "var" / "ssh"
    settings.SSH_PUBLIC_HOST = "127.0.0.1"
    settings.SSH_PUBLIC_PORT = portal.port
    served = workshop_ssh_config(workshop=Workshop(name="dev"), key=SSHKey(name="a"))
    # the plugin keeps the key under ~/.alaya/ssh; here it is in the test's folder
    config = tmp_path / "config"
    config.write_text(served.config.replace(SSH_CLIENT_DIR, str(portal.keys_dir)))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join(served.known_hosts) + "\n")

    # when OpenSSH connects with nothing else known and no question allowed
    def ssh(known: str, *command: str) -> subprocess.CompletedProcess:
        argv = [
            SSH, "-F", str(config), "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentityAgent=none",
            "-o", "GlobalKnownHostsFile=/dev/null", "dev.bj1", *command,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, timeout=60)

    done = ssh(str(known_hosts), "echo in; id -u")

    # then it logs in, and a stranger's known_hosts would not have done
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"in\n")
    (tmp_path / "empty").write_text("")
    refused = ssh(str(tmp_path / "empty"), "true")
    assert refused.returncode == 255
    assert b"Host key verification failed" in refused.stderr
