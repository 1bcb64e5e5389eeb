"""A job's output, as its workload wrote it (SPEC §7 "View Log", "Log Download", "Delete").

Thin wrappers over the cluster driver, named by the job: the HTTP log
endpoint reads a chunk with :func:`read_logs`, the websocket consumer
(:mod:`gpu_jobs.consumers`) streams with :func:`follow`, deleting a job drops
its output with :func:`delete_logs`. Offsets are byte offsets into the
workload's output, so a client that lost its connection resumes where it
stopped. Ownership is the caller's business (views and consumers check it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.utils.translation import gettext as _

from aladdin import cluster
from aladdin.lib.errors import DomainError

from .choices import ENDED_STATES
from .models import Job

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
