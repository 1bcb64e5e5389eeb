"""Image recipes built for real by a private agent, and workloads on them (issue 14).

What runs is what the recipe says, or nothing runs: the built environment
holds exactly the pinned versions, a job on it prints them, and a recipe
the host cannot provide is unavailable with its reason, never replaced.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from aladdin.cluster.base import Phase
from aladdin.cluster.images import BuildState, ImageRecipe

from .conftest import REPO, SMALL_RECIPE, TORCH_RECIPE, spec, wait_for_image
from .test_exec import run

CUDA_CHECK = REPO / "tests" / "gpu_jobs" / "payloads" / "cuda_check.py"


def sandboxed(agent):
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    return agent


def wait_ended(driver, name: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        status = driver.workload_status(name=name)
        if status.phase in {Phase.SUCCEEDED, Phase.FAILED}:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def run_job(agent, name: str, script: str, recipe: ImageRecipe | None, *, user_id: int = 1):
    """``sh -c script`` as a job on ``recipe``: (its end status, its whole output)."""
    driver = agent.driver
    driver.ensure_user_space(user_id=user_id, storage_gib=1, quota=None)
    driver.start_workload(
        spec(name, user_id=user_id, kind="job", command=["sh", "-c", script], recipe=recipe)
    )
    output = b"".join(driver.follow_logs(name=name)).decode(errors="replace")
    return wait_ended(driver, name), output


def env_dir(images, recipe: ImageRecipe) -> Path:
    return images.root / "envs" / recipe.key()


# --- building ------------------------------------------------------------------------
def test_a_small_recipe_builds_with_progress_and_its_facts_are_the_pinned_versions(built_images):
    final = built_images.build(SMALL_RECIPE)
    seen = built_images.builds[SMALL_RECIPE.key()]

    # the build was visible while it ran, with what it was doing
    building = [s for s in seen if s.state == BuildState.BUILDING]
    assert building and all(0 <= s.progress < 100 for s in building), seen
    assert any(s.step for s in building), seen
    # and is ready with what was measured inside it
    assert final.key == SMALL_RECIPE.key()
    assert (final.state, final.progress, final.cpu_only) == (BuildState.READY, 100, False)
    assert final.facts["python"].startswith("3.12.")
    assert final.facts["packages"] == {"six": "1.16.0"}
    assert final.facts["cuda"] == ""


def test_the_environment_holds_only_the_recipe_and_is_read_only_to_everyone_but_root(
    built_images,
):
    built_images.build(SMALL_RECIPE)
    env = env_dir(built_images, SMALL_RECIPE)
    site = next((env / "lib").glob("python3.12/site-packages"))

    # pip and the pinned package, nothing of the host Python's own site-packages
    installed = sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))
    assert installed == ["pip", "six"], installed
    for path in [env, *env.rglob("*")]:
        if path.is_symlink():
            continue
        st = path.lstat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, (path, oct(st.st_mode))
    # the interpreter finds its library in the environment, not under the host's /root
    assert (env / "bin" / "python3.12").read_bytes().count(b"/root/.pyenv") == 0


def test_a_job_on_the_built_image_prints_exactly_its_python_and_package(built_images, start_agent):
    final = built_images.build(SMALL_RECIPE)
    agent = sandboxed(start_agent(**built_images.agent_env()))

    status, output = run_job(
        agent,
        "job-small",
        'python -c "import sys, six; print(sys.version.split()[0], six.__version__)"; '
        "command -v python",
        SMALL_RECIPE,
    )

    assert status.phase == Phase.SUCCEEDED, (status, output)
    assert output.splitlines() == [
        f"{final.facts['python']} 1.16.0",
        str(env_dir(built_images, SMALL_RECIPE) / "bin" / "python"),
    ]


@pytest.mark.parametrize("recipe", [SMALL_RECIPE, TORCH_RECIPE], ids=lambda r: r.ref)
def test_a_run_shell_script_finds_python_and_pip_on_every_built_image(
    built_images, start_agent, recipe
):
    built_images.build(recipe)
    agent = sandboxed(start_agent(**built_images.agent_env()))

    # the standard library's C modules find the host's libraries (libssl: pip's downloads)
    script = (
        "set -e\npython --version\npip --version\n"
        "python -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, readline, venv, uuid, decimal'\n"
    )
    status, output = run_job(agent, "job-shell", script, recipe)

    assert status.phase == Phase.SUCCEEDED, (status, output)
    python_line, pip_line = output.splitlines()
    assert python_line.startswith(f"Python {recipe.python}.")
    assert pip_line.startswith("pip ") and str(env_dir(built_images, recipe)) in pip_line


def test_a_terminal_or_ssh_session_in_a_workshop_gets_the_images_python(built_images, start_agent):
    built_images.build(SMALL_RECIPE)
    agent = sandboxed(start_agent(**built_images.agent_env()))
    agent.driver.ensure_user_space(user_id=7, storage_gib=1, quota=None)
    agent.driver.start_workload(spec("ws-1", user_id=7, recipe=SMALL_RECIPE))

    session = agent.driver.exec_in_workload(
        name="ws-1", command=["/bin/bash", "-lc", "command -v python pip; python -c 'import six'"]
    )
    out, err, code = run(session)

    bin_dir = env_dir(built_images, SMALL_RECIPE) / "bin"
    assert code == 0, err
    assert out.decode().splitlines() == [str(bin_dir / "python"), str(bin_dir / "pip")]


def test_the_torch_image_runs_the_manuals_cuda_check_with_torch_2_13_0(built_images, start_agent):
    final = built_images.build(TORCH_RECIPE)
    assert final.facts["packages"]["torch"].startswith("2.13.0")
    assert final.facts["cuda"] == ""  # the CPU build
    agent = sandboxed(start_agent(**built_images.agent_env()))
    agent.driver.ensure_user_space(user_id=3, storage_gib=1, quota=None)
    volume = agent.volumes_dir / "3"
    shutil.copyfile(CUDA_CHECK, volume / "cuda_check.py")
    os.chown(volume / "cuda_check.py", volume.stat().st_uid, volume.stat().st_gid)

    status, output = run_job(
        agent,
        "job-cuda-check",
        'python -c "import torch; print(torch.__version__)"; exec python cuda_check.py',
        TORCH_RECIPE,
        user_id=3,
    )

    assert status.phase == Phase.SUCCEEDED, (status, output)
    assert output.splitlines()[0] == "2.13.0+cpu", output
    # no GPU here: every CPU branch, and the training ran its five epochs
    for line in (
        "PyTorch CUDA 可用: ❌否",
        "⚠️ GPU 不可用，跳过测试",
        "使用设备: CPU",
        "Epoch 5, Loss:",
    ):
        assert line in output, output
    assert "Traceback" not in output and "numpy" not in output.lower(), output


def test_editing_a_recipe_builds_a_new_environment_and_the_old_one_stays(built_images, start_agent):
    built_images.build(SMALL_RECIPE)
    edited = replace(SMALL_RECIPE, packages=())
    assert edited.key() != SMALL_RECIPE.key()
    agent = sandboxed(start_agent(**built_images.agent_env()))

    agent.driver.build_image(edited)
    final = wait_for_image(agent.driver, edited)[-1]

    assert final.state == BuildState.READY and final.facts["packages"] == {}
    assert agent.driver.image_status(SMALL_RECIPE).state == BuildState.READY
    status, output = run_job(
        agent, "job-old", 'python -c "import six; print(six.__version__)"', SMALL_RECIPE
    )
    assert (status.phase, output) == (Phase.SUCCEEDED, "1.16.0\n")
    status, output = run_job(agent, "job-new", 'python -c "import six"', edited)
    assert status.phase == Phase.FAILED and "No module named 'six'" in output


def test_a_ready_image_survives_an_agent_restart(built_images, start_agent):
    built_images.build(SMALL_RECIPE)
    agent = start_agent(**built_images.agent_env())

    agent.restart()

    state = agent.driver.image_status(SMALL_RECIPE)
    assert state.state == BuildState.READY and state.facts["packages"] == {"six": "1.16.0"}


# --- failing and refusing ----------------------------------------------------------------
def test_a_pin_that_cannot_be_satisfied_fails_the_build_with_the_reason(start_agent):
    agent = start_agent()
    recipe = ImageRecipe("broken:1", python="3.12", packages=("six==99.0.0",))

    first = agent.driver.build_image(recipe)
    final = wait_for_image(agent.driver, recipe)[-1]

    assert first.state == BuildState.BUILDING
    assert final.state == BuildState.FAILED
    assert "six==99.0.0" in final.reason, final.reason
    assert not (agent.base / "images" / "envs" / recipe.key()).exists()
    # a start on it fails at once, saying why
    status, _ = run_job(agent, "job-broken", "true", recipe)
    assert status.phase == Phase.FAILED and "failed to build" in status.reason, status


def test_the_end_of_a_build_kills_its_own_processes_and_not_the_build_uids_others(start_agent):
    # Two agents on one host (tests, a second portal) share the build uid:
    # a build's end must not kill the other's build. With cgroups, each
    # build ends only what runs in its own cgroup.
    agent = start_agent()
    if agent.cgroups() is None:
        pytest.skip("no cgroups here: a build's end kills by uid")
    build_uid = int(os.environ.get("ALADDIN_IMAGES_BUILD_UID", "19999"))
    other = subprocess.Popen(["sleep", "120"], user=build_uid, group=build_uid, extra_groups=[])
    try:
        recipe = ImageRecipe("own-processes:1", python="3.12", packages=("six==1.16.0",))
        agent.driver.build_image(recipe)
        final = wait_for_image(agent.driver, recipe)[-1]
        assert final.state == BuildState.READY, final

        assert other.poll() is None, "the build's end killed another process of the build uid"
    finally:
        other.kill()
        other.wait()


def test_a_python_the_host_lacks_is_unavailable_and_a_start_on_it_fails_with_the_reason(
    start_agent,
):
    agent = start_agent()
    recipe = ImageRecipe("python:3.14", python="3.14")

    state = agent.driver.image_status(recipe)
    build = agent.driver.build_image(recipe)
    status, output = run_job(agent, "job-314", "python --version", recipe)

    reason = "this server has no Python 3.14; an operator can install it (docs/operations.md)"
    assert (state.state, state.reason) == (BuildState.UNAVAILABLE, reason)
    assert build.state == BuildState.UNAVAILABLE  # nothing was built
    assert status.phase == Phase.FAILED and reason in status.reason, status
    assert output == ""  # nothing ran: no other Python stood in for it


def test_a_start_on_an_image_not_built_yet_fails_and_never_falls_back(start_agent):
    agent = start_agent()

    status, output = run_job(agent, "job-unbuilt", "python --version", SMALL_RECIPE)

    assert status.phase == Phase.FAILED, status
    assert status.reason == "image test-python:3.12 is not built on this host yet"
    assert output == ""


def test_a_cuda_image_is_unavailable_without_a_gpu_and_cpu_only_when_the_operator_allows(
    start_agent,
):
    recipe = ImageRecipe(
        "torch:2.6.0-cu124",
        python="3.11",
        packages=("torch==2.6.0", "torchvision==0.21.0"),
        cuda="12.4",
    )
    agent = start_agent()

    refused = agent.driver.image_status(recipe)
    agent.env["ALADDIN_IMAGES_ALLOW_CPU_BUILDS"] = "1"
    agent.restart()
    allowed = agent.driver.image_status(recipe)

    assert refused.state == BuildState.UNAVAILABLE
    assert "no NVIDIA GPU" in refused.reason and "CUDA 12.4" in refused.reason
    assert (allowed.state, allowed.cpu_only) == (BuildState.MISSING, True)


def test_debian_packages_the_host_lacks_make_an_image_unavailable(start_agent):
    agent = start_agent()
    recipe = ImageRecipe("tools:1", apt=("bash", "no-such-package-aladdin"))

    state = agent.driver.image_status(recipe)

    assert state.state == BuildState.UNAVAILABLE
    assert "no-such-package-aladdin" in state.reason and "bash" not in state.reason
    # what the host has, with no Python: ready without a build (the host's userland)
    assert agent.driver.image_status(ImageRecipe("tools:2", apt=("bash",))).state == (
        BuildState.READY
    )


def test_another_userland_needs_its_root_filesystem_and_then_runs_on_its_usr(start_agent):
    agent = sandboxed(start_agent())
    recipe = ImageRecipe("ubuntu:22.04", base_os="ubuntu-22.04")
    assert agent.driver.image_status(recipe).state == BuildState.UNAVAILABLE

    # given: an operator's root filesystem (here a marked copy of a little of the host's)
    rootfs = agent.base / "images" / "rootfs" / "ubuntu-22.04"
    shutil.copytree("/usr", rootfs / "usr", symlinks=True, ignore=_only_sh_and_libs)
    (rootfs / "usr" / "share").mkdir(exist_ok=True)
    (rootfs / "usr" / "share" / "aladdin-rootfs-marker").write_text("ubuntu\n")
    (rootfs / "etc").mkdir()

    status, output = run_job(agent, "job-ubuntu", "cat /usr/share/aladdin-rootfs-marker", recipe)

    assert agent.driver.image_status(recipe).state == BuildState.READY
    assert (status.phase, output) == (Phase.SUCCEEDED, "ubuntu\n"), (status, output)


def _only_sh_and_libs(directory: str, names: list[str]) -> list[str]:
    """Copy /usr/bin/{sh,dash,cat} and the libraries, nothing else (a small root filesystem)."""
    here = Path(directory)
    if here == Path("/usr"):
        return [n for n in names if n not in ("bin", "lib", "lib64")]
    if here == Path("/usr/bin"):
        return [n for n in names if n not in ("sh", "dash", "cat")]
    if here == Path("/usr/lib"):
        return [n for n in names if n not in ("x86_64-linux-gnu", "aarch64-linux-gnu")]
    if here.parent == Path("/usr/lib") and here.name.endswith("-linux-gnu"):
        return [n for n in names if not n.startswith(("libc.", "libc-", "ld-linux", "libm."))]
    return []


def test_an_interrupted_build_is_failed_and_cleaned_at_the_next_start(start_agent):
    agent = start_agent()
    recipe = ImageRecipe("slow:1", python="3.12", packages=("six==1.16.0",))
    first = agent.driver.build_image(recipe)
    again = agent.driver.build_image(recipe)  # the same build, not a second one
    assert (first.state, again.state) == (BuildState.BUILDING, BuildState.BUILDING)
    env = agent.base / "images" / "envs" / recipe.key()
    deadline = time.monotonic() + 30
    while not env.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)

    agent.stop(signal.SIGTERM)
    agent.start()

    state = agent.driver.image_status(recipe)
    assert state.state == BuildState.FAILED and "stopped during the build" in state.reason
    assert not env.exists()


# A stand-in for Miniforge's installer (-b -p PREFIX), as small as a test needs.
FAKE_CONDA_INSTALLER = """#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = -p ] && prefix=$2; shift; done
mkdir -p "$prefix/condabin"
printf '#!/bin/sh\\necho conda 24.11.0\\n' > "$prefix/condabin/conda"
chmod +x "$prefix/condabin/conda"
"""


def test_conda_needs_the_operators_installer_and_is_then_on_path(start_agent):
    recipe = ImageRecipe("jupyter-lab:test", python="3.12", conda=True)
    agent = sandboxed(start_agent())
    refused = agent.driver.image_status(recipe)
    installer = agent.base / "Miniforge3-test.sh"
    installer.write_text(FAKE_CONDA_INSTALLER)
    installer.chmod(0o644)  # read by the build uid, run with bash
    agent.env["ALADDIN_IMAGES_CONDA_INSTALLER"] = str(installer)
    agent.restart()

    agent.driver.build_image(recipe)
    final = wait_for_image(agent.driver, recipe)[-1]
    status, output = run_job(agent, "job-conda", "conda --version; python --version", recipe)

    assert refused.state == BuildState.UNAVAILABLE and "conda" in refused.reason
    assert final.state == BuildState.READY, final
    assert status.phase == Phase.SUCCEEDED, (status, output)
    assert output.splitlines()[0] == "conda 24.11.0"
    assert output.splitlines()[1].startswith("Python 3.12.")
