"""The local backend's Monitor: what a workload uses, sampled by the agent (issue 18, SPEC §7).

Every :data:`DEFAULT_INTERVAL_SECONDS` the agent takes one
:class:`~aladdin.cluster.base.MetricSample` of each running workload:

- CPU and memory from the workload's cgroup (:meth:`read_usage`): CPU time
  (cgroup v2 ``cpu.stat``, v1 ``cpuacct.usage`` where cpuacct shares the cpu
  hierarchy) and memory in use less reclaimable page cache (v2
  ``memory.current``, v1 ``memory.usage_in_bytes``, each minus
  ``inactive_file``). Where the cgroup cannot say (no cgroups on this host,
  or a v1 cpu hierarchy without cpuacct), the workload's processes in
  ``/proc`` do;
- each card it holds through one :class:`GpuMetrics`: NVML (the
  ``nvidia-ml-py`` bindings that :mod:`.gpus` detects cards with) where the
  cards are real; virtual cards have none ("no GPU metrics") unless a test
  hands the agent a fake that reports utilisation, or the operator of a
  development portal (DEBUG) names a file they read it from
  (:class:`FileGpuMetrics`, ``ALADDIN_LOCAL_VIRTUAL_GPU_METRICS_FILE``).

Each workload keeps its samples in a :class:`SampleRing`: the most recent
:data:`RING_SIZE` at full rate; once full, the older half is averaged in
pairs, so the whole life of a long job stays in bounded memory, recent
minutes sharp and old hours coarse.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pynvml

from .base import GpuSample, MetricSample
from .cgroups import Cgroups
from .gpus import Card

DEFAULT_INTERVAL_SECONDS = 5.0
RING_SIZE = 480  # 40 minutes at 5 s before the oldest samples are merged
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --- GPU metrics -----------------------------------------------------------------
class GpuMetrics(abc.ABC):
    """What the agent asks about cards' use; one per agent."""

    @abc.abstractmethod
    def sample(self, cards: list[Card]) -> tuple[GpuSample, ...] | None:
        """Each card's utilisation and memory now; None: "no GPU metrics" for these cards."""

    def close(self) -> None:  # noqa: B027 - optional for implementations
        """Release what the implementation holds (NVML's handle)."""


class NoGpuMetrics(GpuMetrics):
    """Cards that report nothing: virtual cards, or a host whose NVML will not start."""

    def sample(self, cards: list[Card]) -> tuple[GpuSample, ...] | None:
        return None


class NvmlGpuMetrics(GpuMetrics):
    """Real cards through NVML: utilisation (last sample period) and memory used.

    NVML is started once and kept (each ``nvmlInit`` costs milliseconds);
    a card NVML cannot answer for is left out of the sample, not an error.
    """

    def __init__(self) -> None:
        pynvml.nvmlInit()
        self._handles: dict[str, object] = {}

    def _handle(self, card: Card) -> object:
        if card.index not in self._handles:
            if card.uuid:
                self._handles[card.index] = pynvml.nvmlDeviceGetHandleByUUID(card.uuid)
            else:
                self._handles[card.index] = pynvml.nvmlDeviceGetHandleByIndex(int(card.index))
        return self._handles[card.index]

    def sample(self, cards: list[Card]) -> tuple[GpuSample, ...] | None:
        samples = []
        for card in cards:
            if card.virtual:
                continue
            try:
                handle = self._handle(card)
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            except pynvml.NVMLError:
                continue
            samples.append(
                GpuSample(
                    index=card.index,
                    utilization_percent=float(rates.gpu),
                    memory_used_mib=int(memory.used) // 2**20,
                    memory_total_mib=int(memory.total) // 2**20,
                )
            )
        return tuple(samples) if samples else None

    def close(self) -> None:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


