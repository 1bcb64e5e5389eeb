"""The ciphers the gateway offers (ALADDIN_SSH_CIPHERS): AES first where the CPU has AES."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from aladdin.sshgw.ciphers import AES_FIRST, cpu_has_aes, offered

X86 = "processor\t: 0\nflags\t\t: fpu vme sse2 aes avx2\n"
X86_NO_AES = "processor\t: 0\nflags\t\t: fpu vme sse2 avx2\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd aes pmull sha1\n"


@pytest.mark.parametrize(("cpuinfo", "has"), [(X86, True), (X86_NO_AES, False), (ARM, True)])
def test_aes_instructions_are_read_from_the_cpus_flags(cpuinfo, has):
    assert cpu_has_aes(cpuinfo) is has


def test_auto_offers_aes_only_on_an_aes_cpu_and_asyncssh_s_list_elsewhere():
    assert offered("auto", has_aes=True) == list(AES_FIRST)
    assert "chacha20-poly1305@openssh.com" not in offered("auto", has_aes=True)
    assert offered("auto", has_aes=False) is None
    assert offered("", has_aes=True) == list(AES_FIRST)


def test_a_list_is_offered_as_given():
    chosen = offered(" chacha20-poly1305@openssh.com , aes128-gcm@openssh.com ")

    assert chosen == ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"]


def test_an_unknown_cipher_is_refused_with_its_name_and_the_known_ones():
    with pytest.raises(ImproperlyConfigured) as refused:
        offered("aes128-gcm@openssh.com,rot13")

    assert "unknown cipher(s) rot13" in str(refused.value)
    assert "aes256-ctr" in str(refused.value)
