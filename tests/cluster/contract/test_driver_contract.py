"""The cluster driver's contract: what every backend does, the same way (issue 19).

Run on each backend of ``conftest.BACKENDS``: the fake, the local agent, the
Kubernetes backend against its API-server stub (tests/kubestub), and a real
cluster when ``KUBECONFIG`` is set (docs/operations.md). A test that
needs workloads to really run (the network between workers, files written by
a command) says so and is skipped on the fake. Where the fake and a real
backend differ, the fake is fixed: it stands in for them in every portal test.
"""

from __future__ import annotations

import threading
import time

import pytest

from aladdin.cluster.base import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_USER,
    Capabilities,
    DriverError,
    MetricSample,
    NoCapacity,
    Phase,
    WorkloadMetrics,
)

from .conftest import CARDS, ENDED, worker


def real_only(backend) -> None:
    if not backend.runs_processes:
        pytest.skip(f"the {backend.name} backend runs no processes")


def exec_all(session, *, stdin: bytes | None = None, timeout: float = 20):
    """Everything ``session`` says: (stdout, stderr, exit code)."""
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


# --- user space -------------------------------------------------------------


def test_a_user_space_is_made_idempotently_and_deleted_missing_or_not(backend):
    driver = backend.driver
    driver.ensure_user_space(user_id=2, storage_gib=1, quota=None)
    driver.ensure_user_space(user_id=2, storage_gib=2, quota=None)  # grown: same space
    assert driver.storage_usage_bytes(user_id=2) >= 0

    driver.delete_user_space(user_id=2)
    driver.delete_user_space(user_id=2)  # missing = success

    assert driver.storage_usage_bytes(user_id=2) == 0
    assert driver.storage_usage_bytes(user_id=99) == 0  # never made


def test_storage_usage_counts_what_a_workload_wrote_to_root(backend):
    backend.workshop("ws-usage")
    # Kubernetes answers the create while the pod is still pending.
    backend.wait_for("ws-usage", {Phase.RUNNING})
    before = backend.driver.storage_usage_bytes(user_id=1)
    session = backend.driver.exec_in_workload(
        name="ws-usage", command=["sh", "-c", "head -c 300000 /dev/zero > blob"]
    )
    assert exec_all(session)[2] == 0

    assert backend.driver.storage_usage_bytes(user_id=1) >= before + 300000


def test_disk_free_reports_the_volumes_filesystem(backend):
    space = backend.driver.disk_free()
    assert 0 <= space.free <= space.total and space.total > 0


# --- workloads --------------------------------------------------------------


def test_a_workshop_starts_once_by_name_and_stops_to_missing(backend):
    driver = backend.driver
    first = backend.workshop("ws-1")
    again = backend.workshop("ws-1")  # a retried create finds its own

    assert first.phase in (Phase.PENDING, Phase.RUNNING)
    assert again.name == "ws-1" and again.phase in (Phase.PENDING, Phase.RUNNING)
    assert [s.name for s in driver.list_workloads()].count("ws-1") == 1
    assert backend.wait_for("ws-1", {Phase.RUNNING}).phase == Phase.RUNNING

    driver.stop_workload(name="ws-1", grace_seconds=2)
    assert driver.workload_status(name="ws-1").phase == Phase.MISSING
    assert driver.stop_workload(name="ws-1").phase == Phase.MISSING  # missing = success
    assert driver.workload_status(name="never-started").phase == Phase.MISSING


@pytest.mark.parametrize(("exit_code", "phase"), [(0, Phase.SUCCEEDED), (3, Phase.FAILED)])
def test_a_job_ends_with_its_exit_code_and_is_kept_until_forgotten(backend, exit_code, phase):
    driver = backend.driver
    ended = backend.job(f"job-exit-{exit_code}", output="done\n", exit_code=exit_code)

    assert (ended.phase, ended.exit_code) == (phase, exit_code)
    assert ended.finished_at is not None
    assert driver.workload_status(name=ended.name).phase == phase  # still reported

    driver.forget_workload(name=ended.name)
    driver.forget_workload(name=ended.name)  # missing = success
    assert driver.workload_status(name=ended.name).phase == Phase.MISSING


