"""The local backend with a real agent, real bubblewrap sandboxes and real processes."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest
from django.conf import settings

from aladdin.cluster.base import DriverError, Phase

from .conftest import spec


def run_in_terminal(driver, name: str, command: str, timeout: float = 15) -> str:
    """Type ``command`` into a terminal of ``name``; its output up to a marker."""
    terminal = driver.open_terminal(name=name)
    try:
        # The typed line echoes `__DO""NE__`; only the command's output has __DONE__.
        terminal.write(f'{command}\necho __DO""NE__\n'.encode())
        output = b""
        deadline = time.monotonic() + timeout
        while b"__DONE__" not in output:
            assert time.monotonic() < deadline, output
            try:
                chunk = terminal.read(timeout=1)
            except TimeoutError:
                continue
            assert chunk, f"the terminal closed: {output!r}"
            output += chunk
        return output.decode(errors="replace")
    finally:
        terminal.close()


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for_phase(driver, name: str, phases: set[str], timeout: float = 15):
    deadline = time.monotonic() + timeout
    while True:
        status = driver.workload_status(name=name)
        if status.phase in phases or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def run_job(agent, name: str, script: str, *, user_id: int = 1, env=None) -> str:
    """Run ``sh -c script`` as a job of ``user_id``; its whole output once it ended."""
    driver = agent.driver
    driver.ensure_user_space(user_id=user_id, storage_gib=1, quota=None)
    driver.start_workload(
        spec(name, user_id=user_id, kind="job", command=["sh", "-c", script], env=env)
    )
    output = b"".join(driver.follow_logs(name=name))
    status = wait_for_phase(driver, name, {Phase.SUCCEEDED, Phase.FAILED})
    assert status.phase in {Phase.SUCCEEDED, Phase.FAILED}, status
    return output.decode(errors="replace")


def test_workshop_keeps_root_but_not_tmp_across_stop_and_start(agent):
    driver = agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)

    status = driver.start_workload(spec("ws-1"))
    assert status.phase == Phase.RUNNING
    assert status.labels["aladdin/owner"] == "ws-1"
    run_in_terminal(
        driver,
        "ws-1",
        "echo kept > /root/x; echo lost > /tmp/t\nnohup sleep 1000 >/dev/null 2>&1 &\nsleep 0.5",
    )
    # The terminal shares the workshop's sandbox: its /tmp, its processes.
    assert "sleep 1000" in run_in_terminal(driver, "ws-1", "cat /tmp/t; ps ax")

    stopped = driver.stop_workload(name="ws-1", grace_seconds=5)
    assert stopped.finished_at is not None
    assert driver.workload_status(name="ws-1").phase == Phase.MISSING
    assert (agent.volumes_dir / "1" / "x").read_text() == "kept\n"

    assert driver.start_workload(spec("ws-1")).phase == Phase.RUNNING
    output = run_in_terminal(driver, "ws-1", "cat /root/x; ls /tmp/t; ps ax")
    assert "kept" in output
    assert "No such file" in output
    assert "sleep 1000" not in output


def test_a_workload_runs_as_its_own_uid_and_sees_nothing_of_the_portal(agent):
    (agent.var_dir / "db.sqlite3").write_text("SECRET-DATABASE")
    (agent.var_dir / "secret_key").write_text("SECRET-KEY")
    other = agent.volumes_dir / "2"
    agent.driver.ensure_user_space(user_id=2, storage_gib=1, quota=None)
    (other / "notes").write_text("SECRET-OF-USER-2")

    output = run_job(
        agent,
        "job-1",
        f"""
        echo uid=$(id -u)
        echo env=$FOO home=$HOME
        cat {agent.var_dir}/db.sqlite3 && echo LEAK-db
        ls {agent.var_dir} && echo LEAK-var
        cat {other}/notes && echo LEAK-volume
        ls /work && echo LEAK-work
        ls /root/.. && echo listed-root-parent
        env | grep -q AGENT_ONLY && echo LEAK-env
        true
        """,
        env={"FOO": "from-spec"},
    )

    assert f"uid={settings.LOCAL_UID_BASE + 1}\n" in output, output
    assert f"uid={os.getuid()}\n" not in output
    assert "env=from-spec home=/root" in output
    assert "LEAK" not in output, output
    assert "SECRET" not in output, output
    assert (agent.volumes_dir / "1").stat().st_uid == settings.LOCAL_UID_BASE + 1
    assert oct((agent.volumes_dir / "1").stat().st_mode & 0o777) == "0o700"


def test_without_a_sandbox_a_second_user_is_refused(start_agent):
    agent = start_agent(ALADDIN_LOCAL_SANDBOX="off")
    assert agent.driver._call("health")["sandbox"] is False

    assert agent.driver.start_workload(spec("ws-1", user_id=1)).phase == Phase.RUNNING
    with pytest.raises(DriverError) as refused:
        agent.driver.start_workload(spec("ws-2", user_id=2))
    assert refused.value.permanent
    assert "serves one user only" in str(refused.value)
    assert "ALADDIN_LOCAL_INSECURE=1" in str(refused.value)
    # The one user it serves may start more, and (where the agent can switch
    # uids, i.e. runs as root) still not as root.
    assert agent.driver.start_workload(spec("ws-3", user_id=1)).phase == Phase.RUNNING
    if os.geteuid() == 0:
        assert f"uid={settings.LOCAL_UID_BASE + 1}" in run_in_terminal(
            agent.driver, "ws-3", "echo uid=$(id -u)"
        )


def test_without_a_sandbox_the_insecure_flag_admits_several_users(start_agent):
    agent = start_agent(ALADDIN_LOCAL_SANDBOX="off", ALADDIN_LOCAL_INSECURE="1")

    assert agent.driver.start_workload(spec("ws-1", user_id=1)).phase == Phase.RUNNING
    assert agent.driver.start_workload(spec("ws-2", user_id=2)).phase == Phase.RUNNING


def test_logs_follow_a_job_until_it_ends(agent):
    output = run_job(agent, "job-7", "echo one; sleep 1; echo two; exit 3")

    assert output == "one\ntwo\n"
    status = agent.driver.workload_status(name="job-7")
    assert (status.phase, status.exit_code, status.reason) == (
        Phase.FAILED,
        3,
        "exited with code 3",
    )
    assert b"".join(agent.driver.follow_logs(name="job-7", offset=4, follow=False)) == b"two\n"


def test_after_an_agent_restart_its_earlier_workloads_are_reported_ended(agent):
    agent.driver.start_workload(spec("ws-1"))
    pid = agent.driver._call("status", name="ws-1")["status"]["pid"]

    agent.restart()

    assert not alive(pid)
    [status] = agent.driver.list_workloads()
    assert (status.name, status.phase, status.reason) == ("ws-1", Phase.FAILED, "agent stopped")
    assert status.finished_at is not None and status.finished_at >= status.started_at
    assert status.labels["aladdin/user"] == "1"

    agent.driver.forget_workload(name="ws-1")
    assert agent.driver.list_workloads() == []


def test_an_agent_killed_outright_takes_its_workloads_along_and_says_so_after(agent):
    agent.driver.start_workload(spec("ws-1"))
    status = agent.driver._call("status", name="ws-1")["status"]

    agent.stop(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in (status["pid"], status["sandbox_pid"])):
        assert time.monotonic() < deadline, "the sandbox outlived its agent"
        time.sleep(0.1)
    agent.start()

    [ended] = agent.driver.list_workloads()
    assert ended.phase == Phase.FAILED
    assert "agent ended unexpectedly" in ended.reason
    assert ended.finished_at is not None


def test_starting_the_same_name_twice_yields_one_process(agent):
    first = agent.driver._call("start", spec={**_as_dict(spec("ws-1"))})["status"]
    second = agent.driver._call("start", spec={**_as_dict(spec("ws-1"))})["status"]

    assert first["pid"] == second["pid"]
    assert [w.name for w in agent.driver.list_workloads()] == ["ws-1"]


def test_a_workload_killed_behind_the_agents_back_is_reported_failed(agent):
    agent.driver.start_workload(spec("ws-1"))
    pid = agent.driver._call("status", name="ws-1")["status"]["pid"]

    os.kill(pid, signal.SIGKILL)

    status = wait_for_phase(agent.driver, "ws-1", {Phase.FAILED})
    assert status.phase == Phase.FAILED
    assert status.reason == "killed by SIGKILL"
    assert status.finished_at is not None


def test_health_reports_the_agent_and_the_sandbox(agent, settings):
    settings.LOCAL_VOLUMES_DIR = agent.volumes_dir
    health = agent.driver.health()
    assert health["ok"] is True
    assert health["agent"] == "running"
    assert health["sandbox"] == "bubblewrap"
    # The test agent's virtual cards (auto's default where there is no GPU), all free.
    assert health["gpus"] == {
        "virtual": True,
        "models": {"40g": {"total": 4, "free": 4}, "80g": {"total": 4, "free": 4}},
    }

    agent.stop()
    health = agent.driver.health()
    assert health["ok"] is False
    assert "the local agent is not running (make run starts it)" in health["error"]
    with pytest.raises(DriverError) as down:
        agent.driver.list_workloads()
    assert down.value.permanent is False


def _as_dict(workload_spec):
    from dataclasses import asdict

    return asdict(workload_spec)


def test_a_job_ends_with_its_main_process_even_if_it_left_one_running(agent):
    started = time.monotonic()
    output = run_job(agent, "job-9", "sleep 300 & echo left-one-running")

    assert output == "left-one-running\n"
    assert agent.driver.workload_status(name="job-9").phase == Phase.SUCCEEDED
    assert time.monotonic() - started < 30


def test_storage_usage_counts_what_a_workload_wrote_to_root(agent):
    before = agent.driver.storage_usage_bytes(user_id=1)

    run_job(agent, "job-9", "head -c 3000000 /dev/urandom > /root/blob; sync")

    grown = agent.driver.storage_usage_bytes(user_id=1) - before
    assert 3_000_000 <= grown < 3_200_000  # allocated blocks, like du


def test_a_workload_stopped_right_after_it_started_ends_gracefully_at_once(agent):
    # The stop arrives while the sandbox may hold only its guard: the command
    # that starts a moment later must get SIGTERM too, not wait out the grace.
    for i in range(3):
        name = f"job-early-{i}"
        agent.driver.start_workload(spec(name, kind="job", command=["sleep", "600"]))
        started = time.monotonic()
        status = agent.driver.stop_workload(name=name, grace_seconds=8)
        assert time.monotonic() - started < 4, status
        assert status.exit_code != -9, status


def test_a_start_with_no_free_card_is_a_typed_refusal_worth_retrying(start_agent):
    from aladdin.cluster.base import NoCapacity, Resources

    # given an agent with one 80G card, held by a running workload
    agent = start_agent(ALADDIN_LOCAL_GPUS="virtual:80g=1")
    first = spec("job-1", kind="job", command=["sleep", "600"])
    gpu = Resources(1000, 1024, {"80g": 1})
    agent.driver.start_workload(replace(first, resources=gpu))

    # when a second one asks for it
    with pytest.raises(NoCapacity) as refused:
        agent.driver.start_workload(replace(spec("job-2", kind="job"), resources=gpu))

    # then the refusal is typed (a code, not English to match), transient, with the numbers
    assert (refused.value.code, refused.value.permanent) == ("no_capacity", False)
    assert "1 asked, 0 of 1 free" in str(refused.value)
    assert agent.driver.workload_status(name="job-2").phase == Phase.MISSING
