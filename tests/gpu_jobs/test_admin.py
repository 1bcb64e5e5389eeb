"""Back office for GPU jobs: presets editable, jobs read-mostly, ENV values never shown."""

from __future__ import annotations

from django.urls import reverse

from aladdin.accounts.models import StaffAction
from gpu_jobs.choices import JobState
from tests.factories import JobConfigurationFactory

SECRET = "admin-must-not-see-this"


def test_changelists_load_and_search_jobs_by_phone(client, staff, user, other_user, make_job):
    job = make_job(user)
    theirs = make_job(other_user)
    client.force_login(staff)

    for name in ["gputype", "job", "jobconfiguration"]:
        assert client.get(reverse(f"admin:gpu_jobs_{name}_changelist")).status_code == 200
    page = client.get(
        reverse("admin:gpu_jobs_job_changelist"),
        {
            "q": user.phone,
            "state": "running",
            "kind": "run",
            "gpu_type__id__exact": job.gpu_type_id,
        },
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert f"/admin/gpu_jobs/job/{job.pk}/change/" in html
    assert f"/admin/gpu_jobs/job/{theirs.pk}/change/" not in html


def test_change_pages_never_show_env_values(client, staff, user, cards, make_job):
    job = make_job(user)
    job.set_env({"TOKEN": SECRET})
    job.save()
    config = JobConfigurationFactory(
        user=user, name="exp", gpu_type=cards["80g"], env={"TOKEN": SECRET}
    )
    client.force_login(staff)

    for url in [
        reverse("admin:gpu_jobs_job_change", args=[job.pk]),
        reverse("admin:gpu_jobs_jobconfiguration_change", args=[config.pk]),
        reverse("admin:gpu_jobs_gputype_change", args=[cards["80g"].pk]),
    ]:
        page = client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        assert SECRET not in html and job.env_encrypted not in html
    job_page = client.get(reverse("admin:gpu_jobs_job_change", args=[job.pk])).content.decode()
    assert "TOKEN" in job_page


def test_card_presets_are_editable_with_the_price_in_dcu_per_hour(client, staff, cards):
    client.force_login(staff)
    card = cards["80g"]
    response = client.post(
        reverse("admin:gpu_jobs_gputype_change", args=[card.pk]),
        {
            "code": card.code,
            "name": card.name,
            "memory_gb": card.memory_gb,
            "price_dcu_per_hour": "3.5",
            "parallelism_weight": card.parallelism_weight,
            "cpu_millicores": card.cpu_millicores,
            "memory_mib": card.memory_mib,
            "multi_card_allowed": "on",
            "audit_reason": "new price list",
        },
    )
    assert response.status_code == 302, response.content
    card.refresh_from_db()
    assert card.price_micro_per_hour == 3_500_000
    record = StaffAction.objects.get(action="gpu_type_change")
    assert record.reason == "new price list"
    assert set(record.after) == {"price_dcu_per_hour"}, record.after


def test_jobs_cannot_be_added_or_deleted_in_the_back_office(client, staff, user, make_job):
    job = make_job(user)
    client.force_login(staff)
    assert client.get(reverse("admin:gpu_jobs_job_add")).status_code == 403
    assert client.get(reverse("admin:gpu_jobs_job_delete", args=[job.pk])).status_code == 403


def test_staff_stop_action_stops_running_jobs(
    client, staff, user, make_job, driver, django_capture_on_commit_callbacks
):
    running = make_job(user)
    ended = make_job(user, state=JobState.SUCCEEDED)
    client.force_login(staff)

    form = {"action": "stop_jobs", "_selected_action": [running.pk, ended.pk]}
    # The first post asks why and stops nothing.
    asked = client.post(reverse("admin:gpu_jobs_job_changelist"), form)
    assert asked.status_code == 200 and b"audit_reason" in asked.content
    running.refresh_from_db()
    assert running.stop_requested_at is None

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:gpu_jobs_job_changelist"),
            {**form, "confirm_reason": "1", "audit_reason": "mining"},
        )

    assert response.status_code == 302
    running.refresh_from_db()
    ended.refresh_from_db()
    assert running.state == JobState.STOPPED and running.reason == "Stopped by support: mining"
    assert ended.state == JobState.SUCCEEDED
