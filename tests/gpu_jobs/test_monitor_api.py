"""The Monitor's API (issue 18): ``GET /api/v1/jobs/<id>/metrics?since=`` and the workshop's.

End to end with a real agent: a busy job's CPU and memory samples rise above
an idle one's. With the fake driver: another user's id is 404, a backend
that keeps no metrics says so, and an unreachable one is a 503.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from aladdin.cluster.base import DriverError, MetricSample, WorkloadMetrics
from gpu_jobs import services
from tests.gpu_jobs.test_local_jobs import job_running, write_script

MIB = 2**20
BUSY = """
data = bytearray(300 * 2**20)
for i in range(0, len(data), 4096):  # touch every page: resident, not just reserved
    data[i] = 1
while True:
    pass
"""
IDLE = "import time\ntime.sleep(3600)\n"


@pytest.fixture
def monitored(start_agent, built_images, use_driver):
    """A private agent sampling every second, as the portal's driver."""
    built_images.build_catalog_defaults()
    agent = start_agent(ALADDIN_LOCAL_MONITOR_SECONDS="1", **built_images.agent_env())
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    use_driver(agent.driver)
    return agent


def metrics(client, job, since: str | None = None) -> dict:
    query = {"since": since} if since else {}
    response = client.get(f"/api/v1/jobs/{job.pk}/metrics", query)
    assert response.status_code == 200, response.content
    return response.json()


def settled(client, job, count: int = 4, timeout: float = 60) -> list[dict]:
    """The job's last ``count`` samples with a CPU figure, once it has that many."""
    deadline = time.monotonic() + timeout
    while True:
        samples = [s for s in metrics(client, job)["samples"] if s["cpu_percent"] is not None]
        if len(samples) >= count:
            return samples[-count:]
        assert time.monotonic() < deadline, samples
        time.sleep(0.5)


@pytest.mark.django_db(transaction=True)
def test_a_busy_jobs_cpu_and_memory_rise_above_an_idle_ones(
    monitored, client, user, cards, catalog, subscribe
):
    # given: two running jobs of the user's, one spinning on 300 MiB, one asleep
    subscribe(user, "advanced", timezone.now())
    write_script(monitored, user, "busy.py", BUSY)
    write_script(monitored, user, "idle.py", IDLE)
    busy = services.job_create(user=user, entry="busy.py", gpu_type=cards["40g"])
    idle = services.job_create(user=user, entry="idle.py", gpu_type=cards["40g"])
    for job in (busy, idle):
        deadline = time.monotonic() + 60
        while not job_running(job.pk):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    client.force_login(user)
    time.sleep(3)  # the busy one has touched its memory

    # when: the Monitor is asked for both
    busy_samples, idle_samples = settled(client, busy), settled(client, idle)

    # then: the busy one uses more CPU and ~300 MiB more memory
    busy_cpu = statistics.mean(s["cpu_percent"] for s in busy_samples)
    idle_cpu = statistics.mean(s["cpu_percent"] for s in idle_samples)
    assert busy_cpu > idle_cpu + 10, (busy_samples, idle_samples)
    assert idle_cpu < 10, idle_samples
    assert busy_samples[-1]["memory_bytes"] > idle_samples[-1]["memory_bytes"] + 200 * MIB
    # and: virtual cards report no GPU use, which the answer says
    answer = metrics(client, busy)
    assert answer["available"] and not answer["gpu_metrics"] and answer["interval_seconds"] == 1
    assert all(s["gpus"] == [] for s in answer["samples"])
    # and: ?since= gives only what came after
    last = answer["samples"][-1]["at"]
    assert all(s["at"] > last for s in metrics(client, busy, since=last)["samples"])

    # and: once the job ended and the cluster released it, its run is still charted
    services.job_stop(job=busy)
    services.jobs_reconcile()
    assert monitored.driver.workload_status(name=busy.workload_name).phase == "missing"
    after = metrics(client, busy)
    assert after["available"] and len(after["samples"]) >= len(answer["samples"])


@pytest.mark.django_db
def test_another_users_job_or_workshop_metrics_are_404(
    client, user, other_user, make_job, driver, make_workshop
):
    workshop = make_workshop(other_user)
    job = make_job(other_user)
    client.force_login(user)
    assert client.get(f"/api/v1/jobs/{job.pk}/metrics").status_code == 404
    assert client.get(f"/api/v1/workshops/{workshop.pk}/metrics").status_code == 404
    assert driver.called("workload_metrics") == []


@pytest.mark.django_db
def test_the_owner_reads_the_clusters_samples_or_no_metrics(client, user, make_job, driver):
    job = make_job(user)
    client.force_login(user)
    # A backend that keeps none: "no metrics", not an error.
    answer = client.get(f"/api/v1/jobs/{job.pk}/metrics").json()
    assert answer == {
        "available": False,
        "gpu_metrics": False,
        "interval_seconds": 0.0,
        "samples": [],
    }

    at = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    driver.metrics[job.workload_name] = WorkloadMetrics(
        name=job.workload_name,
        available=True,
        interval_seconds=5,
        samples=[MetricSample(at=at, period_seconds=5, cpu_percent=99.5, memory_bytes=MIB)],
    )
    answer = client.get(f"/api/v1/jobs/{job.pk}/metrics", {"since": "2026-12-01T07:00:00Z"}).json()
    assert answer["available"] and answer["samples"][0]["cpu_percent"] == 99.5
    assert driver.called("workload_metrics")[-1]["since"] == datetime(2026, 12, 1, 7, tzinfo=UTC)

    assert client.get(f"/api/v1/jobs/{job.pk}/metrics", {"since": "yesterday"}).status_code == 400
    driver.metrics_error = DriverError("agent down")
    response = client.get(f"/api/v1/jobs/{job.pk}/metrics")
    assert response.status_code == 503 and response.json()["code"] == "metrics_unavailable"


@pytest.mark.django_db
def test_the_job_and_workshop_pages_carry_the_monitor_charts(client, user, make_job, make_workshop):
    workshop = make_workshop(user)
    job = make_job(user)
    client.force_login(user)
    for page, api in (
        (f"/jobs/{job.pk}/", f"/api/v1/jobs/{job.pk}/metrics"),
        (f"/workshops/{workshop.pk}/", f"/api/v1/workshops/{workshop.pk}/metrics"),
    ):
        html = client.get(page).content.decode()
        assert f'data-metrics-url="{api}"' in html, page
        assert 'data-testid="monitor-usage-chart"' in html and "js/monitor.js" in html
        assert html.index("vendor/chart.js/chart.umd.js") < html.index("js/monitor.js")
    # A job always holds cards: its page says when they report nothing.
    assert "data-has-gpus" in client.get(f"/jobs/{job.pk}/").content.decode()
