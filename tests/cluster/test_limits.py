"""Resource limits on the local backend (issue 14): a real agent, real cgroups, real sandboxes.

Each workload runs in its own cgroup with its memory, CPU and a process
limit; its terminals and execs join that cgroup; a workload that runs out
of memory ends failed with "out of memory (limit …)"; one student's fork
bomb or memory hog leaves the host, the portal and the next student alone.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.cache import cache

from aladdin import health
from aladdin.cluster import cgroups, sandbox
from aladdin.cluster.base import Phase, Resources

from .conftest import spec
from .test_exec import run
from .test_local_agent import alive, run_in_terminal, wait_for_phase


@pytest.fixture
def limited(agent):
    """An agent that sandboxes and limits; skipped (with the agent's reason) where it cannot limit."""
    if not agent.health.get("limits"):
        pytest.skip(f"no cgroup control here: {agent.health.get('limits_reason')}")
    return agent


def start(agent, name: str, *, user_id: int, cpu: int = 1000, memory: int = 1024, command=None):
    agent.driver.ensure_user_space(user_id=user_id, storage_gib=1, quota=None)
    workload = replace(
        spec(name, user_id=user_id, command=command, kind="job" if command else "workshop"),
        resources=Resources(cpu_millicores=cpu, memory_mib=memory),
    )
    status = agent.driver.start_workload(workload)
    assert status.phase == Phase.RUNNING, status
    return status


def namespace_members(sandbox_pid: int) -> list[int]:
    """Host pids of every process in the pid namespace of ``sandbox_pid`` (its init included)."""
    ns = os.readlink(f"/proc/{sandbox_pid}/ns/pid")
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    members.append(int(entry))
            except OSError:
                continue
    return members


def sandbox_pid(agent, name: str) -> int:
    record = next(r for r in agent.driver._call("list")["workloads"] if r["name"] == name)
    return record["sandbox_pid"]


# --- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mib", "text"),
    [(256, "256 MiB"), (1023, "1023 MiB"), (1024, "1 GiB"), (1536, "1.5 GiB"), (16384, "16 GiB")],
)
def test_the_memory_in_the_reason_is_mib_below_a_gib_and_gib_above(mib, text):
    assert cgroups.oom_reason(mib) == f"out of memory (limit {text})"


def test_dev_shm_is_sized_to_the_memory_and_left_alone_without_it(tmp_path):
    sized = sandbox.bwrap_options(volume=tmp_path, env={}, shm_mib=512)
    plain = sandbox.bwrap_options(volume=tmp_path, env={})

    at = sized.index("/dev/shm")
    assert sized[at - 3 : at + 1] == ["--size", str(512 * 2**20), "--tmpfs", "/dev/shm"]
    assert sized.index("--dev") < at  # mounted over bwrap's /dev
    assert "/dev/shm" not in plain and "--size" not in plain


def test_the_gate_runs_the_command_only_after_its_go_and_with_its_own_pid():
    r, w = os.pipe()
    proc = None
    try:
        argv = sandbox.gated(r, ["/bin/sh", "-c", "echo $$"])
        assert sandbox.ungated(argv) == ["/bin/sh", "-c", "echo $$"]
        import subprocess

        proc = subprocess.Popen(argv, pass_fds=(r,), stdout=subprocess.PIPE, env=sandbox.HOST_ENV)
        os.close(r)
        r = -1
        time.sleep(0.2)
        assert proc.poll() is None  # held at the gate
        os.write(w, b"go\n")
        out, _ = proc.communicate(timeout=5)
        assert int(out) == proc.pid and proc.returncode == 0
    finally:
        os.close(w)
        if r >= 0:
            os.close(r)


def test_the_gate_fails_closed_when_the_agent_never_says_go():
    import subprocess

    r, w = os.pipe()
    proc = subprocess.Popen(
        sandbox.gated(r, ["/bin/sh", "-c", "echo RAN"]),
        pass_fds=(r,),
        stdout=subprocess.PIPE,
        env=sandbox.HOST_ENV,
    )
    os.close(r)
    os.close(w)  # the agent went away without releasing it
    out, _ = proc.communicate(timeout=5)
    assert (out, proc.returncode) == (b"", 125)


