"""Bubblewrap command lines for the local backend (SPEC §9, "Decision — isolation").

Everything here is pure: it builds argument vectors and small files, the
agent (:mod:`aladdin.cluster.agent`) runs them. A workload is::

    bwrap --unshare-all --die-with-parent ... <command>

started by the agent as the user's uid (``LOCAL_UID_BASE + user_id``), so
the kernel, not our code, keeps it away from everything it should not see:

- the filesystem is a fresh tmpfs root with ``/usr`` read-only, a private
  ``/tmp`` (tmpfs: gone at the next start), a generated minimal ``/etc``,
  and the user's volume bound read-write at ``/root``. Nothing of ``var/``
  (database, keys), the checkout (``/work``, the portal's venv), the host's
  ``/root`` or other users' volumes is mounted;
- ``--unshare-all`` gives it its own pid, ipc, uts, cgroup and network
  namespaces. The network namespace has loopback only, until the agent
  attaches user-mode networking and its deny policy to it
  (:mod:`aladdin.cluster.egress`) where the host can;
- ``--die-with-parent`` ties it to the agent: stopping the agent stops it;
- ``--disable-userns``: no nested user namespace (``unshare -Ur`` would give
  uid 0 in a child namespace, a kernel attack surface we do not need).

What a student controls never reaches a host program. bwrap and nsenter run
by absolute path with :data:`HOST_ENV`, a fixed environment: the workload's
own variables (``PATH``, ``LD_PRELOAD``, ``LD_LIBRARY_PATH``, ...) would
otherwise choose the host binary or be honoured by the host's dynamic
loader, running the student's code outside the sandbox (as root, for
nsenter). They reach only the process inside: bwrap gets ``--clearenv``
and ``--setenv`` pairs, the terminal's shell reads them from a descriptor.
bwrap's arguments (host paths, those variables) come from a memfd through
``--args FD``, so neither ``/proc/1/cmdline`` inside nor ``ps`` on the host
shows them.

bwrap resolves the paths it binds *as the sandbox uid*, so the volumes
directory and its ancestors must be traversable (``o+x``) by other users;
:func:`check_traversable` says which directory is not. Traversal alone
reveals nothing: the uid only ever runs inside the sandbox.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from . import reasons

# Host programs are looked up here only, never on an inherited PATH.
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# The whole environment of every host program the agent starts for a workload.
HOST_ENV = {"PATH": HOST_PATH, "LANG": "C.UTF-8"}


def host_program(name: str) -> str:
    """``name``'s absolute path in :data:`HOST_PATH` (``/usr/bin/<name>`` if absent, to fail clearly)."""
    return shutil.which(name, path=HOST_PATH) or f"/usr/bin/{name}"


BWRAP = host_program("bwrap")
NSENTER = host_program("nsenter")
# A variable name a workload may set (the portal's rule too, workshops.models.env_key).
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The variables a workload gets besides the spec's own (SPEC: "env from the
# spec only"): nothing of the agent's environment leaks in.
BASE_ENV = {"HOME": "/root", "LANG": "C.UTF-8", "TERM": "xterm-256color"}
# Read-only pieces of the host's /etc a shell and TLS clients need; each is
# bound only if it exists.
HOST_ETC = ("ssl", "ca-certificates", "alternatives", "localtime", "resolv.conf", "hosts")


# The sandbox's first process, around the workload's command. bwrap's
# --die-with-parent does not reliably reach the sandbox's init when the agent
# is killed outright (the inner bwrap outlived its parent in our tests), so
# the agent also holds one end of a socket pair whose other end is this
# wrapper's stdin: EOF means the agent is gone: SIGKILL to -1 ends every process of the
# sandbox but its init, and bwrap's init exits once it has no children left.
# (stdin because the socket belongs to root: the uid may not reopen it through
# /proc/self/fd, only use the descriptor it inherited.) TERM is caught, not
# ignored (the command would inherit that), so that a graceful stop reaches
# the command and its exit status comes back. When the command ends, so does
# everything it left running (bwrap's init would otherwise wait for the last
# background process): a workload ends with its main process, as a container.
# Before anything, the guard says "ready" on the same descriptor (a socket
# pair, so it goes both ways): it runs only once bwrap has finished setting
# the sandbox up, its loopback included, and the agent attaches the network
# only then (slirp4netns brings lo up, and a lo that is already up makes
# bwrap's own loopback set-up fail: "loopback: Failed RTM_NEWADDR"). Then it
# waits for the agent's "go": the agent writes it once the sandbox's network
# namespace has its deny rules (or at once where it has none), so the
# command never runs before them. EOF or anything else (the agent failed,
# or died) ends the sandbox instead. (Where stdin is a pipe, the "ready"
# write fails quietly.)
# Never run it outside a sandbox's pid namespace (a test included): there
# `kill -KILL -1` reaches every process its uid may signal, the whole host
# for root.
GUARD = r"""
{ echo ready >&0; } 2>/dev/null
IFS= read -r go || exit 125
[ "$go" = go ] || exit 125
exec 9<&0
trap : TERM INT HUP
"$@" </dev/null 9<&- &
c=$!
{ read -r _ <&9; kill -KILL -1; } 2>/dev/null &
exec 9<&-
while :; do
    wait $c; rc=$?
    kill -0 $c 2>/dev/null || break
done
kill -KILL -1 2>/dev/null
exit $rc
"""


