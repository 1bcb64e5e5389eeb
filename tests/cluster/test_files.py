"""The driver's files access (open_files): sftp-server in a sandbox over a user's volume (issue 13).

A real agent, real bubblewrap, OpenSSH's own sftp-server, and the portal's
SFTP client; no workload runs.
"""

from __future__ import annotations

import os

import pytest

from aladdin.cluster.sftp import NO_SUCH_FILE, SftpClient, SftpError

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/lib/openssh/sftp-server"),
    reason="openssh-sftp-server is not installed (make system-deps)",
)


def sftp(agent, user_id: int = 1) -> SftpClient:
    return SftpClient(agent.driver.open_files(user_id=user_id))


def test_files_work_without_a_workload_and_as_the_users_uid(agent):
    # given a user whose volume has never been made, and no workload
    with sftp(agent) as client:
        # when they create a folder and write a file into it
        client.mkdir("/root/data")
        data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks and a short tail
        assert client.write_file("/root/data/blob.bin", [data[:100_000], data[100_000:]]) == len(
            data
        )
        # then the listing shows both, and the file reads back byte-identical
        assert [e.name for e in client.listdir("/root")] == ["data"]
        (entry,) = client.listdir("/root/data")
        assert (entry.name, entry.attrs.size, entry.attrs.is_file) == ("blob.bin", len(data), True)
        assert b"".join(client.read_file("/root/data/blob.bin")) == data
        assert client.realpath(".") == "/root"
    # and on the host the file belongs to the user's sandbox uid
    host = agent.volumes_dir / "1" / "data" / "blob.bin"
    assert host.read_bytes() == data
    assert host.stat().st_uid not in (0, os.geteuid()) or os.geteuid() != 0


def test_rename_and_delete(agent):
    with sftp(agent) as client:
        client.write_file("/root/a.txt", [b"hello"])
        client.rename("/root/a.txt", "/root/b.txt")
        assert [e.name for e in client.listdir("/root")] == ["b.txt"]
        client.write_file("/root/c.txt", [b"x"])
        client.remove("/root/b.txt")
        client.remove("/root/c.txt")
        client.mkdir("/root/empty")
        client.rmdir("/root/empty")
        assert client.listdir("/root") == []
        with pytest.raises(SftpError) as missing:
            client.stat("/root/b.txt")
        assert missing.value.status == NO_SUCH_FILE


def test_a_symlink_to_the_root_or_another_volume_shows_nothing_outside(agent):
    # given another user's volume with a secret, and a host file outside any volume
    with sftp(agent, user_id=2) as other:
        other.write_file("/root/secret.txt", [b"user 2 only"])
    other_volume = agent.volumes_dir / "2"
    assert (other_volume / "secret.txt").exists()

    with sftp(agent, user_id=1) as client:
        # when user 1 links / and user 2's volume (by its host path) into /root
        client.write_file("/root/keep.txt", [b"mine"])
    (agent.volumes_dir / "1" / "escape").symlink_to("/")
    (agent.volumes_dir / "1" / "x").symlink_to(other_volume)
    (agent.volumes_dir / "1" / "y").symlink_to(other_volume / "secret.txt")

    with sftp(agent, user_id=1) as client:
        # then / through the link is the sandbox's root: no host paths, no volumes
        names = {e.name for e in client.listdir("/root/escape")}
        assert "usr" in names
        assert not names & {"work", "home", "srv", "opt", "mnt"}, names
        assert [e.name for e in client.listdir("/root/escape/var")] == ["tmp"]  # a private tmpfs
        # the agent's directory (volumes included) is under the host's /tmp; this one is private
        assert client.listdir("/root/escape/tmp") == []
        root_of_sandbox = {e.name for e in client.listdir("/root/escape/root")}
        assert root_of_sandbox == {"keep.txt", "escape", "x", "y"}
        volumes_from_inside = str(agent.volumes_dir)
        with pytest.raises(SftpError):
            client.listdir(volumes_from_inside)
        # and the link to user 2's volume leads nowhere
        with pytest.raises(SftpError):
            client.listdir("/root/x")
        with pytest.raises(SftpError):
            b"".join(client.read_file("/root/y"))
        with pytest.raises(SftpError):
            b"".join(client.read_file(str(other_volume / "secret.txt")))
