"""Public keys for the SSH key tests, made with asyncssh (the parser the portal uses)."""

from __future__ import annotations

import asyncssh


def public_key(algorithm: str = "ssh-ed25519", comment: str = "me@laptop", **options) -> str:
    """A fresh public key line of ``algorithm`` (``key_size=`` for RSA)."""
    private = asyncssh.generate_private_key(algorithm, comment=comment, **options)
    return private.export_public_key("openssh").decode().strip()