def guarded(command: list[str]) -> list[str]:
    """``command`` under :data:`GUARD`; the caller makes the guard pipe its stdin and writes "go\\n"."""
    return ["/bin/sh", "-c", GUARD, "aladdin-guard", *command]


# What a workload's first process (bwrap, or the command without a sandbox)
# and every terminal's or exec's nsenter runs as until the agent has put it
# into the workload's cgroup (aladdin.cluster.cgroups): it waits for the
# agent's "go" on the descriptor named in $1, closes it and execs the rest,
# with the same pid. Whatever it then forks is born inside the cgroup, so
# nothing of the workload ever runs outside its limits. Anything but "go"
# (the agent could not attach it, or died) ends it instead: it fails closed.
# bash, not sh: dash takes descriptors 0-9 only in a redirection; env drops
# what bash itself exports (PWD, SHLVL), so the program gets exactly the
# environment the agent gave the gate (HOST_ENV for bwrap and nsenter).
GATE = r"""
IFS= read -r go <&"$1"
eval "exec $1<&-"
[ "$go" = go ] || exit 125
shift
exec /usr/bin/env -u PWD -u OLDPWD -u SHLVL -u _ "$@"
"""
GATE_NAME = "aladdin-cgroup"


def gated(release_fd: int, argv: list[str]) -> list[str]:
    """``argv`` behind :data:`GATE`, which waits on ``release_fd`` (the caller passes it on)."""
    return ["/bin/bash", "-c", GATE, GATE_NAME, str(release_fd), *argv]


def ungated(argv: list[str] | tuple[str, ...]) -> list[str]:
    """``argv`` without a :func:`gated` prefix: what the process runs once released."""
    argv = list(argv)
    if len(argv) > 4 and argv[:4] == ["/bin/bash", "-c", GATE, GATE_NAME]:
        return argv[5:]
    return argv


def sandbox_uid(uid_base: int, user_id: int) -> int:
    return uid_base + int(user_id)


