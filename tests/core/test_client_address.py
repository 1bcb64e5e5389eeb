"""The client's address comes from TRUSTED_PROXY_COUNT alone, through the real server.

daphne started exactly as Procfile.dev starts it: a forged X-Forwarded-For
must not make a client look like another one to the per-IP SMS limit (1 send
per 60 s per client IP); behind one trusted proxy the right-most forwarded
address is the client.
"""

from __future__ import annotations

import redis

from aladdin.lib.client_address import client_address
from tests.servers import (  # noqa: F401 - private_redis is a fixture
    copy_db,
    new_port,
    portal_env,
    post_form,
    private_redis,
    procfile_command,
    running,
)

REQUEST_CODE = "/accounts/login/code/"


def ask_code(port: int, phone: str, forwarded_for: str) -> int:
    """A login code for ``phone`` from a fresh visitor; 302 sent, 429 refused by a limit."""
    return post_form(
        port, REQUEST_CODE, {"phone": phone}, headers={"X-Forwarded-For": forwarded_for}
    )


def counted_ips(redis_url: str) -> set[str]:
    """The client addresses the SMS limits counted (keys ...sms:ip:<addr>:day:<date>)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() for k in client.scan_iter(match="*sms:ip:*:day:*")]
    finally:
        client.close()
    return {key.split("sms:ip:", 1)[1].rsplit(":day:", 1)[0] for key in keys}


def dev_server(tmp_path, migrated_db, redis_url, **env):
    var_dir = tmp_path / "var"
    copy_db(migrated_db, var_dir)
    port = new_port()
    server_env = portal_env(
        var_dir,
        DEBUG="1",
        REDIS_URL=redis_url,
        ALADDIN_WEB_PORT=str(port),
        BIND="127.0.0.1",
        **env,
    )
    return port, running(
        procfile_command("web"), env=server_env, port=port, log=tmp_path / "web.log"
    )


def test_a_forged_x_forwarded_for_does_not_dodge_the_per_ip_sms_limit(
    tmp_path,
    migrated_db,
    private_redis,  # noqa: F811
):
    port, server = dev_server(tmp_path, migrated_db, private_redis)
    with server:
        # given a code sent to one number, claiming to be 1.1.1.1
        assert ask_code(port, "+8613900070001", "1.1.1.1") == 302

        # when the same client asks for another number, claiming to be 2.2.2.2
        status = ask_code(port, "+8613900070002", "2.2.2.2")

    # then it is the same client (the TCP peer) within its 60 s interval
    assert status == 429
    assert counted_ips(private_redis) == {"127.0.0.1"}


def test_behind_one_trusted_proxy_the_right_most_forwarded_address_is_the_client(
    tmp_path,
    migrated_db,
    private_redis,  # noqa: F811
):
    port, server = dev_server(tmp_path, migrated_db, private_redis, TRUSTED_PROXY_COUNT="1")
    with server:
        # Our proxy appends the address it saw (9.9.9.9); the rest is the client's.
        assert ask_code(port, "+8613900070011", "1.1.1.1, 9.9.9.9") == 302
        # Same client, another forged first hop: refused as the same client.
        assert ask_code(port, "+8613900070012", "2.2.2.2, 9.9.9.9") == 429
        # Another client behind the same proxy.
        assert ask_code(port, "+8613900070013", "9.9.9.8") == 302

    assert counted_ips(private_redis) == {"9.9.9.9", "9.9.9.8"}


def test_client_address_rules():
    def of(xff, n, peer="10.0.0.1"):
        return client_address(peer=peer, forwarded_for=xff, trusted_proxies=n)

    assert of("1.1.1.1", 0) == "10.0.0.1"
    assert of(None, 1) == "10.0.0.1"
    assert of("1.1.1.1, 9.9.9.9", 1) == "9.9.9.9"
    assert of("1.1.1.1, 9.9.9.9, 8.8.8.8", 2) == "9.9.9.9"
    # Fewer entries than proxies: the request skipped a proxy; keep the peer.
    assert of("9.9.9.9", 2) == "10.0.0.1"
    # Not an address: keep the peer rather than count a made-up string.
    assert of("1.1.1.1, junk", 1) == "10.0.0.1"
    assert of("1.1.1.1, 2001:db8::1", 1) == "2001:db8::1"
