"""The SSH gateway with Debian's OpenSSH client: logins, refusals, shell and exec (issue 13)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time

import pytest
from django.conf import settings

pytestmark = pytest.mark.usefixtures("portal")

DENIED = b"Permission denied (publickey)"


def test_ssh_runs_a_command_in_the_workshop_and_gets_its_exit_status(portal):
    done = portal.ssh("dev", "a", "echo hello; echo oops >&2; exit 7")

    assert done.returncode == 7, done
    assert done.stdout == b"hello\n"
    assert done.stderr == b"oops\n"


def test_an_openssh_client_gets_aes_gcm_where_the_cpu_has_aes(portal):
    # The client's own order (chacha20-poly1305 first) would win if the
    # gateway offered it: on an AES CPU it offers AES-GCM only (sshgw/ciphers.py).
    from aladdin.sshgw.ciphers import cpu_has_aes

    done = portal.ssh("dev", "a", "true", options=("-v", "-o", "LogLevel=DEBUG1"))

    assert done.returncode == 0, done
    chosen = re.findall(rb"kex: server->client cipher: (\S+)", done.stderr)
    expected = b"aes128-gcm@openssh.com" if cpu_has_aes() else b"chacha20-poly1305@openssh.com"
    assert chosen == [expected], done.stderr[-2000:]


def test_stdin_reaches_the_command_and_its_end_is_an_eof(portal):
    data = os.urandom(300_000)
    done = portal.ssh("dev", "a", "sha256sum; wc -c", stdin=data)

    import hashlib

    assert done.returncode == 0, done
    digest, _dash, count = done.stdout.decode().split()
    assert digest == hashlib.sha256(data).hexdigest()
    assert int(count) == 0  # sha256sum read it all, up to the EOF


def test_the_command_runs_as_the_workloads_uid_in_root(portal):
    user_id = portal.seeded["a"]["id"]
    done = portal.ssh("dev", "a", "id -u; pwd; echo $HOME; ls /work 2>&1 | head -1")

    uid, cwd, home, work = done.stdout.decode().splitlines()
    assert int(uid) == settings.LOCAL_UID_BASE + user_id
    assert (cwd, home) == ("/root", "/root")
    assert "No such file" in work


def test_another_users_key_an_unknown_name_and_a_revoked_key_are_refused_alike(portal):
    answers = [
        portal.ssh("dev", "b", "true"),  # B's key, A's workshop
        portal.ssh("theirs", "a", "true"),  # A's key, B's workshop
        portal.ssh("nosuch", "a", "true"),  # a name nobody has
        portal.ssh("dev", "revoked-a", "true"),  # A's own workshop, a revoked key
    ]

    for done in answers:
        assert done.returncode == 255
        assert DENIED in done.stderr, done.stderr
    # The same words (but for the name the client itself typed).
    said = {re.sub(rb"^\S+@", b"NAME@", done.stderr) for done in answers}
    assert said == {b"NAME@127.0.0.1: Permission denied (publickey).\r\n"}


def test_a_password_is_never_asked_for(portal):
    done = portal.ssh(
        "dev",
        None,
        "true",
        options=(
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
        ),
    )
    assert done.returncode == 255
    assert b"Permission denied (publickey)" in done.stderr
    assert b"password" not in done.stderr.lower().replace(b"preferredauthentications", b"")


def test_a_stopped_workshop_says_so_in_one_line_and_closes(portal):
    done = portal.ssh("off", "a", "true")

    assert done.returncode != 0
    assert done.stderr == b"workshop off is stopped: start it from the dashboard or the plugin\r\n"
    assert done.stdout == b""


def test_forwarding_is_refused(portal):
    done = portal.ssh(
        "dev", "a", "true", options=("-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9")
    )
    assert done.returncode == 255


def read_until(fd: int, pattern: bytes, timeout: float = 20) -> bytes:
    """What ``fd`` gives until the regular expression ``pattern`` matches it."""
    seen = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        left = deadline - time.monotonic()
        assert left > 0, seen
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_an_interactive_session_under_a_pty_sees_root_its_uid_and_window_size(portal):
    import fcntl
    import struct
    import termios

    user_id = portal.seeded["a"]["id"]
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    proc = subprocess.Popen(
        portal.ssh_argv("dev", "a", "-tt"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    try:
        os.write(master, b'echo "U=$(id -u) D=$(pwd) S=$(stty size)"\n')
        out = read_until(master, rb"S=\d+ \d+")
        found = re.search(rb"U=(\d+) D=(\S+) S=(\d+ \d+)", out)
        assert found, out
        assert int(found.group(1)) == settings.LOCAL_UID_BASE + user_id
        assert found.group(2) == b"/root"
        assert found.group(3) == b"33 111"

        # The window grows: the shell inside sees the new size.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.kill(proc.pid, 28)  # SIGWINCH: ssh sends the new size
        time.sleep(0.5)
        os.write(master, b'echo "Z=$(stty size)"\n')
        read_until(master, b"Z=40 120")
        os.write(master, b"exit 4\n")
        assert proc.wait(timeout=20) == 4
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_the_login_is_recorded_as_the_keys_last_use(portal):
    portal.ssh("dev", "a", "true")
    shown = subprocess.run(
        [
            ".venv/bin/python",
            "manage.py",
            "shell",
            "-c",
            "from workshops.models import SSHKey; "
            f"k = SSHKey.objects.select_related('user').get(pk={portal.seeded['a']['keys']['a']}); "
            "print(k.last_used_at is not None, k.user.last_activity_at is not None)",
        ],
        env=portal.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.stdout.strip().splitlines()[-1] == "True True", shown


def host_key_fingerprints(portal) -> set[str]:
    scan = subprocess.run(
        ["ssh-keyscan", "-p", str(portal.port), "-t", "ed25519,rsa", "127.0.0.1"],
        capture_output=True,
        timeout=30,
    )
    lines = scan.stdout
    fingerprints = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=lines, capture_output=True, timeout=30
    )
    return {line.split()[1] for line in fingerprints.stdout.decode().splitlines()}


def test_the_host_keys_are_the_same_after_a_restart(portal):
    before = host_key_fingerprints(portal)
    assert len(before) == 2

    portal.stop_gateway()
    portal.start_gateway()

    assert host_key_fingerprints(portal) == before
    keys = portal.base / "var" / "ssh"
    assert oct(os.stat(keys / "ssh_host_ed25519_key").st_mode & 0o777) == "0o600"
    assert oct(os.stat(keys / "ssh_host_rsa_key").st_mode & 0o777) == "0o600"


def test_scp_and_sftp_upload_files_that_belong_to_the_workloads_uid(portal, tmp_path):
    user_id = portal.seeded["a"]["id"]
    payload = tmp_path / "data.bin"
    payload.write_bytes(os.urandom(2_000_000))
    common = [
        "-F", "/dev/null", "-P", str(portal.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-i", str(portal.key("a")),
    ]  # fmt: skip

    scp = subprocess.run(
        ["/usr/bin/scp", *common, str(payload), "dev@127.0.0.1:uploaded.bin"],
        capture_output=True,
        timeout=60,
    )
    assert scp.returncode == 0, scp.stderr
    batch = tmp_path / "batch"
    batch.write_text(f"mkdir dir\nput {payload} dir/via-sftp.bin\nls -l dir\n")
    sftp = subprocess.run(
        ["/usr/bin/sftp", *common, "-b", str(batch), "dev@127.0.0.1"],
        capture_output=True,
        timeout=60,
    )
    assert sftp.returncode == 0, sftp.stderr

    import hashlib

    expected = hashlib.sha256(payload.read_bytes()).hexdigest()
    listed = portal.ssh(
        "dev",
        "a",
        "sha256sum uploaded.bin dir/via-sftp.bin; stat -c '%u %n' uploaded.bin dir/via-sftp.bin",
    )
    lines = listed.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines[:2]] == [expected, expected]
    assert {line.split()[0] for line in lines[2:]} == {str(settings.LOCAL_UID_BASE + user_id)}
    # On the host: in the user's volume, owned by the sandbox uid.
    volume = portal.agent.volumes_dir / str(user_id)
    assert (volume / "uploaded.bin").stat().st_uid == settings.LOCAL_UID_BASE + user_id

    downloaded = tmp_path / "back.bin"
    scp = subprocess.run(
        ["/usr/bin/scp", *common, "dev@127.0.0.1:dir/via-sftp.bin", str(downloaded)],
        capture_output=True,
        timeout=60,
    )
    assert scp.returncode == 0, scp.stderr
    assert downloaded.read_bytes() == payload.read_bytes()


def test_sftp_cannot_leave_the_sandbox_through_a_symlink(portal, tmp_path):
    portal.ssh("dev", "a", "ln -sfn / escape; ln -sfn /etc/shadow shadow")
    batch = tmp_path / "batch"
    batch.write_text("ls escape/\nget escape/etc/hostname hostname\n")
    common = [
        "-F", "/dev/null", "-P", str(portal.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-i", str(portal.key("a")),
    ]  # fmt: skip
    sftp = subprocess.run(
        ["/usr/bin/sftp", *common, "-b", str(batch), "dev@127.0.0.1"],
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )

    listing = sftp.stdout.decode()
    # "/" is the sandbox's root: /usr, /proc, /tmp, /root...; never the host's var/ or /work.
    assert "escape/usr" in listing
    assert "escape/work" not in listing and "escape/home" not in listing
    # The sandbox's own /etc (generated): its hostname is the workshop's, not the host's.
    assert (tmp_path / "hostname").read_text().strip() == "workshop"