def test_limits_are_off_with_a_reason_when_the_agent_is_not_root_or_finds_no_controllers(
    tmp_path,
):
    none, why = cgroups.detect(tmp_path, euid=1000)
    assert none is None and why == "the agent is not root, so it cannot create cgroups"

    none, why = cgroups.detect(tmp_path, euid=0)
    assert none is None
    assert why == (
        f"no cgroup v2 with memory, cpu and pids at {tmp_path}, and no cgroup v1 "
        "memory, cpu, pids hierarchy there"
    )


# --- a real agent ------------------------------------------------------------------------------


def test_a_workload_over_its_memory_ends_out_of_memory_and_another_users_keeps_running(limited):
    driver = limited.driver
    start(limited, "ws-2", user_id=2)
    hog = (
        "import time\n"
        "chunks = []\n"
        "for i in range(1024):\n"  # 1 GiB in 1 MiB pieces, each written (so resident)
        "    chunks.append(b'x' * 2**20)\n"
        "print('SURVIVED', flush=True)\n"
    )
    start(limited, "job-1", user_id=1, memory=256, command=["python3", "-c", hog])

    status = wait_for_phase(driver, "job-1", {Phase.SUCCEEDED, Phase.FAILED}, timeout=60)

    assert (status.phase, status.reason) == (Phase.FAILED, "out of memory (limit 256 MiB)")
    assert "SURVIVED" not in b"".join(driver.follow_logs(name="job-1", follow=False)).decode()
    assert driver.workload_status(name="ws-2").phase == Phase.RUNNING
    assert "alive" in run_in_terminal(driver, "ws-2", "echo ali''ve")


def test_a_fork_bomb_stays_in_its_workload_and_leaves_the_portal_and_the_other_answering(
    start_agent, use_driver, client, db
):
    agent = start_agent(ALADDIN_LOCAL_PIDS_MAX="64")
    if not agent.health["sandbox"] or not agent.health.get("limits"):
        pytest.skip(f"cannot sandbox and limit here: {agent.health}")
    use_driver(agent.driver)
    driver = agent.driver
    start(agent, "ws-2", user_id=2)
    # The bomb forks in the background; the main process becomes `sleep` by
    # exec, which needs no new process: at the limit, a main process that had
    # to fork would fail and end the workload (and its cgroup) under the test.
    bomb = ["bash", "-c", "b() { b | b & }; (b) & exec sleep 3600"]
    start(agent, "ws-1", user_id=1, command=bomb)
    pids = agent.cgroups().path("ws-1", "pids")
    deadline = time.monotonic() + 20
    while int((pids / "pids.current").read_text()) < 60 and time.monotonic() < deadline:
        time.sleep(0.1)  # until the bomb presses against its limit

    # The other workload answers, and so does the portal.
    started = time.monotonic()
    assert "alive" in run_in_terminal(driver, "ws-2", "echo ali''ve", timeout=20)
    terminal_seconds = time.monotonic() - started
    health.record_worker_heartbeat("worker@test")
    cache.set(health.BEAT_KEY, {"at": time.time()}, timeout=300)
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["cluster"]["limits"] == agent.health["limits"]
    # Never more processes than the limit, however long it forks.
    assert int((pids / "pids.current").read_text()) <= 64
    assert int((pids / "pids.max").read_text()) == 64
    assert terminal_seconds < 10

    stopped = driver.stop_workload(name="ws-1", grace_seconds=2)

    assert stopped.phase == Phase.FAILED and stopped.reason == "stopped"
    assert not pids.exists()
    assert driver.workload_status(name="ws-2").phase == Phase.RUNNING


