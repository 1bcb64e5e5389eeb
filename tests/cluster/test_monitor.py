"""The Monitor on the local backend: the GPU-metrics interface, the sample ring, the operation.

The interface is tested with a fake that reports utilisation (the tests'
hosts have virtual cards, which report none), and the operation against an
agent of an earlier release, which does not know it: "no metrics", not an error.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

from aladdin.cluster import gpus, monitor
from aladdin.cluster.agent.monitor import Monitor
from aladdin.cluster.agent.workloads import Workload
from aladdin.cluster.base import GpuSample, MetricSample, Phase
from aladdin.cluster.local import LocalDriver
from aladdin.cluster.protocol import AgentError, ErrorCode


class FakeGpuMetrics(monitor.GpuMetrics):
    """Every card busy at ``utilization`` percent, a quarter of its memory used."""

    def __init__(self, utilization: float):
        self.utilization = utilization

    def sample(self, cards):
        return tuple(
            monitor.GpuSample(
                index=c.index,
                utilization_percent=self.utilization,
                memory_used_mib=c.memory_mib // 4,
                memory_total_mib=c.memory_mib,
            )
            for c in cards
        )


class Table:
    """The part of the agent's Workloads that the Monitor reads."""

    def __init__(self, *workloads: Workload):
        self.lock = threading.RLock()
        self._table = {w.name: w for w in workloads}
        self.retired = {}

    def table(self):
        return list(self._table.values())

    def get(self, name):
        return self._table.get(name)


def running_here(name: str, cards) -> Workload:
    """A workload whose process is this test's own (no cgroup: /proc says what it uses)."""
    return Workload(name=name, phase=Phase.RUNNING, pid=os.getpid(), cards=list(cards))


def test_a_fake_gpu_metrics_reports_each_cards_utilisation_in_the_samples():
    cards = gpus.virtual_cards({"80g": 2})
    table = Table(running_here("job-1", cards))
    mon = Monitor(table, FakeGpuMetrics(73.0), interval=1)

    mon.sample_once()
    mon.sample_once()

    metrics = mon.metrics("job-1", None)
    assert metrics.available and metrics.gpu_metrics and metrics.interval_seconds == 1
    last = metrics.samples[-1]
    assert [(g.index, g.utilization_percent) for g in last.gpus] == [("0", 73.0), ("1", 73.0)]
    assert last.gpus[0].memory_used_mib == 20 * 1024 and last.gpus[0].memory_total_mib == 80 * 1024
    assert last.cpu_percent is not None and last.memory_bytes > 0


def test_virtual_cards_without_a_fake_have_no_gpu_metrics_but_cpu_and_memory():
    cards = gpus.virtual_cards({"40g": 1})
    chosen = monitor.gpu_metrics_for(cards)
    assert isinstance(chosen, monitor.NoGpuMetrics)
    assert chosen.sample(cards) is None

    table = Table(running_here("job-2", cards))
    mon = Monitor(table, chosen, interval=1)
    mon.sample_once()
    mon.sample_once()

    metrics = mon.metrics("job-2", None)
    assert metrics.available and not metrics.gpu_metrics
    assert metrics.samples and all(s.gpus == () for s in metrics.samples)
    assert metrics.samples[-1].memory_bytes > 0


def test_a_workload_the_agent_does_not_know_has_no_metrics_and_since_filters():
    table = Table(running_here("job-3", []))
    mon = Monitor(table, None, interval=1)
    assert not mon.metrics("job-404", None).available
    mon.sample_once()
    mon.sample_once()
    mon.sample_once()
    samples = mon.metrics("job-3", None).samples
    assert len(samples) >= 2
    later = mon.metrics("job-3", samples[0].at).samples
    assert later == [s for s in samples if s.at > samples[0].at]
    # Released (its record forgotten), its samples stay for its page.
    table.retired["job-3"] = table._table.pop("job-3").ring
    assert mon.metrics("job-3", None).samples == samples


