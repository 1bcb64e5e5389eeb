"""Files: OpenSSH's ``sftp-server`` over a user's volume, in a sandbox of its own (the files page).

The dashboard's files page must work while no workshop runs, and must judge
every path, permission and symlink exactly as a workshop would. So it never
touches the volume from the portal or the agent (both can see every user's
volume): each session is a short-lived bubblewrap sandbox built like a
workload's (:func:`~aladdin.cluster.sandbox.bwrap_options`: the volume at
``/root``, read-only ``/usr``, a private ``/tmp``, no network), started as
the user's uid, whose only process is ``sftp-server`` speaking SFTP v3 on
stdin/stdout. A symlink in the volume to ``/`` or to another user's volume
resolves inside that sandbox, where neither the host's root nor the volumes
directory exists.

The stream is the exec stream of :mod:`.execs` (stdin, stdout, stderr, the
exit status). The session ends when the portal closes stdin or hangs up
(``sftp-server`` exits at EOF) or when the agent dies (EOF as well, and
``--die-with-parent``).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from django.conf import settings

from .. import sandbox
from ..protocol import AgentError, ErrorCode
from .workloads import Workloads

DEFAULT_SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def sftp_server_path() -> str:
    """The sftp-server binary (the gateway's setting); under /usr, so the sandbox has it."""
    return str(getattr(settings, "SSH_SFTP_SERVER", "") or DEFAULT_SFTP_SERVER)


def start(workloads: Workloads, *, user_id: int) -> subprocess.Popen:
    """``sftp-server`` in a new sandbox over ``user_id``'s volume, as its uid; pipes on stdio.

    Raises AgentError(UNAVAILABLE) when this host cannot sandbox: without a
    sandbox the server would run with the host's root as ``/`` and follow a
    student's symlink anywhere the uid may read, which the files page must
    never do (a workshop without a sandbox is the operator's explicit choice,
    the files page is not).
    """
    if not workloads.sandbox_ok:
        raise AgentError(
            ErrorCode.UNAVAILABLE,
            f"files need the sandbox, and this host cannot sandbox ({workloads.sandbox_reason})",
        )
    user_id = int(user_id)
    # A new user's volume may not exist yet (it is made with the first
    # workload); an upload should not have to wait for one.
    workloads.ensure_user_space(user_id)
    uid = workloads.uid_for(user_id)
    env = {**sandbox.BASE_ENV, "PATH": sandbox.SANDBOX_PATH}
    etc_fds: dict[str, int] = {}
    options_fd = None
    try:
        for filename, content in sandbox.etc_files(uid).items():
            r, w = os.pipe()
            os.write(w, content)
            os.close(w)
            etc_fds[filename] = r
        options_fd = sandbox.args_fd(
            sandbox.bwrap_options(
                volume=workloads.volume_for(user_id), env=env, workdir="/root", etc_fds=etc_fds
            )
        )
        as_user: dict[str, Any] = (
            {"user": uid, "group": uid, "extra_groups": []} if os.geteuid() == 0 else {}
        )
        return subprocess.Popen(
            # -d: the session starts in /root (its home); -e: its log to stderr.
            sandbox.bwrap_argv(options_fd, [sftp_server_path(), "-e", "-d", "/root"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=sandbox.HOST_ENV,
            pass_fds=(options_fd, *etc_fds.values()),
            start_new_session=True,  # one group to hang up (execs.relay)
            **as_user,
        )
    except OSError as exc:
        raise AgentError(ErrorCode.UNAVAILABLE, f"cannot start sftp-server: {exc}") from exc
    finally:
        if options_fd is not None:
            os.close(options_fd)
        for fd in etc_fds.values():
            os.close(fd)
