"""A job's output, as its workload wrote it (SPEC §7 "View Log", "Log Download", "Delete").

Thin wrappers over the cluster driver, named by the job: the HTTP log
endpoint reads a chunk with :func:`read_logs`, the websocket consumer
(:mod:`gpu_jobs.consumers`) streams with :func:`follow`, deleting a job drops
its output with :func:`delete_logs`. Offsets are byte offsets into the
workload's output, so a client that lost its connection resumes where it
stopped. Ownership is the caller's business (views and consumers check it).
"""

from __future__ import annotations

import logging
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from django.utils.translation import gettext as _

from aladdin import cluster
from aladdin.cluster.base import DriverError
from aladdin.lib.errors import DomainError
from storage import files as storage_files

from .choices import ENDED_STATES
from .models import Job

log = logging.getLogger(__name__)

MAX_CHUNK = 1 << 20


class LogsUnavailable(DomainError):  # noqa: N818 - reads as the condition
    """The cluster cannot read a job's output now: 503, try again shortly."""

    http_status = 503
    error_code = "logs_unavailable"

    def error_detail(self) -> str:
        return _("The job's output cannot be read right now. Try again shortly.")


@dataclass(frozen=True)
class LogChunk:
    """Output from a byte offset: ``data``, the ``offset`` after it, and whether that is all.

    ``ended``: the job has ended and nothing follows ``offset`` (a client may
    stop asking).
    """

    data: bytes
    offset: int
    ended: bool


def read_logs(job: Job, *, offset: int = 0, limit: int = MAX_CHUNK) -> LogChunk:
    """Up to ``limit`` bytes (at most 1 MiB) of the job's output from ``offset``. Raises DriverError.

    Output removed (the job was deleted, or its output expired): nothing, ended.
    """
    offset = max(0, int(offset))
    limit = max(1, min(int(limit), MAX_CHUNK))
    if job.logs_deleted:
        return LogChunk(data=b"", offset=offset, ended=True)
    # Whether it had ended is read first: output read after that is complete.
    ended = job.state in ENDED_STATES
    data = b""
    stream = cluster.get_driver().follow_logs(name=job.workload_name, offset=offset, follow=False)
    try:
        for chunk in stream:
            data += chunk
            if len(data) >= limit:
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    data = data[:limit]
    end = offset + len(data)
    return LogChunk(data=data, offset=end, ended=ended and len(data) < limit)


def follow(job: Job, *, offset: int = 0) -> Iterator[bytes]:
    """The job's output from ``offset`` as it is written, until its workload ends.

    The driver's iterator: its ``close()`` may be called from another thread.
    Raises DriverError (e.g. the agent is unreachable). Output removed:
    nothing (the driver is not asked).
    """
    if job.logs_deleted:
        return _nothing()
    return cluster.get_driver().follow_logs(
        name=job.workload_name, offset=max(0, int(offset)), follow=True
    )


def _nothing() -> Iterator[bytes]:
    # A generator, so that it has the close() the callers may call.
    yield from ()


def delete_logs(job: Job) -> None:
    """Drop the job's kept output (missing = success). Raises DriverError while it runs."""
    cluster.get_driver().delete_logs(name=job.workload_name)


# --- downloads (SPEC §7 "Log Download") -----------------------------------------------
# A Run Task's workers write their output into the user's volume, so it counts
# as storage and survives the task: /root/.aladdin/tasks/<id>/worker-<n>.log.
TASKS_DIR = ".aladdin/tasks"  # under /root
TAR_BLOCK = 512


@dataclass
class LogFile:
    """A download: its file name, size when known, and its bytes (close ``chunks`` to stop)."""

    name: str
    size: int | None
    chunks: Iterator[bytes]
    content_type: str = "text/plain; charset=utf-8"


def task_logs_dir(job: Job) -> str:
    """The task's log folder, relative to /root (what "Copy Path" shows, with /root/ before it)."""
    return f"{TASKS_DIR}/{job.pk}"


