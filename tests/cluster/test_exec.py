"""The driver's exec (what the SSH gateway runs) against a real agent and sandbox (issue 13).

The command, its variables and its stdin are the workload's data: they must
never appear on a host command line, and the process runs as the
workload's uid inside its sandbox.
"""

from __future__ import annotations

import select
import threading
import time

import pytest
from django.conf import settings

from aladdin.cluster.base import DriverError
from tests.cluster.conftest import spec


def run(session, *, stdin: bytes | None = None, timeout: float = 20) -> tuple[bytes, bytes, int]:
    if stdin is not None:
        session.write(stdin)
        session.close_stdin()
    out = {1: b"", 2: b""}
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, out
        stream, data = session.read(timeout=timeout)
        if not stream:
            return out[1], out[2], session.exit_code
        out[stream] += data


@pytest.fixture
def workshop(agent):
    agent.driver.start_workload(spec("ws-1", user_id=7))
    return agent


def test_a_command_gets_stdin_and_separate_stdout_stderr_and_its_exit_status(workshop):
    session = workshop.driver.exec_in_workload(
        name="ws-1", command=["/bin/bash", "-c", "tr a-z A-Z; echo oops >&2; exit 3"]
    )

    out, err, code = run(session, stdin=b"hello\n")

    assert (out, err, code) == (b"HELLO\n", b"oops\n", 3)


@pytest.mark.parametrize("binary", [True, False], ids=["binary-frames", "json-lines"])
def test_both_stream_encodings_carry_binary_data_eof_and_the_exit(workshop, binary):
    # JSON lines are what a portal and an agent of earlier releases speak;
    # binary frames are negotiated (protocol.ExecStarted), so either pair works.
    workshop.driver.exec_binary = binary
    session = workshop.driver.exec_in_workload(
        name="ws-1", command=["/bin/sh", "-c", "cat; printf 'e\\000r' >&2; exit 5"]
    )
    assert session.binary is binary
    payload = bytes(range(256)) * 1024  # 256 KiB: several output frames

    out, err, code = run(session, stdin=payload)

    assert (out, err, code) == (payload, b"e\0r", 5)


def test_an_event_loop_reads_the_output_without_waiting_on_the_descriptor_offered(workshop):
    # The SSH gateway's loop watches output_fd and calls read_available, never read().
    session = workshop.driver.exec_in_workload(
        name="ws-1", command=["/bin/sh", "-c", "cat; printf 'e\\000r' >&2; exit 5"]
    )
    fd = session.output_fd()
    assert fd is not None
    payload = bytes(range(256)) * 4096  # 1 MiB: frames split across the reads below

    def feed() -> None:
        session.write(payload)
        session.close_stdin()

    writer = threading.Thread(target=feed)  # cat's output is read meanwhile
    writer.start()
    out = {1: bytearray(), 2: bytearray()}
    ended = False
    while not ended:
        assert select.select([fd], [], [], 20)[0], "no output for 20 s"
        for stream, data in session.read_available(64 * 1024):
            if not stream:
                ended = True
            else:
                out[stream] += data
    writer.join(20)

    assert (bytes(out[1]), bytes(out[2]), session.exit_code) == (payload, b"e\0r", 5)
    assert session.read_available(64 * 1024) == [(0, b"")]


def test_an_older_agents_json_stream_offers_no_descriptor(workshop):
    workshop.driver.exec_binary = False  # JSON lines: read() in a thread, as before
    session = workshop.driver.exec_in_workload(name="ws-1", command=["/bin/echo", "hi"])

    assert session.output_fd() is None
    assert run(session) == (b"hi\n", b"", 0)


def test_it_runs_as_the_workloads_uid_in_root_inside_the_sandbox(workshop):
    session = workshop.driver.exec_in_workload(
        name="ws-1", command=["/bin/sh", "-c", 'id -u; pwd; echo "$HOME"; ls /work 2>&1 | head -1']
    )
    out, _err, code = run(session)

    uid, cwd, home, work = out.decode().splitlines()
    assert code == 0
    assert int(uid) == settings.LOCAL_UID_BASE + 7
    assert (cwd, home) == ("/root", "/root")
    assert "No such file" in work  # the host's checkout is not in the sandbox


def test_the_command_and_env_are_not_on_any_host_command_line(workshop):
    marker = "aladdin-secret-marker-7f3a"
    session = workshop.driver.exec_in_workload(
        name="ws-1",
        command=["/bin/sh", "-c", f"sleep 2; echo {marker}"],
        env={"LC_MARKER": marker},
    )
    time.sleep(0.5)
    import subprocess

    ps = subprocess.run(["ps", "-eo", "user,args"], capture_output=True, text=True).stdout
    host_lines = [line for line in ps.splitlines() if marker in line and line.startswith("root")]
    out, _err, code = run(session)

    assert host_lines == []
    assert out == f"{marker}\n".encode() and code == 0


def test_a_login_shell_with_a_pty_sees_its_terminal_and_size(workshop):
    session = workshop.driver.exec_in_workload(
        name="ws-1", command=None, tty=True, env={"TERM": "vt100"}, rows=30, cols=101
    )
    session.write(b"stty size; echo $TERM; exit 5\n")
    out = b""
    while True:
        stream, data = session.read(timeout=20)
        if not stream:
            break
        out += data
    assert b"30 101" in out
    assert b"vt100" in out
    assert session.exit_code == 5


def test_a_signal_is_128_plus_its_number(workshop):
    session = workshop.driver.exec_in_workload(name="ws-1", command=["/bin/sh", "-c", "kill -9 $$"])
    assert run(session)[2] == 137


def test_closing_hangs_up_the_command(workshop):
    session = workshop.driver.exec_in_workload(name="ws-1", command=["sleep", "300"])
    session.close()
    assert session.read(timeout=10) == (0, b"")
    # The agent hangs up once it sees the connection close, and the sandbox's
    # init reaps the command after that: both happen after close() returned.
    deadline = time.monotonic() + 30  # generous: a loaded CI machine
    while True:
        check = workshop.driver.exec_in_workload(
            name="ws-1", command=["/bin/sh", "-c", "pgrep -c sleep"]
        )
        out, _err, _code = run(check)
        if out.strip() == b"1" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out.strip() == b"1"  # the workshop's own sleep only


def test_a_workload_that_does_not_run_is_refused(workshop):
    with pytest.raises(DriverError) as refused:
        workshop.driver.exec_in_workload(name="ws-2", command=["true"])
    assert refused.value.code == "not_running"


def test_an_exec_right_after_the_start_finds_the_sandbox_ready(agent):
    # bwrap reports its pid before its (nested) user namespace is mapped;
    # nsenter then failed with "setgid failed" about one time in three.
    for i in range(6):
        agent.driver.start_workload(spec(f"ws-{i + 10}", user_id=7))
        session = agent.driver.exec_in_workload(name=f"ws-{i + 10}", command=["id", "-u"])
        assert run(session) == (f"{settings.LOCAL_UID_BASE + 7}\n".encode(), b"", 0)
