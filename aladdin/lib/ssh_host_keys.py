"""The SSH gateway's host keys: made once, kept under ``SSH_HOST_KEYS_DIR``, shown to users.

The gateway (:mod:`aladdin.sshgw`) loads them, creating any that is
missing; the workshop page and the ssh config show their fingerprints and
known_hosts lines from the ``.pub`` files. Here, in lib, because both the
gateway and the pages below it need them (DESIGN: dependency direction).

A private key is created 0600 under a 0700 directory, written to a
temporary name and renamed, so a crash never leaves half a key that the
next start would refuse (or, worse, replace: clients would then see a
changed host key).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

# (file name, asyncssh algorithm, options): ed25519 first, what OpenSSH prefers.
HOST_KEYS = (
    ("ssh_host_ed25519_key", "ssh-ed25519", {}),
    ("ssh_host_rsa_key", "ssh-rsa", {"key_size": 3072}),
)


@dataclass(frozen=True)
class HostKey:
    algorithm: str
    fingerprint: str  # SHA256:…
    public_key: str  # "ssh-ed25519 AAAA…"


def load_or_create(directory: Path) -> list:
    """The host keys (asyncssh private keys), each created on first use. For the gateway."""
    import asyncssh

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    keys = []
    for filename, algorithm, options in HOST_KEYS:
        path = directory / filename
        if not path.exists():
            key = asyncssh.generate_private_key(algorithm, comment="aladdin-gateway", **options)
            _write_private(path, key.export_private_key("openssh"))
            path.with_suffix(".pub").write_bytes(key.export_public_key("openssh"))
        os.chmod(path, 0o600)
        keys.append(asyncssh.read_private_key(str(path)))
    return keys


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def public_keys(directory: Path) -> list[HostKey]:
    """The host keys' public halves, for the pages ([] before the gateway's first start)."""
    import asyncssh

    found = []
    for filename, _algorithm, _options in HOST_KEYS:
        try:
            key = asyncssh.read_public_key(str(directory / f"{filename}.pub"))
        except (OSError, asyncssh.KeyImportError, ValueError):
            continue
        line = " ".join(key.export_public_key("openssh").decode().split()[:2])
        found.append(
            HostKey(
                algorithm=key.algorithm.decode(),
                fingerprint=key.get_fingerprint("sha256"),
                public_key=line,
            )
        )
    return found
