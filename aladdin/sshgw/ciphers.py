"""Which ciphers the gateway offers (``ALADDIN_SSH_CIPHERS``).

The client's order wins an SSH negotiation, and every OpenSSH client lists
chacha20-poly1305 first. In asyncssh that cipher is two Python-level calls
into OpenSSL per packet (ChaCha20, then Poly1305) and costs ~37 µs per
32 KiB packet on this project's machines, against ~9 µs for AES-GCM, which
OpenSSL runs on the CPU's AES instructions (bench/ssh_transfer.py, the
figures in docs/benchmarks.md). On such a CPU the gateway therefore offers
AES-GCM only: OpenSSH lists aes128-ctr before the GCM modes, and AES-CTR
with its separate MAC costs ~18 µs a packet (umac-64) to ~30 µs
(hmac-sha2-256). The clients students use speak AES-GCM: OpenSSH since 6.2
(2013; VS Code's and Cursor's Remote-SSH run it, and so does Windows'),
PuTTY since 0.76, libssh, Paramiko since 3.3. A client without it is told
"no matching cipher" by its own ssh; an operator who must serve one lists
the ciphers in ALADDIN_SSH_CIPHERS. Without AES instructions asyncssh's own
list (chacha20 first) is kept.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh
from django.core.exceptions import ImproperlyConfigured

AES_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
CPUINFO = Path("/proc/cpuinfo")


def cpu_has_aes(cpuinfo: str | None = None) -> bool:
    """Does this CPU have AES instructions (x86 ``aes``, Arm ``aes`` in its flags or features)?"""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features") and "aes" in value.split():
            return True
    return False


def offered(setting: str, *, has_aes: bool | None = None) -> list[str] | None:
    """The ciphers to offer for ``setting`` ("auto" or a comma list); None: asyncssh's defaults.

    Raises ImproperlyConfigured for a name asyncssh does not know, naming it
    and what it knows.
    """
    value = setting.strip()
    if value.lower() in ("", "auto"):
        if has_aes is None:
            has_aes = cpu_has_aes()
        return list(AES_FIRST) if has_aes else None
    names = [name.strip() for name in value.split(",") if name.strip()]
    known = {alg.decode() for alg in asyncssh.encryption.get_encryption_algs()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ImproperlyConfigured(
            f"ALADDIN_SSH_CIPHERS: unknown cipher(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    return names
