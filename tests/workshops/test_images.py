"""The image catalog against the backend, on the portal's side (issue 14; FakeDriver).

The backend's own builds are tested through a real agent in
tests/cluster/test_images.py; here: what the portal does with the states.
"""

from __future__ import annotations

import re

import pytest
from celery.exceptions import Retry
from django.core.exceptions import ValidationError
from django.core.management import call_command

from aladdin.cluster.images import BuildState
from aladdin.workloads import images
from aladdin.workloads.models import Image
from workshops import services
from workshops.choices import WorkshopState
from workshops.forms import WorkshopCreateForm
from workshops.models import Workshop

CUDA_REASON = "this server has no NVIDIA GPU, and CPU builds of CUDA images are not allowed"


def _create(user, catalog, image, run_on_commit):
    return run_on_commit(
        services.workshop_create,
        user=user,
        name="dev",
        image=image,
        preset=catalog["presets"]["2C/4G"],
    )


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    def _run(func, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(**kwargs)

    return _run


def test_sync_records_each_state_and_builds_only_the_plain_images(catalog, driver):
    driver.set_image("torch:2.6.0-cu124", BuildState.UNAVAILABLE, reason=CUDA_REASON)
    driver.set_image("python:3.11", BuildState.MISSING)
    driver.set_image("jupyter-lab:4.4.2", BuildState.MISSING)
    counts = images.images_sync(driver=driver)
    torch = Image.objects.get(name="torch", tag="2.6.0-cu124")
    assert torch.build_state == BuildState.UNAVAILABLE and torch.build_reason == CUDA_REASON
    assert not torch.launchable
    # A plain image with no build is built on its own; a CUDA one waits to be asked.
    built = [call["recipe"].ref for call in driver.called("build_image")]
    assert built == ["python:3.11"]
    assert Image.objects.get(name="python", tag="3.11").build_state == BuildState.BUILDING
    assert Image.objects.get(name="jupyter-lab").build_state == BuildState.MISSING
    assert counts[BuildState.UNAVAILABLE] == 1 and counts[BuildState.BUILDING] == 1


def test_the_recipe_reaches_the_backend_exactly(catalog, driver):
    torch = Image.objects.get(name="torch", tag="2.5.1-cu124")
    recipe = torch.recipe()
    assert recipe.python == "3.11" and recipe.cuda == "12.4"
    assert recipe.packages[:3] == ("torch==2.5.1", "torchvision==0.20.1", "torchaudio==2.5.1")
    assert all("==" in p for p in recipe.packages)
    ubuntu = Image.objects.get(name="ubuntu").recipe()
    assert ubuntu.base_os == "ubuntu-22.04" and ubuntu.python == ""


def test_a_recipe_must_pin_every_package(catalog):
    image = catalog["image"]
    image.packages = ["numpy>=2", "six==1.16.0", "torch"]
    with pytest.raises(ValidationError) as caught:
        image.full_clean()
    assert "numpy>=2" in str(caught.value) and "torch" in str(caught.value)
    image.packages = ["six==1.16.0", "accelerate[torch]==1.6.0"]
    image.full_clean()


def test_a_workshop_on_an_unavailable_image_is_refused_with_the_reason(
    user, catalog, driver, plans, run_on_commit
):
    image = catalog["image"]
    driver.set_image(image.ref, BuildState.UNAVAILABLE, reason="this server has no Python 3.12")
    images.images_sync(driver=driver)
    image.refresh_from_db()
    with pytest.raises(images.ImageUnavailable) as caught:
        _create(user, catalog, image, run_on_commit)
    assert "this server has no Python 3.12" in str(caught.value)
    assert not Workshop.objects.exists()
    assert not driver.called("start_workload")


def test_the_form_shows_an_unavailable_image_disabled_with_its_reason(catalog, driver):
    driver.set_image("torch:2.6.0-cu124", BuildState.UNAVAILABLE, reason=CUDA_REASON)
    driver.set_image("python:3.13", BuildState.BUILDING, progress=40, step="copying Python")
    driver.set_image("python:3.11", BuildState.READY, cpu_only=False)
    images.images_sync(driver=driver)
    html = str(WorkshopCreateForm()["image"])
    torch = Image.objects.get(name="torch", tag="2.6.0-cu124")
    option = re.search(rf'<option value="{torch.pk}"[^>]*>([^<]*)</option>', html)
    assert option is not None and "disabled" in option.group(0)
    assert CUDA_REASON in option.group(1)
    python = re.search(rf'<option value="{catalog["image"].pk}"[^>]*>', html)
    assert "disabled" not in python.group(0)
    assert "building, 40%" in html


def test_cpu_only_is_said_where_the_image_is_offered(catalog, driver):
    driver.set_image("torch:2.6.0-cu124", BuildState.READY, cpu_only=True)
    images.images_sync(driver=driver)
    html = str(WorkshopCreateForm()["image"])
    assert "torch:2.6.0-cu124 — CPU only on this host" in html


def test_a_workshop_waits_for_its_image_then_starts_once_built(
    user, catalog, driver, plans, run_on_commit
):
    image = catalog["image"]
    driver.set_image(image.ref, BuildState.BUILDING, progress=30, step="installing six==1.16.0")
    ws = _create(user, catalog, image, run_on_commit)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.CREATING and ws.waiting_for_image
    assert "30%" in ws.reason and "installing six==1.16.0" in ws.reason
    assert not driver.called("start_workload")
    # Still building: the reconciler only updates the progress shown.
    driver.set_image(image.ref, BuildState.BUILDING, progress=80, step="checking versions")
    images.images_sync(driver=driver)
    run_on_commit(services.workshops_reconcile)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.CREATING and "80%" in ws.reason
    # Built: the reconciler starts it.
    driver.set_image(image.ref, BuildState.READY)
    images.images_sync(driver=driver)
    run_on_commit(services.workshops_reconcile)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.RUNNING and not ws.waiting_for_image and ws.reason == ""
    spec = driver.specs[ws.workload_name]
    assert spec.recipe == image.recipe()


def test_a_workshop_waiting_for_a_build_that_fails_ends_failed_with_the_reason(
    user, catalog, driver, plans, run_on_commit
):
    image = catalog["image"]
    driver.set_image(image.ref, BuildState.BUILDING, progress=10)
    ws = _create(user, catalog, image, run_on_commit)
    driver.set_image(image.ref, BuildState.FAILED, reason="six==9.9 is not on the package index")
    images.images_sync(driver=driver)
    run_on_commit(services.workshops_reconcile)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.FAILED
    assert "six==9.9 is not on the package index" in ws.reason
    assert not driver.called("start_workload")


def test_what_runs_is_measured_at_start_and_shown(user, catalog, plans, driver, client):
    measured = {
        "python": "3.12.1",
        "torch": "2.13.0+cpu",
        "cuda": "",
        "cuda_available": False,
        "gpus": [],
    }

    def fake_measure(driver_, *, name, python="python3"):
        assert name.startswith("ws-") and python == "python3"
        return measured

    from workshops import services as ws_services

    ws_services.facts.measure, original = fake_measure, ws_services.facts.measure
    try:
        ws = services.workshop_create(
            user=user, name="dev", image=catalog["image"], preset=catalog["presets"]["2C/4G"]
        )
        services.workshop_start_apply(workshop_id=ws.pk)
        services.workshop_probe_apply(workshop_id=ws.pk)
    finally:
        ws_services.facts.measure = original
    ws.refresh_from_db()
    assert ws.runtime_facts == measured
    client.force_login(user)
    page = client.get(f"/workshops/{ws.pk}/").content.decode()
    assert "Python 3.12.1 · torch 2.13.0+cpu · CUDA not available" in page
    body = client.get(f"/api/v1/workshops/{ws.pk}").json()
    assert body["runtime_facts"]["torch"] == "2.13.0+cpu"


def test_a_probe_that_times_out_on_a_busy_host_is_tried_again(
    user, catalog, plans, driver, monkeypatch
):
    # Once, the probe did not answer within its time on a loaded CI machine,
    # and the workshop showed no facts for the rest of its run.
    from workshops import services as ws_services
    from workshops import tasks

    answers = [TimeoutError("the probe in ws-1 did not answer"), {"python": "3.12.1"}]

    def flaky_measure(driver_, *, name, python="python3"):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(ws_services.facts, "measure", flaky_measure)
    ws = services.workshop_create(
        user=user, name="dev", image=catalog["image"], preset=catalog["presets"]["2C/4G"]
    )
    services.workshop_start_apply(workshop_id=ws.pk)

    with pytest.raises(Retry):  # the first try: eager Celery surfaces the retry it schedules
        tasks.probe.apply(args=(ws.pk,))
    ws.refresh_from_db()
    assert ws.runtime_facts == {}
    tasks.probe.apply(args=(ws.pk,), retries=1)  # the retry

    ws.refresh_from_db()
    assert ws.runtime_facts == {"python": "3.12.1"} and answers == []
    assert tasks.probe.max_retries == 3


def test_the_images_api_says_where_each_image_stands(user, catalog, driver, client):
    driver.set_image("torch:2.6.0-cu124", BuildState.UNAVAILABLE, reason=CUDA_REASON)
    images.images_sync(driver=driver)
    client.force_login(user)
    rows = {row["ref"]: row for row in client.get("/api/v1/images").json()["results"]}
    torch = rows["torch:2.6.0-cu124"]
    assert torch["build_state"] == "unavailable" and torch["build_reason"] == CUDA_REASON
    assert torch["launchable"] is False and torch["cuda"] == "12.4"
    assert "torch==2.6.0" in torch["packages"]
    assert rows["python:3.11"]["build_state"] == "ready" and rows["python:3.11"]["launchable"]


def test_build_images_reports_each_image(catalog, driver, capsys):
    driver.set_image("ubuntu:22.04", BuildState.UNAVAILABLE, reason="no Ubuntu 22.04 userland")
    driver.set_image("python:3.11", BuildState.MISSING)
    call_command("build_images", "python:3.11", "ubuntu:22.04")
    out = capsys.readouterr().out
    assert "python:3.11: building" in out
    assert "ubuntu:22.04: unavailable (no Ubuntu 22.04 userland)" in out


def test_image_dockerfile_writes_the_recipe_for_the_kubernetes_backend(catalog, capsys):
    call_command("image_dockerfile", "torch:2.6.0-cu124")
    dockerfile = capsys.readouterr().out
    assert dockerfile.startswith("FROM ") or "\nFROM " in dockerfile
    assert "torch==2.6.0" in dockerfile and "cu124" in dockerfile
    call_command("image_dockerfile", "python:3.11", "--print-tag")
    assert (
        capsys.readouterr().out.strip()
        == Image.objects.get(name="python", tag="3.11").container_image
    )
