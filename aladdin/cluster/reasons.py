"""Why a workload ended, as every backend reports it: an id, parameters, English text.

The cluster speaks no user's language: its workers and agents run without
one. So an end reason travels as a stable message id with JSON parameters
(``WorkloadStatus.reason_id`` / ``reason_params``), which the portal renders
in the reader's language (``aladdin.workloads.reasons`` holds the texts), and
as English text (``reason``) for logs, operators and a portal older than the
ids. The Kubernetes backend maps a pod's end (exit code, OOMKilled, eviction)
to the same ids.

No Django here: the agent imports this module.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EndReason:
    id: str
    params: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def describe_memory(memory_mib: int) -> str:
    """``256 MiB`` below 1 GiB, else GiB with at most two decimals: ``1.5 GiB``, ``16 GiB``."""
    if memory_mib < 1024:
        return f"{memory_mib} MiB"
    return f"{memory_mib / 1024:.2f}".rstrip("0").rstrip(".") + " GiB"


def exited(returncode: int) -> EndReason:
    """A non-zero end: its exit code, or the signal that killed it."""
    if returncode < 0:
        sig = -returncode
    elif returncode > 128:
        sig = returncode - 128  # bwrap's init reports a signalled child as 128 + signal
    else:
        return EndReason(
            "workload.exit_code", {"code": returncode}, f"exited with code {returncode}"
        )
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    return EndReason("workload.signal", {"signal": name}, f"killed by {name}")


def out_of_memory(memory_mib: int) -> EndReason:
    """The kernel killed one of its processes for memory."""
    limit = describe_memory(memory_mib)
    return EndReason("workload.oom", {"limit_mib": memory_mib}, f"out of memory (limit {limit})")


def stopped() -> EndReason:
    return EndReason("workload.stopped", {}, "stopped")


def agent_stopped() -> EndReason:
    return EndReason("workload.agent_stopped", {}, "agent stopped")


def agent_died() -> EndReason:
    return EndReason(
        "workload.agent_died", {}, "the agent ended unexpectedly; the workload ended with it"
    )


def could_not_start(detail: str) -> EndReason:
    """The sandbox could not be started; ``detail`` is the host's own (English) error."""
    return EndReason("workload.not_started", {"detail": detail}, f"could not start: {detail}")


def image_not_ready(detail: str) -> EndReason:
    """The workload's image environment cannot be used (not built, failed, unavailable)."""
    return EndReason("workload.image_not_ready", {"detail": detail}, detail)
