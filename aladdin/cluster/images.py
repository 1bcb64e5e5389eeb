"""Images as recipes (SPEC §9 "Decision — images", issue 14): what both backends agree on.

A catalog image is a *recipe*: the Python version, pinned Python packages,
Debian packages it needs, conda or not, the CUDA it was made for, and the
userland it runs on. The local backend builds each recipe once into an
environment under its images root that the sandbox mounts read-only; the
Kubernetes backend runs the container image built from the same recipe
(``manage.py image_dockerfile``). What runs is what the recipe says, or
nothing runs: a recipe the host cannot provide is *unavailable* with the
reason, never replaced by another Python or a CPU build (unless the
operator allows CPU builds of CUDA images, and then the image is labelled
"CPU only on this host").

This module is pure data shared by the portal and the agent: the recipe,
its key, and the build state a driver reports.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

# The userland a recipe runs on. The local backend's sandbox binds the host's
# /usr, so it provides the host's own distribution; any other needs a root
# filesystem the operator placed under the images root.
BASE_OS_HOST = "debian-12"


class BuildState:
    """Where a recipe stands on one backend."""

    MISSING = "missing"  # buildable, not built yet
    BUILDING = "building"
    READY = "ready"
    UNAVAILABLE = "unavailable"  # this host cannot provide it as the recipe says
    FAILED = "failed"  # the last build failed (the reason says why); a rebuild may help

    CHOICES = (MISSING, BUILDING, READY, UNAVAILABLE, FAILED)


_SLUG_RE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ImageRecipe:
    """One catalog image's recipe. ``ref`` is "name:tag"; the rest decides its :meth:`key`."""

    ref: str
    python: str = ""  # "3.11": major.minor; "" = no Python (plain userland)
    packages: tuple[str, ...] = ()  # pinned pip requirements, "torch==2.6.0"
    apt: tuple[str, ...] = ()  # Debian packages the image needs
    conda: bool = False
    cuda: str = ""  # "12.4": the CUDA its torch is built for; "" = none
    base_os: str = BASE_OS_HOST

    def content(self) -> dict[str, Any]:
        """What the environment is made of (everything but the name)."""
        data = asdict(self)
        data.pop("ref")
        data["packages"] = list(self.packages)
        data["apt"] = sorted(self.apt)
        return data

    def key(self) -> str:
        """A stable directory name: the ref's slug and a hash of the content.

        Editing a recipe changes its key, so the old environment is never
        patched in place: a new one is built beside it and workloads running
        on the old one keep it.
        """
        digest = hashlib.sha256(
            json.dumps(self.content(), sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:12]
        slug = _SLUG_RE.sub("-", self.ref.lower()).strip("-")[:48] or "image"
        return f"{slug}-{digest}"


@dataclass(frozen=True)
class ImageState:
    """What a backend says about one recipe now.

    ``progress`` is 0-100 while building; ``step`` says what the build is
    doing ("installing pip") in English, ``step_id`` and ``step_params`` the
    same as a message (:data:`BUILD_STEPS`); ``reason`` why it is
    unavailable or failed, in words a student can read. ``cpu_only``: a CUDA recipe built
    without CUDA because the operator allowed it on a host without NVIDIA
    GPUs. ``facts`` are measured in the built environment: ``python``
    (full version), ``packages`` (name -> installed version), ``cuda``
    (torch's CUDA build, or "").
    """

    key: str
    state: str
    progress: int = 0
    step: str = ""
    reason: str = ""
    cpu_only: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    # The step as a message id and parameters (:func:`build_step`), which the
    # portal words in the reader's language; ``step`` is its English text.
    step_id: str = ""
    step_params: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.state == BuildState.READY


# What a build may be doing, as the portal words it (aladdin.workloads.reasons
# defines the same ids): id -> English text with %(name)s parameters. The
# cluster speaks no user's language, like its end reasons (cluster/reasons.py).
BUILD_STEPS: dict[str, str] = {
    "image.step.waiting": "waiting for another build to finish",
    "image.step.copying_python": "copying Python %(version)s",
    "image.step.installing_pip": "installing pip",
    "image.step.downloading": "downloading %(package)s (%(index)s of %(count)s)",
    "image.step.installing_packages": "installing %(count)s packages",
    "image.step.installing_conda": "installing conda",
    "image.step.verifying": "checking the installed versions",
}


def build_step(step_id: str, **params: Any) -> dict[str, Any]:
    """The ``step``, ``step_id`` and ``step_params`` fields of a build at ``step_id``."""
    return {"step": BUILD_STEPS[step_id] % params, "step_id": step_id, "step_params": params}


def no_step() -> dict[str, Any]:
    """The step fields of a build that is not running (ready, failed)."""
    return {"step": "", "step_id": "", "step_params": {}}


# --- torch builds ---------------------------------------------------------------------
# The packages PyTorch publishes per CUDA build ("2.6.0+cu124"): a CUDA recipe
# pins them by version, and both backends install the build its CUDA names
# (or, for an allowed CPU build, "+cpu") from PyTorch's own index.
TORCH_PACKAGES = frozenset({"torch", "torchvision", "torchaudio"})
_PIN_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;+]+)\s*$")


