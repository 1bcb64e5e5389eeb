"""`make run` starts every process, serves a healthy portal, survives crashes, and
Ctrl-C stops all of it.

supervisord (scripts/supervise.py) restarts a killed web server or Celery
worker on its own: the agent keeps its pid and the workloads it owns keep
running. Everything the run writes under var/ is the portal's alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from aladdin.cluster.base import Phase, Resources, WorkloadSpec
from aladdin.cluster.local import LocalDriver
from tests.services_plugin import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180
# A workshop-like main process: idle until SIGTERM, then exit 0.
IDLE = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 3600 & wait; done']


def _healthz(port: int) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError:
        return None


def _wait_healthy(port: int, log: Path, timeout: float, check=lambda body: True) -> dict:
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = _healthz(port)
        if result and result[0] == 200 and check(result[1]):
            return result[1]
        time.sleep(1)
    raise AssertionError(f"not healthy: {result}\n{log.read_text()[-4000:]}")


def _supervisor_pid(var_dir: Path, name: str) -> int:
    """The pid supervisord reports for ``name`` (0 while it is not running)."""
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "supervisorctl"),
            "-c",
            str(var_dir / "supervisord.conf"),
            "pid",
            name,
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    try:
        return int(done.stdout.strip())
    except ValueError:
        return 0


def _wait_ssh_banner(port: int, timeout: float) -> None:
    """The SSH gateway answers on ``port`` with its version line."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(4) == b"SSH-":
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no SSH gateway on port {port}"
        time.sleep(0.5)


def _alive(pid: int | None) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _journal(var_dir: Path, name: str) -> dict:
    return json.loads((var_dir / "agent" / "journal.json").read_text())["workloads"][name]


def _readable_by_others(var_dir: Path) -> list[str]:
    """Paths under var/ (the volumes tree aside) that grant group or others anything.

    var/ itself must be exactly 0711: sandbox uids traverse it to their volume.
    """
    found = []
    mode = stat.S_IMODE(var_dir.stat().st_mode)
    if mode != 0o711:
        found.append(f"{var_dir} {mode:o} (want 711)")
    for dirpath, dirnames, filenames in os.walk(var_dir):
        here = Path(dirpath)
        if here == var_dir and "volumes" in dirnames:
            dirnames.remove("volumes")  # the agent's (0711, each volume 0700 as its uid)
        for name in dirnames + filenames:
            path = here / name
            try:
                mode = stat.S_IMODE(path.lstat().st_mode)
            except FileNotFoundError:
                continue  # a WAL file or a temp file that just went
            if not path.is_symlink() and mode & 0o077:
                found.append(f"{path.relative_to(var_dir)} {mode:o}")
    return found