def worker_log_name(index: int) -> str:
    return f"worker-{index}.log"


def output_file(job: Job) -> LogFile:
    """A dev job's (Run, Debug, Shell) whole output, as one file. Raises LogsUnavailable."""
    if job.logs_deleted:
        return LogFile(name=f"job-{job.pk}.log", size=0, chunks=_nothing())
    try:
        stream = cluster.get_driver().follow_logs(name=job.workload_name, offset=0, follow=False)
    except DriverError as exc:
        raise LogsUnavailable() from exc
    return LogFile(name=f"job-{job.pk}.log", size=None, chunks=stream)


def worker_file(job: Job, index: int) -> LogFile:
    """One worker's log of a Run Task, from the user's volume. Raises FileNotFound, LogsUnavailable."""
    if not 0 <= index < job.workers:
        raise storage_files.FileNotFound(_("This task has no worker %(n)s.") % {"n": index})
    try:
        download = storage_files.file_download(
            user=job.user, path=f"{task_logs_dir(job)}/{worker_log_name(index)}"
        )
    except DriverError as exc:
        raise LogsUnavailable() from exc
    return LogFile(
        name=f"task-{job.pk}-{download.name}", size=download.size, chunks=download.chunks
    )


def archive_file(job: Job) -> LogFile:
    """Every worker's log of a Run Task as one ``.tar.gz``, streamed. Raises FileNotFound, LogsUnavailable."""
    try:
        rows = [r for r in storage_files.files_list(user=job.user, path=task_logs_dir(job))]
    except DriverError as exc:
        raise LogsUnavailable() from exc
    files = [r for r in rows if not r.is_dir and not r.is_link]
    return LogFile(
        name=f"task-{job.pk}-logs.tar.gz",
        size=None,
        chunks=_tar_gz(job, files),
        content_type="application/gzip",
    )


def _tar_gz(job: Job, rows) -> Iterator[bytes]:
    """A gzip'd ustar archive of ``rows`` (files of the task's folder), written as it is read.

    By hand rather than with ``tarfile``, whose ``addfile`` copies a whole
    member before returning: here each chunk read from the volume goes out
    compressed at once, so a large log never sits in memory.
    """
    gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    for row in rows:
        download = storage_files.file_download(user=job.user, path=row.path)
        size = download.size or 0
        info = tarfile.TarInfo(f"task-{job.pk}/{row.name}")
        info.size = size
        info.mode = 0o644
        info.mtime = int(row.modified.timestamp()) if row.modified else 0
        out = gzip.compress(info.tobuf(format=tarfile.USTAR_FORMAT))
        if out:
            yield out
        left = size
        try:
            for chunk in download.chunks:
                # A log still growing is cut at the size its header says.
                piece = chunk[:left]
                left -= len(piece)
                if piece and (out := gzip.compress(piece)):
                    yield out
                if left == 0:
                    break
        finally:
            close = getattr(download.chunks, "close", None)
            if close is not None:
                close()
        # One that shrank is padded, so the archive stays readable.
        padding = left + (-size % TAR_BLOCK)
        if padding and (out := gzip.compress(b"\0" * padding)):
            yield out
    yield gzip.compress(b"\0" * (2 * TAR_BLOCK)) + gzip.flush()


def delete_task_logs(job: Job) -> None:
    """Remove a deleted task's log folder from the user's volume (missing = success).

    Raises DriverError when the cluster cannot be reached now (the delete task
    retries). A backend with no files access at all (a permanent refusal)
    cannot have written the folder through the portal either: nothing to do.
    """
    try:
        storage_files.file_delete(user=job.user, path=task_logs_dir(job))
    except storage_files.FileNotFound:
        pass
    except DriverError as exc:
        if not exc.permanent:
            raise
        log.warning("task %s: its logs folder was not removed: %s", job.pk, exc)