def cuda_nodot(cuda: str) -> str:
    """ "12.4" -> "124" (PyTorch's index and local version label)."""
    return cuda.replace(".", "")


def pin_name(requirement: str) -> str:
    """The normalized project name of a requirement ("Torch==2.6" -> "torch")."""
    name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def torch_variant_pins(packages: tuple[str, ...], variant: str) -> tuple[str, ...]:
    """``packages`` with each exact torch-family pin given the build label ``variant`` ("cu124", "cpu").

    Without the label, pip may take either build of the same version from
    the index it finds first; with it, only the build the recipe means.
    """
    pins = []
    for requirement in packages:
        match = _PIN_RE.match(requirement)
        if match and pin_name(match.group(1)) in TORCH_PACKAGES:
            pins.append(f"{match.group(1)}=={match.group(2)}+{variant}")
        else:
            pins.append(requirement)
    return tuple(pins)


def has_torch(recipe: ImageRecipe) -> bool:
    return any(pin_name(p) in TORCH_PACKAGES for p in recipe.packages)


# --- container build file (the Kubernetes backend) --------------------------------------
# nvidia/cuda publishes full versions only ("12.4.1-cudnn-runtime-ubuntu22.04"):
# the newest patch release of each CUDA a catalog image names.
CUDA_IMAGE_VERSIONS = {"11.8": "11.8.0", "12.1": "12.1.1", "12.4": "12.4.1", "12.6": "12.6.3"}
BASE_OS_IMAGES = {"debian-12": "debian:bookworm-slim", "ubuntu-22.04": "ubuntu:22.04"}
# A fixed uv release: the Python of non-Debian bases (python-build-standalone).
UV_IMAGE = "ghcr.io/astral-sh/uv:0.5.11"
MINIFORGE_URL = (
    "https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-x86_64.sh"
)
VENV = "/opt/venv"


def default_base_image(recipe: ImageRecipe) -> str:
    """The container image a recipe's Dockerfile starts FROM."""
    if recipe.cuda:
        version = CUDA_IMAGE_VERSIONS.get(recipe.cuda, f"{recipe.cuda}.0")
        return f"nvidia/cuda:{version}-cudnn-runtime-ubuntu22.04"
    if recipe.base_os == BASE_OS_HOST and recipe.python:
        return f"python:{recipe.python}-slim-bookworm"
    try:
        return BASE_OS_IMAGES[recipe.base_os]
    except KeyError:
        raise ValueError(f"no container base image for base_os {recipe.base_os!r}") from None


def render_dockerfile(recipe: ImageRecipe, *, base_image: str = "") -> str:
    """A Dockerfile that builds ``recipe`` as a container image (pure; ``base_image`` overrides FROM).

    The same recipe the local backend builds: its Python version, its
    Debian packages, conda (Miniforge) when it says so, and exactly its
    pinned packages (torch's CUDA build from PyTorch's index). Python comes
    from the python:X.Y image on Debian, and from uv's standalone builds on
    any other base (CUDA images are Ubuntu-based).
    """
    base = base_image or default_base_image(recipe)
    python_image = base.startswith("python:")
    lines = [
        f"# {recipe.ref}: written by `manage.py image_dockerfile` from its recipe; do not edit.",
        f"FROM {base}",
        f'LABEL org.opencontainers.image.title="{recipe.ref}" aladdin.image.key="{recipe.key()}"',
        "ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_NO_CACHE_DIR=1",
    ]
    apt = sorted(set(recipe.apt) | ({"ca-certificates", "curl"} if recipe.conda else set()))
    if apt:
        lines.append(
            "RUN apt-get update \\\n"
            f"    && apt-get install -y --no-install-recommends {' '.join(apt)} \\\n"
            "    && rm -rf /var/lib/apt/lists/*"
        )
    path = []
    if recipe.python and not python_image:
        lines += [
            f"COPY --from={UV_IMAGE} /uv /usr/local/bin/uv",
            "ENV UV_PYTHON_INSTALL_DIR=/opt/python",
            f"RUN uv venv --seed --python {recipe.python} {VENV}",
        ]
        path.append(f"{VENV}/bin")
    if recipe.conda:
        lines.append(
            f"RUN curl -fsSL -o /tmp/miniforge.sh {MINIFORGE_URL} \\\n"
            "    && bash /tmp/miniforge.sh -b -p /opt/conda && rm /tmp/miniforge.sh"
        )
        path.append("/opt/conda/condabin")
    if path:
        lines.append(f"ENV PATH={':'.join(path)}:$PATH")
    if recipe.packages:
        packages = recipe.packages
        index = ""
        if recipe.cuda and has_torch(recipe):
            variant = f"cu{cuda_nodot(recipe.cuda)}"
            packages = torch_variant_pins(packages, variant)
            index = f" \\\n    --extra-index-url https://download.pytorch.org/whl/{variant}"
        quoted = " ".join(shlex.quote(p) for p in packages)
        lines.append(f"RUN python -m pip install --no-cache-dir{index} \\\n    {quoted}")
    if recipe.python:
        lines.append("RUN python --version && pip --version")
    lines += ["WORKDIR /root", 'CMD ["bash"]']
    return "\n".join(lines) + "\n"
