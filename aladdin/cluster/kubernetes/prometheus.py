"""A workload's history from the cluster's Prometheus: cAdvisor for CPU and memory, DCGM for GPUs.

The Monitor and the idle-GPU stops (issues 18, 20) read a workload's
samples through :meth:`ClusterDriver.workload_metrics`. Locally the agent
samples cgroups and NVML itself; on Kubernetes the cluster already does:
the kubelet's cAdvisor (``container_cpu_usage_seconds_total``,
``container_memory_working_set_bytes``) and NVIDIA's DCGM exporter
(``DCGM_FI_DEV_GPU_UTIL``, ``DCGM_FI_DEV_FB_USED``, ``DCGM_FI_DEV_FB_FREE``,
one series per card, labelled with the pod that holds it), both scraped by
the Prometheus the operator runs (``KUBERNETES_PROMETHEUS_URL``). One range
query per metric, with a step that grows with the span, so a job of days
answers with a bounded number of samples, as the agent's downsampled rings
do.

The DCGM exporter labels a card's series ``pod`` and ``namespace``; a
Prometheus that scrapes it without ``honor_labels`` renames them
``exported_pod`` and ``exported_namespace``. Both are asked for.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from ..base import DriverError, GpuSample, MetricSample

# The agent keeps 480 samples before it merges the oldest; the same bound here.
MAX_POINTS = 480
# cAdvisor's and the DCGM exporter's usual scrape interval.
MIN_STEP_SECONDS = 15
TIMEOUT_SECONDS = 10


def _label_value(value: str) -> str:
    # PromQL string literal: names are ours (u-<id>, job-<id>), quoted anyway.
    return json.dumps(value)


def _selector(namespace: str, pod: str, *, exported: bool = False) -> str:
    prefix = "exported_" if exported else ""
    return f"{prefix}namespace={_label_value(namespace)},{prefix}pod={_label_value(pod)}"


def queries(namespace: str, pod: str, *, rate_window: str) -> dict[str, str]:
    """The PromQL of each series the samples are made of."""
    cadvisor = f'{_selector(namespace, pod)},container="main"'

    def dcgm(metric: str) -> str:
        return (
            f"max by (gpu) ({metric}{{{_selector(namespace, pod)}}} "
            f"or {metric}{{{_selector(namespace, pod, exported=True)}}})"
        )

    return {
        "cpu": f"sum(rate(container_cpu_usage_seconds_total{{{cadvisor}}}[{rate_window}])) * 100",
        "memory": f"sum(container_memory_working_set_bytes{{{cadvisor}}})",
        "gpu_util": dcgm("DCGM_FI_DEV_GPU_UTIL"),
        "gpu_used": dcgm("DCGM_FI_DEV_FB_USED"),
        "gpu_free": dcgm("DCGM_FI_DEV_FB_FREE"),
    }


class Prometheus:
    """The HTTP API of a Prometheus server (``/api/v1/query_range``)."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT_SECONDS):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query_range(
        self, query: str, start: datetime, end: datetime, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, str]]]]:
        """Each series as (labels, [(unix time, value)]). Raises DriverError."""
        params = urllib.parse.urlencode(
            {"query": query, "start": start.timestamp(), "end": end.timestamp(), "step": step}
        )
        request = urllib.request.Request(
            f"{self.url}/api/v1/query_range?{params}", headers={"Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the operator's URL
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()[:500].decode(errors="replace")
            raise DriverError(f"Prometheus answered {exc.code}: {body}") from exc
        except (OSError, ValueError) as exc:
            raise DriverError(f"Prometheus at {self.url} cannot be read: {exc}") from exc
        if answer.get("status") != "success":
            raise DriverError(f"Prometheus refused the query: {answer.get('error', answer)}")
        return [
            (item.get("metric") or {}, [(float(t), v) for t, v in item.get("values") or []])
            for item in (answer.get("data") or {}).get("result") or []
        ]


def step_for(start: datetime, end: datetime) -> int:
    """Seconds between points: the scrape interval, or longer so a span has at most MAX_POINTS."""
    span = max((end - start).total_seconds(), 0)
    return max(MIN_STEP_SECONDS, math.ceil(span / MAX_POINTS))


def history(
    prometheus: Prometheus, *, namespace: str, pod: str, start: datetime, end: datetime
) -> tuple[list[MetricSample], bool, int]:
    """(samples oldest first, whether any card reported, the step) of ``pod`` from ``start`` to ``end``."""
    step = step_for(start, end)
    # rate() over at least two scrapes, else a short step has no points.
    window = f"{max(step, 2 * MIN_STEP_SECONDS)}s"
    asked = queries(namespace, pod, rate_window=window)
    series = {key: prometheus.query_range(q, start, end, step) for key, q in asked.items()}

    def points(key: str) -> dict[float, float]:
        found: dict[float, float] = {}
        for _labels, values in series[key]:
            for at, value in values:
                with_value = _number(value)
                if with_value is not None:
                    found[at] = with_value
        return found

    def per_card(key: str) -> dict[str, dict[float, float]]:
        cards: dict[str, dict[float, float]] = defaultdict(dict)
        for labels, values in series[key]:
            for at, value in values:
                with_value = _number(value)
                if with_value is not None:
                    cards[labels.get("gpu", "0")][at] = with_value
        return cards

    cpu, memory = points("cpu"), points("memory")
    util, used, free = per_card("gpu_util"), per_card("gpu_used"), per_card("gpu_free")
    times = sorted(set(cpu) | set(memory) | {t for card in util.values() for t in card})
    samples = []
    for at in times:
        gpus = tuple(
            GpuSample(
                index=card,
                utilization_percent=round(util[card][at], 1),
                memory_used_mib=int(used.get(card, {}).get(at, 0)),
                memory_total_mib=int(used.get(card, {}).get(at, 0) + free.get(card, {}).get(at, 0)),
            )
            for card in sorted(util)
            if at in util[card]
        )
        samples.append(
            MetricSample(
                at=datetime.fromtimestamp(at, tz=UTC),
                period_seconds=float(step),
                cpu_percent=round(cpu[at], 1) if at in cpu else None,
                memory_bytes=int(memory[at]) if at in memory else None,
                gpus=gpus,
            )
        )
    return samples, bool(util), step


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def default_start(pod: dict, now: datetime) -> datetime:
    """Where a workload's history starts: its pod's start, at most a week back."""
    started = (pod.get("status") or {}).get("startTime") or (pod.get("metadata") or {}).get(
        "creationTimestamp"
    )
    earliest = now - timedelta(days=7)
    if not started:
        return now - timedelta(hours=1)
    try:
        at = datetime.fromisoformat(str(started).replace("Z", "+00:00"))
    except ValueError:
        return now - timedelta(hours=1)
    return max(at, earliest)