def etc_files(uid: int) -> dict[str, bytes]:
    """The generated files of the sandbox's /etc: the uid has a name and a home."""
    return {
        "passwd": (
            f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
            f"user:x:{uid}:{uid}:Aladdin user:/root:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ).encode(),
        "group": f"root:x:0:\nuser:x:{uid}:\nnogroup:x:65534:\n".encode(),
        "hostname": b"workshop\n",
    }


def check_traversable(path: Path, uid: int) -> Path | None:
    """The first ancestor of ``path`` that ``uid`` cannot enter (bwrap would fail), else None."""
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except OSError:
            return directory
        if st.st_uid == uid:
            if not st.st_mode & stat.S_IXUSR:
                return directory
        elif not st.st_mode & stat.S_IXOTH:
            return directory
    return None


def check_env(env: dict[str, str]) -> None:
    """Refuse variables no process can have: a bad name, or a NUL (it would split ``--args``)."""
    for key, value in env.items():
        if not ENV_NAME_RE.match(key):
            raise ValueError(f"invalid environment variable name {key!r}")
        if "\0" in value:
            raise ValueError(f"the value of {key} contains a NUL byte")


def bwrap_options(
    *,
    volume: Path,
    env: dict[str, str],
    workdir: str = "/root",
    image_dirs: tuple[Path, ...] = (),
    userland: Path = Path("/"),
    gpu_devices: tuple[str, ...] = (),
    etc_fds: dict[str, int] | None = None,
    info_fd: int | None = None,
    shm_mib: int = 0,
    ro_binds: tuple[tuple[Path, str], ...] = (),
    share_net: bool = False,
) -> list[str]:
    """bwrap's options (not the command) to run with ``volume`` as /root and exactly ``env``.

    They go to bwrap through :func:`args_fd` (see the module docstring).
    ``etc_fds`` maps a file name of the generated /etc to a readable fd (a
    pipe holding :func:`etc_files`); the caller passes those fds on.
    ``info_fd`` receives bwrap's JSON with the sandboxed child's host pid.
    ``image_dirs`` (the workload's image environment) are bound read-only
    at their own paths, so their scripts' shebangs hold; ``userland`` is
    the root whose ``/usr`` and ``/etc`` pieces the sandbox gets: the
    host's, or an operator's root filesystem for another distribution.
    ``shm_mib`` sizes ``/dev/shm`` (the workload's memory: what it writes
    there is charged to its memory cgroup anyway); 0 leaves bwrap's default.
    ``ro_binds``: (host directory, path inside) pairs the platform provides
    read-only (the debugger of a GPU Debug job).
    ``share_net``: keep the network namespace bwrap starts in (a Run Task's
    worker started by :func:`joined_net_argv` in worker 0's) instead of a
    new one.
    """
    check_env(env)
    workdir = workdir or "/root"
    if "\0" in workdir:
        raise ValueError("the working directory contains a NUL byte")
    argv = [
        "--unshare-all",
        *(["--share-net"] if share_net else []),
        "--unshare-user",  # implied for a non-setuid bwrap; explicit, as --disable-userns needs it
        "--disable-userns",
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into a terminal the workload does not own
        "--ro-bind", str(userland / "usr"), "/usr",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/sbin", "/sbin",
        "--proc", "/proc",
        "--dev", "/dev",
        *(["--size", str(shm_mib * 2**20), "--tmpfs", "/dev/shm"] if shm_mib else []),
        "--tmpfs", "/tmp",
        "--tmpfs", "/var/tmp",
        "--dir", "/etc",
    ]  # fmt: skip
    for name, fd in (etc_fds or {}).items():
        argv += ["--file", str(fd), f"/etc/{name}"]
    for name in HOST_ETC:
        if name in (etc_fds or {}):
            continue  # generated (resolv.conf where the sandbox has a network)
        # Name resolution is the host's; the rest belongs with the /usr in use.
        host = (Path("/") if name in ("resolv.conf", "hosts") else userland) / "etc" / name
        if host.exists():
            argv += ["--ro-bind", str(host), f"/etc/{name}"]
    for directory in image_dirs:
        argv += ["--ro-bind", str(directory), str(directory)]
    for source, inside in ro_binds:
        argv += ["--ro-bind", str(source), inside]
    for device in gpu_devices:
        for node in (
            f"/dev/nvidia{device}",
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
        ):
            if os.path.exists(node):
                argv += ["--dev-bind", node, node]
    argv += ["--bind", str(volume), "/root", "--chdir", workdir]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv.append("--clearenv")
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv


def args_fd(options: list[str]) -> int:
    """A readable memfd holding ``options`` NUL-separated, for ``bwrap --args FD``; caller closes it."""
    fd = os.memfd_create("bwrap-args")
    try:
        os.write(fd, b"".join(o.encode() + b"\0" for o in options))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def bwrap_argv(args_fd_number: int, command: list[str]) -> list[str]:
    """The host command line: bwrap by absolute path, its options behind ``--args``, then ``command``."""
    return [BWRAP, "--args", str(args_fd_number), *command]


def workload_env(
    spec_env: dict[str, str], *, bin_dirs: tuple[str, ...] = (), gpu_devices: tuple[str, ...]
) -> dict[str, str]:
    """The workload's whole environment: the spec's variables plus HOME, PATH, LANG, TERM.

    ``bin_dirs`` (the image environment's ``bin``) come first on PATH: its
    ``python`` and ``pip`` are the ones a script finds.
    """
    path = ":".join([*bin_dirs, SANDBOX_PATH])
    env = {**BASE_ENV, "PATH": path, **{str(k): str(v) for k, v in spec_env.items()}}
    env["HOME"] = "/root"  # the spec cannot move the volume
    if gpu_devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_devices)
    else:
        # No GPU assigned: hide any the host has rather than share them.
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


# Run inside the sandbox by nsenter: read the workload's variables from the
# descriptor named in $1 (NUL-separated NAME=value, see env_fd), close it, go
# home and exec the rest. nsenter itself ran with HOST_ENV: only this shell,
# already inside the sandbox, takes the student's variables.
ENV_LOADER = r"""
fd=$1; shift
while IFS= read -r -d '' kv; do export "$kv" 2>/dev/null; done <&"$fd"
eval "exec $fd<&-"
cd /root 2>/dev/null
exec "$@"
"""


