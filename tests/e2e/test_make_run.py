"""`make run` starts every process, serves a healthy portal, and Ctrl-C stops all of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services_plugin import free_port

ROOT = Path(__file__).resolve().parents[2]


def _healthz(port: int) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError:
        return None


@pytest.mark.e2e
def test_make_run_serves_a_healthy_portal_and_ctrl_c_leaves_nothing_running(tmp_path):
    port, redis_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "PASSWORD_HASHERS", "SECRET_KEY"}
    }
    env.update(
        PORT=str(port),
        ALADDIN_REDIS_PORT=str(redis_port),
        ALADDIN_VAR_DIR=str(tmp_path / "var"),
        WORKER_CONCURRENCY="1",
    )
    log = (tmp_path / "make-run.log").open("w")
    proc = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a terminal's
    )
    try:
        deadline = time.monotonic() + 120
        result = None
        while time.monotonic() < deadline:
            result = _healthz(port)
            if result and result[0] == 200:
                break
            time.sleep(1)
        log.flush()
        assert result and result[0] == 200, (
            result,
            (tmp_path / "make-run.log").read_text()[-3000:],
        )
        checks = result[1]["checks"]
        assert {name for name, c in checks.items() if c["ok"]} == {
            "database",
            "redis",
            "worker",
            "beat",
            "cluster",
        }
        assert (tmp_path / "var" / "db.sqlite3").exists()
        assert f"http://127.0.0.1:{port}/" in (tmp_path / "make-run.log").read_text()
    finally:
        # Ctrl-C in a terminal sends SIGINT to the whole foreground group.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()

    time.sleep(1)
    assert _healthz(port) is None, "the web server still answers after Ctrl-C"
    leftovers = subprocess.run(
        ["pgrep", "-g", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
