"""Local backend: workloads are sandboxed processes on the portal's own host.

SPEC §9: each user's storage is a directory under var/ standing in for /root;
each workload runs as an unprivileged uid in a bubblewrap sandbox. This issue
provides the health check; the workshops issue adds the workload methods and
the agent process that owns them.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from django.conf import settings

from .base import ClusterDriver, DriverError


def _not_yet(operation: str):
    raise DriverError(
        f"The local driver cannot {operation} yet: workloads arrive with the workshops issue.",
        permanent=True,
    )


class LocalDriver(ClusterDriver):
    name = "local"

    @property
    def volumes_dir(self):
        return settings.LOCAL_VOLUMES_DIR

    def sandbox_available(self) -> bool:
        return shutil.which("bwrap") is not None

    def health(self) -> dict:
        try:
            self.volumes_dir.mkdir(parents=True, exist_ok=True)
            # The volumes directory must be writable: every workload needs it.
            with tempfile.NamedTemporaryFile(dir=self.volumes_dir, prefix=".health-"):
                pass
            free = shutil.disk_usage(self.volumes_dir).free
        except OSError as exc:
            return {"ok": False, "driver": self.name, "error": f"volumes directory: {exc}"}
        sandbox = self.sandbox_available()
        return {
            "ok": True,
            "driver": self.name,
            "volumes_dir": str(self.volumes_dir),
            "free_gib": round(free / 2**30, 1),
            "sandbox": "bubblewrap" if sandbox else "unavailable",
            "insecure": bool(settings.ALADDIN_LOCAL_INSECURE),
            "pid": os.getpid(),
        }

    def ensure_user_space(self, *, user_id, storage_gib, quota):
        _not_yet("create user volumes")

    def delete_user_space(self, *, user_id):
        _not_yet("delete user volumes")

    def storage_usage_bytes(self, *, user_id):
        _not_yet("measure storage")

    def start_workload(self, spec):
        _not_yet("start workloads")

    def stop_workload(self, *, name):
        _not_yet("stop workloads")

    def workload_status(self, *, name):
        _not_yet("report workload status")

    def list_workloads(self):
        return []

    def follow_logs(self, *, name, offset=0):
        _not_yet("stream logs")

    def exec_terminal(self, *, name, command):
        _not_yet("open terminals")
