"""Jobs and the image catalog (issue 14; FakeDriver): refused, waiting unbilled, or started."""

from __future__ import annotations

import pytest
from django.utils import timezone

from aladdin.accounts.models import Notification
from aladdin.cluster.images import BuildState
from aladdin.workloads import images
from gpu_jobs import services
from gpu_jobs.choices import JobState
from gpu_jobs.forms import JobLaunchForm
from gpu_jobs.models import Job, JobWorker


@pytest.fixture
def ready(user, cards, catalog, driver, subscribe):
    subscribe(user, "basic", timezone.now())
    return user


@pytest.fixture
def launch(ready, cards, django_capture_on_commit_callbacks):
    def _launch(**kwargs):
        kwargs.setdefault("entry", "train.py")
        kwargs.setdefault("gpu_type", cards["80g"])
        with django_capture_on_commit_callbacks(execute=True):
            job = services.job_create(user=ready, **kwargs)
        job.refresh_from_db()
        return job

    return _launch


def test_a_job_on_an_unavailable_image_is_refused_before_anything_is_held(launch, driver):
    driver.set_image("torch:2.6.0-cu124", BuildState.UNAVAILABLE, reason="no NVIDIA GPU here")
    images.images_sync(driver=driver)
    with pytest.raises(images.ImageUnavailable) as caught:
        launch(image="torch:2.6.0-cu124")
    assert "torch:2.6.0-cu124" in str(caught.value) and "no NVIDIA GPU here" in str(caught.value)
    assert not Job.objects.exists() and not driver.called("start_workload")


def test_the_api_answers_409_image_unavailable(ready, client, driver):
    driver.set_image("torch:2.6.0-cu124", BuildState.UNAVAILABLE, reason="no NVIDIA GPU here")
    images.images_sync(driver=driver)
    client.force_login(ready)
    response = client.post(
        "/api/v1/jobs",
        {"kind": "run", "entry": "a.py", "gpu_type": "80g", "image": "torch:2.6.0-cu124"},
        content_type="application/json",
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "image_unavailable" and "no NVIDIA GPU here" in body["detail"]


def test_a_conda_interpreter_does_not_need_the_image(launch, driver):
    driver.set_image("torch:2.6.0-cu124", BuildState.UNAVAILABLE, reason="no NVIDIA GPU here")
    images.images_sync(driver=driver)
    job = launch(image="torch:2.6.0-cu124", interpreter="/root/miniconda3/bin/python")
    assert job.state == JobState.RUNNING
    assert driver.specs[job.workload_name].recipe is None


def test_a_job_waits_unbilled_for_its_image_then_starts(
    launch, driver, django_capture_on_commit_callbacks
):
    driver.set_image("python:3.11", BuildState.BUILDING, progress=55, step="installing six==1.16.0")
    job = launch(image="python:3.11")
    assert job.state == JobState.STARTING and job.waiting_for_image
    assert "55%" in job.reason and job.started_at is None
    assert not JobWorker.objects.filter(job=job, started_at__isnull=False).exists()
    driver.set_image("python:3.11", BuildState.READY)
    images.images_sync(driver=driver)
    with django_capture_on_commit_callbacks(execute=True):
        services.jobs_reconcile()
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and not job.waiting_for_image
    assert driver.specs[job.workload_name].recipe.ref == "python:3.11"


def test_a_job_whose_image_build_fails_ends_failed_unbilled(
    launch, driver, django_capture_on_commit_callbacks
):
    driver.set_image("python:3.11", BuildState.BUILDING, progress=5)
    job = launch(image="python:3.11")
    driver.set_image("python:3.11", BuildState.FAILED, reason="six==9.9 not found")
    images.images_sync(driver=driver)
    with django_capture_on_commit_callbacks(execute=True):
        services.jobs_reconcile()
    job.refresh_from_db()
    assert job.state == JobState.FAILED and "six==9.9 not found" in job.reason
    assert job.started_at is None and job.metering_closed


def test_the_launch_form_disables_what_cannot_run(ready, driver):
    driver.set_image("torch:2.6.0-cu124", BuildState.UNAVAILABLE, reason="no NVIDIA GPU here")
    images.images_sync(driver=driver)
    html = str(JobLaunchForm()["image"])
    assert 'value="torch:2.6.0-cu124" disabled' in html
    assert "torch:2.6.0-cu124 — unavailable: no NVIDIA GPU here" in html


def test_a_stop_that_lands_while_the_image_is_asked_about_keeps_its_reason(
    launch, driver, monkeypatch
):
    """A ban (or any stop) between a start retry's read of the job and its write of the build's
    progress: the job ends with the stop's reason, not "waiting for the image"."""
    driver.set_image("python:3.11", BuildState.BUILDING, progress=5, step="copying Python 3.11")
    job = launch(image="python:3.11")
    asked = images.image_prepare

    def stopped_meanwhile(**kwargs):
        services.jobs_stop_all(user_id=job.user_id, reason="Stopped: the account was banned.")
        return asked(**kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(images, "image_prepare", stopped_meanwhile)
        services.job_start_apply(job_id=job.pk)
    services.jobs_reconcile()  # the reconciler's pass refreshes waiting jobs' progress too
    services.job_stop_apply(job_id=job.pk)

    job.refresh_from_db()
    assert (job.state, job.reason) == (JobState.STOPPED, "Stopped: the account was banned.")
    notice = Notification.objects.get(user=job.user, kind="job-stopped")
    assert notice.rendered.body == "Stopped: the account was banned."


def test_a_waiting_job_and_the_image_list_say_the_builds_step_in_the_readers_language(
    launch, driver, client
):
    from django.utils import translation

    from aladdin.cluster.images import build_step

    driver.set_image(
        "python:3.11",
        BuildState.BUILDING,
        progress=5,
        **build_step("image.step.copying_python", version="3.11.7"),
    )
    job = launch(image="python:3.11")
    assert (
        job.reason == "Waiting for the image python:3.11 to be built (5%: copying Python 3.11.7)."
    )
    with translation.override("zh-hans"):
        assert (
            job.reason_text == "正在等待镜像 python:3.11 构建完成（5%：正在复制 Python 3.11.7）。"
        )

    job.user.language = "zh-hans"  # the account's language decides (the fixture's is English)
    job.user.save(update_fields=["language"])
    client.force_login(job.user)
    rows = client.get("/api/v1/images").json()["results"]
    [row] = [r for r in rows if r["ref"] == "python:3.11"]
    assert row["build_step"] == "正在复制 Python 3.11.7"
