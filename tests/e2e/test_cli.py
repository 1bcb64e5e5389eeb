"""The `aladdin` command against a real portal (web, worker, beat, agent as `make run`).

The CLI runs as a student runs it: a separate process (`python -m aladdin_cli`,
from cli/) with its own config directory. The browser part of the login is
this test's HTTP client: logged in to the portal with a session, it opens
the URL the CLI printed and follows the redirect to the CLI's loopback
listener, as a browser would.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import random
import re
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.e2e.conftest import REPO

# The e2e portal (no browser): the same session-wide process set as the pages' tests.
pytestmark = pytest.mark.e2e

CLI_DIR = REPO / "cli"
PASSWORD = "cli-test-Passw0rd!"
AUTHORIZE_URL = re.compile(r"(http://\S+/o/authorize/\?\S+)")
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

SCRIPT = """#!/bin/bash
echo "hello from the cli job"
for i in 1 2 3; do echo "step $i of 3"; sleep 0.3; done
exit 3
"""


def portal_shell(portal, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=portal.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def cli_env(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env.update(
        XDG_CONFIG_HOME=str(config),
        PYTHONPATH=str(CLI_DIR),
        LANG="en_US.UTF-8",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DISPLAY", None)
    env.update(extra)
    return env


def aladdin(config: Path, *args: str, timeout: float = 60, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "aladdin_cli", *args],
        env=cli_env(config, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class Student:
    """A user of the portal with a password, and a browser-like session of theirs."""

    def __init__(self, portal, *, plan: str | None = None):
        self.portal = portal
        self.username = f"cli{random.randrange(10**8):08d}"
        phone = f"+86137{random.randrange(10**8):08d}"
        subscribe = (
            "from billing import services; from billing.models import Plan; "
            f"services.subscription_create(user=u, plan=Plan.objects.get(code='{plan}')); "
            if plan
            else ""
        )
        self.id = int(
            portal_shell(
                portal,
                "from aladdin.accounts.models import User; "
                f"u = User.objects.create_user(phone='{phone}', password='{PASSWORD}', "
                f"username='{self.username}', phone_verified=True, language='zh-hans'); "
                f"{subscribe}print(u.pk)",
            ).splitlines()[-1]
        )
        self.cookies = http.cookiejar.CookieJar()
        self.browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def log_in(self) -> None:
        with self.browser.open(f"{self.portal.url}/accounts/login/", timeout=15) as page:
            token = CSRF_FIELD.search(page.read().decode()).group(1)
        form = urllib.parse.urlencode(
            {"login": self.username, "password": PASSWORD, "csrfmiddlewaretoken": token}
        ).encode()
        request = urllib.request.Request(
            f"{self.portal.url}/accounts/login/",
            data=form,
            headers={"Referer": f"{self.portal.url}/accounts/login/"},
        )
        with self.browser.open(request, timeout=15) as page:
            assert "/accounts/login/" not in page.geturl(), page.read()[:2000]

    def upload(self, name: str, text: str) -> None:
        """A file in the student's storage, as the Files page or an IDE sync leaves it."""
        volume = self.portal.var_dir / "volumes" / str(self.id)
        volume.mkdir(parents=True, exist_ok=True)
        path = volume / name
        path.write_text(text)
        uid = settings.LOCAL_UID_BASE + self.id
        for p in (volume, path):
            os.chown(p, uid, uid)
        volume.chmod(0o700)


