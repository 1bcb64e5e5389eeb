"""Real server processes for tests that must go through the server, not a test client.

A test client never sees what the server does with the connection (which
address it reports, whether it speaks websocket); these helpers start the
web server exactly as Procfile.dev or deploy/ say, on a free port, against
a file SQLite database migrated for the test and a private Redis.
"""

from __future__ import annotations

import fcntl
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.services_plugin import free_port, start_redis

REPO = Path(__file__).resolve().parents[1]
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

# What the test process sets for itself and a portal process must not inherit.
_TEST_ONLY = {
    "CELERY_TASK_ALWAYS_EAGER",
    "PASSWORD_HASHERS",
    "DATABASE_URL",
    "REDIS_URL",
    "PORT",
    "ALIPAY_APP_ID",
    "ALIPAY_SANDBOX",
    "TRUSTED_PROXY_COUNT",
    "DEBUG",
    "SECRET_KEY",
}


def portal_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _TEST_ONLY}
    env.update(
        ALADDIN_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="aladdin.settings",
        PYTHONUNBUFFERED="1",
        SMS_BACKEND="console",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def procfile_command(name: str) -> str:
    """The command line of process ``name`` in Procfile.dev."""
    for line in (REPO / "Procfile.dev").read_text().splitlines():
        key, sep, command = line.partition(":")
        if sep and not line.lstrip().startswith("#") and key.strip() == name:
            return command.strip()
    raise AssertionError(f"Procfile.dev has no {name!r} process")


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """A SQLite file with every migration applied, once per run; servers start on a copy.

    Made by the first worker that asks, under a lock, in the run's temporary
    directory that all pytest-xdist workers share: the migrations take
    5-15 s of a core, and each worker's test database is a copy of it too
    (tests/conftest.py, ``django_db_setup``). Read-only once made.
    """
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the run's directory, above each worker's own
    made = root / "migrated"
    db = made / "var" / "db.sqlite3"
    with (root / "migrated.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (made / "done").exists():
            shutil.rmtree(made, ignore_errors=True)  # a worker that died halfway
            manage(portal_env(made / "var", DEBUG="1"), "migrate", "--noinput")
            (made / "done").touch()
    return db


@pytest.fixture
def private_redis(tmp_path):
    """A bundled redis-server of the test's own: counters nobody else touches."""
    proc, port = start_redis(tmp_path / "redis")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def running(command: str, *, env: dict[str, str], port: int, log: Path, timeout: float = 60):
    """Run ``command`` through /bin/sh (as Procfile runners and systemd's shell
    expansion would) until ``/healthz`` answers on ``port``; stop its group after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"the server exited:\n{log.read_text()[-3000:]}"
            try:
                status, _headers, _body = request(port, "GET", "/healthz")
                if status:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no answer on :{port}\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def request(
    port: int, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def post_form(port: int, path: str, fields: dict[str, str], *, headers: dict | None = None) -> int:
    """GET ``path`` for a CSRF token, then POST ``fields`` as a fresh visitor; the status."""
    status, got, body = request(port, "GET", path, headers=headers)
    assert status == 200, (status, body[:500])
    cookie = got.get_all("Set-Cookie") or []
    csrf_cookie = next(c.split(";", 1)[0] for c in cookie if c.startswith("csrftoken="))
    token = CSRF_FIELD.search(body.decode())
    assert token, body[:2000]
    status, _got, _body = request(
        port,
        "POST",
        path,
        body=urlencode({**fields, "csrfmiddlewaretoken": token.group(1)}).encode(),
        headers={
            **(headers or {}),
            "Cookie": csrf_cookie,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    return status


def copy_db(migrated: Path, var_dir: Path) -> None:
    var_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(migrated, var_dir / "db.sqlite3")


def new_port() -> int:
    return free_port()
