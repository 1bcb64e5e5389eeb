"""The gateway's limits with small settings: sessions per user and in all, idle close, failed logins (issue 13)."""

from __future__ import annotations

import subprocess
import time

import pytest

from aladdin.sshgw.server import Gateway


@pytest.fixture(scope="module")
def limited(portal):
    portal.stop_gateway()
    portal.env.update(
        ALADDIN_SSH_MAX_SESSIONS_PER_USER="2",
        ALADDIN_SSH_MAX_SESSIONS="3",
        ALADDIN_SSH_IDLE_TIMEOUT_SECONDS="2",
        ALADDIN_SSH_AUTH_FAILURES_PER_MINUTE="3",
        ALADDIN_SSH_AUTH_BLOCK_SECONDS="600",
    )
    portal.start_gateway()
    return portal


def hold(portal, user: str, key: str) -> subprocess.Popen:
    """A session that stays open (its output keeps the connection from being idle)."""
    proc = subprocess.Popen(
        portal.ssh_argv(user, key) + ["while :; do echo up; sleep 0.5; done"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    return proc


def test_a_user_gets_at_most_the_per_user_sessions_and_all_users_the_total(limited):
    held = [hold(limited, "dev", "a"), hold(limited, "dev", "a")]
    try:
        third = limited.ssh("dev", "a", "echo no")
        assert third.returncode != 0
        assert b"too many SSH sessions: 2 at once per user" in third.stderr
        held.append(hold(limited, "theirs", "b"))  # another user: the third in all
        full = limited.ssh("theirs", "b", "echo no")
        assert b"the SSH gateway is full" in full.stderr
    finally:
        for proc in held:
            proc.kill()
            proc.wait()
    time.sleep(1)  # the gateway sees the hang-ups
    assert limited.ssh("dev", "a", "echo again").stdout == b"again\n"


def test_a_quiet_connection_is_closed_after_the_idle_time(limited):
    started = time.monotonic()
    done = limited.ssh("dev", "a", "sleep 20; echo late")

    assert done.stdout == b""
    assert done.returncode == 255
    assert time.monotonic() - started < 10


def test_too_many_failed_logins_block_the_address_even_with_the_right_key(limited):
    # Last in this module: it blocks 127.0.0.1 for the gateway's block time.
    for _ in range(4):
        assert limited.ssh("dev", "b", "true").returncode == 255

    done = limited.ssh("dev", "a", "echo in")

    assert done.returncode == 255
    assert done.stdout == b""
    assert "blocked for 600s" in limited.log.read_text()


def test_failures_are_counted_per_address_within_a_minute():
    now = [1000.0]
    gateway = Gateway(auth_failures_per_minute=2, auth_block_seconds=30, clock=lambda: now[0])

    gateway.auth_failed("10.0.0.1")
    gateway.auth_failed("10.0.0.1")
    now[0] += 61  # the first two have aged out
    gateway.auth_failed("10.0.0.1")
    gateway.auth_failed("10.0.0.2")
    assert not gateway.auth_blocked("10.0.0.1")

    gateway.auth_failed("10.0.0.1")
    gateway.auth_failed("10.0.0.1")
    assert gateway.auth_blocked("10.0.0.1")
    assert not gateway.auth_blocked("10.0.0.2")
    now[0] += 31
    assert not gateway.auth_blocked("10.0.0.1")


def test_no_limit_when_the_setting_is_zero():
    gateway = Gateway(auth_failures_per_minute=0)
    for _ in range(100):
        gateway.auth_failed("10.0.0.1")
    assert not gateway.auth_blocked("10.0.0.1")