def cli_login(student: Student, config: Path) -> subprocess.CompletedProcess:
    """`aladdin login`, its browser step done by the student's session."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aladdin_cli", "login", "--portal", student.portal.url],
        env=cli_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        seen = ""
        deadline = time.monotonic() + 30
        while not (match := AUTHORIZE_URL.search(seen)):
            assert time.monotonic() < deadline, seen
            line = proc.stderr.readline()
            assert line, f"the CLI printed no URL: {seen}"
            seen += line
        # The browser: the portal redirects to http://127.0.0.1:<port>/callback?code=…
        with student.browser.open(match.group(1), timeout=15) as page:
            landed = page.geturl()
            body = page.read().decode()
        assert landed.startswith("http://127.0.0.1:") and "/callback?code=" in landed, landed
        assert "Logged in" in body
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, seen + stderr)


@pytest.fixture
def config(tmp_path) -> Path:
    return tmp_path / "config"


def test_login_through_the_loopback_redirect_stores_tokens_for_the_user_only(portal, config):
    # given a student logged in to the portal in their browser
    student = Student(portal)
    student.log_in()

    # when they log the CLI in
    done = cli_login(student, config)

    # then the CLI holds tokens in a file only they can read
    assert done.returncode == 0, done.stderr
    assert f"as {student.username}" in done.stdout
    creds_file = config / "aladdin" / "credentials.json"
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds_file.parent.stat().st_mode) == 0o700
    creds = json.loads(creds_file.read_text())
    assert creds["portal"] == portal.url and creds["access_token"] and creds["refresh_token"]

    # and logging in again revokes the login it replaces
    assert cli_login(student, config).returncode == 0
    old = urllib.parse.urlencode(
        {"grant_type": "refresh_token", "refresh_token": creds["refresh_token"]}
        | {"client_id": "aladdin-ide-plugin"}
    ).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{portal.url}/o/token/", data=old, timeout=15)
    assert refused.value.code == 400
    creds = json.loads(creds_file.read_text())

    # and calls the API as the student
    me = aladdin(config, "--json", "whoami")
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["username"] == student.username

    # and an expired access token is renewed with the refresh token, which rotates
    creds_file.write_text(json.dumps({**creds, "expires_at": 0}))
    balance = aladdin(config, "balance", "--json")
    assert balance.returncode == 0, balance.stderr
    assert "active_micro" in json.loads(balance.stdout)
    renewed = json.loads(creds_file.read_text())
    assert renewed["refresh_token"] != creds["refresh_token"]
    assert renewed["access_token"] != creds["access_token"]
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600

    # and `aladdin logout` revokes the login at the portal
    out = aladdin(config, "logout")
    assert out.returncode == 0, out.stderr
    assert not creds_file.exists()
    creds_file.write_text(json.dumps(renewed))
    creds_file.chmod(0o600)
    again = aladdin(config, "whoami")
    assert again.returncode == 2
    assert "aladdin login" in again.stderr


def test_run_streams_a_shell_scripts_output_and_exits_with_its_code(portal, config, tmp_path):
    # given a student with a plan, logged in, who uploads a script from their machine
    student = Student(portal, plan="basic")
    student.log_in()
    assert cli_login(student, config).returncode == 0
    local = tmp_path / "three.sh"
    local.write_text(SCRIPT)
    uploaded = aladdin(config, "--json", "upload", str(local))
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout) == {"path": "/root/three.sh", "bytes": len(SCRIPT)}
    stored = portal.var_dir / "volumes" / str(student.id) / "three.sh"
    assert stored.read_text() == SCRIPT
    assert (
        stored.stat().st_uid == settings.LOCAL_UID_BASE + student.id
    )  # written as the student, in their sandbox
    # an upload into a folder that is not there says so, and exits non-zero
    missing = aladdin(config, "upload", str(local), "--to", "nowhere")
    assert missing.returncode != 0 and "[not_found]" in missing.stderr, missing.stderr

    # when they run it on a 40G card
    done = aladdin(config, "run", "three.sh", "--gpu", "40g", "--env", "GREETING=hi", timeout=240)

    # then its output streams to the terminal and the CLI exits with the script's code
    assert "hello from the cli job" in done.stdout, done.stderr
    assert "step 3 of 3" in done.stdout
    assert done.returncode == 3, (done.stdout, done.stderr)
    job_id = int(re.search(r"job (\d+)", done.stderr).group(1))

    # and for scripts: JSON lines, the job first, its output, then the ended job
    again = aladdin(config, "--json", "run", "three.sh", "--gpu", "40g", timeout=240)
    assert again.returncode == 3, again.stderr
    frames = [json.loads(line) for line in again.stdout.splitlines()]
    assert frames[0]["type"] == "job" and frames[0]["job"]["kind"] == "shell"
    assert "step 3 of 3" in "".join(f["data"] for f in frames if f["type"] == "log")
    assert frames[-1]["type"] == "end"
    assert frames[-1]["job"]["exit_code"] == 3 and frames[-1]["job"]["state"] == "failed"

    # and the jobs are listed, their logs readable again, and removable
    listed = aladdin(config, "jobs", "ls", "--json")
    assert job_id in [j["id"] for j in json.loads(listed.stdout)]
    logs = aladdin(config, "jobs", "logs", str(job_id))
    assert logs.returncode == 0 and "step 3 of 3" in logs.stdout
    assert aladdin(config, "jobs", "rm", str(job_id)).returncode == 0
    gone = aladdin(config, "jobs", "logs", str(job_id))
    assert gone.returncode == 2 and "[not_found]" in gone.stderr


# The workers live in worker 0's network namespace, so worker 0 stays up (as
# torchrun's rendezvous keeps it) until the others have started.
TASK_SCRIPT = """#!/bin/bash
echo "worker $RANK of $WORLD_SIZE, master $MASTER_ADDR:$MASTER_PORT"
sleep 5
"""


def test_a_run_task_of_two_workers_streams_worker_0_and_keeps_each_log(portal, config):
    # given a student with a plan and a shell script that prints the rendezvous
    student = Student(portal, plan="basic")
    student.log_in()
    assert cli_login(student, config).returncode == 0
    student.upload("ranks.sh", TASK_SCRIPT)

    # when they run it as a task over two workers
    done = aladdin(config, "task", "ranks.sh", "--workers", "2", "--gpu", "40g", timeout=240)

    # then worker 0's output streams and the CLI exits 0 once both ended
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "worker 0 of 2, master 127.0.0.1:29500" in done.stdout
    job_id = int(re.search(r"job (\d+)", done.stderr).group(1))
    # and each worker's log is kept in the student's storage
    folder = portal.var_dir / "volumes" / str(student.id) / ".aladdin" / "tasks" / str(job_id)
    assert "worker 1 of 2" in (folder / "worker-1.log").read_text()


def test_a_refusal_prints_the_portals_message_and_code_and_exits_non_zero(portal, config):
    # given a free student (no plan: no GPU parallelism), logged in
    student = Student(portal)
    student.log_in()
    assert cli_login(student, config).returncode == 0

    # when they launch a GPU job
    done = aladdin(config, "run", "train.py", "--gpu", "40g")

    # then the portal's message and code are printed, in their locale, and the CLI exits 2
    assert done.returncode == 2
    assert "[plan_needed]" in done.stderr
    assert "plan" in done.stderr.lower()
    assert done.stdout == ""

    # and their balance says why
    balance = aladdin(config, "balance")
    assert balance.returncode == 0, balance.stderr
    assert re.search(r"^Active compute: +\S+ DCU$", balance.stdout, re.M), balance.stdout
    assert re.search(r"^GPU parallelism: +0$", balance.stdout, re.M), balance.stdout

    # and in Chinese for a Chinese locale, and as JSON for scripts
    zh = aladdin(config, "--json", "run", "train.py", LANG="zh_CN.UTF-8")
    assert zh.returncode == 2
    error = json.loads(zh.stderr)["error"]
    assert error["code"] == "plan_needed" and error["status"] == 409
    assert re.search(r"[\u4e00-\u9fff]", error["detail"]), error["detail"]
    assert error["detail"] != done.stderr


def test_a_detached_job_gets_a_port_url_is_stopped_and_its_follower_ends(portal, config):
    # given a student with a plan and a job that runs until stopped
    student = Student(portal, plan="basic")
    student.log_in()
    assert cli_login(student, config).returncode == 0
    student.upload("serve.sh", "#!/bin/bash\necho serving\nsleep 600\n")
    launched = aladdin(config, "--json", "run", "-d", "serve.sh", "--gpu", "40g")
    assert launched.returncode == 0, launched.stderr
    job_id = json.loads(launched.stdout)["job"]["id"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "aladdin_cli", "jobs", "logs", "-f", str(job_id)],
        env=cli_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        # when they open a port of it, then stop it
        port = aladdin(config, "port", "add", str(job_id), "8888", "--json")
        assert port.returncode == 0, port.stderr
        assert json.loads(port.stdout)["port"] == 8888 and json.loads(port.stdout)["url"]
        assert "serving" in follower.stdout.readline()
        stop = aladdin(config, "jobs", "stop", str(job_id))
        assert stop.returncode == 0, stop.stderr

        # then the follower sees the end and exits non-zero, saying why
        out, err = follower.communicate(timeout=90)
        assert follower.returncode != 0
        assert f"job {job_id} stopped" in err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()

    # and stopping it again is the portal's refusal
    again = aladdin(config, "jobs", "stop", str(job_id))
    assert again.returncode == 2 and "[state_conflict]" in again.stderr


def test_workshops_are_created_listed_and_described_for_ssh(portal, config):
    student = Student(portal, plan="basic")
    student.log_in()
    assert cli_login(student, config).returncode == 0

    created = aladdin(config, "ws", "create", "dev", "--env", "A=1", "--json")
    assert created.returncode == 0, created.stderr
    workshop = json.loads(created.stdout)
    assert workshop["name"] == "dev" and [e["key"] for e in workshop["env"]] == ["A"]

    listed = aladdin(config, "ws", "ls")
    assert listed.returncode == 0 and "dev" in listed.stdout and "python:3.11" in listed.stdout
    ssh = aladdin(config, "ws", "ssh-config", "dev")
    assert ssh.returncode == 0, ssh.stderr
    assert "Host dev." in ssh.stdout and "HostKeyAlias" in ssh.stdout

    stopped = aladdin(config, "ws", "stop", str(workshop["id"]))
    assert stopped.returncode == 0, stopped.stderr
    missing = aladdin(config, "ws", "start", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr

    taken = aladdin(config, "ws", "create", "dev")
    assert taken.returncode == 2 and "already exists. [invalid]" in taken.stderr
    assert "__all__" not in taken.stderr
