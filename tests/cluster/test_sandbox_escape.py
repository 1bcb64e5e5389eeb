"""A student's ENV is data for the process inside the sandbox, never for a host program (issue 11).

Each test plants a shim or a library in the student's own volume (which the
student controls) and points a variable at its *host* path, which a
workload could once read from /proc/1/cmdline. A marker file in the host's
/tmp shows that code ran outside the sandbox: inside, /tmp is a private
tmpfs, so the same code run inside leaves no marker on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from aladdin.cluster.base import Phase

from .conftest import spec
from .test_local_agent import run_in_terminal, run_job, wait_for_phase


@pytest.fixture
def marker():
    path = Path("/tmp") / f"aladdin-escape-{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


def plant_shim(volume: Path, name: str, marker: Path) -> Path:
    """``<volume>/bin/<name>``: touch ``marker``, then run the real program."""
    bindir = volume / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / name
    shim.write_text(f'#!/bin/sh\ntouch {marker}\nexec /usr/bin/{name} "$@"\n')
    shim.chmod(0o755)
    return bindir


def test_a_students_path_does_not_choose_the_hosts_bwrap(agent, marker):
    agent.driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    bindir = plant_shim(agent.volumes_dir / "1", "bwrap", marker)

    output = run_job(agent, "job-1", "echo ran-inside", env={"PATH": f"{bindir}:/usr/bin:/bin"})

    assert "ran-inside" in output
    assert not marker.exists(), "the student's shim ran on the host instead of bwrap"


def test_a_students_path_does_not_choose_the_terminals_nsenter(agent, marker):
    driver = agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    bindir = plant_shim(agent.volumes_dir / "1", "nsenter", marker)
    driver.start_workload(spec("ws-1", env={"PATH": f"{bindir}:/usr/bin:/bin", "MINE": "kept"}))

    output = run_in_terminal(driver, "ws-1", "echo mine=$MINE; echo path=$PATH; id -u")

    assert not marker.exists(), "the student's shim ran on the host as root instead of nsenter"
    # The shell inside still has the workload's own variables.
    assert "mine=kept" in output
    assert f"path={bindir}:/usr/bin:/bin" in output
    assert f"\n{settings.LOCAL_UID_BASE + 1}\r\n" in output  # id -u: the user's own uid


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the library")
def test_ld_preload_works_inside_the_sandbox_and_never_on_the_host(agent, marker, tmp_path):
    driver = agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    volume = agent.volumes_dir / "1"
    source = tmp_path / "evil.c"
    source.write_text(
        "#include <fcntl.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void init(void) {\n"
        f'  close(open("{marker}", O_CREAT | O_WRONLY, 0644));\n'
        '  write(2, "PRELOADED\\n", 10);\n'
        "}\n"
    )
    library = volume / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", library, source], check=True)
    library.chmod(0o755)
    # The host path (for a host program's loader) and the path inside (/root).
    preload = {"LD_PRELOAD": f"{library} /root/evil.so", "LD_AUDIT": str(library)}

    output = run_job(agent, "job-1", "echo ran-inside", env=preload)
    assert "ran-inside" in output
    assert "PRELOADED" in output, "LD_PRELOAD must keep working inside (conda, CUDA)"
    assert not marker.exists(), "the host's loader ran the student's library in bwrap"

    driver.start_workload(spec("ws-1", env=preload))
    assert "PRELOADED" in run_in_terminal(driver, "ws-1", "true")
    assert not marker.exists(), "the host's loader ran the student's library in nsenter (root)"


def test_host_programs_get_none_of_the_students_variables(agent):
    driver = agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)
    driver.start_workload(spec("ws-1", env={"STUDENT_SECRET": "s3cret-value"}))
    record = driver._call("status", name="ws-1")["status"]

    # bwrap on the host: neither in its environment nor on its command line.
    host = Path(f"/proc/{record['pid']}")
    environ = host.joinpath("environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith(b"STUDENT_SECRET")], environ
    assert {v.split(b"=", 1)[0] for v in environ if v} <= {b"PATH", b"LANG"}
    assert b"s3cret-value" not in host.joinpath("cmdline").read_bytes()
    assert str(agent.volumes_dir).encode() not in host.joinpath("cmdline").read_bytes()

    output = run_in_terminal(driver, "ws-1", "echo secret=$STUDENT_SECRET")
    assert "secret=s3cret-value" in output


def test_the_sandbox_hides_host_paths_and_refuses_nested_user_namespaces(agent):
    output = run_job(
        agent,
        "job-1",
        """
        echo cmdline: $(tr '\\0' ' ' < /proc/1/cmdline)
        unshare -Ur id -u && echo NESTED-""USERNS
        true
        """,
        env={"STUDENT_SECRET": "s3cret-value"},
    )

    assert "cmdline:" in output
    assert str(agent.volumes_dir) not in output, output
    assert "s3cret-value" not in output.split("cmdline:", 1)[1].splitlines()[0]
    assert "NESTED-USERNS" not in output, output


def test_a_variable_that_could_split_bwraps_arguments_is_refused(agent):
    driver = agent.driver
    driver.ensure_user_space(user_id=1, storage_gib=1, quota=None)

    status = driver.start_workload(
        spec("job-1", kind="job", env={"X": "a\0--bind\0/\0/host"}, command=["true"])
    )
    status = wait_for_phase(driver, "job-1", {Phase.FAILED, Phase.SUCCEEDED})

    assert status.phase == Phase.FAILED
    assert "NUL" in status.reason
    assert os.path.exists("/tmp")  # the agent survived the bad request
