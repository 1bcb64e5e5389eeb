"""GPU and CPU history on Kubernetes from the cluster's Prometheus (cAdvisor and the DCGM exporter).

A Prometheus stand-in on loopback answers ``/api/v1/query_range`` in the real
API's shape (``{"status": "success", "data": {"resultType": "matrix",
"result": [{"metric": {...}, "values": [[t, "v"], ...]}]}}``) with series for
the queries the backend sends, as a Prometheus scraping cAdvisor and a DCGM
exporter that labels cards with their pod would.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes.client
import pytest

from aladdin.cluster.base import DriverError
from aladdin.cluster.kubernetes import prometheus
from aladdin.cluster.kubernetes.driver import KubernetesDriver
from aladdin.workloads.idle import gpus_busy, idle_minutes

from .test_driver import QUIET, spec


class FakePrometheus:
    """Series by metric name; each query answered with the series its text names."""

    def __init__(self, series: dict[str, list[tuple[dict, list]]], *, fail: bool = False):
        self.series = series
        self.fail = fail
        self.queries: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urllib.parse.urlparse(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                owner.queries.append(params)
                if owner.fail:
                    body = json.dumps(
                        {"status": "error", "errorType": "bad_data", "error": "parse error"}
                    ).encode()
                    self.send_response(400)
                else:
                    result = [
                        {"metric": labels, "values": values}
                        for metric, found in owner.series.items()
                        if metric in params["query"]
                        for labels, values in found
                    ]
                    body = json.dumps(
                        {"status": "success", "data": {"resultType": "matrix", "result": result}}
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def minutes(values: list[float], start: datetime = T0) -> list:
    """One point a minute from ``start`` (Prometheus: unix seconds and the value as a string)."""
    return [[(start + timedelta(minutes=i)).timestamp(), str(v)] for i, v in enumerate(values)]


def series_of(pod: str, namespace: str, *, util: list[float], start: datetime = T0) -> dict:
    card = {"gpu": "0", "UUID": "GPU-1", "modelName": "NVIDIA A100-SXM4-40GB"}
    # The DCGM exporter's labels as a Prometheus without honor_labels renames them.
    dcgm = {**card, "exported_pod": pod, "exported_namespace": namespace}
    return {
        "container_cpu_usage_seconds_total": [({}, minutes([150.0] * len(util), start))],
        "container_memory_working_set_bytes": [({}, minutes([2**30] * len(util), start))],
        "DCGM_FI_DEV_GPU_UTIL": [(dcgm, minutes(util, start))],
        "DCGM_FI_DEV_FB_USED": [(dcgm, minutes([2048] * len(util), start))],
        "DCGM_FI_DEV_FB_FREE": [(dcgm, minutes([38912] * len(util), start))],
    }


def test_the_queries_name_the_pod_both_ways_the_dcgm_exporters_labels_arrive():
    asked = prometheus.queries("u-3", "job-7", rate_window="30s")
    assert asked["cpu"] == (
        'sum(rate(container_cpu_usage_seconds_total{namespace="u-3",pod="job-7",'
        'container="main"}[30s])) * 100'
    )
    assert 'DCGM_FI_DEV_GPU_UTIL{namespace="u-3",pod="job-7"}' in asked["gpu_util"]
    assert (
        'DCGM_FI_DEV_GPU_UTIL{exported_namespace="u-3",exported_pod="job-7"}' in asked["gpu_util"]
    )
    assert asked["gpu_util"].startswith("max by (gpu) (")


def test_the_step_grows_with_the_span_so_a_long_job_has_a_bounded_history():
    assert prometheus.step_for(T0, T0 + timedelta(minutes=10)) == 15
    assert prometheus.step_for(T0, T0 + timedelta(days=3)) == 540  # 480 points
    assert prometheus.step_for(T0, T0) == 15


def test_the_history_merges_cpu_memory_and_each_card_into_samples():
    fake = FakePrometheus(series_of("job-7", "u-3", util=[90, 80, 0]))
    try:
        samples, gpus, step = prometheus.history(
            prometheus.Prometheus(fake.url),
            namespace="u-3",
            pod="job-7",
            start=T0,
            end=T0 + timedelta(minutes=3),
        )
    finally:
        fake.close()
    assert gpus and step == 15 and len(samples) == 3
    first = samples[0]
    assert (first.at, first.cpu_percent, first.memory_bytes) == (T0, 150.0, 2**30)
    (card,) = first.gpus
    assert (card.index, card.utilization_percent) == ("0", 90.0)
    assert (card.memory_used_mib, card.memory_total_mib) == (2048, 40960)
    assert [s.gpus[0].utilization_percent for s in samples] == [90.0, 80.0, 0.0]
    assert {q["step"] for q in fake.queries} == {"15"}


def test_a_prometheus_that_refuses_is_a_driver_error():
    fake = FakePrometheus({}, fail=True)
    try:
        with pytest.raises(DriverError) as refused:
            prometheus.Prometheus(fake.url).query_range("up", T0, T0, 15)
    finally:
        fake.close()
    assert "400" in str(refused.value) and "parse error" in str(refused.value)


@pytest.fixture
def space(k8s_driver):
    k8s_driver.ensure_user_space(user_id=8, storage_gib=1, quota=None)
    yield 8
    k8s_driver.delete_user_space(user_id=8)


def test_a_job_whose_cards_go_quiet_reads_as_idle_through_the_driver(stub, k8s_driver, space):
    # given a running job, and a Prometheus whose DCGM series says its card went quiet
    k8s_driver.start_workload(spec("job-dcgm", user_id=8, command=QUIET))
    util = [85.0] * 5 + [0.0] * 40
    # The driver asks up to the real now, and its step grows with the span:
    # the series ends now, so the step is the scrape interval whatever the date.
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=45)
    fake = FakePrometheus(series_of("job-dcgm", "u-8", util=util, start=t0))
    driver = KubernetesDriver(
        kubernetes.client.ApiClient(stub.configuration()), watch=False, prometheus_url=fake.url
    )
    try:
        # when the portal asks for its metrics (as the Monitor and the idle check do)
        metrics = driver.workload_metrics(name="job-dcgm", since=t0 - timedelta(minutes=1))
        caps = driver.capabilities()
    finally:
        fake.close()
        driver.api_client.close()

    # then the samples carry the card's utilisation, and the idle rule reads 40 quiet minutes
    assert metrics.available and metrics.gpu_metrics and len(metrics.samples) == 45
    assert caps.gpu_metrics
    quiet = idle_minutes(
        metrics,
        now=t0 + timedelta(minutes=44, seconds=30),
        busy=gpus_busy(5),
        needs_gpu_metrics=True,
    )
    assert quiet is not None and 39 <= quiet <= 41
