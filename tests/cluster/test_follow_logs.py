"""The agent's push-based `follow` and `delete_logs`, through LocalDriver, with a real agent."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from aladdin.cluster.base import DriverError, Phase

from .conftest import spec


def start_job(agent, name: str, script: str, *, user_id: int = 1) -> None:
    agent.driver.ensure_user_space(user_id=user_id, storage_gib=1, quota=None)
    agent.driver.start_workload(
        spec(name, user_id=user_id, kind="job", command=["sh", "-c", script])
    )


def agent_threads(agent) -> int:
    return len(os.listdir(f"/proc/{agent.proc.pid}/task"))


def wait_until(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_follow_pushes_each_line_while_the_job_still_runs(agent):
    start_job(agent, "job-1", "echo first; sleep 2; echo second")

    stream = agent.driver.follow_logs(name="job-1")
    started = time.monotonic()
    first = next(stream)
    waited = time.monotonic() - started
    rest = b"".join(stream)

    assert first == b"first\n"
    assert waited < 1.5  # long before the job ends
    assert rest == b"second\n"
    assert stream.offset == len(b"first\nsecond\n")


def test_follow_from_an_offset_gives_only_the_rest(agent):
    start_job(agent, "job-2", "echo one; echo two; echo three")
    assert b"".join(agent.driver.follow_logs(name="job-2")) == b"one\ntwo\nthree\n"

    assert b"".join(agent.driver.follow_logs(name="job-2", offset=4)) == b"two\nthree\n"
    assert b"".join(agent.driver.follow_logs(name="job-2", offset=14)) == b""


def test_a_large_output_arrives_whole_in_bounded_chunks(agent):
    start_job(agent, "job-3", "head -c 1000000 /dev/zero | tr '\\0' x")

    chunks = list(agent.driver.follow_logs(name="job-3"))

    assert b"".join(chunks) == b"x" * 1_000_000
    assert max(len(c) for c in chunks) <= 65536


def test_following_a_missing_workload_ends_at_once(agent):
    assert list(agent.driver.follow_logs(name="job-404")) == []


def test_closing_the_stream_from_another_thread_ends_it_and_the_agents_thread(agent):
    start_job(agent, "job-4", "echo hello; sleep 60")
    time.sleep(0.5)  # the start's request thread has ended
    before = agent_threads(agent)
    stream = agent.driver.follow_logs(name="job-4")
    assert next(stream) == b"hello\n"
    assert agent_threads(agent) == before + 1  # the follow's thread
    rest: list[bytes] = []
    reader = threading.Thread(target=lambda: rest.extend(stream))
    reader.start()

    time.sleep(0.2)
    stream.close()
    reader.join(5)

    assert not reader.is_alive()
    assert rest == []
    assert wait_until(lambda: agent_threads(agent) == before)
    agent.driver.stop_workload(name="job-4", grace_seconds=1)


def test_an_agent_stopping_ends_the_stream_after_the_workloads_end(agent):
    start_job(agent, "job-5", "trap 'echo bye; exit 0' TERM; echo hello; sleep 60 & wait")
    stream = agent.driver.follow_logs(name="job-5")
    assert next(stream) == b"hello\n"

    agent.stop()  # SIGTERM: it stops its workloads first

    assert b"".join(stream) == b"bye\n"


def test_a_stream_broken_by_a_killed_agent_is_a_driver_error(agent):
    start_job(agent, "job-5", "echo hello; sleep 60")
    stream = agent.driver.follow_logs(name="job-5")
    assert next(stream) == b"hello\n"

    agent.stop(signal.SIGKILL)

    with pytest.raises(DriverError):
        next(stream)


def test_delete_logs_is_refused_while_running_and_removes_them_after(agent):
    start_job(agent, "job-6", "echo kept; sleep 60")
    log_file = agent.state_dir / "logs" / "job-6.log"
    assert wait_until(log_file.exists)

    with pytest.raises(DriverError) as refused:
        agent.driver.delete_logs(name="job-6")
    assert refused.value.permanent
    assert log_file.exists()

    agent.driver.stop_workload(name="job-6", grace_seconds=1)
    agent.driver.delete_logs(name="job-6")

    assert not log_file.exists()
    assert list(agent.driver.follow_logs(name="job-6")) == []
    agent.driver.delete_logs(name="job-6")  # missing = success


def test_delete_logs_of_an_ended_workload_that_is_still_recorded(agent):
    start_job(agent, "job-7", "echo done")
    assert b"".join(agent.driver.follow_logs(name="job-7")) == b"done\n"
    assert agent.driver.workload_status(name="job-7").phase == Phase.SUCCEEDED

    agent.driver.delete_logs(name="job-7")

    assert list(agent.driver.follow_logs(name="job-7", follow=False)) == []


def test_output_beyond_the_cap_is_dropped_with_a_note_and_the_workload_runs_on(start_agent):
    # given an agent that keeps at most 1 MiB of a workload's output
    running = start_agent(ALADDIN_LOCAL_LOG_MAX_MIB="1")
    if not running.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {running.health['sandbox_reason']}")
    # when a job prints 3 MiB and then says it is done
    script = "yes x | head -c 3145728; echo finished >&2; exit 0"
    running.driver.start_workload(spec("job-loud", kind="job", command=["sh", "-c", script]))
    output = b"".join(running.driver.follow_logs(name="job-loud"))
    # then 1 MiB is kept, then a note; the job ran to its end and succeeded
    assert output[: 2**20] == b"x\n" * 2**19
    assert b"output beyond 1 MiB was dropped" in output[2**20 :]
    assert b"finished" not in output
    status = running.driver.workload_status(name="job-loud")
    assert (status.phase, status.exit_code) == ("succeeded", 0)


def test_a_users_kept_output_is_bounded_in_all_and_their_oldest_goes_first(start_agent):
    # given an agent that keeps 1 MiB per job and 2 MiB per user in all
    running = start_agent(ALADDIN_LOCAL_LOG_MAX_MIB="1", ALADDIN_LOCAL_LOG_USER_MAX_MIB="2")
    if not running.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {running.health['sandbox_reason']}")
    driver = running.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    driver.ensure_user_space(user_id=2, storage_gib=1, quota=None)
    mib = "yes x | head -c 1048576"

    def run(name: str, user_id: int = 1) -> bytes:
        driver.start_workload(spec(name, user_id=user_id, kind="job", command=["sh", "-c", mib]))
        return b"".join(driver.follow_logs(name=name))

    # when user 1 runs three jobs of 1 MiB each, and user 2 one
    assert len(run("job-1")) == 2**20
    assert len(run("job-2")) == 2**20
    assert len(run("job-3")) == 2**20
    assert len(run("job-9", user_id=2)) == 2**20

    # then user 1's oldest output made room for the newest and says why
    first = b"".join(driver.follow_logs(name="job-1", follow=False))
    assert first.startswith(b"[aladdin: this output was removed")
    assert b"2 MiB in all" in first
    assert len(b"".join(driver.follow_logs(name="job-2", follow=False))) == 2**20
    # and another user's output was never touched
    assert len(b"".join(driver.follow_logs(name="job-9", follow=False))) == 2**20
    kept = sum(p.stat().st_size for p in (running.state_dir / "logs").glob("job-[123].log"))
    assert kept <= 2 * 2**20 + 200  # and the one-line note

    # and the bound holds across a restart (the journal knows whose each log is)
    running.restart()
    assert len(run("job-4")) == 2**20
    assert b"".join(driver.follow_logs(name="job-2", follow=False)).startswith(b"[aladdin:")
    kept = sum(p.stat().st_size for p in (running.state_dir / "logs").glob("job-[1234].log"))
    assert kept <= 2 * 2**20 + 2 * 200  # and the notes
