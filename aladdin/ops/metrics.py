"""Prometheus metrics of the platform, computed at scrape time (served at /metrics).

Every value is read when Prometheus scrapes, from state that all processes
share — the database, Redis, the Celery broker and the cluster driver —
never from counters kept inside one process. Any web process therefore
answers with the same numbers, however many there are, and a restart of web
or workers loses nothing. What each metric means and which alerts to set on
them: docs/operations.md, "Monitoring and alerts"; example rules:
deploy/prometheus/alerts.yml.

A source that cannot be read (database, Redis, broker) drops only its own
metrics and reports ``aladdin_metrics_source_up{source=…} 0``: a scrape
always succeeds, so a dead Redis shows up as a value and not as a gap.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from celery.schedules import crontab
from celery.schedules import schedule as interval_schedule
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, F, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from . import services
from .models import TaskHeartbeat

log = logging.getLogger(__name__)

# The driver's health call gets this long in all; past it the driver counts
# as down. The local driver bounds its own call at 2 s connect + 3 s answer,
# a backend that hangs must not hold the scrape (Prometheus gives up at 10 s).
DRIVER_TIMEOUT_SECONDS = 4.0

INF = math.inf


# --- beat: periodic tasks ---------------------------------------------------------


def schedule_interval_seconds(value, now: datetime) -> float:
    """Seconds between two runs of a CELERY_BEAT_SCHEDULE entry's ``schedule``.

    Numbers and timedeltas are the interval itself; a crontab's is the gap
    between its next two runs (an irregular crontab gets its next gap).
    """
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, crontab):
        first = value.remaining_estimate(now)
        # A crontab is due on whole minutes: one minute past its next run
        # asks for the run after it.
        second = value.remaining_estimate(now + first + timedelta(minutes=1))
        return float(round((second - first).total_seconds()))
    if isinstance(value, interval_schedule):
        return value.run_every.total_seconds()
    raise TypeError(f"unknown beat schedule {value!r}")


def _beat(now: datetime) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "aladdin_beat_lag_seconds",
        "Seconds since the periodic task last finished without an error "
        "(+Inf: never since it was installed).",
        labels=["task"],
    )
    interval = GaugeMetricFamily(
        "aladdin_beat_interval_seconds",
        "How often beat runs the periodic task (alert on lag minus interval).",
        labels=["task"],
    )
    last = dict(TaskHeartbeat.objects.values_list("task", "last_success_at"))
    intervals = {
        entry["task"]: schedule_interval_seconds(entry["schedule"], now)
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    for task in sorted(intervals):
        seen = last.get(task)
        lag.add_metric([task], (now - seen).total_seconds() if seen else INF)
        interval.add_metric([task], intervals[task])
    yield from (lag, interval)


# --- GPU metering ---------------------------------------------------------------


def _oldest_due_charge(worker, job, now: datetime) -> datetime | None:
    """Since when ``worker`` has owed a charge the meter has not made, or None.

    Uses the meter's own arithmetic (gpu_jobs.metering): a released worker
    owes its final charge from its release; a running one owes one charge
    per whole minute since its allocation, and the first minute boundary
    whose total exceeds what was charged is where the meter stopped.
    """
    from gpu_jobs import metering

    if worker.ended_at is not None and worker.ended_at <= now:
        return worker.ended_at
    # Whole minutes since the allocation, from the clock: the meter charges
    # at exactly these boundaries, however it rounds the seconds inside them.
    minutes = (now - worker.started_at) // timedelta(minutes=1)

    def owed_at(minute: int) -> int:
        return metering.worker_owed(worker, job, worker.started_at + timedelta(minutes=minute))

    if minutes < 1 or owed_at(minutes) <= worker.charged_micro:
        return None
    # The owed total only grows with time: bisect for the first minute
    # boundary the ledger has not caught up with.
    low, high = 1, minutes
    while low < high:
        middle = (low + high) // 2
        if owed_at(middle) > worker.charged_micro:
            high = middle
        else:
            low = middle + 1
    return worker.started_at + timedelta(minutes=low)


def _metering(now: datetime) -> Iterator[Metric]:
    from gpu_jobs.models import JobWorker

    open_workers = list(
        JobWorker.objects.select_related("job__gpu_type").filter(
            started_at__isnull=False, started_at__lte=now, metering_closed=False
        )
    )
    due = [_oldest_due_charge(w, w.job, now) for w in open_workers]
    oldest = min((d for d in due if d is not None), default=None)
    yield GaugeMetricFamily(
        "aladdin_metering_lag_seconds",
        "How long the oldest GPU charge that is due has been waiting for the meter "
        "(0: every allocation is charged up to its last whole minute).",
        value=(now - oldest).total_seconds() if oldest else 0.0,
    )
    yield GaugeMetricFamily(
        "aladdin_metering_open_allocations",
        "Job workers holding cards (or released and not yet finally charged).",
        value=len(open_workers),
    )


# --- workloads, money, notifications (database) ------------------------------------


def _by(queryset, field: str, choices: Iterable[str]) -> dict[str, int]:
    """Row counts per value of ``field``, with 0 for every choice that has no rows.

    Every label value is always present, so an alert on it never sees a gap.
    """
    counts = dict.fromkeys(choices, 0)
    for row in queryset.values(field).annotate(n=Count("pk")).order_by():
        counts[row[field]] = row["n"]
    return counts


def _workloads(now: datetime) -> Iterator[Metric]:
    from gpu_jobs.choices import ACTIVE_STATES, JobState
    from gpu_jobs.models import GpuType, Job
    from workshops.choices import WorkshopState
    from workshops.models import Workshop

    workloads = GaugeMetricFamily(
        "aladdin_workloads",
        "Workshops and GPU jobs in the database, by state (state=failed counts the failed).",
        labels=["kind", "state"],
    )
    for state, n in _by(Workshop.objects.all(), "state", WorkshopState.values).items():
        workloads.add_metric(["workshop", state], n)
    for state, n in _by(Job.objects.all(), "state", JobState.values).items():
        workloads.add_metric(["job", state], n)
    yield workloads

    cards = GaugeMetricFamily(
        "aladdin_gpu_cards_allocated",
        "GPU cards held by starting and running jobs, according to the database.",
        labels=["model"],
    )
    held = dict.fromkeys(GpuType.objects.values_list("code", flat=True), 0)
    rows = (
        Job.objects.filter(state__in=ACTIVE_STATES)
        .values("gpu_type__code")
        .annotate(n=Sum(F("cards_per_worker") * F("workers")))
        .order_by()
    )
    for row in rows:
        held[row["gpu_type__code"]] = row["n"] or 0
    for model, n in sorted(held.items()):
        cards.add_metric([model], n)
    yield cards


def _money(now: datetime) -> Iterator[Metric]:
    from aladdin.accounts.models import SmsMessage
    from billing.models import Order, PaymentNotification, Refund

    orders = GaugeMetricFamily("aladdin_orders", "Orders by state.", labels=["state"])
    for state, n in _by(Order.objects.all(), "state", Order.State.values).items():
        orders.add_metric([state], n)
    yield orders
    yield GaugeMetricFamily(
        "aladdin_orders_needing_support",
        "Orders that got money after they were closed: support must act.",
        value=Order.objects.filter(needs_support=True).count(),
    )
    # Append-only audit rows: their count only grows, so it is a counter.
    notes = CounterMetricFamily(
        "aladdin_payment_notifications",
        "Alipay notifications and trade queries recorded, by outcome.",
        labels=["outcome"],
    )
    outcomes = PaymentNotification.Outcome.values
    for outcome, n in _by(PaymentNotification.objects.all(), "outcome", outcomes).items():
        notes.add_metric([outcome], n)
    yield notes
    refunds = GaugeMetricFamily("aladdin_refunds", "Refunds by state.", labels=["state"])
    for state, n in _by(Refund.objects.all(), "state", Refund.State.values).items():
        refunds.add_metric([state], n)
    yield refunds
    sms = CounterMetricFamily(
        "aladdin_sms_messages",
        "SMS handed to the provider, by outcome (failed: the provider refused or errored).",
        labels=["outcome"],
    )
    by_ok = _by(SmsMessage.objects.all(), "ok", (True, False))
    sms.add_metric(["sent"], by_ok[True])
    sms.add_metric(["failed"], by_ok[False])
    yield sms


def _database(now: datetime) -> Iterator[Metric]:
    for section in (_beat, _metering, _workloads, _money):
        yield from section(now)


# --- Redis: heartbeats of the processes, task failures ------------------------------


def _heartbeat_age(key: str) -> float:
    beat = cache.get(key)
    return time.time() - beat["at"] if beat else INF


def _redis(now: datetime) -> Iterator[Metric]:
    from aladdin import health

    yield GaugeMetricFamily(
        "aladdin_worker_heartbeat_age_seconds",
        "Seconds since a Celery worker last wrote its heartbeat (every 15 s; +Inf: never).",
        value=_heartbeat_age(health.WORKER_KEY),
    )
    yield GaugeMetricFamily(
        "aladdin_beat_heartbeat_age_seconds",
        "Seconds since the beat scheduler last ticked (+Inf: never).",
        value=_heartbeat_age(health.BEAT_KEY),
    )
    client = services.redis_client()
    try:
        failures = client.hgetall(services.FAILURES_KEY)
    finally:
        client.close()
    counter = CounterMetricFamily(
        "aladdin_celery_task_failures",
        "Celery task runs that raised (after their retries), by task, since Redis started.",
        labels=["task"],
    )
    for task, n in sorted(failures.items()):
        counter.add_metric([task.decode()], int(n))
    yield counter


# --- Celery broker: queue depth ---------------------------------------------------------


def _broker(now: datetime) -> Iterator[Metric]:
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    from aladdin.celery import app

    options = app.conf.broker_transport_options or {}
    prefix = options.get("global_keyprefix", "")
    sep = options.get("sep", Channel.sep)
    steps = options.get("priority_steps", PRIORITY_STEPS)
    queues = sorted(set(app.amqp.queues) | {app.conf.task_default_queue})
    client = services.redis_client(settings.CELERY_BROKER_URL)
    try:
        depth = GaugeMetricFamily(
            "aladdin_celery_queue_length",
            "Messages waiting in a Celery queue (all priorities).",
            labels=["queue"],
        )
        for queue in queues:
            # kombu keeps priority 0 in the queue's own list and each other
            # priority step in "<queue><sep><step>".
            keys = [queue] + [f"{queue}{sep}{step}" for step in steps if step]
            depth.add_metric([queue], sum(client.llen(prefix + key) for key in keys))
        yield depth
        yield GaugeMetricFamily(
            "aladdin_celery_unacked_messages",
            "Messages a worker has taken but not acknowledged yet (running or reserved).",
            value=client.hlen(prefix + options.get("unacked_key", Channel.unacked_key)),
        )
    finally:
        client.close()


def _broker_is_redis() -> bool:
    return urlsplit(settings.CELERY_BROKER_URL).scheme in {"redis", "rediss"}


# --- cluster driver -----------------------------------------------------------------


def _driver_health() -> dict:
    from aladdin.cluster import get_driver

    # A thread of its own so that a hanging backend costs the scrape at most
    # DRIVER_TIMEOUT_SECONDS; the thread is left to finish on its own.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-driver")
    try:
        return pool.submit(lambda: get_driver().health()).result(DRIVER_TIMEOUT_SECONDS)
    except FutureTimeout:
        return {"ok": False, "error": f"no answer within {DRIVER_TIMEOUT_SECONDS} s"}
    except Exception as exc:  # noqa: BLE001 - health() should not raise; report it as down
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        pool.shutdown(wait=False)


def _one(name: str, documentation: str, label: str, value: str, sample: float) -> Metric:
    """A gauge with one labelled sample."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    family.add_metric([value], sample)
    return family


