"""Production as docs/operations.md documents it: deploy checks clean, the units' commands work.

The processes are started from deploy/systemd's ExecStart lines, expanded as
systemd would (Environment= defaults, overridden by the environment file,
specifiers), with the checkout standing in for /srv/aladdin: the migrate
unit's steps, then uvicorn (2 worker processes), a Celery worker, beat and
the agent. The web server must answer /healthz with 200, serve static files
compressed, redirect plain HTTP to HTTPS and speak websocket.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.servers import (  # noqa: F401 - private_redis is a fixture
    REPO,
    copy_db,
    new_port,
    portal_env,
    private_redis,
    request,
)

UNITS = REPO / "deploy" / "systemd"
INSTALL_DIR = "/srv/aladdin"
HOST = "portal.example.edu"


def production_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """What /etc/aladdin/aladdin.env holds, minus the external services."""
    return portal_env(
        var_dir,
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=HOST,
        CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
        SITE_URL=f"https://{HOST}",
        TRUSTED_PROXY_COUNT="1",
        ALADDIN_PORTS_DOMAIN="aladdin-ports.example.net",
        **extra,
    )


def unit_commands(unit: str, env: dict[str, str], instance: str = "1") -> list[list[str]]:
    """The ExecStart= argvs of ``unit``, expanded as systemd expands them."""
    text = (UNITS / unit).read_text()
    service = text.split("[Service]", 1)[1].split("\n[", 1)[0]
    defaults: dict[str, str] = {}
    commands = []
    for line in service.splitlines():
        key, sep, value = line.partition("=")
        if not sep or line.startswith("#"):
            continue
        if key == "Environment":
            defaults.update(item.split("=", 1) for item in shlex.split(value))
        elif key == "ExecStart":
            commands.append(value)
    variables = {**defaults, **env}  # EnvironmentFile= overrides Environment=

    def expand(word: str) -> str:
        word = re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), ""), word)
        word = word.replace("%i", instance).replace("%H", socket.gethostname())
        return word.replace("%%", "%").replace(INSTALL_DIR, str(REPO))

    return [[expand(word) for word in shlex.split(command)] for command in commands]


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = production_env(tmp_path / "var", REDIS_URL="redis://127.0.0.1:6379/0")

    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


@pytest.mark.parametrize(
    ("ports_domain", "expected"),
    [
        ("ports.portal.example.edu", "gpu_jobs.E002"),  # a subdomain of the portal's
        ("ports.example.edu", "gpu_jobs.E002"),  # the same registrable domain
        ("localhost:8001", "gpu_jobs.E001"),
    ],
)
def test_check_deploy_refuses_a_ports_domain_on_the_portals_site(tmp_path, ports_domain, expected):
    env = production_env(tmp_path / "var", REDIS_URL="redis://127.0.0.1:6379/0")
    env["ALADDIN_PORTS_DOMAIN"] = ports_domain
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and expected in done.stdout + done.stderr


def test_the_documented_web_command_is_the_web_unit():
    """docs/operations.md shows the web unit's command (with its defaults)."""
    (argv,) = unit_commands("aladdin-web.service", {})
    command = " ".join(argv).replace(f"{REPO}/.venv/bin/", "")
    assert command.startswith("uvicorn aladdin.asgi:application ")
    assert "--no-proxy-headers" in command
    assert command in (REPO / "docs" / "operations.md").read_text()


NGINX_CONF = REPO / "deploy" / "nginx" / "aladdin.conf"
# nginx variables that hold the query string (or the line or URL it is part of).
QUERY_VARIABLES = ("$request", "$request_uri", "$args", "$query_string", "$is_args", "$arg_")


def nginx_directives(text: str, name: str) -> list[str]:
    """The arguments of every ``name`` directive (up to its ';'), comments left out."""
    code = re.sub(r"#[^\n]*", "", text)
    return [m.group(1) for m in re.finditer(rf"(?:^|[{{;\s]){name}\s+([^;]*);", code)]


def test_nginx_logs_requests_without_their_query_string():
    """A token put in a URL must not reach nginx's access log (as for uvicorn's)."""
    text = NGINX_CONF.read_text()
    (log_format,) = nginx_directives(text, "log_format")
    _name, fields = log_format.split(None, 1)

    assert "$uri" in fields
    for variable in QUERY_VARIABLES:
        assert not re.search(re.escape(variable) + r"(?![a-z_])", fields), variable
    # The Referer is logged only up to its query string.
    assert "$http_referer" not in fields
    assert "$aladdin_referer_path" in fields
    assert '"~^(?<referer_path>[^?]*)" $referer_path;' in text


