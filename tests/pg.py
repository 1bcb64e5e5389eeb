"""A private PostgreSQL 15 server for tests that need the production database.

``initdb`` and ``postgres`` refuse to run as root, so they run as the
``postgres`` user through ``runuser``, with a data and socket directory of
their own under /tmp (pytest's tmp_path lives under a root-only 0700
directory that the postgres user cannot enter). The server listens on
127.0.0.1 only, on a free port, trusts local connections and runs with
fsync off: its data is thrown away. The fixture always stops it.

Use from a conftest: ``from tests.pg import postgres_server  # noqa: F401``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services_plugin import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT = 30


@dataclass
class PostgresServer:
    """A running server; ``url(db)`` is a DATABASE_URL for django-environ."""

    port: int
    base_dir: Path
    process: subprocess.Popen

    @property
    def log(self) -> Path:
        return self.base_dir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL (one per test keeps tests apart)."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv]


def start() -> PostgresServer:
    base = Path(tempfile.mkdtemp(prefix="aladdin-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    for path in (base, sock):
        shutil.chown(path, "postgres", "postgres")
    try:
        subprocess.run(
            _as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        port = free_port()
        with (base / "postgres.log").open("wb") as log:
            # Foreground postgres in its own session: one killpg stops the
            # postmaster, its backends and the runuser wrapper together.
            process = subprocess.Popen(
                _as_postgres(
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(sock),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=50",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    except BaseException as exc:
        shutil.rmtree(base, ignore_errors=True)
        if isinstance(exc, subprocess.CalledProcessError):
            raise RuntimeError(f"initdb failed:\n{exc.stdout}\n{exc.stderr}") from exc
        raise
    server = PostgresServer(port=port, base_dir=base, process=process)
    try:
        _wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"postgres exited at start:\n{server.log.read_text(errors='replace')}"
            )
        ready = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port), "-t", "1"],
            capture_output=True,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"postgres not ready within {START_TIMEOUT} s:\n{server.log.read_text(errors='replace')}"
    )


def stop(server: PostgresServer) -> None:
    """Immediate shutdown (SIGQUIT: the data is disposable), then SIGKILL, then remove the files."""
    try:
        if server.process.poll() is None:
            try:
                os.killpg(server.process.pid, signal.SIGQUIT)
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:
            os.killpg(server.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.process.wait()
    finally:
        shutil.rmtree(server.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 server is not installed ({PG_BIN / 'initdb'} is missing)")
    server = start()
    try:
        yield server
    finally:
        stop(server)