def _driver(now: datetime) -> Iterator[Metric]:
    name = settings.CLUSTER_DRIVER
    result = _driver_health()
    yield _one(
        "aladdin_cluster_driver_up",
        "1 when the cluster driver answers its health check and reports ok.",
        "driver",
        name,
        1 if result.get("ok") else 0,
    )
    if "sandbox" in result:
        yield _one(
            "aladdin_cluster_sandbox_available",
            "Local driver: 1 when the agent can sandbox workloads (bubblewrap).",
            "driver",
            name,
            1 if result["sandbox"] == "bubblewrap" else 0,
        )
    if "disk_free_bytes" in result:
        yield _one(
            "aladdin_cluster_disk_free_bytes",
            "Local driver: free bytes of the users' volumes filesystem.",
            "driver",
            name,
            result["disk_free_bytes"],
        )
        yield _one(
            "aladdin_cluster_disk_reserve_bytes",
            "Local driver: the free-space reserve (ALADDIN_LOCAL_DISK_RESERVE_MIB); 0 is off.",
            "driver",
            name,
            result.get("disk_reserve_bytes", 0),
        )
    if "running_workloads" in result:
        yield _one(
            "aladdin_cluster_running_workloads",
            "Workloads the driver reports running (compare with aladdin_workloads).",
            "driver",
            name,
            result["running_workloads"],
        )
    models = (result.get("gpus") or {}).get("models") or {}
    if models:
        total = GaugeMetricFamily(
            "aladdin_cluster_gpu_cards", "GPU cards the cluster has, by model.", labels=["model"]
        )
        free = GaugeMetricFamily(
            "aladdin_cluster_gpu_cards_free",
            "GPU cards no workload holds, by model.",
            labels=["model"],
        )
        for model, cards in sorted(models.items()):
            total.add_metric([model], cards.get("total", 0))
            free.add_metric([model], cards.get("free", 0))
        yield from (total, free)


# --- the collector ---------------------------------------------------------------------


class PlatformCollector(Collector):
    """Reads every source at each scrape; see the module docstring."""

    def sources(self) -> list[tuple[str, Callable[[datetime], Iterator[Metric]]]]:
        found = [("database", _database), ("redis", _redis)]
        # An eager setup (tests, a one-process demo) has no queue to measure.
        if not settings.CELERY_TASK_ALWAYS_EAGER and _broker_is_redis():
            found.append(("broker", _broker))
        return found

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        up = GaugeMetricFamily(
            "aladdin_metrics_source_up",
            "1 when /metrics could read this source at the scrape; its metrics are absent if 0.",
            labels=["source"],
        )
        for source, read in self.sources():
            try:
                # All of a source or none of it: no half-read families.
                families = list(read(now))
            except Exception as exc:  # noqa: BLE001 - one dead source must not fail the scrape
                # One line, not a traceback: Prometheus asks again every few seconds.
                log.warning("metrics: could not read %s: %s: %s", source, type(exc).__name__, exc)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield from _driver(now)
        yield up


registry = CollectorRegistry(auto_describe=False)
registry.register(PlatformCollector())
