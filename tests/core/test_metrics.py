"""/metrics serves the platform's health in the Prometheus text format, to monitoring hosts only.

Values are read at scrape time from the database, Redis, the broker and the
driver, so these tests set that state and scrape: a running job counts, a
stale heartbeat shows a large beat lag, a stopped meter a large metering
lag. The heartbeats are written by the real periodic tasks run through
Celery (eagerly here; the same signals fire in a worker).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
import time
from pathlib import Path

import pytest
import time_machine
import yaml
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from aladdin.ops import services as ops_services
from aladdin.ops.models import TaskHeartbeat
from tests.core.test_settings import _load_settings

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)

AGENT_HEALTH = {
    "pid": 1,
    "sandbox": True,
    "sandbox_reason": "",
    "single_user_id": None,
    "running": 3,
    "gpus": {
        "virtual": True,
        "models": {"40g": {"total": 4, "free": 1}, "80g": {"total": 4, "free": 4}},
    },
}


@pytest.fixture(autouse=True)
def _agent_answers(monkeypatch):
    # The local agent is a separate process (tests/cluster runs the real
    # one); here it answers health like a live agent with virtual cards.
    from aladdin.cluster.local import LocalDriver

    def _call(self, op, **kwargs):
        assert op == "health"
        return AGENT_HEALTH

    monkeypatch.setattr(LocalDriver, "_call", _call)


def scrape(client, **request) -> dict:
    """GET /metrics from loopback; the families parsed, by name."""
    response = client.get("/metrics", **request)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response.get("Cache-Control", "")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def value(families: dict, sample_name: str, **labels) -> float:
    """The one sample named ``sample_name`` whose labels include ``labels``."""
    found = [
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == sample_name and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, (sample_name, labels, found)
    return found[0]


# --- the format ------------------------------------------------------------------


def test_metrics_are_valid_prometheus_text_with_every_source_up(client):
    families = scrape(client)

    assert {
        "aladdin_beat_lag_seconds",
        "aladdin_beat_interval_seconds",
        "aladdin_beat_heartbeat_age_seconds",
        "aladdin_worker_heartbeat_age_seconds",
        "aladdin_metering_lag_seconds",
        "aladdin_metering_open_allocations",
        "aladdin_workloads",
        "aladdin_gpu_cards_allocated",
        "aladdin_orders",
        "aladdin_orders_needing_support",
        "aladdin_payment_notifications",
        "aladdin_refunds",
        "aladdin_sms_messages",
        "aladdin_celery_task_failures",
        "aladdin_cluster_driver_up",
        "aladdin_cluster_sandbox_available",
        "aladdin_cluster_gpu_cards",
        "aladdin_cluster_gpu_cards_free",
        "aladdin_metrics_source_up",
    } <= set(families)
    assert families["aladdin_payment_notifications"].type == "counter"
    assert families["aladdin_workloads"].type == "gauge"
    assert value(families, "aladdin_metrics_source_up", source="database") == 1
    assert value(families, "aladdin_metrics_source_up", source="redis") == 1
    # Tests run Celery eagerly: there is no queue to measure.
    assert "aladdin_celery_queue_length" not in families


def test_a_scraper_that_asks_for_openmetrics_gets_it(client):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response["Content-Type"].startswith("application/openmetrics-text")
    names = {f.name for f in parse_om(response.content.decode())}
    assert {"aladdin_workloads", "aladdin_celery_task_failures"} <= names


def test_an_empty_platform_reports_zeros_for_every_state_not_gaps(client):
    families = scrape(client)

    assert value(families, "aladdin_workloads", kind="job", state="running") == 0
    assert value(families, "aladdin_workloads", kind="workshop", state="failed") == 0
    assert value(families, "aladdin_orders", state="pending") == 0
    assert value(families, "aladdin_sms_messages_total", outcome="failed") == 0
    assert value(families, "aladdin_metering_lag_seconds") == 0


# --- values from the database --------------------------------------------------------


def test_running_jobs_and_workshops_count_by_kind_and_state(client, user, make_job, make_workshop):
    # given a running workshop, a running job on 2 × 80G cards and a failed job
    make_workshop(user)
    make_job(user, card="80g", cards_per_worker=2, started_at=timezone.now())
    make_job(user, card="40g", state="failed")

    families = scrape(client)

    assert value(families, "aladdin_workloads", kind="job", state="running") == 1
    assert value(families, "aladdin_workloads", kind="job", state="failed") == 1
    assert value(families, "aladdin_workloads", kind="workshop", state="running") == 1
    assert value(families, "aladdin_gpu_cards_allocated", model="80g") == 2
    assert value(families, "aladdin_gpu_cards_allocated", model="40g") == 0


def test_a_stale_task_heartbeat_shows_a_large_beat_lag_and_a_never_run_task_infinity(client):
    with time_machine.travel(T0, tick=False):
        TaskHeartbeat.objects.create(
            task="gpu_jobs.meter", last_success_at=T0 - dt.timedelta(minutes=10)
        )

        families = scrape(client)

    assert value(families, "aladdin_beat_lag_seconds", task="gpu_jobs.meter") == 600
    assert value(families, "aladdin_beat_interval_seconds", task="gpu_jobs.meter") == 20
    assert math.isinf(value(families, "aladdin_beat_lag_seconds", task="billing.process_periods"))
    # A crontab's interval is the gap between its runs: the nightly charge, a day.
    assert value(families, "aladdin_beat_interval_seconds", task="storage.nightly_charge") == 86_400
    scheduled = {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    lagging = {s.labels["task"] for s in families["aladdin_beat_lag_seconds"].samples}
    assert lagging == scheduled


def test_metering_lag_grows_while_the_meter_is_stopped_and_clears_once_it_runs(
    client, user, subscribe, make_job
):
    from gpu_jobs.metering import meter_due

    subscribe(user, "basic", T0)
    job = make_job(user, card="40g", started_at=T0)
    with time_machine.travel(T0 + dt.timedelta(seconds=59, microseconds=500_000), tick=False):
        # Nothing is due before the first minute has ended.
        assert value(scrape(client), "aladdin_metering_lag_seconds") == 0
    with time_machine.travel(T0 + dt.timedelta(minutes=5, seconds=10), tick=False):
        # given a job whose first minute ended at T0 + 1 min and no meter since
        families = scrape(client)
        assert value(families, "aladdin_metering_lag_seconds") == 4 * 60 + 10
        assert value(families, "aladdin_metering_open_allocations") == 1

        # when the meter runs
        meter_due(at=timezone.now())

        # then every whole minute is charged: nothing is waiting
        assert value(scrape(client), "aladdin_metering_lag_seconds") == 0

    # A released worker owes its final charge from its release.
    job.worker_rows.update(ended_at=T0 + dt.timedelta(minutes=6))
    with time_machine.travel(T0 + dt.timedelta(minutes=9), tick=False):
        assert value(scrape(client), "aladdin_metering_lag_seconds") == 180
        meter_due(at=timezone.now())
        families = scrape(client)
    assert value(families, "aladdin_metering_lag_seconds") == 0
    assert value(families, "aladdin_metering_open_allocations") == 0


def test_orders_needing_support_and_failed_sms_are_counted(client, user, plans):
    from aladdin.accounts.models import SmsMessage
    from billing.models import Order

    Order.objects.create(
        user=user,
        plan=plans["basic"],
        price_fen=1000,
        out_trade_no="T1",
        state=Order.State.CLOSED,
        expires_at=timezone.now(),
        needs_support=True,
    )
    SmsMessage.objects.create(phone=user.phone, purpose="login", backend="aliyun", ok=False)
    SmsMessage.objects.create(phone=user.phone, purpose="login", backend="aliyun")

    families = scrape(client)

    assert value(families, "aladdin_orders_needing_support") == 1
    assert value(families, "aladdin_orders", state="closed") == 1
    assert value(families, "aladdin_sms_messages_total", outcome="failed") == 1
    assert value(families, "aladdin_sms_messages_total", outcome="sent") == 1


# --- Redis and the broker ---------------------------------------------------------------


def test_queue_depth_counts_waiting_messages_of_every_priority(client):
    from kombu.transport.redis import Channel

    redis = ops_services.redis_client(settings.CELERY_BROKER_URL)
    try:
        # given three messages at priority 0, one at priority 3 and one taken by a worker
        redis.lpush("celery", b"{}", b"{}", b"{}")
        redis.lpush(f"celery{Channel.sep}3", b"{}")
        redis.hset(Channel.unacked_key, "tag-1", b"{}")
        with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
            families = scrape(client)
    finally:
        redis.delete("celery", f"celery{Channel.sep}3", Channel.unacked_key)
        redis.close()

    assert value(families, "aladdin_celery_queue_length", queue="celery") == 4
    assert value(families, "aladdin_celery_unacked_messages") == 1
    assert value(families, "aladdin_metrics_source_up", source="broker") == 1


def test_a_dead_redis_drops_only_its_own_metrics(client, spare_redis):
    proc, url = spare_redis
    caches = {"default": {**settings.CACHES["default"], "LOCATION": url}}
    with override_settings(REDIS_URL=url, CACHES=caches):
        proc.kill()
        proc.wait(timeout=10)

        started = time.monotonic()
        families = scrape(client)
        elapsed = time.monotonic() - started

    assert value(families, "aladdin_metrics_source_up", source="redis") == 0
    assert value(families, "aladdin_metrics_source_up", source="database") == 1
    assert "aladdin_worker_heartbeat_age_seconds" not in families
    assert "aladdin_workloads" in families
    assert elapsed < 10


# --- the driver ------------------------------------------------------------------------


def test_driver_state_and_gpu_cards_come_from_the_driver_health_check(client):
    families = scrape(client)

    assert value(families, "aladdin_cluster_driver_up", driver="local") == 1
    assert value(families, "aladdin_cluster_sandbox_available", driver="local") == 1
    assert value(families, "aladdin_cluster_running_workloads", driver="local") == 3
    assert value(families, "aladdin_cluster_gpu_cards", model="40g") == 4
    assert value(families, "aladdin_cluster_gpu_cards_free", model="40g") == 1
    assert value(families, "aladdin_cluster_gpu_cards_free", model="80g") == 4
    # The disk guard's numbers: the volumes' free space against the reserve.
    assert value(families, "aladdin_cluster_disk_free_bytes", driver="local") > 0
    reserve = value(families, "aladdin_cluster_disk_reserve_bytes", driver="local")
    assert reserve == settings.LOCAL_DISK_RESERVE_MIB * 2**20


def test_an_unreachable_agent_shows_the_driver_down(client, monkeypatch):
    from aladdin.cluster import DriverError
    from aladdin.cluster.local import LocalDriver

    def _down(self, op, **kwargs):
        raise DriverError("the local agent is not running (make run starts it)")

    monkeypatch.setattr(LocalDriver, "_call", _down)

    families = scrape(client)

    assert value(families, "aladdin_cluster_driver_up", driver="local") == 0
    assert "aladdin_cluster_gpu_cards" not in families


def test_a_hanging_driver_counts_as_down_after_the_timeout(client, monkeypatch, driver):
    from aladdin.ops import metrics

    release = threading.Event()

    def hanging_health():
        release.wait(30)
        return {"ok": True}

    monkeypatch.setattr(driver, "health", hanging_health)
    monkeypatch.setattr(metrics, "DRIVER_TIMEOUT_SECONDS", 0.3)
    try:
        started = time.monotonic()
        families = scrape(client)
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert value(families, "aladdin_cluster_driver_up", driver="local") == 0
    assert elapsed < 5


# --- access -----------------------------------------------------------------------------


def test_an_address_outside_the_allowed_list_gets_404(client):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404


def test_a_forwarded_outside_address_gets_404_even_through_a_local_proxy(client):
    # A proxy on the portal's host connects from 127.0.0.1; the header says
    # who really asked, and a forged "127.0.0.1" in front changes nothing.
    for forwarded in ("203.0.113.9", "127.0.0.1, 203.0.113.9", "unknown"):
        response = client.get("/metrics", HTTP_X_FORWARDED_FOR=forwarded)
        assert response.status_code == 404, forwarded
    assert client.get("/metrics", HTTP_FORWARDED="for=203.0.113.9").status_code == 404
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200


@override_settings(METRICS_ALLOWED_IPS=["10.8.0.0/16"])
def test_allowed_networks_are_cidr_ranges(client):
    assert client.get("/metrics", REMOTE_ADDR="10.8.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.8.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.9.0.1").status_code == 404
    # The list replaces the default: loopback is no longer allowed.
    assert client.get("/metrics").status_code == 404


@override_settings(METRICS_TOKEN="s3cret-scrape-token")
def test_the_bearer_token_works_from_any_address_and_a_wrong_one_never_does(client):
    outside = {"REMOTE_ADDR": "203.0.113.9"}

    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token", **outside)
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess", **outside)
    wrong_from_loopback = client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess")

    assert ok.status_code == 200
    assert "aladdin_workloads" in ok.content.decode()
    assert wrong.status_code == 404
    assert wrong_from_loopback.status_code == 404
    assert client.get("/metrics", **outside).status_code == 404


def test_without_a_configured_token_a_bearer_header_opens_nothing(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 404


def test_only_get_is_served(client):
    assert client.post("/metrics").status_code == 405


def test_a_bad_allowed_address_fails_at_start_with_the_variable_named():
    result = _load_settings(DEBUG="1", METRICS_ALLOWED_IPS="10.0.0.0/8,intranet")
    assert result.returncode != 0
    assert "METRICS_ALLOWED_IPS: 'intranet'" in result.stderr


# --- heartbeats and failures written by the real tasks ------------------------------------


def test_the_real_periodic_tasks_record_their_heartbeat_when_they_run(client):
    from billing import tasks as billing_tasks
    from gpu_jobs import tasks as job_tasks
    from storage import tasks as storage_tasks

    with time_machine.travel(T0, tick=False):
        job_tasks.meter.delay()
        billing_tasks.process_periods.delay()
        storage_tasks.nightly_charge.delay()

        families = scrape(client)

    beats = dict(TaskHeartbeat.objects.values_list("task", "last_success_at"))
    assert beats == {
        "gpu_jobs.meter": T0,
        "billing.process_periods": T0,
        "storage.nightly_charge": T0,
    }
    assert value(families, "aladdin_beat_lag_seconds", task="gpu_jobs.meter") == 0
    assert math.isinf(value(families, "aladdin_beat_lag_seconds", task="gpu_jobs.reconcile"))


def test_a_later_run_moves_the_heartbeat_and_the_lag_restarts(client):
    from gpu_jobs import tasks as job_tasks

    with time_machine.travel(T0, tick=False) as traveller:
        job_tasks.meter.delay()
        traveller.shift(300)
        assert value(scrape(client), "aladdin_beat_lag_seconds", task="gpu_jobs.meter") == 300
        job_tasks.meter.delay()
        assert value(scrape(client), "aladdin_beat_lag_seconds", task="gpu_jobs.meter") == 0
    assert TaskHeartbeat.objects.count() == 1


def test_a_failing_task_is_counted_in_redis_and_leaves_its_lag_growing(client, monkeypatch):
    from gpu_jobs import services as job_services
    from gpu_jobs import tasks as job_tasks

    def _broken(**kwargs):
        raise RuntimeError("meter broke")

    monkeypatch.setattr(job_services, "jobs_meter", _broken)

    with time_machine.travel(T0, tick=False):
        for _ in range(2):
            # throw=False: the error is recorded, not raised, as in a worker
            # (an eager run that propagates raises before Celery's failure signal).
            assert job_tasks.meter.apply(throw=False).failed()
        families = scrape(client)

    assert value(families, "aladdin_celery_task_failures_total", task="gpu_jobs.meter") == 2
    beat = TaskHeartbeat.objects.get(task="gpu_jobs.meter")
    assert beat.last_failure_at == T0
    assert beat.last_error == "RuntimeError: meter broke"
    # A run that raised is not a run that billed: the lag keeps growing.
    assert beat.last_success_at is None
    assert math.isinf(value(families, "aladdin_beat_lag_seconds", task="gpu_jobs.meter"))


# --- the example alert rules ------------------------------------------------------------


def test_every_metric_in_the_example_alert_rules_is_served(client):
    from kombu.transport.redis import Channel

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert alerts
    for rule in alerts:
        assert rule["alert"] and rule["expr"]
        assert rule["labels"]["severity"] in {"page", "warning"}
        assert rule["annotations"]["summary"]

    redis = ops_services.redis_client()
    try:
        redis.hincrby(ops_services.FAILURES_KEY, "gpu_jobs.meter", 1)
        with override_settings(CELERY_TASK_ALWAYS_EAGER=False):
            families = scrape(client)
    finally:
        redis.delete(ops_services.FAILURES_KEY, Channel.unacked_key)
        redis.close()
    served = {s.name for f in families.values() for s in f.samples}
    for rule in alerts:
        for name in re.findall(r"\baladdin_[a-z_]+", rule["expr"]):
            assert name in served, (rule["alert"], name)
