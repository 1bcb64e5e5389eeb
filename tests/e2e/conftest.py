"""The real portal as `make run` starts it, for browser tests.

pytest-django's ``live_server`` is WSGI and cannot serve websockets, and it
shares the test database; these tests need the process set of Procfile.dev
instead: daphne (web), a celery worker and celery beat, each a subprocess
with its own file SQLite database under a temporary ALADDIN_VAR_DIR. /healthz
answering 200 proves the set works together: database, Redis, the worker's
heartbeat, beat's heartbeat and the cluster driver.

The portal uses the Redis that tests.services_plugin started, but database 1:
the autouse ``_clean_redis`` fixture flushes database 0 around every test,
which would wipe the Celery broker's bindings and the portal's sessions
under the running processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.servers import copy_db, manage
from tests.services_plugin import free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "e2e"
PORTAL_REDIS_DB = 1
# Procfile.dev's processes that `make run` starts when REDIS_URL is set
# (the test plugin's Redis stands in for the `redis` process).
PROCESSES = ("web", "worker", "beat", "agent", "ports")
START_TIMEOUT = 60
STEP_TIMEOUT = 15
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
_CALL_REPORT = pytest.StashKey[pytest.TestReport]()
SMS_LINE = re.compile(r"SMS to (\+\d+): (\d{6})\b")


@dataclass
class Portal:
    """A running portal: its URL, environment, Redis and log files."""

    url: str
    env: dict
    var_dir: Path
    redis_url: str
    logs: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def web_log(self) -> Path:
        return self.logs["web"]

    def log_offset(self) -> int:
        """Where the web log ends now; pass it to ``wait_for_sms`` to see only newer lines."""
        return self.web_log.stat().st_size

    def wait_for_sms(self, phone: str, *, after: int, timeout: float = STEP_TIMEOUT) -> str:
        """The code of the first SMS to ``phone`` logged past byte ``after`` of the web log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.web_log.open("rb") as f:
                f.seek(after)
                text = f.read().decode("utf-8", "replace")
            for match in SMS_LINE.finditer(text):
                if match.group(1) == phone:
                    return match.group(2)
            time.sleep(0.1)
        raise AssertionError(f"no SMS code for {phone} in the web log within {timeout} s")

    def forget_sms_interval(self, phone: str) -> None:
        """Lift the 60 s resend interval for ``phone`` and this client's IP.

        Equivalent to waiting out the interval (the portal runs in other
        processes, so time travel cannot reach it); the daily counters stay.
        """
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = [
                k
                for pattern in ("*sms:phone:*:slot", "*sms:ip:*:slot")
                for k in client.scan_iter(match=pattern)
            ]
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def forget_sms_limits(self) -> None:
        """Start a test with fresh SMS limits (all tests share 127.0.0.1 and one day).

        Each browser test is a separate visitor; without this the per-IP
        60 s interval and daily count carry over from the test before.
        """
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match="*sms:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def tail(self, lines: int = 60) -> str:
        parts = []
        for name, path in self.logs.items():
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError as exc:
                text = [f"<unreadable: {exc}>"]
            parts.append(f"----- {name} ({path}) -----\n" + "\n".join(text))
        # What the workloads printed (a sandbox that failed to set up says why there).
        for path in sorted(self.var_dir.glob("**/logs/*.log"), key=_mtime)[-8:]:
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-10:]
                parts.append(f"----- workload {path.name} -----\n" + "\n".join(text))
        return "\n".join(parts)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _portal_env(var_dir: Path, redis_url: str, port: int) -> dict:
    env = dict(os.environ)
    # The test process runs Celery eagerly and hashes with MD5; the portal
    # must behave as under `make run`: tasks go to the worker, real hashers.
    for name in (
        "CELERY_TASK_ALWAYS_EAGER",
        "PASSWORD_HASHERS",
        "DATABASE_URL",
        "PORT",
        # The sandbox and a real Alipay app exclude each other (settings refuse both).
        "ALIPAY_APP_ID",
    ):
        env.pop(name, None)
    env.update(
        {
            "ALADDIN_VAR_DIR": str(var_dir),
            "REDIS_URL": redis_url,
            "ALADDIN_WEB_PORT": str(port),
            "BIND": "127.0.0.1",
            # Two cores are shared by the whole suite.
            "WORKER_CONCURRENCY": "1",
            "DEBUG": "1",
            # As `make run` without ALIPAY_APP_ID: the local payment sandbox
            # (not real money), which needs DEBUG.
            "ALIPAY_SANDBOX": "1",
            "DJANGO_SETTINGS_MODULE": "aladdin.settings",
            "PYTHONUNBUFFERED": "1",
            # Images build into the run's own root, only when a workload asks
            # (a workshop on python:3.12 builds that one), and the catalog's
            # copy of their state follows within seconds.
            "ALADDIN_IMAGES_ROOT": str(var_dir / "images"),
            "ALADDIN_IMAGES_AUTO_BUILD": "none",
            "ALADDIN_IMAGES_SYNC_SECONDS": "3",
            "ALADDIN_PORTS_PORT": str(free_port()),
        }
    )
    return env


