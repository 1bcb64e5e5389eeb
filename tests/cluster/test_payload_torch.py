"""Job payloads that import torch run in the job-payload venv (``make payload-venv``).

The manual's CUDA check (``tests/gpu_jobs/payloads/cuda_check.py``, verbatim
from the user manual's environment section) runs as a job of a torch image
on the local backend, sandboxed as the user's uid. There is no GPU here (nor
in CI), so it must take its CPU branches and still train, and exit 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from aladdin.cluster import sandbox
from aladdin.cluster.base import Phase

from .conftest import REPO, spec

CUDA_CHECK = REPO / "tests" / "gpu_jobs" / "payloads" / "cuda_check.py"


@pytest.fixture
def payload_venv() -> Path:
    """The job-payload venv; CI must have it (`make test` makes it), elsewhere its absence skips."""
    venv = settings.PAYLOAD_VENV
    if not (venv / "bin" / "python").exists():
        message = f"no job-payload venv at {venv}: run `make payload-venv`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return venv


def wait_until_ended(driver, name: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        status = driver.workload_status(name=name)
        if status.phase in {Phase.SUCCEEDED, Phase.FAILED}:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def test_the_manuals_cuda_check_runs_as_a_job_with_torch_from_the_payload_venv(
    start_agent, payload_venv
):
    # given: an agent whose settings map the torch images to the payload venv
    # (the operator's map, empty here, would win)
    agent = start_agent(ALADDIN_PAYLOAD_VENV=str(payload_venv), ALADDIN_LOCAL_IMAGE_MAP="")
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    driver = agent.driver
    driver.ensure_user_space(user_id=3, storage_gib=1, quota=None)
    volume = agent.volumes_dir / "3"
    owner = volume.stat()
    target = volume / "cuda_check.py"
    shutil.copyfile(CUDA_CHECK, target)
    os.chown(target, owner.st_uid, owner.st_gid)

    # when: "GPU Run" of `python cuda_check.py` on a torch image (saying which python first)
    command = ["sh", "-c", "command -v python; exec python cuda_check.py"]
    job = dataclasses.replace(
        spec("job-cuda-check", user_id=3, kind="job", command=command),
        image="torch:2.6.0-cu124",
    )
    driver.start_workload(job)
    output = b"".join(driver.follow_logs(name="job-cuda-check", follow=True)).decode(
        errors="replace"
    )
    status = wait_until_ended(driver, "job-cuda-check")

    # then: no GPU here, so every CPU branch, and the training ran its five epochs
    assert status.phase == Phase.SUCCEEDED, (status, output)
    assert status.exit_code == 0, output
    assert output.splitlines()[0] == str(payload_venv / "bin" / "python"), output
    assert "PyTorch CUDA 可用: ❌否" in output
    assert "⚠️ GPU 不可用，跳过测试" in output
    assert "使用设备: CPU" in output
    assert "Epoch 5, Loss:" in output
    assert "Traceback" not in output
    # numpy is there: torch does not warn that it is missing
    assert "numpy" not in output.lower(), output


def image_map_with(**environ: str) -> dict[str, str]:
    """``settings.LOCAL_IMAGE_MAP`` as a fresh process with ``environ`` computes it."""
    env = {**os.environ, "DEBUG": "1", "ALADDIN_LOCAL_IMAGE_MAP": "", **environ}
    code = (
        "import json; from django.conf import settings; print(json.dumps(settings.LOCAL_IMAGE_MAP))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**env, "DJANGO_SETTINGS_MODULE": "aladdin.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_torch_images_fall_back_to_the_payload_venv_but_the_operators_map_wins(tmp_path):
    # given: a payload venv (bin/python is all the settings look at)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to("/usr/bin/python3")
    payload_python = str(tmp_path / "bin" / "python")

    mapping = image_map_with(
        ALADDIN_PAYLOAD_VENV=str(tmp_path),
        ALADDIN_LOCAL_IMAGE_MAP="torch=/opt/envs/torch/bin/python,"
        "llama-factory:0.9.3-cu121=/opt/envs/lf/bin/python",
    )

    assert mapping["torch"] == "/opt/envs/torch/bin/python"
    assert mapping["jupyter-lab"] == payload_python
    assert sandbox.interpreter_for("llama-factory:0.9.3-cu121", mapping) == (
        "/opt/envs/lf/bin/python"
    )
    assert sandbox.interpreter_for("llama-factory:0.9.4-cu126", mapping) == payload_python
    assert sandbox.interpreter_for("ubuntu:22.04", mapping) == sandbox.DEFAULT_INTERPRETER


def test_without_a_payload_venv_torch_images_use_the_hosts_python(tmp_path):
    mapping = image_map_with(ALADDIN_PAYLOAD_VENV=str(tmp_path / "absent"))

    assert mapping == {}
    assert sandbox.interpreter_for("torch:2.6.0-cu124", mapping) == sandbox.DEFAULT_INTERPRETER


def test_a_venv_is_bound_with_the_python_it_was_made_from_unless_that_is_under_usr(tmp_path):
    # a venv made from Debian's python3: only the venv (the sandbox has /usr)
    debian = tmp_path / "payload"
    (debian / "bin").mkdir(parents=True)
    (debian / "bin" / "python").symlink_to("/usr/bin/python3")
    assert sandbox.interpreter_prefixes(str(debian / "bin" / "python")) == [debian]

    # a venv made from a Python built under /opt: its base too, or the link dangles
    base = tmp_path / "python3.12"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python3.12").touch()
    other = tmp_path / "venv"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "python").symlink_to(base / "bin" / "python3.12")
    argv = sandbox.bwrap_options(volume=tmp_path, env={}, interpreter=str(other / "bin" / "python"))
    assert ["--ro-bind", str(other), str(other)] == argv[argv.index(str(other)) - 1 :][:3]
    assert ["--ro-bind", str(base), str(base)] == argv[argv.index(str(base)) - 1 :][:3]

    assert sandbox.interpreter_prefixes("/usr/bin/python3") == []
    assert sandbox.interpreter_prefixes(None) == []
