"""The agent's memory across restarts: ``<state_dir>/journal.json`` and ``<state_dir>/heartbeat``.

The journal holds every workload's record (:class:`~aladdin.cluster.protocol.WorkloadRecord`,
never its environment, which may hold secrets), the one user an unsandboxed
host serves, and whose each kept log is. It is rewritten whole on each
change (a temporary file renamed over it: a crash leaves the old or the new
one, never half). The heartbeat file is touched every few seconds, so that
after an agent that was killed outright, the end of its workloads is known
to within that interval (:meth:`Journal.last_beat`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .. import protocol
from ..protocol import WorkloadRecord

log = logging.getLogger("aladdin.cluster.agent")

HEARTBEAT_SECONDS = 5


@dataclass
class JournalState:
    """What the journal holds; its JSON is this dataclass's wire form."""

    single_user_id: int | None = None
    workloads: dict[str, WorkloadRecord] = field(default_factory=dict)
    logs: dict[str, int] = field(default_factory=dict)  # kept log -> its user id


class Journal:
    def __init__(self, state_dir: Path):
        self.path = state_dir / "journal.json"
        self.heartbeat_path = state_dir / "heartbeat"

    def load(self) -> JournalState | None:
        """The previous run's state; None when there is none or it cannot be read.

        A record (or log owner) that does not decode is skipped with a
        warning rather than keeping the agent from starting.
        """
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        state = JournalState()
        try:
            state.single_user_id = protocol.from_wire(int | None, data.get("single_user_id"))
        except protocol.AgentError as exc:
            log.warning("journal: single_user_id ignored: %s", exc)
        for name, record in (data.get("workloads") or {}).items():
            try:
                protocol.check_name(name)
                state.workloads[name] = protocol.from_wire(WorkloadRecord, record)
            except protocol.AgentError as exc:
                log.warning("journal: workload %r ignored: %s", name, exc)
        for name, user_id in (data.get("logs") or {}).items():
            try:
                # The name becomes a path under logs/: only a valid name may.
                protocol.check_name(name)
                state.logs[name] = protocol.from_wire(int, user_id)
            except protocol.AgentError as exc:
                log.warning("journal: log %r ignored: %s", name, exc)
        return state

    def save(self, state: JournalState) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(protocol.to_wire(state), indent=1))
        os.replace(tmp, self.path)

    def beat(self) -> None:
        self.heartbeat_path.touch()

    def last_beat(self) -> datetime:
        """When the previous agent was last known alive (now, if it never beat)."""
        try:
            return datetime.fromtimestamp(self.heartbeat_path.stat().st_mtime, UTC)
        except OSError:
            return datetime.now(UTC)