def _image_states(var_dir: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{var_dir / 'db.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT name, tag, build_state FROM workshops_image").fetchall()
    return {f"{name}:{tag}": state for name, tag, state in rows}


def _wait_for_images(var_dir: Path, check, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = _image_states(var_dir)
        if check(states):
            return states
        time.sleep(2)
    raise AssertionError(f"images not built in {timeout} s: {states}")


@pytest.mark.e2e
def test_make_run_survives_crashes_keeps_var_private_and_ctrl_c_leaves_nothing_running():
    port, redis_port = free_port(), free_port()
    # Not under pytest's 0700 temp root: sandbox uids traverse to their volumes.
    base = Path(tempfile.mkdtemp(prefix="aladdin-make-run-"))
    base.chmod(0o711)
    var_dir = base / "var"
    log_path = base / "make-run.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "PASSWORD_HASHERS", "SECRET_KEY", "DEBUG"}
    }
    env.update(
        PORT=str(port),
        ALADDIN_REDIS_PORT=str(redis_port),
        ALADDIN_VAR_DIR=str(var_dir),
        WORKER_CONCURRENCY="1",
        ALADDIN_LOCAL_GPUS="virtual:40g=1,80g=0",
        # Its own images root (the default is /opt/aladdin/images), and the
        # catalog's copy of build states refreshed every few seconds.
        ALADDIN_IMAGES_ROOT=str(base / "images"),
        ALADDIN_IMAGES_SYNC_SECONDS="3",
        ALADDIN_PORTS_PORT=str(free_port()),
        ALADDIN_SSH_PORT=str(free_port()),
    )
    # Append mode: supervisord and its processes append to the same file.
    log = log_path.open("ab")
    proc = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own session and group, like a terminal's
    )
    workload_pids: list[int] = []
    try:
        body = _wait_healthy(port, log_path, START_TIMEOUT)
        checks = body["checks"]
        assert {name for name, c in checks.items() if c["ok"]} >= {
            "database",
            "redis",
            "worker",
            "beat",
            "cluster",
        }, checks
        assert (var_dir / "db.sqlite3").exists()
        # every process of Procfile.dev runs, the SSH gateway and port proxy included
        assert all(_supervisor_pid(var_dir, n) for n in ("agent", "ssh", "ports"))
        _wait_ssh_banner(int(env["ALADDIN_SSH_PORT"]), 60)
        assert f"http://127.0.0.1:{port}/" in log_path.read_text()
        agent_pid = checks["cluster"]["agent_pid"]

        # given a workload that the run's agent owns
        driver = LocalDriver(socket_path=var_dir / "agent" / "agent.sock")
        driver.ensure_user_space(user_id=7, storage_gib=1, quota=None)
        started = driver.start_workload(
            WorkloadSpec(
                name="crash-probe",
                user_id=7,
                kind="e2e-probe",  # neither a job nor a workshop: no reconciler touches it
                image="python:3.11",
                command=IDLE,
                env={},
                resources=Resources(500, 256),
            )
        )
        assert started.phase == Phase.RUNNING, started
        record = _journal(var_dir, "crash-probe")
        workload_pids = [p for p in (record.get("pid"), record.get("sandbox_pid")) if p]
        assert workload_pids and all(_alive(p) for p in workload_pids), record

        # and everything the run wrote so far is private
        assert _readable_by_others(var_dir) == []

        # when the web server and the whole celery worker are SIGKILLed
        web_pid = _supervisor_pid(var_dir, "web")
        worker_pid = _supervisor_pid(var_dir, "worker")
        assert web_pid and worker_pid
        assert checks["cluster"]["pid"] == web_pid  # /healthz answered by daphne itself
        killed_at = time.time()
        os.kill(web_pid, signal.SIGKILL)
        os.killpg(worker_pid, signal.SIGKILL)  # the worker and its pool children

        # then both come back with new pids, and the worker beats again
        def restarted(body: dict) -> bool:
            worker = body["checks"]["worker"]
            return (
                body["checks"]["cluster"]["pid"] not in (0, web_pid)
                and worker.get("seen_seconds_ago", 1e9) < time.time() - killed_at
            )

        body = _wait_healthy(port, log_path, 90, restarted)
        assert _supervisor_pid(var_dir, "web") == body["checks"]["cluster"]["pid"]
        assert _supervisor_pid(var_dir, "worker") not in (0, worker_pid)
        # and the agent never noticed: same process, the workload still running
        assert body["checks"]["cluster"]["agent_pid"] == agent_pid
        assert driver.workload_status(name="crash-probe").phase == Phase.RUNNING
        assert all(_alive(p) for p in workload_pids)
        assert "agent stopped" not in json.dumps(_journal(var_dir, "crash-probe"))

        # and the plain python images build in the background on their own
        # (/healthz was 200 long before), while the CUDA ones are unavailable here
        states = _wait_for_images(var_dir, lambda s: s.get("python:3.12") == "ready", 240)
        assert states["torch:2.6.0-cu124"] in ("unavailable", "missing"), states
    finally:
        # Ctrl-C in a terminal sends SIGINT to the whole foreground group.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
            raise
        finally:
            log.close()

    try:
        time.sleep(1)
        assert _healthz(port) is None, "the web server still answers after Ctrl-C"
        # supervisord puts each program in its own process group, all in the
        # session `make run` leads: nothing of that session may be left.
        leftovers = subprocess.run(
            ["pgrep", "-s", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert leftovers == [], f"processes left running: {leftovers}"
        # The agent stopped the workload gracefully (its own sessions) before exiting.
        assert not any(_alive(p) for p in workload_pids)
        assert "agent stopped" in (_journal(var_dir, "crash-probe").get("reason") or "")
        assert _readable_by_others(var_dir) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
