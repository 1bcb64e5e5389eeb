"""Building image recipes into environments the sandbox mounts read-only (issue 14, SPEC §9).

Layout under the images root (``ALADDIN_IMAGES_ROOT``)::

    images.json          what each key is: ready (with its facts), failed (why)
    envs/<key>/          an environment: bin/python, bin/pip, lib/... (only a
                         key images.json says is ready is ever mounted)
    rootfs/<base_os>/    an operator's root filesystem for another userland

A Python recipe is built from a CPython install the host already has (one
of ``ALADDIN_IMAGES_PYTHONS``): its interpreter, shared library and
standard library are copied (never its site-packages: a pyenv Python holds
hundreds of MB of unrelated packages, and an image holds what its recipe
says), its binaries' RUNPATH is made relative (``$ORIGIN/../lib``: the
original points into the host's /root, which no sandbox sees), pip comes
from ``ensurepip`` and the recipe's pins from the image's own pip, with the
operator's pip configuration (``/etc/xdg/pip``, the agent's ``PIP_*``).

Who runs what. The agent is root. Everything a package's install script can
run (pip, the installed Python) runs as the unprivileged *build uid*
(``LOCAL_UID_BASE``, the agent's sandbox self-test uid, which no user has)
with a fixed environment: it cannot read the portal's ``var/`` (database,
keys) nor the agent's state. Only then is the environment handed to root
and made read-only to everyone else.

Never substitute. A pin whose installed version differs fails the build,
naming both; a recipe the host cannot provide as written is *unavailable*
(decided without building, :meth:`Images.status`) with a reason a student
can read: no Python of that version, CUDA without an NVIDIA GPU (unless the
operator allows CPU builds, and then torch's CPU build of the same version
is verified to be one), Debian packages the host lacks, conda without an
installer, another userland without its root filesystem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import asdict, dataclass, field, replace
from glob import glob
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from .. import cgroups as cgroup_limits
from .. import sandbox
from ..images import (
    BASE_OS_HOST,
    BuildState,
    ImageRecipe,
    ImageState,
    build_step,
    cuda_nodot,
    has_torch,
    no_step,
    pin_name,
    torch_variant_pins,
)
from .gate import CgroupGate

log = logging.getLogger("aladdin.cluster.agent.images")

STATE_FILE = "images.json"
BUILD_TIMEOUT_SECONDS = 3600
# Variables of the agent's own environment a build passes to pip: the
# operator's pip configuration and proxies. Nothing a student sets.
PASSED_PREFIXES = ("PIP_",)
PASSED_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
_PYTHON_NAME_RE = re.compile(r"^python(3\.\d+)$")
_PATCHLEVEL_RE = re.compile(r'#define\s+PY_VERSION\s+"([^"]+)"')
# The percent a build has reached when each stage starts.
COPY_PERCENT, PIP_PERCENT, INSTALL_PERCENT, VERIFY_PERCENT = 5, 20, 75, 92

# Run in the built environment (as the build uid): what it really holds.
FACTS_SCRIPT = r"""
import importlib.metadata as md, json, platform, sys
names = sys.argv[1:]
packages = {}
for name in names:
    try:
        packages[name] = md.version(name)
    except md.PackageNotFoundError:
        packages[name] = None
facts = {"python": platform.python_version(), "packages": packages, "cuda": ""}
if "torch" in names and packages.get("torch"):
    import torch
    facts["cuda"] = torch.version.cuda or ""