def env_fd(env: dict[str, str]) -> int:
    """A readable memfd with ``env`` as NUL-separated NAME=value, for :data:`ENV_LOADER`."""
    check_env(env)
    return args_fd([f"{k}={v}" for k, v in env.items()])


def nsenter_argv(target_pid: int, uid: int, command: list[str], *, env_fd: int) -> list[str]:
    """Run ``command`` inside the sandbox of ``target_pid`` as ``uid``, with the env read from ``env_fd``.

    Every namespace of the workload is entered (same /tmp, same processes,
    same loopback), root and working directory included; ``-S``/``-G``
    switch to the uid mapped inside the sandbox's user namespace. The caller
    starts it with :data:`HOST_ENV` and passes ``env_fd`` on.
    """
    return [
        NSENTER, "--target", str(target_pid),
        "--user", "--mount", "--pid", "--net", "--ipc", "--uts",
        "--setuid", str(uid), "--setgid", str(uid),
        "--root", "--wd",
        "/bin/bash", "-c", ENV_LOADER, "aladdin-env", str(env_fd),
        *command,
    ]  # fmt: skip


def joined_net_argv(target_pid: int, uid: int, argv: list[str]) -> list[str]:
    """``argv`` (bwrap's) started in the network namespace of ``target_pid``'s sandbox, as ``uid``.

    A Run Task's workers share worker 0's network namespace (its loopback,
    slirp4netns and egress rules: docs/operations.md "Run Task workers").
    nsenter (root: setns into a namespace another user namespace owns needs
    it) enters that namespace only, drops to ``uid`` and execs bwrap with
    the same pid, which then keeps it (``share_net``). Only pids and the uid
    are its arguments; the caller starts it with :data:`HOST_ENV`.
    """
    return [
        NSENTER, f"--net=/proc/{int(target_pid)}/ns/net",
        "--setuid", str(int(uid)), "--setgid", str(int(uid)),
        "--", *argv,
    ]  # fmt: skip


# As ENV_LOADER, and the command too comes from a descriptor ($2, NUL-separated
# argv): what a student typed after `ssh ws` is never an argument of nsenter,
# which runs as root on the host (and `ps` there would show it).
EXEC_LOADER = r"""
envfd=$1; argfd=$2; shift 2
while IFS= read -r -d '' kv; do export "$kv" 2>/dev/null; done <&"$envfd"
args=()
while IFS= read -r -d '' a; do args+=("$a"); done <&"$argfd"
eval "exec $envfd<&- $argfd<&-"
cd /root 2>/dev/null
exec "${args[@]}"
"""


def nsenter_exec_argv(target_pid: int, uid: int, *, env_fd: int, argv_fd: int) -> list[str]:
    """As :func:`nsenter_argv`, with the command read from ``argv_fd`` (:func:`args_fd`) inside."""
    return [
        NSENTER, "--target", str(target_pid),
        "--user", "--mount", "--pid", "--net", "--ipc", "--uts",
        "--setuid", str(uid), "--setgid", str(uid),
        "--root", "--wd",
        "/bin/bash", "-c", EXEC_LOADER, "aladdin-exec", str(env_fd), str(argv_fd),
    ]  # fmt: skip


def probe(uid: int, volume: Path, *, timeout: float = 10) -> tuple[bool, str]:
    """Can this host sandbox? Run ``true`` in a sandbox as ``uid``. Returns (ok, why not)."""
    if os.environ.get("ALADDIN_LOCAL_SANDBOX", "").lower() in {"off", "0", "false", "no"}:
        return False, "sandboxing turned off by ALADDIN_LOCAL_SANDBOX=off"
    if not os.access(BWRAP, os.X_OK):
        return False, "bubblewrap (bwrap) is not installed"
    if os.geteuid() != 0:
        return False, "the agent is not root, so it cannot run workloads as their own uids"
    blocked = check_traversable(volume, uid)
    if blocked is not None:
        return False, f"{blocked} is not traversable by sandbox uids (chmod o+x)"
    fd = args_fd(bwrap_options(volume=volume, env={"PATH": SANDBOX_PATH}))
    try:
        result = subprocess.run(
            bwrap_argv(fd, ["true"]),
            user=uid,
            group=uid,
            extra_groups=[],
            env=HOST_ENV,
            pass_fds=(fd,),
            capture_output=True,
            timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bwrap failed: {exc}"
    finally:
        os.close(fd)
    if result.returncode != 0:
        return False, f"bwrap failed: {result.stderr.decode(errors='replace').strip()[-300:]}"
    return True, ""


def describe_exit(returncode: int) -> str:
    """A reason for a non-zero end, in English (the portal shows it from its id)."""
    return reasons.exited(returncode).text
