"""What workloads print, kept on the host: ``<state_dir>/logs/<name>.log``, bounded twice.

Output goes through a pipe that :meth:`OutputStore.copy` appends to the
workload's log, up to ``max_bytes`` (``ALADDIN_LOCAL_LOG_MAX_MIB``): beyond
it the rest is dropped with a note, so a job printing in a loop cannot fill
the host's disk. All of one user's logs together are bounded too
(``user_max_bytes``, ``ALADDIN_LOCAL_LOG_USER_MAX_MIB``): a write first
makes room by emptying that user's oldest logs of ended workloads (each
keeps a one-line note saying why), and what still does not fit is dropped.
Whose each log is survives restarts through the journal (:attr:`owners`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

DEFAULT_MAX_BYTES = 256 * 2**20  # ALADDIN_LOCAL_LOG_MAX_MIB
DEFAULT_USER_MAX_BYTES = 1024 * 2**20  # ALADDIN_LOCAL_LOG_USER_MAX_MIB
READ_MAX = 1 << 20  # the most one `logs` answer carries


class OutputStore:
    """The log files and whose each is.

    ``lock`` is the workload table's: emptying a user's oldest logs asks
    ``has_ended`` about other workloads, and a start of a name must not slip
    in between a delete's check and its unlink; one lock cannot deadlock.
    """

    def __init__(
        self,
        logs_dir: Path,
        *,
        max_bytes: int,
        user_max_bytes: int,
        lock: threading.RLock,
        has_ended: Callable[[str], bool],
    ):
        self.logs_dir = logs_dir
        self.max_bytes = int(max_bytes)
        self.user_max_bytes = int(user_max_bytes)
        self._lock = lock
        self._has_ended = has_ended
        # name -> user id, and each user's total: the per-user bound.
        self.owners: dict[str, int] = {}
        self._user_bytes: dict[int, int] = {}

    def path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def size(self, name: str) -> int:
        try:
            return self.path(name).stat().st_size
        except OSError:
            return 0

    def _mtime(self, name: str) -> float:
        try:
            return self.path(name).stat().st_mtime
        except OSError:
            return 0.0

    def adopt(self, owners: dict[str, int]) -> None:
        """Take over the journal's owners (at start) and count their logs' sizes."""
        with self._lock:
            for name, user_id in owners.items():
                self.owners[name] = user_id
                self._user_bytes[user_id] = self._user_bytes.get(user_id, 0) + self.size(name)

    def claim(self, name: str, user_id: int) -> None:
        """Count ``name``'s log (appended to if it exists) as ``user_id``'s from now on."""
        with self._lock:
            if self.owners.get(name) != user_id:
                self.owners[name] = user_id
                self._user_bytes[user_id] = self._user_bytes.get(user_id, 0) + self.size(name)

    def read(self, name: str, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes (at most 1 MiB) from ``offset``; b"" when there is no log."""
        with contextlib.suppress(FileNotFoundError), self.path(name).open("rb") as f:
            f.seek(offset)
            return f.read(min(limit, READ_MAX))
        return b""

    def delete(self, name: str) -> None:
        """Remove ``name``'s log (missing is success). The caller holds the lock and checked it ended."""
        size = self.size(name)
        with contextlib.suppress(FileNotFoundError):
            self.path(name).unlink()
        owner = self.owners.pop(name, None)
        if owner is not None:
            self._user_bytes[owner] = max(0, self._user_bytes.get(owner, 0) - size)

    def _user_room(self, user_id: int, wanted: int, writing: str) -> int:
        """Bytes ``writing`` may add now within the user's bound, emptying their oldest ended logs first.

        Called under the lock; counts what it grants as written.
        """
        total = self._user_bytes.get(user_id, 0)
        if total + wanted > self.user_max_bytes:
            ended = [
                n
                for n, owner in self.owners.items()
                if owner == user_id and n != writing and self._has_ended(n)
            ]
            ended.sort(key=self._mtime)  # oldest first
            note = (
                f"[aladdin: this output was removed: the output kept for your jobs is "
                f"limited to {self.user_max_bytes // 2**20} MiB in all, and the oldest "
                "goes first]\n"
            ).encode()
            for name in ended:
                if total + wanted <= self.user_max_bytes:
                    break
                size = self.size(name)
                if size <= len(note):
                    continue
                with self.path(name).open("wb") as f:
                    f.write(note)
                # The note itself is not counted: a line per job, not output.
                total -= size
        granted = max(0, min(wanted, self.user_max_bytes - total))
        self._user_bytes[user_id] = total + granted
        return granted

    def copy(self, fd: int, name: str, user_id: int) -> None:
        """Append what arrives on ``fd`` to ``name``'s log within both bounds; closes ``fd`` at EOF."""
        try:
            with self.path(name).open("ab") as log_file:
                written = log_file.tell()
                dropped = False
                while True:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    room = self.max_bytes - written
                    if room > 0:
                        with self._lock:
                            room = self._user_room(user_id, min(room, len(data)), name)
                    if room > 0:
                        chunk = data[:room]
                        log_file.write(chunk)
                        log_file.flush()
                        written += len(chunk)
                    if room < len(data) and not dropped:
                        dropped = True
                        if written >= self.max_bytes:
                            why = f"output beyond {self.max_bytes // 2**20} MiB was dropped"
                        else:
                            why = (
                                "output was dropped: the output kept for your jobs reached "
                                f"{self.user_max_bytes // 2**20} MiB in all"
                            )
                        log_file.write(f"\n[aladdin: {why}; the job runs on]\n".encode())
                        log_file.flush()
        finally:
            os.close(fd)