def _procfile_commands(names: tuple[str, ...]) -> dict[str, str]:
    """The command lines of Procfile.dev, so this fixture runs what `make run` runs."""
    commands = {}
    for line in (REPO / "Procfile.dev").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and not line.lstrip().startswith("#"):
            commands[name.strip()] = command.strip()
    missing = [n for n in names if n not in commands]
    assert not missing, f"Procfile.dev has no {missing} process"
    return {n: commands[n] for n in names}


def _healthz(url: str) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return 0, None


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    # Each process leads its own group (start_new_session), so the celery
    # worker's pool children go too; SIGTERM first for a warm shutdown.
    for proc in processes.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for proc in processes.values():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture(scope="session")
def portal(migrated_db):
    """A migrated database, then web + worker + beat like Procfile.dev; yield once /healthz is 200."""
    from tests.services_plugin import redis_port

    # Not under pytest's 0700 temp root: the agent's sandbox uids must be
    # able to pass through every parent of their volumes (as under var/).
    var_dir = Path(tempfile.mkdtemp(prefix="aladdin-e2e-var-"))
    var_dir.chmod(0o755)
    port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port()}/{PORTAL_REDIS_DB}"
    env = _portal_env(var_dir, redis_url, port)
    portal = Portal(url=f"http://127.0.0.1:{port}", env=env, var_dir=var_dir, redis_url=redis_url)
    redis.Redis.from_url(redis_url).flushdb()

    # What `make migrate` does before `make run` starts the processes: the
    # session's migrated database (the same migrations, applied once per test
    # process: tests/servers.py), then the catalog. tests/e2e/test_make_run.py
    # runs `make run`'s own migrate on an empty var/.
    copy_db(migrated_db, var_dir)
    manage(env, "load_catalog")

    commands = _procfile_commands(PROCESSES)
    try:
        for name, command in commands.items():
            log = var_dir / f"{name}.log"
            portal.logs[name] = log
            with log.open("wb") as out:
                # As scripts/supervise.py does: the Procfile line through /bin/sh, which
                # expands ${ALADDIN_WEB_PORT:-8000} and friends; exec so the
                # pid is daphne's or celery's own.
                portal.processes[name] = subprocess.Popen(
                    ["/bin/sh", "-c", f"exec {command}"],
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )

        deadline = time.monotonic() + START_TIMEOUT
        status, body = 0, None
        while time.monotonic() < deadline:
            dead = {n: p.returncode for n, p in portal.processes.items() if p.poll() is not None}
            if dead:
                pytest.fail(f"portal processes exited early: {dead}\n{portal.tail()}")
            status, body = _healthz(portal.url)
            if status == 200:
                break
            time.sleep(0.5)
        else:
            pytest.fail(
                f"/healthz not 200 within {START_TIMEOUT} s (last {status}: {body})\n{portal.tail()}"
            )
        assert body["status"] == "ok"
        assert all(check["ok"] for check in body["checks"].values()), body
        assert body["checks"]["database"]["vendor"] == "sqlite"
        yield portal
    finally:
        _stop(portal.processes)
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-test-deps)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(request, browser, portal):
    portal.forget_sms_limits()
    context = browser.new_context(
        base_url=portal.url, locale="zh-CN", viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(STEP_TIMEOUT * 1000)
    context.set_default_navigation_timeout(STEP_TIMEOUT * 1000)
    page = context.new_page()
    try:
        yield page
        report = request.node.stash.get(_CALL_REPORT, None)
        if report is not None and report.failed:
            # What the browser showed when the step failed.
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-FAILED.png"), full_page=True)
    finally:
        context.close()


@pytest.fixture
def shot(request):
    """``shot("name")`` saves a full-page screenshot to test-artifacts/e2e/<test>-NN-name.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 100))

    def _shot(page, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{next(counter):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shot


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # A failing browser step says little without the server's side of it.
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    if report.failed:
        portal = getattr(item, "funcargs", {}).get("portal")
        if isinstance(portal, Portal):
            report.sections.append(("portal log tail", portal.tail()))
    return report
