"""The typed protocol between the local agent and its driver: codec, errors, journal compatibility."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from aladdin.cluster import protocol
from aladdin.cluster.agent.journal import Journal
from aladdin.cluster.base import (
    DriverError,
    GpuSample,
    MetricSample,
    NoCapacity,
    Resources,
    WorkloadMetrics,
    WorkloadSpec,
)
from aladdin.cluster.images import BuildState, ImageRecipe, ImageState
from aladdin.cluster.protocol import AgentError, ErrorCode

SPEC = WorkloadSpec(
    name="job-7",
    user_id=3,
    kind="job",
    image="python:3.11",
    command=["python", "a.py"],
    env={"SECRET": "s"},
    resources=Resources(2000, 4096, {"80g": 2}),
    labels={"aladdin/user": "3"},
)

EVERY_REQUEST = [
    protocol.Health(),
    protocol.EnsureUserSpace(user_id=3),
    protocol.EnsureUserSpace(user_id=3, storage_gib=50),
    protocol.DiskFree(),
    protocol.DeleteUserSpace(user_id=3),
    protocol.Usage(user_id=3),
    protocol.Start(spec=SPEC),
    protocol.Stop(name="job-7", grace_seconds=2.5),
    protocol.Status(name="job-7"),
    protocol.Forget(name="job-7"),
    protocol.ListWorkloads(),
    protocol.Logs(name="job-7", offset=4, limit=10),
    protocol.DeleteLogs(name="job-7"),
    protocol.Follow(name="job-7", offset=9),
    protocol.OpenTerminal(name="ws-1", rows=40, cols=120),
    protocol.Exec(name="ws-1", command=["sh", "-c", "ls"], tty=True, env={"TERM": "vt100"}),
    protocol.OpenFiles(user_id=3),
    protocol.ConnectPort(name="ws-1", port=8888),
    # images (issue 14)
    protocol.ImageStatus(
        recipe=ImageRecipe("python:3.12", python="3.12", packages=("six==1.16.0",))
    ),
    protocol.BuildImage(recipe=ImageRecipe("tools:1", apt=("git",), cuda="12.4", conda=True)),
    protocol.Start(spec=replace(SPEC, recipe=ImageRecipe("python:3.11", python="3.11"))),
    # monitor (issue 18)
    protocol.Metrics(name="job-7"),
    protocol.Metrics(name="job-7", since=datetime(2026, 12, 1, 8, 0, 5, tzinfo=UTC)),
]


@pytest.mark.parametrize("request_", EVERY_REQUEST, ids=lambda r: r.op)
def test_every_request_survives_the_wire(request_):
    line = protocol.encode_line(protocol.encode_request(request_))
    assert protocol.decode_request(protocol.decode_line(line)) == request_


def test_a_start_from_a_portal_without_recipes_runs_on_no_image():
    # An older portal sends no recipe: the agent reads None (the host's userland).
    message = protocol.encode_request(protocol.Start(spec=SPEC))
    del message["spec"]["recipe"]
    assert protocol.decode_request(message).spec.recipe is None


def test_an_image_state_survives_the_wire():
    state = ImageState(
        key="torch-abc",
        state=BuildState.READY,
        progress=100,
        cpu_only=True,
        facts={"python": "3.11.7", "packages": {"torch": "2.6.0+cpu"}, "cuda": ""},
    )
    wire = json.loads(
        protocol.encode_line(protocol.encode_answer(protocol.ImageStateAnswer(state)))
    )
    assert protocol.decode_answer(protocol.BuildImage, wire).state == state


def test_a_workloads_metrics_survive_the_wire():
    metrics = WorkloadMetrics(
        name="job-7",
        available=True,
        gpu_metrics=True,
        interval_seconds=5,
        samples=[
            MetricSample(
                at=datetime(2026, 12, 1, 8, 0, 5, tzinfo=UTC),
                period_seconds=5,
                cpu_percent=187.5,
                memory_bytes=3 * 2**30,
                gpus=(GpuSample("0", 91.0, 30000, 81920),),
            ),
            MetricSample(at=datetime(2026, 12, 1, 8, 0, 10, tzinfo=UTC), period_seconds=5),
        ],
    )
    wire = json.loads(protocol.encode_line(protocol.encode_answer(protocol.MetricsAnswer(metrics))))
    assert protocol.decode_answer(protocol.Metrics, wire).metrics == metrics


def test_every_request_has_an_answer_type():
    assert set(protocol.ANSWERS) == {type(r) for r in EVERY_REQUEST}


def test_the_exec_stream_carries_stdout_stderr_eof_and_the_exit():
    for message in (protocol.ExecOutput(b"out", 1), protocol.ExecOutput(b"err", 2)):
        assert protocol.decode_exec_output(message.to_wire()) == message
    assert protocol.decode_exec_output(protocol.TerminalExit(3).to_wire()) == protocol.TerminalExit(
        3
    )
    # A terminal's output (no stream) is stdout.
    assert protocol.decode_exec_output(protocol.TerminalOutput(b"x").to_wire()).stream == 1
    assert protocol.decode_exec_input(protocol.ExecEof().to_wire()) == protocol.ExecEof()
    assert protocol.decode_exec_input({"data": "aGk="}) == protocol.TerminalInput(b"hi")
    with pytest.raises(AgentError):
        protocol.decode_exec_output({"data": "aGk=", "stream": 3})


def test_binary_exec_frames_round_trip_both_ways():
    outputs = [
        protocol.ExecOutput(b"out\x00\n", 1),
        protocol.ExecOutput(b"err", 2),
        protocol.TerminalExit(3),
        protocol.TerminalExit(-1),
        protocol.TerminalExit(None),
    ]
    inputs = [
        protocol.TerminalInput(bytes(range(256)) * 1000),
        protocol.ExecEof(),
        protocol.TerminalResize(rows=50, cols=200),
        protocol.TerminalClose(),
    ]
    size = protocol.FRAME_HEADER.size
    for message in outputs:
        frame = protocol.exec_output_frame(message)
        kind, length = protocol.frame_header(frame[:size])
        assert length == len(frame) - size
        assert protocol.decode_exec_output_frame(kind, frame[size:]) == message
    for message in inputs:
        frame = protocol.exec_input_frame(message)
        kind, length = protocol.frame_header(frame[:size])
        assert length == len(frame) - size
        assert protocol.decode_exec_input_frame(kind, frame[size:]) == message
    # The documented layout: a kind byte, a big-endian length, the raw payload.
    assert protocol.exec_output_frame(protocol.ExecOutput(b"hi", 2)) == b"\x02\x00\x00\x00\x02hi"
    assert (
        protocol.exec_input_frame(protocol.TerminalResize(24, 80))
        == b"\x05\x00\x00\x00\x04\x00\x18\x00\x50"
    )
    # Unknown kinds are skipped (None), as unknown JSON messages are; a huge length is refused.
    assert protocol.decode_exec_output_frame(99, b"x") is None
    assert protocol.decode_exec_input_frame(99, b"x") is None
    with pytest.raises(ValueError):
        protocol.frame_header(protocol.FRAME_HEADER.pack(1, protocol.MAX_FRAME + 1))
    with pytest.raises(AgentError):
        protocol.decode_exec_input_frame(protocol.FrameKind.RESIZE, b"\x00")


@pytest.mark.parametrize("piece", [1, 4, 5, 7, 4096, 10**6], ids=lambda n: f"{n}B-reads")
def test_exec_output_is_decoded_as_it_arrives_whatever_the_reads_split(piece):
    # The SSH gateway's loop feeds whatever one non-blocking recv returned.
    messages = [
        protocol.ExecOutput(b"a" * 3000, 1),
        protocol.ExecOutput(b"", 1),
        protocol.ExecOutput(b"oops\n", 2),
        protocol.ExecOutput(bytes(range(256)) * 40, 1),
        protocol.TerminalExit(-2),
    ]
    wire = b"".join(protocol.exec_output_frame(m) for m in messages)
    wire = wire[:-9] + protocol.encode_frame(99, b"skipped") + wire[-9:]  # an unknown kind
    wire += protocol.exec_output_frame(protocol.ExecOutput(b"after the exit", 1))
    reader = protocol.ExecOutputReader()
    got: list[tuple[int, bytes]] = []
    for start in range(0, len(wire), piece):
        for stream, data in reader.feed(wire[start : start + piece]):
            assert data  # no empty pieces for the channel
            if got and got[-1][0] == stream:
                got[-1] = (stream, got[-1][1] + bytes(data))
            else:
                got.append((stream, bytes(data)))
    assert got == [
        (1, b"a" * 3000),
        (2, b"oops\n"),
        (1, bytes(range(256)) * 40),
    ]
    assert reader.exit == protocol.TerminalExit(-2)

    # A piece is passed on before its frame is whole, without a copy.
    reader = protocol.ExecOutputReader()
    half = protocol.exec_output_frame(protocol.ExecOutput(b"x" * 100, 1))[:55]
    (piece_out,) = reader.feed(half)
    assert piece_out[0] == 1 and piece_out[1].obj is half and bytes(piece_out[1]) == b"x" * 50
    assert reader.exit is None
    # The end without a status, and a garbled length.
    reader = protocol.ExecOutputReader()
    reader.feed(protocol.encode_frame(protocol.FrameKind.EXIT))
    assert reader.exit == protocol.TerminalExit(None)
    with pytest.raises(ValueError):
        protocol.ExecOutputReader().feed(protocol.FRAME_HEADER.pack(1, protocol.MAX_FRAME + 1))


def test_binary_frames_are_negotiated_so_old_agents_and_portals_keep_json():
    # A new portal asks; an agent of an earlier release ignores the field
    # and answers a plain Done, which reads as "JSON lines".
    request = protocol.encode_request(protocol.Exec(name="ws-1", binary=True))
    assert request["binary"] is True
    assert protocol.decode_request({k: v for k, v in request.items() if k != "binary"}) == (
        protocol.Exec(name="ws-1")
    )
    assert protocol.decode_answer(protocol.Exec, {"ok": True}) == protocol.ExecStarted(binary=False)
    assert protocol.decode_answer(protocol.OpenFiles, {"ok": True}).binary is False
    # A new agent's answer to an old portal only adds fields, which it ignores.
    answer = protocol.encode_answer(protocol.ExecStarted(binary=True, binary_version=1))
    assert answer == {"ok": True, "binary": True, "binary_version": 1}
    assert protocol.decode_answer(protocol.Exec, answer).binary is True


def test_the_wire_is_what_earlier_agents_spoke():
    # The agent outlives web restarts: an upgraded portal must still talk to it.
    assert protocol.encode_request(protocol.Stop(name="ws-1", grace_seconds=10)) == {
        "op": "stop",
        "name": "ws-1",
        "grace_seconds": 10.0,
    }
    assert protocol.encode_answer(protocol.LogChunk(b"hi", 2, False)) == {
        "ok": True,
        "data": "aGk=",
        "offset": 2,
        "ended": False,
    }
    assert protocol.TerminalResize(24, 80).to_wire() == {"resize": [24, 80]}
    assert protocol.LogEnd(5).to_wire() == {"end": True, "offset": 5}


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ({"op": "reboot"}, "unknown operation 'reboot'"),
        ({"op": "status"}, "name is missing"),
        ({"op": "usage", "user_id": "3"}, "user_id: expected an integer"),
        ({"op": "logs", "name": "a", "offset": True}, "offset: expected an integer"),
        ({"op": "start", "spec": {"name": "x"}}, "spec.user_id is missing"),
        ({"op": "start", "spec": [1]}, "spec: expected an object"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_field(message, says):
    with pytest.raises(AgentError) as refused:
        protocol.decode_request(message)
    assert refused.value.code is ErrorCode.INVALID and refused.value.permanent
    assert says in str(refused.value)


def test_an_older_portal_ensures_a_user_space_without_a_size():
    # No size: the agent leaves the volume's hard cap (if any) as it is.
    request = protocol.decode_request({"op": "ensure_user_space", "user_id": 3})
    assert request == protocol.EnsureUserSpace(user_id=3, storage_gib=None)


def test_unknown_fields_are_ignored_so_either_side_may_be_newer():
    assert protocol.decode_request({"op": "status", "name": "ws-1", "since": 3}) == protocol.Status(
        name="ws-1"
    )


@pytest.mark.parametrize("name", ["ws-1", "job-12-3", "a" * 63])
def test_valid_names(name):
    protocol.check_name(name)


@pytest.mark.parametrize("name", ["", "Ws-1", "-x", "a/b", "../x", "a" * 64, "ws-1\n", None])
def test_names_that_could_escape_the_logs_directory_are_refused(name):
    with pytest.raises(AgentError):
        protocol.check_name(name)


def test_refusals_cross_the_wire_as_codes_and_become_typed_driver_errors():
    sent = AgentError(ErrorCode.NO_CAPACITY, "no free 80G card: 1 asked, 0 of 4 free")
    with pytest.raises(AgentError) as received:
        protocol.raise_for_error(json.loads(json.dumps(sent.to_wire())))

    error = protocol.driver_error(received.value)

    assert isinstance(error, NoCapacity)
    assert (error.permanent, error.code, str(error)) == (False, "no_capacity", sent.message)
    busy = protocol.driver_error(AgentError(ErrorCode.STILL_RUNNING, "ws-1 is still running"))
    assert type(busy) is DriverError
    assert (busy.permanent, busy.code) == (True, "still_running")


def test_an_error_without_a_code_keeps_its_verdict_on_retrying():
    # an agent from before error codes
    with pytest.raises(AgentError) as old:
        protocol.raise_for_error({"ok": False, "error": "agent: disk full", "permanent": False})
    assert old.value.permanent is False
    assert not isinstance(protocol.driver_error(old.value), NoCapacity)


def test_the_journal_of_an_earlier_agent_loads(tmp_path):
    # given a journal as the agent before the protocol module wrote it
    (tmp_path / "journal.json").write_text(
        json.dumps(
            {
                "single_user_id": None,
                "workloads": {
                    "ws-1": {
                        "name": "ws-1",
                        "phase": "failed",
                        "user_id": 1,
                        "kind": "workshop",
                        "exit_code": -15,
                        "reason": "agent stopped",
                        "started_at": "2026-03-01T09:00:00+00:00",
                        "finished_at": "2026-03-01T10:00:00.5+00:00",
                        "labels": {"aladdin/user": "1"},
                        "pid": 10,
                        "sandbox_pid": 11,
                        "pid_namespace": 4026532,
                        "sandboxed": True,
                        "image": "python:3.11",
                        "gpu_devices": [],
                    },
                    "../evil": {"name": "../evil", "phase": "failed"},
                },
                "logs": {"ws-1": 1, "../../etc/passwd": 1},
            }
        )  # fmt: skip
    )
    journal = Journal(tmp_path)

    state = journal.load()

    # then its records load typed, and names that are not names are dropped
    assert list(state.workloads) == ["ws-1"]
    record = state.workloads["ws-1"]
    assert record.finished_at == datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert record.to_status().reason == "agent stopped"
    assert state.logs == {"ws-1": 1}
    # and what it writes back reads the same
    journal.save(state)
    assert journal.load() == state