def test_the_limits_are_written_and_terminals_and_execs_join_the_workloads_cgroup(limited):
    driver = limited.driver
    start(limited, "ws-1", user_id=1, cpu=1500, memory=512)
    found = limited.cgroups()
    assert found is not None
    if found.version == 1:
        assert (found.path("ws-1", "cpu") / "cpu.cfs_quota_us").read_text().strip() == "150000"
        assert (found.path("ws-1", "cpu") / "cpu.cfs_period_us").read_text().strip() == "100000"
        limit = (found.path("ws-1") / "memory.limit_in_bytes").read_text().strip()
    else:
        assert (found.path("ws-1") / "cpu.max").read_text().split() == ["150000", "100000"]
        limit = (found.path("ws-1") / "memory.max").read_text().strip()
    assert limit == str(512 * 2**20)
    assert (found.path("ws-1", "pids") / "pids.max").read_text().strip() == "4096"

    shm = run_in_terminal(
        driver,
        "ws-1",
        "nohup sleep 4242 >/dev/null 2>&1 &\n"
        "python3 -c \"import os; s = os.statvfs('/dev/shm'); print('SHM', s.f_blocks * s.f_frsize)\"",
    )
    session = driver.exec_in_workload(
        name="ws-1", command=["/bin/sh", "-c", "sleep 4343 >/dev/null 2>&1 &"]
    )
    run(session)

    assert f"SHM {512 * 2**20}" in shm
    # The sandbox's processes first: one started after this read is in the
    # cgroup's list below if it is in the cgroup at all.
    members = set(namespace_members(sandbox_pid(limited, "ws-1")))
    inside = set(found.pids("ws-1"))
    commands = {Path(f"/proc/{pid}/cmdline").read_bytes() for pid in inside}
    assert b"sleep\x004242\x00" in commands and b"sleep\x004343\x00" in commands
    # Whatever runs in the sandbox, however it got there, is inside the limits
    # (but for a process that ended since: a zombie has left its cgroup).
    outside = {pid for pid in members - inside if alive(pid)}
    assert not outside, {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in outside}


def test_the_cgroup_is_removed_when_a_workload_ends_or_is_stopped(limited):
    found = limited.cgroups()
    assert found is not None
    start(limited, "job-1", user_id=1, command=["sh", "-c", "sleep 0.5"])
    start(limited, "ws-1", user_id=1)
    job_dirs, ws_dirs = found.directories("job-1"), found.directories("ws-1")
    assert all(d.is_dir() for d in job_dirs + ws_dirs)

    ended = wait_for_phase(limited.driver, "job-1", {Phase.SUCCEEDED, Phase.FAILED})
    limited.driver.stop_workload(name="ws-1", grace_seconds=2)

    assert ended.phase == Phase.SUCCEEDED
    assert not any(d.exists() for d in job_dirs + ws_dirs)


def test_a_cgroup_left_by_a_previous_agent_is_removed_with_what_runs_in_it(limited):
    import subprocess

    found = limited.cgroups()
    assert found is not None
    limited.stop()
    found.create("ws-9", cgroups.Limits(memory_mib=64))
    leftover = subprocess.Popen(["sleep", "300"])
    found.attach("ws-9", leftover.pid)

    limited.start()

    assert leftover.wait(timeout=10) == -9
    assert not any(d.exists() for d in found.directories("ws-9"))


def test_limits_off_are_reported_with_their_reason_and_workloads_still_run(start_agent, tmp_path):
    agent = start_agent(ALADDIN_LOCAL_CGROUP_ROOT=str(tmp_path))
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    reason = f"no cgroup v2 with memory, cpu and pids at {tmp_path}"

    portal_view = agent.driver.health()

    assert agent.health["limits"] == "" and agent.health["limits_reason"].startswith(reason)
    assert portal_view["limits"] == "off"
    assert portal_view["limits_reason"] == agent.health["limits_reason"]
    start(agent, "ws-1", user_id=1)
    assert "ran" in run_in_terminal(agent.driver, "ws-1", "echo r''an")


def test_a_resource_given_as_zero_is_left_unlimited_but_processes_still_are(limited):
    # 0 means no preset said how much, not "nothing": no memory limit, no quota.
    start(limited, "ws-1", user_id=1, cpu=0, memory=0)
    found = limited.cgroups()
    assert found is not None

    if found.version == 1:
        quota = (found.path("ws-1", "cpu") / "cpu.cfs_quota_us").read_text().strip()
        memory = int((found.path("ws-1") / "memory.limit_in_bytes").read_text())
        assert quota == "-1" and memory >= 2**62
    else:
        assert (found.path("ws-1") / "cpu.max").read_text().split()[0] == "max"
        assert (found.path("ws-1") / "memory.max").read_text().strip() == "max"
    assert (found.path("ws-1", "pids") / "pids.max").read_text().strip() == "4096"
    mounts = run_in_terminal(
        limited.driver, "ws-1", "echo SHM-$(grep -c ' /dev/shm ' /proc/mounts)"
    )
    assert "SHM-0" in mounts  # no tmpfs of its own: nothing to size
