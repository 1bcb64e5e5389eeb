"""The debug adapter of GPU Debug jobs (SPEC §7): debugpy, provided by the platform.

A GPU Debug job runs its file under debugpy, which waits for the IDE::

    python -u /opt/aladdin/debugpy/debugpy --listen 127.0.0.1:5678 --wait-for-client <file> <args>

Decision — where debugpy comes from. Not from the student's environment:
the catalog images do not have it, a student's conda may have any version
(or a tampered one), and installing it into the image at run time would
need the network and write into the student's space. The platform brings
its own copy, read-only, at :data:`MOUNT` (the directory that holds the
``debugpy`` package), and the command runs it **by path**
(``python <MOUNT>/debugpy``): debugpy's ``__main__`` then finds its own
package beside it, so no ``PYTHONPATH`` is set at all and the student's
program and its children import exactly what they would without the
debugger. The copy is debugpy's universal wheel (``py2.py3-none-any``, no
compiled speed-ups), so it runs under whatever Python the image or the
student's conda brings.

- **local backend**: ``make debugpy`` (a prerequisite of ``make run`` and
  ``make test``) installs the pinned wheel with pip into ``DEBUGPY_DIR``
  (``ALADDIN_DEBUGPY_DIR``, default ``/opt/aladdin/tools/debugpy``, world
  readable); the agent binds that directory read-only at :data:`MOUNT` in
  the sandbox of a workload whose spec asks for the debugger
  (``WorkloadSpec.debugger``), and only there.
- **kubernetes** (later): the same path in the pod: an init container of
  the portal's own image (which runs ``make debugpy`` when it is built)
  copies ``DEBUGPY_DIR`` into an ``emptyDir`` that the job's container
  mounts read-only at :data:`MOUNT`. The command and the port are the same,
  and the portal reaches the port through the driver's ``connect_port``
  (a pod port-forward there).

The adapter listens on the workload's loopback only: nothing but the
driver's ``connect_port`` (the portal's websocket bridge, or ``ssh -L``
through the SSH gateway, both for the job's owner only) reaches it.
"""

from __future__ import annotations

from pathlib import Path

# Where the workload sees the platform's debugpy (read-only).
MOUNT = "/opt/aladdin/debugpy"
# What the command runs: the package directory itself (see the docstring).
ENTRY = f"{MOUNT}/debugpy"
# The adapter's port inside the workload (the IDE's usual one).
PORT = 5678
# The version `make debugpy` installs (its universal wheel).
VERSION = "1.8.21"


def command(python: str, target: list[str]) -> list[str]:
    """``target`` (a file and its arguments, or ``-m module ...``) under the waiting adapter."""
    return [
        python,
        "-u",
        ENTRY,
        "--listen",
        f"127.0.0.1:{PORT}",
        "--wait-for-client",
        *target,
    ]


def problem(directory: Path | None) -> str:
    """Why ``directory`` cannot serve as the platform's debugpy; "" when it can."""
    if directory is None:
        return "no debugger directory is configured (ALADDIN_DEBUGPY_DIR)"
    if not (directory / "debugpy" / "__main__.py").is_file():
        return f"debugpy is not installed in {directory} (run `make debugpy`)"
    return ""
