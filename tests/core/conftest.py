"""Fixtures for the core tests: a spare Redis to break, a private PostgreSQL server."""

from __future__ import annotations

import subprocess

import pytest

from tests.pg import postgres_server  # noqa: F401 - a fixture, used by test_postgres
from tests.services_plugin import start_redis


@pytest.fixture
def spare_redis(tmp_path):
    """A second bundled redis-server that a test may kill; never the session's Redis.

    Yields the process and its URL; stopped at the end if the test left it running.
    """
    proc, port = start_redis(tmp_path / "spare-redis")
    try:
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