def test_the_reconciler_lists_every_workload_running_or_ended_with_its_labels(backend):
    backend.workshop("ws-listed")
    backend.job("job-listed", output="x")

    listed = {s.name: s for s in backend.driver.list_workloads()}

    assert {"ws-listed", "job-listed"} <= set(listed)
    for name, kind in (("ws-listed", "workshop"), ("job-listed", "job")):
        status = listed[name]
        assert (status.user_id, status.kind) == (1, kind)
        assert status.labels[LABEL_USER] == "1"
        assert status.labels[LABEL_KIND] == kind
        assert status.labels[LABEL_OWNER] == name
    assert listed["job-listed"].phase in ENDED


# --- task workers -------------------------------------------------------------


def test_a_later_worker_is_refused_while_worker_0_does_not_run(backend):
    group_address = backend.driver.group_address(group="job-40")
    assert isinstance(group_address, str) and group_address

    with pytest.raises(DriverError) as refused:
        backend.driver.start_workload(worker(backend, "job-40", 1, 2, ["true"]))

    assert refused.value.code == "not_running"
    assert backend.driver.workload_status(name="job-40-1").phase == Phase.MISSING


def test_workers_of_a_group_echo_it_and_start_after_worker_0(backend):
    first = backend.driver.start_workload(worker(backend, "job-41", 0, 2, ["sleep", "60"]))
    backend.wait_for("job-41-0", {Phase.RUNNING})
    second = backend.driver.start_workload(worker(backend, "job-41", 1, 2, ["sleep", "60"]))

    assert first.group == second.group == "job-41"
    assert {s.group for s in backend.driver.list_workloads() if s.name.startswith("job-41-")} == {
        "job-41"
    }


def test_worker_1_reaches_worker_0_at_the_group_address(backend):
    real_only(backend)
    address = backend.driver.group_address(group="job-42")
    server = (
        "import socket; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('0.0.0.0', 29500)); s.listen(); c, _ = s.accept(); "
        "c.sendall(b'hello from worker 0\\n'); c.close()"
    )
    client = (
        "import socket, time\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        c = socket.create_connection(({address!r}, 29500)); break\n"
        "    except OSError: time.sleep(0.1)\n"
        "print(c.recv(100).decode().strip(), flush=True)\n"
    )
    backend.driver.start_workload(worker(backend, "job-42", 0, 2, ["python3", "-c", server]))
    backend.driver.start_workload(worker(backend, "job-42", 1, 2, ["python3", "-c", client]))

    output = b"".join(backend.driver.follow_logs(name="job-42-1")).decode()

    assert "hello from worker 0" in output
    for name in ("job-42-0", "job-42-1"):
        assert backend.wait_for(name, ENDED).phase == Phase.SUCCEEDED


# --- logs -----------------------------------------------------------------------


def test_logs_follow_from_an_offset_and_after_the_end(backend):
    driver = backend.driver
    backend.job("job-logs", output="one\ntwo\nthree\n")

    assert b"".join(driver.follow_logs(name="job-logs")) == b"one\ntwo\nthree\n"
    assert b"".join(driver.follow_logs(name="job-logs", offset=4)) == b"two\nthree\n"
    assert b"".join(driver.follow_logs(name="job-logs", offset=14)) == b""
    assert b"".join(driver.follow_logs(name="job-logs", offset=4, follow=False)) == b"two\nthree\n"

    # the record forgotten, the output stays until deleted
    driver.forget_workload(name="job-logs")
    assert b"".join(driver.follow_logs(name="job-logs", offset=8)) == b"three\n"
    driver.delete_logs(name="job-logs")
    driver.delete_logs(name="job-logs")  # missing = success
    assert b"".join(driver.follow_logs(name="job-logs")) == b""


def test_a_follow_gets_output_while_the_job_runs_and_ends_with_it(backend):
    backend.two_part_job("job-live", "first\n", "second\n", pause=1.5)
    stream = backend.driver.follow_logs(name="job-live")
    started = time.monotonic()

    first = next(iter(stream))
    waited = time.monotonic() - started
    rest = b"".join(stream)

    assert first == b"first\n" and waited < 1.2  # pushed long before the job ended
    assert rest == b"second\n"
    assert backend.wait_for("job-live", ENDED).phase == Phase.SUCCEEDED


def test_following_a_missing_workload_ends_at_once(backend):
    assert b"".join(backend.driver.follow_logs(name="job-never")) == b""


