"""Reasons are stored as message ids and read in the reader's language (issue 17).

A job's, a workshop's and a ledger entry's reason used to be text in the
writer's language (a Celery worker's, a staff member's). Now the row keeps
the message id and its parameters, and each page, API answer and notice
renders it for whoever reads it; rows written before keep their text.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import translation

from aladdin.accounts.models import Notification
from aladdin.accounts.notices import render as render_notice
from aladdin.backoffice import services as backoffice_services
from aladdin.cluster import reasons as cluster_reasons
from aladdin.cluster.base import Phase, WorkloadStatus
from aladdin.cluster.protocol import WorkloadRecord, from_wire, to_wire
from billing.models import LedgerEntry
from gpu_jobs import services
from gpu_jobs.choices import JobState
from gpu_jobs.models import Job

from .conftest import sh

T0 = sh(2026, 3, 1, 8)


@pytest.fixture(autouse=True)
def _at_t0():
    with time_machine.travel(T0, tick=False):
        yield


@pytest.fixture
def launch(user, cards, catalog, driver, subscribe, django_capture_on_commit_callbacks):
    subscribe(user, "basic", T0)

    def _launch(**kwargs):
        kwargs.setdefault("entry", "train.py")
        kwargs.setdefault("gpu_type", cards["80g"])
        with django_capture_on_commit_callbacks(execute=True):
            job = services.job_create(user=user, **kwargs)
        job.refresh_from_db()
        return job

    return _launch


def page(client, user, url: str, language: str) -> str:
    """``url`` as ``user`` reads it in ``language`` (their saved language, as on the account page)."""
    type(user).objects.filter(pk=user.pk).update(language=language)
    client.force_login(user)
    return client.get(url).content.decode()


def api(client, user, url: str, language: str):
    type(user).objects.filter(pk=user.pk).update(language="")
    client.force_login(user)
    return client.get(url, HTTP_ACCEPT_LANGUAGE=language).json()


def test_a_stop_reads_in_the_readers_language_on_the_page_and_in_the_api(
    launch, client, user, django_capture_on_commit_callbacks
):
    job = launch()
    with translation.override("zh-hans"), django_capture_on_commit_callbacks(execute=True):
        # Written while Chinese is active (as a worker or a Chinese page would).
        services.job_stop(job=job)
    job.refresh_from_db()

    assert (job.reason_id, job.reason_params) == ("job.stopped_by_you", {})
    assert job.reason == "Stopped by you."  # the English text, for search and exports
    url = reverse("gpu_jobs:detail", args=[job.pk])
    assert "Stopped by you." in page(client, user, url, "en")
    zh = page(client, user, url, "zh-hans")
    assert "已由您停止。" in zh and "Stopped by you." not in zh

    # The API follows Accept-Language (a user with no saved language).
    english = api(client, user, f"/api/v1/jobs/{job.pk}", "en")
    chinese = api(client, user, f"/api/v1/jobs/{job.pk}", "zh-hans")
    assert english["reason"] == "Stopped by you."
    assert (chinese["reason"], chinese["reason_id"]) == ("已由您停止。", "job.stopped_by_you")


def test_an_out_of_memory_end_from_the_cluster_is_rendered_with_its_limit(
    launch, driver, client, user
):
    job = launch(cards_per_worker=2)
    memory_mib = job.gpu_type.memory_mib * 2
    oom = cluster_reasons.out_of_memory(memory_mib)
    driver.workloads[job.workload_name] = WorkloadStatus(
        name=job.workload_name,
        phase=Phase.FAILED,
        kind="job",
        exit_code=137,
        reason=oom.text,
        reason_id=oom.id,
        reason_params=oom.params,
        started_at=T0,
        finished_at=T0 + timedelta(minutes=1),
    )
    with time_machine.travel(T0 + timedelta(minutes=2), tick=False):
        services.jobs_reconcile()

    job.refresh_from_db()
    limit = f"{memory_mib // 1024} GiB"
    assert (job.state, job.reason_id) == (JobState.FAILED, "workload.oom")
    assert job.reason == f"out of memory (limit {limit})"
    url = reverse("gpu_jobs:detail", args=[job.pk])
    assert f"out of memory (limit {limit})" in page(client, user, url, "en")
    assert f"内存不足（上限 {limit}）" in page(client, user, url, "zh-hans")

    # The failure's notice carries the job's reason as a message too.
    notice = Notification.objects.get(user=user, message="job_failed")
    with translation.override("zh-hans"):
        assert f"内存不足（上限 {limit}）" in render_notice(notice).body
    with translation.override("en"):
        assert f"out of memory (limit {limit})" in render_notice(notice).body


def test_a_staff_stop_keeps_the_staff_note_inside_the_users_language(
    launch, user, staff, client, django_capture_on_commit_callbacks
):
    job = launch()
    with django_capture_on_commit_callbacks(execute=True):
        backoffice_services.job_stop_by_staff(job=job, actor=staff, reason="mining pattern")
    job.refresh_from_db()
    assert job.reason_id == "workload.stopped_by_support"
    url = reverse("gpu_jobs:detail", args=[job.pk])
    assert "Stopped by support: mining pattern" in page(client, user, url, "en")
    assert "已由客服停止：mining pattern" in page(client, user, url, "zh-hans")


def test_ledger_charges_are_rendered_per_reader_and_old_rows_keep_their_text(
    launch, client, user, django_capture_on_commit_callbacks
):
    job = launch()
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            services.job_stop(job=job)
    charge = LedgerEntry.objects.filter(user=user, reason_id="job.charge").first()
    assert charge is not None
    assert charge.reason_params["job"] == job.pk
    assert charge.reason.startswith(f"GPU job {job.pk}: ")

    ledger = reverse("billing:ledger")
    assert f"GPU job {job.pk}: 1 × " in page(client, user, ledger, "en")
    assert f"GPU 任务 {job.pk}：1 × " in page(client, user, ledger, "zh-hans")
    # The plan's grant: a message with the amount in µDCU, formatted when read.
    grant = LedgerEntry.objects.get(user=user, reason_id="ledger.plan_grant")
    assert isinstance(grant.reason_params["amount"], int)

    rows = api(client, user, "/api/v1/billing/ledger", "en")["results"]
    assert {row["reason_id"] for row in rows} >= {"job.charge", "ledger.plan_grant"}


def test_a_row_written_before_ids_and_an_unknown_id_show_their_stored_text(launch, user):
    job = launch()
    Job.objects.filter(pk=job.pk).update(reason="旧的原因", reason_id="", reason_params={})
    job.refresh_from_db()
    with translation.override("en"):
        assert job.reason_text == "旧的原因"
    # An id this code no longer defines: the English text written with it.
    Job.objects.filter(pk=job.pk).update(reason="Gone away.", reason_id="job.retired")
    job.refresh_from_db()
    with translation.override("zh-hans"):
        assert job.reason_text == "Gone away."


def test_the_agent_protocol_carries_the_reason_id_and_reads_an_older_agents_record():
    oom = cluster_reasons.out_of_memory(3072)
    record = WorkloadRecord(
        name="job-1",
        phase=Phase.FAILED,
        reason=oom.text,
        reason_id=oom.id,
        reason_params=oom.params,
    )
    decoded = from_wire(WorkloadRecord, to_wire(record))
    assert decoded.to_status().reason_id == "workload.oom"
    assert decoded.to_status().reason_params == {"limit_mib": 3072}
    older = from_wire(WorkloadRecord, {"name": "job-2", "phase": "failed", "reason": "x"})
    assert (older.reason_id, older.reason_params, older.reason) == ("", {}, "x")
    assert cluster_reasons.exited(-9).id == "workload.signal"
    assert cluster_reasons.exited(3).params == {"code": 3}