def test_the_ring_keeps_a_long_life_in_bounded_size_recent_samples_sharp():
    ring = monitor.SampleRing(size=40)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(1000):
        ring.add(
            MetricSample(
                at=start + timedelta(seconds=5 * (i + 1)),
                period_seconds=5,
                cpu_percent=float(i % 2) * 100,  # alternating idle and busy
                memory_bytes=1000,
                gpus=(GpuSample("0", 50.0, 10, 100),),
            )
        )
    assert len(ring.samples) <= 40
    # The whole life is still covered, and averages stay averages.
    assert sum(s.period_seconds for s in ring.samples) == 5000
    assert ring.samples[-1].at == start + timedelta(seconds=5000)
    assert ring.samples[-1].period_seconds == 5
    old = ring.samples[0]
    assert old.period_seconds > 5 and old.cpu_percent == 50 and old.memory_bytes == 1000
    assert old.gpus[0].utilization_percent == 50
    assert [s.at for s in ring.samples] == sorted(s.at for s in ring.samples)


def test_an_agent_without_the_operation_means_no_metrics_not_an_error():
    driver = LocalDriver(socket_path="/nonexistent")

    def older_agent(op, **fields):
        # What an agent of an earlier release answers to an op it does not know.
        raise_unknown = AgentError(ErrorCode.INVALID, f"unknown operation {op!r}")
        return raise_unknown.to_wire()

    driver._call = lambda op, **fields: _checked(older_agent(op, **fields))
    metrics = driver.workload_metrics(name="job-1")
    assert metrics.name == "job-1" and not metrics.available and metrics.samples == []


def _checked(answer):
    from aladdin.cluster.local import _answer_checked

    return _answer_checked(answer)


def test_real_cards_are_asked_through_nvml_and_a_card_it_cannot_answer_for_is_left_out(
    monkeypatch,
):
    # NVML as nvidia-ml-py exposes it, answering for one of two cards.
    pynvml = monitor.pynvml
    calls = []
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: calls.append("init"))
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", lambda uuid: uuid)

    class Rates:
        gpu = 64

    class Memory:
        used, total = 12 * 2**30, 80 * 2**30

    def rates(handle):
        if handle == "GPU-bad":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return Rates()

    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", rates)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda handle: Memory())
    cards = [
        gpus.Card(index="0", model="80g", memory_mib=81920, name="H100", uuid="GPU-good"),
        gpus.Card(index="1", model="80g", memory_mib=81920, name="H100", uuid="GPU-bad"),
    ]

    chosen = monitor.gpu_metrics_for(cards)
    assert isinstance(chosen, monitor.NvmlGpuMetrics)
    assert chosen.sample(cards) == (GpuSample("0", 64.0, 12 * 1024, 80 * 1024),)
    assert chosen.sample(cards[1:]) is None  # nothing to say: no GPU metrics, not an error
    chosen.close()
    assert calls == ["init", "shutdown"]


def test_a_host_whose_nvml_will_not_start_has_no_gpu_metrics(monkeypatch):
    pynvml = monitor.pynvml

    def broken():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", broken)
    card = gpus.Card(index="0", model="40g", memory_mib=40960, name="A100", uuid="GPU-x")
    assert isinstance(monitor.gpu_metrics_for([card]), monitor.NoGpuMetrics)


def test_virtual_cards_of_a_development_portal_report_what_the_file_says(tmp_path):
    cards = [
        gpus.Card(index="0", model="40g", memory_mib=40960, name="virtual", virtual=True),
        gpus.Card(index="1", model="40g", memory_mib=40960, name="virtual", virtual=True),
    ]
    path = tmp_path / "gpu.json"
    chosen = monitor.gpu_metrics_for(cards, virtual_file=str(path))
    assert isinstance(chosen, monitor.FileGpuMetrics)

    path.write_text('{"default": 85, "1": 0}')
    assert [(g.index, g.utilization_percent, g.memory_total_mib) for g in chosen.sample(cards)] == [
        ("0", 85.0, 40960),
        ("1", 0.0, 40960),
    ]
    path.write_text("not json")
    assert chosen.sample(cards) is None  # no reading this time, as NVML's unanswered card
    assert isinstance(monitor.gpu_metrics_for(cards), monitor.NoGpuMetrics)