def test_a_follow_waiting_on_a_quiet_workload_ends_when_closed(backend):
    backend.workshop("ws-quiet")
    backend.wait_for("ws-quiet", {Phase.RUNNING})
    stream = backend.driver.follow_logs(name="ws-quiet")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(stream))
    reader.start()
    time.sleep(0.3)

    stream.close()  # type: ignore[attr-defined]
    reader.join(timeout=10)

    assert not reader.is_alive() and got == []


def test_logs_cannot_be_deleted_while_the_workload_runs(backend):
    backend.workshop("ws-logs")
    backend.wait_for("ws-logs", {Phase.RUNNING})

    with pytest.raises(DriverError) as refused:
        backend.driver.delete_logs(name="ws-logs")

    assert refused.value.permanent


# --- exec and terminal ------------------------------------------------------------


def test_exec_gives_stdin_separate_stdout_and_stderr_variables_and_the_exit(backend):
    backend.workshop("ws-exec", env={"FROM_SPEC": "spec"})
    backend.wait_for("ws-exec", {Phase.RUNNING})
    session = backend.driver.exec_in_workload(
        name="ws-exec",
        command=["sh", "-c", 'tr a-z A-Z; echo "$FROM_SPEC $EXTRA" >&2; exit 3'],
        env={"EXTRA": "extra"},
    )

    assert exec_all(session, stdin=b"hello\n") == (b"HELLO\n", b"spec extra\n", 3)
    session.close()
    session.close()  # idempotent


def test_exec_in_a_workload_that_does_not_run_is_refused(backend):
    backend.job("job-ended", output="")
    for name in ("job-ended", "ws-none"):
        with pytest.raises(DriverError) as refused:
            backend.driver.exec_in_workload(name=name, command=["true"])
        assert (refused.value.code, refused.value.permanent) == ("not_running", True)


def test_a_terminal_echoes_what_is_typed_and_closes(backend):
    backend.workshop("ws-term")
    backend.wait_for("ws-term", {Phase.RUNNING})
    terminal = backend.driver.open_terminal(name="ws-term", rows=30, cols=100)
    try:
        terminal.resize(rows=40, cols=120)
        terminal.write(b"echo contract-marker\n")
        seen = b""
        deadline = time.monotonic() + 15
        while b"contract-marker" not in seen and time.monotonic() < deadline:
            seen += terminal.read(timeout=15)
        assert b"contract-marker" in seen
    finally:
        terminal.close()
        terminal.close()  # idempotent


def test_a_terminal_in_a_workload_that_does_not_run_is_refused(backend):
    with pytest.raises(DriverError):
        backend.driver.open_terminal(name="ws-none")


# --- capacity ----------------------------------------------------------------------


def test_a_start_with_no_free_card_is_no_capacity_and_the_card_frees_with_a_stop(backend):
    driver = backend.driver
    gpu = {"80g": CARDS["80g"]}
    backend.workshop("job-card-1", gpus=gpu)

    with pytest.raises(NoCapacity) as refused:
        backend.workshop("job-card-2", gpus=gpu)

    assert (refused.value.code, refused.value.permanent) == ("no_capacity", False)
    assert driver.workload_status(name="job-card-2").phase == Phase.MISSING
    driver.stop_workload(name="job-card-1", grace_seconds=1)
    assert backend.workshop("job-card-2", gpus=gpu).phase in (Phase.PENDING, Phase.RUNNING)


# --- metrics and capabilities ----------------------------------------------------------


def test_metrics_are_samples_or_no_metrics_never_an_error(backend):
    backend.workshop("ws-metrics")
    backend.wait_for("ws-metrics", {Phase.RUNNING})

    metrics = backend.driver.workload_metrics(name="ws-metrics")
    unknown = backend.driver.workload_metrics(name="ws-unknown")

    assert isinstance(metrics, WorkloadMetrics) and metrics.name == "ws-metrics"
    assert all(isinstance(s, MetricSample) for s in metrics.samples)
    assert unknown.name == "ws-unknown" and not unknown.samples


def test_capabilities_are_typed_facts_of_a_backend_that_answers(backend):
    caps = backend.driver.capabilities()

    assert isinstance(caps, Capabilities) and caps.known
    assert caps.isolation  # every backend here isolates (the local one is skipped otherwise)
    assert isinstance(caps.limits, str) and isinstance(caps.gpu_metrics, bool)