print(json.dumps(facts))
"""


class BuildError(Exception):
    """A build failed; the message is the reason a student reads."""


@dataclass(frozen=True)
class BasePython:
    """A CPython install on the host that recipes of its major.minor copy."""

    prefix: Path
    version: str  # "3.12.1"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


@dataclass
class Entry:
    """One key's state: what :file:`images.json` keeps (the build's progress only while it runs)."""

    state: str
    progress: int = 0
    step: str = ""
    reason: str = ""
    cpu_only: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    step_id: str = ""
    step_params: dict[str, Any] = field(default_factory=dict)

    def image_state(self, key: str) -> ImageState:
        return ImageState(
            key=key,
            state=self.state,
            progress=self.progress,
            step=self.step,
            reason=self.reason,
            cpu_only=self.cpu_only,
            facts=dict(self.facts),
            step_id=self.step_id,
            step_params=dict(self.step_params),
        )


@dataclass(frozen=True)
class ImageEnv:
    """What a workload on a ready recipe mounts: the environment (None: host userland only) and the userland."""

    path: Path | None
    bin_dirs: tuple[str, ...] = ()
    userland: Path = Path("/")


# The cgroup of the running build (one at a time), under the agent's parent group.
BUILD_CGROUP = "image-build"


class Images:
    """The agent's images: their states, the builds, and the environment of a ready recipe."""

    def __init__(
        self,
        root: Path,
        *,
        pythons: list[str],
        build_uid: int,
        has_nvidia: bool,
        allow_cpu_builds: bool = False,
        torch_index: str = "https://download.pytorch.org/whl/cu{cuda_nodot}",
        torch_cpu_index: str = "https://download.pytorch.org/whl/cpu",
        conda_installer: str = "",
        environ: dict[str, str] | None = None,
    ):
        self.root = Path(root)
        self.envs_dir = self.root / "envs"
        self.pythons = pythons
        self.build_uid = build_uid
        self.has_nvidia = has_nvidia
        self.allow_cpu_builds = allow_cpu_builds
        self.torch_index = torch_index
        self.torch_cpu_index = torch_cpu_index
        self.conda_installer = conda_installer
        source = dict(os.environ) if environ is None else environ
        self.pip_env = {
            k: v for k, v in source.items() if k.startswith(PASSED_PREFIXES) or k in PASSED_NAMES
        }
        self.lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        # One build at a time: each is CPU, disk and network heavy, and it
        # has one cgroup (BUILD_CGROUP) that ends whatever it ran.
        self._builds = threading.Lock()
        # The agent's cgroups (set after it detects them): each build runs in
        # a cgroup of its own, so its end kills what it started and nothing
        # else. Without them, every process of the build uid on the host.
        self.cgroups: cgroup_limits.Cgroups | None = None
        self._build_cgroup = False  # the running build's processes join BUILD_CGROUP
        self._versions: dict[Path, str | None] = {}  # a prefix's version, found once
        self._procs: set[subprocess.Popen] = set()  # what the builds run now
        self._stopping = False

    # --- state -------------------------------------------------------------------
    def prepare(self) -> None:
        """Directories, and the previous run's states: an interrupted build failed (its files go)."""
        self.envs_dir.mkdir(parents=True, exist_ok=True)
        # Sandbox uids traverse to the environments (bwrap binds them as the
        # uid); the state file stays the agent's.
        for directory in (self.root, self.envs_dir):
            os.chmod(directory, 0o755)
        try:
            raw = json.loads((self.root / STATE_FILE).read_text())
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError) as exc:
            log.warning("images: unreadable %s (%s); starting with no images", STATE_FILE, exc)
            raw = {}
        interrupted = False
        for key, data in raw.items():
            with contextlib.suppress(TypeError):
                entry = Entry(**data)
                if entry.state == BuildState.BUILDING:
                    interrupted = True
                    entry = replace(
                        entry,
                        state=BuildState.FAILED,
                        progress=0,
                        **no_step(),
                        reason="the agent stopped during the build; build it again",
                    )
                if entry.state == BuildState.READY and not (self.envs_dir / key).is_dir():
                    continue  # removed by an operator: built again on demand
                self._entries[key] = entry
        # A directory no ready entry owns is an interrupted or failed build.
        leftovers = [
            path
            for path in self.envs_dir.iterdir()
            if (owner := self._entries.get(path.name)) is None or owner.state != BuildState.READY
        ]
        if interrupted or leftovers:
            # Whatever the interrupted build ran is ended first.
            if self.cgroups is not None:
                self.cgroups.remove(BUILD_CGROUP)
            else:
                kill_uid(self.build_uid)
        for leftover in leftovers:
            shutil.rmtree(leftover, ignore_errors=True)
        self._save()
        blocked = sandbox.check_traversable(self.envs_dir, self.build_uid)
        if blocked is not None:
            log.warning("images: %s is not traversable by sandbox uids (chmod o+x)", blocked)

    def stop(self) -> None:
        """The agent is stopping: end the builds' processes (the next start fails those builds)."""
        with self.lock:
            self._stopping = True
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _save(self) -> None:
        with self.lock:
            data = {k: asdict(e) for k, e in self._entries.items()}
        path = self.root / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _set(self, key: str, **changes: Any) -> None:
        with self.lock:
            self._entries[key] = replace(self._entries[key], **changes)

    # --- what the host offers ---------------------------------------------------
    def base_pythons(self) -> dict[str, BasePython]:
        """The newest host CPython of each major.minor ("3.12" -> 3.12.1 at its prefix)."""
        found: dict[str, BasePython] = {}
        for pattern in self.pythons:
            for prefix in sorted(Path(p) for p in glob(pattern)):
                for binary in sorted(prefix.glob("bin/python3.*")):
                    match = _PYTHON_NAME_RE.match(binary.name)
                    if not match or not (prefix / "lib" / binary.name / "os.py").exists():
                        continue
                    version = self._version(prefix, binary)
                    if version is None:
                        continue
                    base = BasePython(prefix=prefix, version=version)
                    current = found.get(base.minor)
                    if current is None or _vkey(version) > _vkey(current.version):
                        found[base.minor] = base
        return found

    def _version(self, prefix: Path, binary: Path) -> str | None:
        key = binary.resolve()
        if key not in self._versions:
            header = prefix / "include" / binary.name / "patchlevel.h"
            version = None
            with contextlib.suppress(OSError):
                match = _PATCHLEVEL_RE.search(header.read_text())
                version = match.group(1) if match else None
            if version is None:
                try:
                    result = subprocess.run(
                        [
                            str(binary),
                            "-I",
                            "-S",
                            "-c",
                            "import platform; print(platform.python_version())",
                        ],
                        env=sandbox.HOST_ENV,
                        capture_output=True,
                        text=True,
                        timeout=20,
                    )
                    version = result.stdout.strip() or None
                except (OSError, subprocess.SubprocessError):
                    version = None
            self._versions[key] = version
        return self._versions[key]

    def _base_for(self, recipe: ImageRecipe) -> BasePython | None:
        wanted = _vkey(recipe.python)
        for base in sorted(
            self.base_pythons().values(), key=lambda b: _vkey(b.version), reverse=True
        ):
            if _vkey(base.version)[: len(wanted)] == wanted:
                return base
        return None

    def userland(self, recipe: ImageRecipe) -> Path:
        """The root whose /usr the sandbox binds: the host's, or the operator's root filesystem."""
        if recipe.base_os == BASE_OS_HOST:
            return Path("/")
        return self.root / "rootfs" / recipe.base_os

    def unavailable_reason(self, recipe: ImageRecipe) -> str:
        """Why this host cannot provide ``recipe`` as it says ("" if it can)."""
        userland = self.userland(recipe)
        if recipe.base_os != BASE_OS_HOST:
            if not (userland / "usr").is_dir():
                return (
                    f"this server runs {BASE_OS_HOST} workloads; {recipe.base_os} needs a root "
                    f"filesystem at {userland} (an operator can add one: docs/operations.md)"
                )
            if recipe.python or recipe.packages or recipe.conda:
                return (
                    f"this server builds Python environments for {BASE_OS_HOST} only; on "
                    f"{recipe.base_os} only the plain userland is offered"
                )
        if recipe.packages and not recipe.python:
            return "the image lists Python packages but no Python version"
        if recipe.python:
            if not re.fullmatch(r"3\.\d+(\.\d+)?", recipe.python):
                return f"Python {recipe.python!r} is not a CPython 3 version"
            if self._base_for(recipe) is None:
                return (
                    f"this server has no Python {recipe.python}; an operator can install it "
                    "(docs/operations.md)"
                )
        for requirement in recipe.packages:
            try:
                Requirement(requirement)
            except InvalidRequirement:
                return f"{requirement!r} is not a pip requirement"
        missing = self._missing_debs(recipe.apt, userland)
        if missing:
            return (
                f"this server lacks the Debian packages {', '.join(missing)}; an operator can "
                f"install them (apt-get install {' '.join(missing)})"
            )
        if recipe.conda and not (self.conda_installer and os.access(self.conda_installer, os.R_OK)):
            return (
                "conda is not offered on this server (an operator can set "
                "ALADDIN_IMAGES_CONDA_INSTALLER: docs/operations.md)"
            )
        if recipe.cuda and not self.has_nvidia and not self.allow_cpu_builds:
            return (
                f"this server has no NVIDIA GPU, so it cannot run the CUDA {recipe.cuda} build "
                "of this image"
            )
        return ""

    def cpu_only(self, recipe: ImageRecipe) -> bool:
        return bool(recipe.cuda) and not self.has_nvidia and self.allow_cpu_builds

    @staticmethod
    def _missing_debs(packages: tuple[str, ...], userland: Path) -> list[str]:
        if not packages:
            return []
        admindir = userland / "var" / "lib" / "dpkg"
        missing = []
        for package in sorted(set(packages)):
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?", package):
                missing.append(package)
                continue
            result = subprocess.run(
                [
                    sandbox.host_program("dpkg-query"),
                    f"--admindir={admindir}",
                    "-W",
                    "-f=${Status}",
                    package,
                ],
                env=sandbox.HOST_ENV,
                capture_output=True,
                text=True,
            )
            if "install ok installed" not in result.stdout:
                missing.append(package)
        return missing

    # --- the driver's operations ------------------------------------------------
    def status(self, recipe: ImageRecipe) -> ImageState:
        """Where ``recipe`` stands; never builds."""
        key = recipe.key()
        with self.lock:
            entry = self._entries.get(key)
        if entry is not None and entry.state in (BuildState.READY, BuildState.BUILDING):
            return entry.image_state(key)
        reason = self.unavailable_reason(recipe)
        if reason:
            return ImageState(key=key, state=BuildState.UNAVAILABLE, reason=reason)
        if not self._needs_build(recipe):
            return ImageState(key=key, state=BuildState.READY)
        if entry is not None:
            return entry.image_state(key)
        return ImageState(key=key, state=BuildState.MISSING, cpu_only=self.cpu_only(recipe))

    def build(self, recipe: ImageRecipe) -> ImageState:
        """Start building ``recipe`` unless it is ready, building or unavailable; its state."""
        state = self.status(recipe)
        if state.state not in (BuildState.MISSING, BuildState.FAILED):
            return state
        key = recipe.key()
        with self.lock:
            entry = self._entries.get(key)
            if entry is not None and entry.state in (BuildState.BUILDING, BuildState.READY):
                return entry.image_state(key)  # a concurrent build() came first
            self._entries[key] = Entry(
                state=BuildState.BUILDING,
                **build_step("image.step.waiting"),
                cpu_only=self.cpu_only(recipe),
                recipe=recipe.content(),
            )
        self._save()
        threading.Thread(
            target=self._run_build, args=(recipe,), daemon=True, name=f"build-{key}"
        ).start()
        with self.lock:
            return self._entries[key].image_state(key)

    def env_for(self, recipe: ImageRecipe | None) -> ImageEnv:
        """What a workload on ``recipe`` mounts. Raises BuildError (the start's reason) unless ready."""
        if recipe is None:
            return ImageEnv(path=None)
        state = self.status(recipe)
        if state.state != BuildState.READY:
            raise BuildError(_not_ready_reason(recipe, state))
        if not self._needs_build(recipe):
            return ImageEnv(path=None, userland=self.userland(recipe))
        path = self.envs_dir / state.key
        bin_dirs = [str(path / "bin")]
        if recipe.conda:
            bin_dirs.append(str(path / "conda" / "condabin"))
        return ImageEnv(path=path, bin_dirs=tuple(bin_dirs), userland=self.userland(recipe))

    @staticmethod
    def _needs_build(recipe: ImageRecipe) -> bool:
        return bool(recipe.python or recipe.conda)

    # --- the build ----------------------------------------------------------------
    def _run_build(self, recipe: ImageRecipe) -> None:
        key = recipe.key()
        # Built in place: pip writes the environment's own path into its
        # scripts' shebangs, so the directory cannot move afterwards.
        work = self.envs_dir / key
        reason = ""
        try:
            with self._builds:
                self._build_cgroup = self._make_build_cgroup()
                try:
                    self._build(recipe, work)
                finally:
                    self._end_build_processes()
        except BuildError as exc:
            log.warning("image %s (%s) failed: %s", recipe.ref, key, exc)
            reason = str(exc) or "build error"
        except Exception as exc:  # noqa: BLE001 - any failure ends the build, with its reason
            log.exception("image %s (%s) failed", recipe.ref, key)
            reason = f"build error: {exc}"
        if reason:
            # Its files go before it reads as failed: a retry starts clean.
            shutil.rmtree(work, ignore_errors=True)
            self._set(
                key,
                state=BuildState.FAILED,
                progress=0,
                **no_step(),
                reason=reason,
            )
        self._save()

    def _progress(self, key: str, progress: int, step: dict[str, Any]) -> None:
        """Record ``step`` (a :func:`build_step`) at ``progress`` percent."""
        log.info("image %s: %d%% %s", key, progress, step["step"])
        self._set(key, progress=progress, **step)

    def _build(self, recipe: ImageRecipe, work: Path) -> None:
        key = recipe.key()
        base = self._base_for(recipe)
        if base is None:  # checked by status(); the host may have changed since
            raise BuildError(f"this server has no Python {recipe.python}")
        shutil.rmtree(work, ignore_errors=True)
        self._progress(
            key, COPY_PERCENT, build_step("image.step.copying_python", version=base.version)
        )
        copy_base_python(base, work)
        relocate(base.prefix, work)
        # The build uid writes the environment until it is done.
        _chown_tree(work, self.build_uid)
        home = work / ".build-home"
        home.mkdir(mode=0o700)
        os.chown(home, self.build_uid, self.build_uid)
        python = str(work / "bin" / "python")
        self._progress(key, PIP_PERCENT, build_step("image.step.installing_pip"))
        self._run(["-m", "ensurepip", "--default-pip"], python, home, "ensurepip")
        packages = recipe.packages
        index_args: list[str] = []
        cpu_only = self.cpu_only(recipe)
        if recipe.cuda and has_torch(recipe):
            variant = "cpu" if cpu_only else f"cu{cuda_nodot(recipe.cuda)}"
            packages = torch_variant_pins(packages, variant)
            index = (
                self.torch_cpu_index
                if cpu_only
                else self.torch_index.format(cuda=recipe.cuda, cuda_nodot=cuda_nodot(recipe.cuda))
            )
            index_args = ["--extra-index-url", index]
        if packages:
            self._pip_install(key, python, home, list(packages), index_args)
        if recipe.conda:
            self._progress(key, INSTALL_PERCENT, build_step("image.step.installing_conda"))
            self._run(
                ["bash", self.conda_installer, "-b", "-p", str(work / "conda")],
                None,
                home,
                "the conda installer",
            )
        self._progress(key, VERIFY_PERCENT, build_step("image.step.verifying"))
        facts = self._facts(python, home, packages)
        verify(recipe, packages, facts, cpu_only=cpu_only, has_nvidia=self.has_nvidia)
        # Nothing the build started may outlive it (an install script can
        # daemonize out of pip's process group): a process left with the
        # build uid could still write here, or race the walks below.
        self._end_build_processes()
        shutil.rmtree(home)
        # Done: root's, read-only to everyone else (workloads, the build uid).
        _chown_tree(work, 0)
        _make_read_only(work)
        self._set(
            key,
            state=BuildState.READY,
            progress=100,
            **no_step(),
            reason="",
            facts=facts,
            cpu_only=cpu_only,
        )
        log.info("image %s (%s) ready: %s", recipe.ref, key, facts)

    def _build_env(self, home: Path, bin_dir: str | None) -> dict[str, str]:
        path = f"{bin_dir}:{sandbox.HOST_PATH}" if bin_dir else sandbox.HOST_PATH
        return {
            **self.pip_env,
            "PATH": path,
            "HOME": str(home),
            "TMPDIR": str(home),
            "LANG": "C.UTF-8",
            "PIP_NO_CACHE_DIR": "1",
            "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }

    def _make_build_cgroup(self) -> bool:
        """A fresh BUILD_CGROUP (no limits) for the build about to run; False without cgroups."""
        if self.cgroups is None:
            return False
        try:
            self.cgroups.create(BUILD_CGROUP, cgroup_limits.Limits())
        except OSError as exc:
            log.warning("images: no cgroup for the build (%s); its end kills by uid", exc)
            return False
        return True

    def _end_build_processes(self) -> None:
        """SIGKILL whatever the build started: its cgroup's processes, else the build uid's.

        Idempotent: the end of a build calls it, and again on its way out.
        """
        if self._build_cgroup and self.cgroups is not None:
            if self.cgroups.remove(BUILD_CGROUP):
                return
            log.warning("images: the build's cgroup would not empty; killing by uid")
        # No cgroup: every process of the build uid. On a host with a second
        # agent (tests, another portal) that may be its build too.
        kill_uid(self.build_uid)

    def _popen(self, argv: list[str], home: Path, bin_dir: str | None) -> subprocess.Popen:
        with self.lock:
            if self._stopping:
                raise BuildError("the agent is stopping")
        gate = CgroupGate(self.cgroups if self._build_cgroup else None, BUILD_CGROUP)
        try:
            proc = subprocess.Popen(
                gate.wrap(argv),
                pass_fds=gate.pass_fds,
                cwd=home,
                env=self._build_env(home, bin_dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                user=self.build_uid,
                group=self.build_uid,
                extra_groups=[],
                start_new_session=True,  # its own group: stop() ends pip and what pip runs
            )
        except BaseException:
            gate.close()
            raise
        try:
            gate.release(proc)  # in the build's cgroup before it runs anything
        except OSError as exc:
            raise BuildError(f"could not put the build into its cgroup: {exc}") from None
        with self.lock:
            self._procs.add(proc)
        return proc

    def _run(self, args: list[str], python: str | None, home: Path, what: str) -> str:
        argv = [python, *args] if python else args
        bin_dir = str(Path(python).parent) if python else None
        proc = self._popen(argv, home, bin_dir)
        try:
            output, _ = proc.communicate(timeout=BUILD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise BuildError(
                f"{what} did not finish within {BUILD_TIMEOUT_SECONDS // 60} minutes"
            ) from None
        finally:
            with self.lock:
                self._procs.discard(proc)
        if proc.returncode != 0:
            raise BuildError(f"{what} failed: {_error_lines(output)}")
        return output

    def _pip_install(
        self, key: str, python: str, home: Path, packages: list[str], index_args: list[str]
    ) -> None:
        names = {pin_name(p): (i, p) for i, p in enumerate(packages, 1)}
        argv = [
            python, "-m", "pip", "install", "--no-warn-script-location", "--progress-bar", "off",
            *index_args, *packages,
        ]  # fmt: skip
        proc = self._popen(argv, home, str(Path(python).parent))
        assert proc.stdout is not None
        lines: list[str] = []
        timer = threading.Timer(BUILD_TIMEOUT_SECONDS, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                lines.append(line)
                del lines[:-200]
                progress = _pip_progress(line, names, len(packages))
                if progress is not None:
                    self._progress(key, *progress)
            proc.wait()
        finally:
            timer.cancel()
            with self.lock:
                self._procs.discard(proc)
        if proc.returncode != 0:
            raise BuildError(
                f"pip could not install {' '.join(packages)}: {_error_lines(''.join(lines))}"
            )

    def _facts(self, python: str, home: Path, packages: tuple[str, ...]) -> dict[str, Any]:
        names = [pin_name(p) for p in packages]
        output = self._run(
            ["-I", "-c", FACTS_SCRIPT, *names], python, home, "measuring the environment"
        )
        try:
            return json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BuildError(f"measuring the environment printed {output[-300:]!r}") from None


# --- copying a base Python ---------------------------------------------------------------
def copy_base_python(base: BasePython, target: Path) -> None:
    """Copy what ``base``'s interpreter needs (not its site-packages, nor its test suite) to ``target``."""
    minor = f"python{base.minor}"
    prefix = base.prefix
    (target / "bin").mkdir(parents=True)
    (target / "lib").mkdir()
    shutil.copy2(prefix / "bin" / minor, target / "bin" / minor)
    for name in ("python3", "python"):
        (target / "bin" / name).symlink_to(minor)
    for library in (prefix / "lib").glob(f"lib{minor}*.so*"):
        if library.is_symlink():
            (target / "lib" / library.name).symlink_to(os.readlink(library))
        else:
            shutil.copy2(library, target / "lib" / library.name)

    def skip(directory: str, names: list[str]) -> list[str]:
        here = Path(directory)
        skipped = []
        if here == prefix / "lib" / minor:
            # The test suite (~100 MB) and idle/turtledemo are no part of an image.
            skipped += [n for n in names if n in ("test", "idlelib", "turtledemo")]
        if here.name == "site-packages" and here.parent == prefix / "lib" / minor:
            skipped += [n for n in names if n != "README.txt"]
        if here.name.startswith("config-") and here.parent == prefix / "lib" / minor:
            # The static libpython (~60 MB) only links new interpreters.
            skipped += [n for n in names if n.endswith(".a")]
        return skipped

    shutil.copytree(prefix / "lib" / minor, target / "lib" / minor, symlinks=True, ignore=skip)
    include = prefix / "include" / minor
    if include.is_dir():
        shutil.copytree(include, target / "include" / minor, symlinks=True)


def relocate(old_prefix: Path, target: Path) -> None:
    """Point the copied binaries' RUNPATH at the copy (``$ORIGIN``-relative), not at ``old_prefix``.

    A pyenv Python is linked with an absolute RUNPATH into its own prefix,
    under the host's /root: inside a sandbox that is the user's volume, so
    ``libpython3.X.so`` would not be found (or worse, found in the volume).
    """
    patchelf = sandbox.host_program("patchelf")
    old = str(old_prefix)
    for path in [*target.glob("bin/*"), *target.rglob("*.so*")]:
        if path.is_symlink() or not path.is_file() or not _is_elf(path):
            continue
        result = subprocess.run(
            [patchelf, "--print-rpath", str(path)],
            env=sandbox.HOST_ENV,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BuildError(f"patchelf cannot read {path.name}: {result.stderr.strip()[-200:]}")
        entries = [e for e in result.stdout.strip().split(":") if e]
        if not any(e == old or e.startswith(old + "/") for e in entries):
            continue
        fixed = []
        for entry in entries:
            if entry == old or entry.startswith(old + "/"):
                inside = target / os.path.relpath(entry, old)
                entry = "$ORIGIN/" + os.path.relpath(inside, path.parent)
            fixed.append(entry)
        subprocess.run(
            [patchelf, "--set-rpath", ":".join(fixed), str(path)],
            env=sandbox.HOST_ENV,
            check=True,
            capture_output=True,
        )


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (the build uid: it runs builds only, one at a time)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            os.kill(int(entry), signal.SIGKILL)
                        break


def _is_elf(path: Path) -> bool:
    with contextlib.suppress(OSError), path.open("rb") as f:
        return f.read(4) == b"\x7fELF"
    return False


def _chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(directory, name), uid, uid)


def _make_read_only(root: Path) -> None:
    """Nobody but root writes; everyone reads and runs what its owner could."""
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            path = os.path.join(directory, name) if name else directory
            if os.path.islink(path):
                continue
            mode = (
                os.stat(path).st_mode & 0o7777 & ~0o6022
            )  # no setuid/setgid, no group/other write
            mode |= 0o444 | (0o111 if mode & 0o100 else 0)
            os.chmod(path, mode)


# --- checking what was installed ---------------------------------------------------------
def verify(
    recipe: ImageRecipe,
    packages: tuple[str, ...],
    facts: dict[str, Any],
    *,
    cpu_only: bool,
    has_nvidia: bool,
) -> None:
    """Raise BuildError unless the environment holds exactly what the recipe pins (never substitute)."""
    if recipe.python and not _vkey(facts.get("python", ""))[: len(_vkey(recipe.python))] == _vkey(
        recipe.python
    ):
        raise BuildError(
            f"Python {recipe.python} was asked for; the environment has {facts.get('python')}"
        )
    installed = facts.get("packages", {})
    for requirement in packages:
        req = Requirement(requirement)
        version = installed.get(pin_name(req.name))
        if version is None:
            raise BuildError(f"{requirement} was asked for; it is not installed")
        try:
            ok = req.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            raise BuildError(f"{requirement} was asked for; pip installed {req.name} {version}")
    if recipe.cuda and has_torch(recipe):
        cuda = facts.get("cuda", "")
        if cpu_only and cuda:
            raise BuildError(
                f"a CPU build of torch was asked for; the installed torch is built for CUDA {cuda}"
            )
        if not cpu_only and has_nvidia and cuda.split(".")[:2] != recipe.cuda.split(".")[:2]:
            raise BuildError(
                f"torch for CUDA {recipe.cuda} was asked for; the installed torch is built for "
                f"{'CUDA ' + cuda if cuda else 'the CPU only'}"
            )


def _not_ready_reason(recipe: ImageRecipe, state: ImageState) -> str:
    if state.state == BuildState.BUILDING:
        return f"image {recipe.ref} is still being built on this host ({state.progress}%)"
    if state.state == BuildState.MISSING:
        return f"image {recipe.ref} is not built on this host yet"
    if state.state == BuildState.FAILED:
        return f"image {recipe.ref} failed to build on this host: {state.reason}"
    return f"image {recipe.ref} is unavailable on this host: {state.reason}"


def _pip_progress(
    line: str, names: dict[str, tuple[int, str]], count: int
) -> tuple[int, dict[str, Any]] | None:
    """The progress (percent, :func:`build_step`) a line of pip's output means, if any."""
    if line.startswith("Collecting ") or line.startswith("Requirement already satisfied: "):
        name = pin_name(line.split(maxsplit=1)[1].split(": ", 1)[-1])
        if name in names:
            index, pin = names[name]
            span = INSTALL_PERCENT - PIP_PERCENT
            step = build_step("image.step.downloading", package=pin, index=index, count=count)
            return PIP_PERCENT + span * index // (count + 1), step
    elif line.startswith("Installing collected packages:"):
        total = len(line.split(":", 1)[1].split(","))
        return INSTALL_PERCENT, build_step("image.step.installing_packages", count=total)
    return None


def _error_lines(output: str) -> str:
    """pip's own error lines (or the output's end): the reason a student reads."""
    errors = [line.strip() for line in output.splitlines() if line.startswith("ERROR:")]
    text = " ".join(errors) if errors else " ".join(output.strip().splitlines()[-3:])
    return text[-600:] or "no output"


def _vkey(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)