def test_every_nginx_server_uses_the_access_log_without_query_strings():
    # A server without its own access_log would inherit nginx.conf's "combined".
    text = NGINX_CONF.read_text()
    (log_format,) = nginx_directives(text, "log_format")
    name = log_format.split()[0]
    servers = re.split(r"^server\s*\{", re.sub(r"#[^\n]*", "", text), flags=re.M)[1:]

    assert len(servers) == 2
    for server in servers:
        (access_log,) = nginx_directives(server, "access_log")
        assert access_log.split()[-1] == name, access_log


def test_the_production_units_serve_healthz_static_files_https_and_websockets(
    tmp_path,
    migrated_db,
    private_redis,  # noqa: F811
):
    var_dir = tmp_path / "var"
    copy_db(migrated_db, var_dir)
    port = new_port()
    env = production_env(
        var_dir,
        REDIS_URL=private_redis,
        PORT=str(port),
        WEB_WORKERS="2",
        WORKER_CONCURRENCY="1",
        ALADDIN_LOCAL_GPUS="virtual:40g=1,80g=0",
    )
    for argv in unit_commands("aladdin-migrate.service", env):
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"

    processes: list[subprocess.Popen] = []
    logs = {}
    try:
        for unit in ("aladdin-agent.service", "aladdin-worker@.service", "aladdin-beat.service"):
            (argv,) = unit_commands(unit, env)
            logs[unit] = tmp_path / f"{unit}.log"
            processes.append(_start(argv, env, logs[unit]))
        (web_argv,) = unit_commands("aladdin-web.service", env)
        assert "--workers" in web_argv and "--no-proxy-headers" in web_argv
        logs["web"] = tmp_path / "web.log"
        processes.append(_start(web_argv, env, logs["web"]))

        def tails() -> str:
            return "\n".join(f"--- {n}\n{p.read_text()[-2000:]}" for n, p in logs.items())

        # /healthz: 200 once the database, Redis, worker, beat and agent are up
        # (asked over plain HTTP, as a load balancer does: exempt from the redirect).
        deadline = time.monotonic() + 120
        status, body = 0, b""
        while time.monotonic() < deadline:
            dead = [p.args for p in processes if p.poll() is not None]
            assert not dead, f"exited: {dead}\n{tails()}"
            try:
                status, _headers, body = request(port, "GET", "/healthz", headers={"Host": HOST})
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(1)
        assert status == 200, f"{status} {body[:500]!r}\n{tails()}"
        assert json.loads(body)["status"] == "ok"

        # An idle keep-alive connection outlives uvicorn's default 5 s: nginx's
        # upstream pool reuses it for up to 60 s, and a POST sent down a
        # connection the backend is closing would be a 502.
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            kept.request("GET", "/healthz", headers={"Host": HOST})
            assert kept.getresponse().read()
            time.sleep(6)
            kept.request("GET", "/healthz", headers={"Host": HOST})
            assert kept.getresponse().status == 200
        finally:
            kept.close()

        # Plain HTTP from a client is sent to HTTPS.
        status, headers, _ = request(port, "GET", "/", headers={"Host": HOST})
        assert status == 301 and headers["Location"] == f"https://{HOST}/"

        # Through the proxy (HTTPS): static files with hashed names, compressed,
        # cached for good, and HSTS.
        manifest = json.loads((var_dir / "staticfiles" / "staticfiles.json").read_text())
        hashed = manifest["paths"]["css/portal.css"]
        status, headers, body = request(
            port,
            "GET",
            f"/static/{hashed}",
            headers={
                "Host": HOST,
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Proto": "https",
                "Accept-Encoding": "gzip",
            },
        )
        assert status == 200, body[:300]
        assert headers["Content-Encoding"] == "gzip"
        assert "immutable" in headers["Cache-Control"]
        assert headers["Strict-Transport-Security"].startswith("max-age=31536000")

        # Websockets: an anonymous client of the job-log consumer is refused
        # (a 403 to the handshake) or accepted and closed at once with the
        # consumer's code; either way the server spoke websocket, where the
        # same path over plain HTTP is just an unknown page.
        try:
            ws = connect(
                f"ws://127.0.0.1:{port}/ws/jobs/1/logs/",
                origin=f"https://{HOST}",
                open_timeout=10,
            )
        except InvalidStatus as refused:
            assert refused.response.status_code == 403
        else:
            with ws, pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code >= 4000
        status, _headers, _ = request(
            port, "GET", "/ws/jobs/1/logs/", headers={"Host": HOST, "X-Forwarded-Proto": "https"}
        )
        assert status == 404
    finally:
        _stop(processes)
