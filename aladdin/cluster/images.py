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
    doing ("installing torch==2.6.0"); ``reason`` why it is unavailable or
    failed, in words a student can read. ``cpu_only``: a CUDA recipe built
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

    @property
    def usable(self) -> bool:
        return self.state == BuildState.READY
