"""Recording a benchmark run in docs/benchmarks.md (shared by the bench scripts).

Each benchmark owns one ``## `` section: its heading, an introduction (how
it measures), then its runs, newest first. A run is put at the top of its
section's runs; nothing else in the file changes, so benchmarks run at the
same time (or edited by hand) never overwrite each other's sections.
"""

from __future__ import annotations

import contextlib
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine(*extras: str) -> str:
    """The machine a run measured on, for a section's "Machine:" line; ``extras`` are appended."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    parts = [
        f"{os.cpu_count()} vCPUs ({model or platform.machine()})",
        f"Linux {platform.release()}",
        f"Python {platform.python_version()}",
        *extras,
    ]
    return ", ".join(parts)


def record_run(
    *, section: str, intro: str, command: str, lines: list[str], notes: str, docs: Path = DOCS
) -> None:
    """Put this run (``lines`` in a code block) at the top of ``section``'s runs."""
    run = (
        f"### {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}\n\n"
        f"Command: `{command}`. {notes}\n\n```\n" + "\n".join(lines) + "\n```\n"
    )
    text = docs.read_text()  # read right before writing: others edit other sections
    start = text.find(f"\n{section}\n")
    if start < 0:
        new = text.rstrip("\n") + "\n\n" + intro + "\n" + run
    else:
        start += 1
        end = text.find("\n## ", start + len(section))
        end = len(text) if end < 0 else end + 1
        body = text[start:end]
        first_run = body.find("\n### ")
        older = body[first_run + 1 :] if first_run >= 0 else ""
        new_body = intro + "\n" + run + ("\n" + older.rstrip("\n") + "\n" if older else "")
        new = text[:start] + new_body + ("\n" + text[end:] if end < len(text) else "")
    # Written aside, then renamed: a reader never sees half a file.
    tmp = docs.with_name(f".{docs.name}.{os.getpid()}.tmp")
    tmp.write_text(new)
    os.replace(tmp, docs)