class FileGpuMetrics(GpuMetrics):
    """Virtual cards that report the utilisation a JSON file says, read at each sample.

    For tests and demonstrations of what judges a card's use (the Monitor's
    charts, idle-GPU stops) without cards: development portals only
    (``ALADDIN_LOCAL_VIRTUAL_GPU_METRICS_FILE`` needs DEBUG). The file is
    ``{"<card index>": percent, "default": percent}``; a card it does not
    name reports ``default`` (0 without). A file that cannot be read is "no
    GPU metrics" for that sample, as a card NVML cannot answer for.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def sample(self, cards: list[Card]) -> tuple[GpuSample, ...] | None:
        try:
            said = json.loads(self.path.read_text())
            default = float(said.get("default", 0))
            utilization = {card.index: float(said.get(card.index, default)) for card in cards}
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        return (
            tuple(
                GpuSample(
                    index=card.index,
                    utilization_percent=utilization[card.index],
                    memory_used_mib=0,
                    memory_total_mib=card.memory_mib,
                )
                for card in cards
            )
            or None
        )


def gpu_metrics_for(cards: Iterable[Card], *, virtual_file: str = "") -> GpuMetrics:
    """NVML where any card is real and NVML starts; else :class:`NoGpuMetrics`.

    Virtual cards report what ``virtual_file`` says where one is named
    (:class:`FileGpuMetrics`, development portals only).
    """
    if all(card.virtual for card in cards):
        return FileGpuMetrics(virtual_file) if virtual_file else NoGpuMetrics()
    try:
        return NvmlGpuMetrics()
    except pynvml.NVMLError:
        return NoGpuMetrics()


# --- CPU and memory ---------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    """A workload's counters at one moment: CPU time used so far (ns) and memory now (bytes)."""

    cpu_ns: int | None
    memory_bytes: int | None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stat_value(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
    except (OSError, ValueError):
        return None
    return None


def cgroup_usage(cgroups: Cgroups, name: str) -> Usage:
    """``name``'s CPU time and memory from its cgroup; None for what the cgroup cannot say."""
    memory_dir = cgroups.path(name, "memory")
    cpu_dir = cgroups.path(name, "cpu")
    if cgroups.version == 2:
        usec = _stat_value(cpu_dir / "cpu.stat", "usage_usec")
        cpu_ns = usec * 1000 if usec is not None else None
        current = _read_int(memory_dir / "memory.current")
        inactive = _stat_value(memory_dir / "memory.stat", "inactive_file") or 0
    else:
        # cpuacct.usage is there only where cpu and cpuacct share a hierarchy.
        cpu_ns = _read_int(cpu_dir / "cpuacct.usage")
        current = _read_int(memory_dir / "memory.usage_in_bytes")
        inactive = _stat_value(memory_dir / "memory.stat", "total_inactive_file") or 0
    memory = max(0, current - inactive) if current is not None else None
    return Usage(cpu_ns=cpu_ns, memory_bytes=memory)


def proc_usage(pids: Iterable[int]) -> Usage:
    """CPU time and resident memory of ``pids`` from /proc (where no cgroup says).

    CPU time counts each process's own and its reaped children's, so work
    done by short-lived children is not lost; the sum can still dip when a
    process exits before its parent reaps it, which the sampler clamps.
    """
    ticks, resident, seen = 0, 0, False
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            statm = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        # Fields after the command (which may hold spaces and parentheses).
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime are fields 14-17 (1-based), 11-14 after the command.
        ticks += sum(int(v) for v in fields[11:15])
        resident += int(statm[1]) * PAGE_SIZE
        seen = True
    if not seen:
        return Usage(None, None)
    return Usage(cpu_ns=ticks * 1_000_000_000 // CLOCK_TICKS, memory_bytes=resident)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc's parent pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def read_usage(cgroups: Cgroups | None, name: str, root_pid: int | None) -> Usage:
    """The workload's usage: its cgroup's figures, each one missing filled from /proc."""
    usage = cgroup_usage(cgroups, name) if cgroups is not None else Usage(None, None)
    if (usage.cpu_ns is None or usage.memory_bytes is None) and root_pid:
        pids = cgroups.pids(name) if cgroups is not None else process_tree(root_pid)
        fallback = proc_usage(pids)
        usage = Usage(
            cpu_ns=usage.cpu_ns if usage.cpu_ns is not None else fallback.cpu_ns,
            memory_bytes=(
                usage.memory_bytes if usage.memory_bytes is not None else fallback.memory_bytes
            ),
        )
    return usage


# --- the samples ------------------------------------------------------------------
class Sampler:
    """Turns one workload's successive :class:`Usage` readings into samples (CPU as a rate)."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None  # (monotonic seconds, cpu ns)

    def sample(
        self, at: datetime, now: float, usage: Usage, gpus: tuple[GpuSample, ...] | None
    ) -> MetricSample | None:
        """The sample for the interval ending now; None for the first reading (no rate yet)."""
        last = self._last
        if usage.cpu_ns is not None:
            self._last = (now, usage.cpu_ns)
        if last is None or usage.cpu_ns is None:
            cpu = None
            period = 0.0 if last is None else now - last[0]
        else:
            period = now - last[0]
            if period <= 0:
                return None
            cpu = max(0, usage.cpu_ns - last[1]) / 1e9 / period * 100
        if last is None and usage.memory_bytes is None:
            return None
        return MetricSample(
            at=at,
            period_seconds=round(period, 3),
            cpu_percent=round(cpu, 1) if cpu is not None else None,
            memory_bytes=usage.memory_bytes,
            gpus=gpus or (),
        )


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def merge(a: MetricSample, b: MetricSample) -> MetricSample:
    """Two consecutive samples as one over both periods (time-weighted CPU, mean memory)."""
    period = a.period_seconds + b.period_seconds
    if a.cpu_percent is not None and b.cpu_percent is not None and period > 0:
        cpu: float | None = (
            a.cpu_percent * a.period_seconds + b.cpu_percent * b.period_seconds
        ) / period
    else:
        cpu = _mean([a.cpu_percent, b.cpu_percent])
    memory = _mean([a.memory_bytes, b.memory_bytes])
    by_card = {g.index: g for g in a.gpus}
    gpus = []
    for g in b.gpus:
        other = by_card.get(g.index)
        if other is None:
            gpus.append(g)
            continue
        gpus.append(
            GpuSample(
                index=g.index,
                utilization_percent=(other.utilization_percent + g.utilization_percent) / 2,
                memory_used_mib=(other.memory_used_mib + g.memory_used_mib) // 2,
                memory_total_mib=g.memory_total_mib,
            )
        )
    return MetricSample(
        at=b.at,
        period_seconds=round(period, 3),
        cpu_percent=round(cpu, 1) if cpu is not None else None,
        memory_bytes=int(memory) if memory is not None else None,
        gpus=tuple(gpus),
    )


class SampleRing:
    """One workload's samples, oldest first, in at most ``size`` entries.

    When full, the older half is merged in pairs: its entries then cover
    twice the time each. Repeated, the oldest part of a long life ends up
    coarse and the last minutes stay at the sampling rate.
    """

    def __init__(self, size: int = RING_SIZE):
        self.size = max(4, size)
        self.samples: list[MetricSample] = []
        self.gpu_metrics = False  # any sample had GPU figures

    def add(self, sample: MetricSample) -> None:
        self.samples.append(sample)
        if sample.gpus:
            self.gpu_metrics = True
        if len(self.samples) > self.size:
            half = len(self.samples) // 2
            old, recent = self.samples[:half], self.samples[half:]
            merged = [merge(old[i], old[i + 1]) for i in range(0, len(old) - 1, 2)]
            if len(old) % 2:
                merged.append(old[-1])
            self.samples = merged + recent

    def since(self, since: datetime | None) -> list[MetricSample]:
        if since is None:
            return list(self.samples)
        return [s for s in self.samples if s.at > since]
