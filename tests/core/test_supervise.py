"""`make run`'s supervisor refuses to start over a port another program holds.

Run as `make run` runs it (scripts/supervise.py in its own process): with a
listener already on the bundled Redis's port, the portal used to start and
talk to that stranger's Redis without a word.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.services_plugin import free_port

REPO = Path(__file__).resolve().parents[2]


def _supervise(tmp_path: Path, *names: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/supervise.py", *names],
        cwd=REPO,
        env={**os.environ, "ALADDIN_VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_port_already_taken_is_named_with_what_to_do_and_nothing_starts(tmp_path):
    with socket.socket() as redis_squatter, socket.socket() as web_squatter:
        for squatter in (redis_squatter, web_squatter):
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
        redis_port = redis_squatter.getsockname()[1]
        web_port = web_squatter.getsockname()[1]

        done = _supervise(
            tmp_path,
            "redis",
            "web",
            ALADDIN_REDIS_PORT=str(redis_port),
            ALADDIN_WEB_PORT=str(web_port),
        )

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "make run: nothing started.",
        f"  port {redis_port} (the bundled Redis) is already in use by another program: stop it,"
        f" or use that Redis: REDIS_URL=redis://127.0.0.1:{redis_port}/0 make run",
        f"  port {web_port} (the web server) is already in use by another program: stop it,"
        " or choose another port: make run PORT=8080",
    ]
    # supervisord never ran: it would have written its config and pidfile first.
    assert not (tmp_path / "var" / "supervisord.conf").exists()


def test_with_redis_url_set_a_redis_on_its_port_is_the_operators_choice(tmp_path, monkeypatch):
    # The Makefile leaves `redis` out of the names when REDIS_URL is set: a
    # Redis already on the port is then the one the operator chose.
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import supervise

    with socket.socket() as redis_there:
        redis_there.bind(("127.0.0.1", 0))
        redis_there.listen()
        monkeypatch.setenv("ALADDIN_REDIS_PORT", str(redis_there.getsockname()[1]))
        monkeypatch.setenv("ALADDIN_WEB_PORT", str(free_port()))

        assert supervise.taken_ports(["web", "worker"]) == []
        assert len(supervise.taken_ports(["redis", "web", "worker"])) == 1
