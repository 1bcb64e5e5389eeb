"""Image recipes without an agent: the container build file, torch's build pins, the never-substitute check."""

from __future__ import annotations

import pytest

from aladdin.cluster.agent.images import BuildError, _pip_progress, verify
from aladdin.cluster.images import ImageRecipe, render_dockerfile, torch_variant_pins

TORCH = ImageRecipe(
    "torch:2.6.0-cu124",
    python="3.11",
    packages=("torch==2.6.0", "torchvision==0.21.0", "torchaudio==2.6.0", "datasets==3.2.0"),
    cuda="12.4",
)


def test_a_python_recipe_builds_on_debians_python_image_with_exactly_its_pins():
    recipe = ImageRecipe("python:3.12", python="3.12", packages=("six==1.16.0",), apt=("git",))

    text = render_dockerfile(recipe)

    assert text.splitlines()[1] == "FROM python:3.12-slim-bookworm"
    assert "apt-get install -y --no-install-recommends git" in text
    assert "python -m pip install --no-cache-dir \\\n    six==1.16.0" in text
    assert "uv venv" not in text and "conda" not in text  # the image's own Python
    assert recipe.key() in text
    assert "RUN python --version && pip --version" in text


def test_a_cuda_recipe_builds_on_nvidias_cudnn_runtime_with_the_cuda_build_of_torch():
    text = render_dockerfile(TORCH)

    assert "FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04" in text
    assert "uv venv --seed --python 3.11 /opt/venv" in text
    assert "--extra-index-url https://download.pytorch.org/whl/cu124" in text
    assert "torch==2.6.0+cu124 torchvision==0.21.0+cu124 torchaudio==2.6.0+cu124" in text
    assert "datasets==3.2.0\n" in text  # other pins as they are
    assert "ENV PATH=/opt/venv/bin:$PATH" in text


def test_conda_comes_from_miniforge_and_ubuntu_recipes_start_from_ubuntu():
    conda = ImageRecipe("jupyter-lab:4.4.2", python="3.11", conda=True)
    ubuntu = ImageRecipe("ubuntu:22.04", base_os="ubuntu-22.04")

    conda_text = render_dockerfile(conda)
    ubuntu_text = render_dockerfile(ubuntu)

    assert "Miniforge3-Linux-x86_64.sh" in conda_text and "-b -p /opt/conda" in conda_text
    assert "ca-certificates curl" in conda_text  # what the download needs
    assert "/opt/conda/condabin" in conda_text
    assert ubuntu_text.splitlines()[1] == "FROM ubuntu:22.04"
    assert "pip" not in ubuntu_text
    assert render_dockerfile(ubuntu, base_image="registry.lab/ubuntu:22.04").splitlines()[1] == (
        "FROM registry.lab/ubuntu:22.04"
    )


def test_an_unknown_userland_has_no_container_base():
    with pytest.raises(ValueError, match="plan9"):
        render_dockerfile(ImageRecipe("x:1", base_os="plan9"))


def test_torch_pins_get_the_build_label_and_nothing_else_does():
    assert torch_variant_pins(("Torch==2.6.0", "torch-audit==1.0", "torchvision>=0.2"), "cpu") == (
        "Torch==2.6.0+cpu",
        "torch-audit==1.0",
        "torchvision>=0.2",  # not an exact pin: left to the resolver as written
    )


def facts(python="3.11.7", cuda="", **packages):
    return {"python": python, "packages": packages, "cuda": cuda}


def test_verify_accepts_exactly_the_pins_and_a_build_label_of_the_same_version():
    pins = ("six==1.16.0", "torch==2.13.0")

    verify(
        ImageRecipe("t:1", python="3.11", packages=pins),
        pins,
        facts(six="1.16.0", torch="2.13.0+cpu"),
        cpu_only=False,
        has_nvidia=False,
    )


@pytest.mark.parametrize(
    ("found", "says"),
    [
        (facts(six="1.17.0"), "six==1.16.0 was asked for; pip installed six 1.17.0"),
        (facts(), "six==1.16.0 was asked for; it is not installed"),
        (
            facts(python="3.12.1", six="1.16.0"),
            "Python 3.11 was asked for; the environment has 3.12.1",
        ),
    ],
)
def test_verify_never_accepts_a_substitute(found, says):
    recipe = ImageRecipe("t:1", python="3.11", packages=("six==1.16.0",))

    with pytest.raises(BuildError) as caught:
        verify(recipe, recipe.packages, found, cpu_only=False, has_nvidia=False)

    assert str(caught.value) == says


def test_verify_checks_torchs_cuda_build():
    pins = torch_variant_pins(TORCH.packages[:1], "cu124")
    cpu_pins = torch_variant_pins(TORCH.packages[:1], "cpu")

    verify(TORCH, pins, facts(torch="2.6.0+cu124", cuda="12.4"), cpu_only=False, has_nvidia=True)
    verify(TORCH, cpu_pins, facts(torch="2.6.0+cpu"), cpu_only=True, has_nvidia=False)
    with pytest.raises(BuildError, match="built for the CPU only"):
        verify(TORCH, ("torch==2.6.0",), facts(torch="2.6.0"), cpu_only=False, has_nvidia=True)
    with pytest.raises(BuildError, match="built for CUDA 12.4"):
        verify(
            TORCH,
            ("torch==2.6.0",),
            facts(torch="2.6.0", cuda="12.4"),
            cpu_only=True,
            has_nvidia=False,
        )


def test_pips_output_moves_the_progress():
    names = {"torch": (1, "torch==2.13.0"), "numpy": (2, "numpy==2.3.5")}

    assert _pip_progress("Collecting torch==2.13.0\n", names, 2) == (
        38,
        {
            "step": "downloading torch==2.13.0 (1 of 2)",
            "step_id": "image.step.downloading",
            "step_params": {"package": "torch==2.13.0", "index": 1, "count": 2},
        },
    )
    assert _pip_progress("Collecting filelock (from torch==2.13.0)\n", names, 2) is None
    assert _pip_progress("Installing collected packages: numpy, torch\n", names, 2) == (
        75,
        {
            "step": "installing 2 packages",
            "step_id": "image.step.installing_packages",
            "step_params": {"count": 2},
        },
    )
