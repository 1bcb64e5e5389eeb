from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from aladdin.cluster.base import LABEL_KIND, LABEL_OWNER, LABEL_USER, DriverError
from tests.factories import SubscriptionFactory
from workshops import services
from workshops.choices import WorkshopState
from workshops.models import Workshop, WorkshopEnvVar, WorkshopEvent


def test_create_starts_the_workshop_after_commit(
    user, catalog, driver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        ws = services.workshop_create(
            user=user, name="dev", image=catalog["image"], preset=catalog["presets"]["2C/4G"]
        )
    ws.refresh_from_db()
    assert ws.state == WorkshopState.RUNNING
    assert driver.specs[f"ws-{ws.pk}"].image == "python:3.12"
    spec = driver.specs[ws.workload_name]
    assert spec.labels == {
        LABEL_USER: str(user.pk),
        LABEL_KIND: "workshop",
        LABEL_OWNER: ws.workload_name,
    }
    assert spec.resources.cpu_millicores == 2000
    assert user.pk in driver.user_spaces


def test_stop_then_start_applies_edited_resources(user, plans, make_workshop, driver):
    SubscriptionFactory(user=user, plan_code="trial")
    ws = make_workshop(user)
    services.workshop_update_resources(
        workshop=ws, preset=ws.preset.__class__.objects.get(name="8C/32G")
    )
    ws.refresh_from_db()
    assert ws.applied_cpu_millicores == 2000 and ws.resources_pending
    services.workshop_stop(workshop=ws)
    services.workshop_stop_apply(workshop_id=ws.pk)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.STOPPED
    assert ws.workload_name not in driver.workloads
    services.workshop_start(workshop=ws)
    services.workshop_start_apply(workshop_id=ws.pk)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.RUNNING
    assert driver.specs[ws.workload_name].resources.cpu_millicores == 8000


def test_start_of_a_running_workshop_is_refused(user, make_workshop):
    ws = make_workshop(user)
    with pytest.raises(services.WorkshopError):
        services.workshop_start(workshop=ws)


def test_delete_removes_workload_and_row_and_keeps_the_event(user, make_workshop, driver):
    ws = make_workshop(user)
    services.workshop_delete(workshop=ws)
    services.workshop_delete_apply(workshop_id=ws.pk)
    assert not Workshop.objects.filter(pk=ws.pk).exists()
    assert driver.workloads == {}
    assert WorkshopEvent.objects.filter(name=ws.workload_name, kind="deleted").exists()


def test_tasks_run_twice_start_one_workload(user, make_workshop, driver):
    ws = make_workshop(user)
    services.workshop_start_apply(workshop_id=ws.pk)
    assert len(driver.workloads) == 1


def test_permanent_driver_error_fails_the_workshop(user, catalog, driver):
    ws = services.workshop_create(
        user=user, name="dev", image=catalog["image"], preset=catalog["presets"]["2C/4G"]
    )
    driver.fail_next = DriverError("bad image", permanent=True)
    services.workshop_start_apply(workshop_id=ws.pk)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.FAILED and ws.reason == "bad image"


def test_transient_driver_error_is_raised_for_a_retry(user, catalog, driver):
    ws = services.workshop_create(
        user=user, name="dev", image=catalog["image"], preset=catalog["presets"]["2C/4G"]
    )
    driver.fail_next = DriverError("agent down")
    with pytest.raises(DriverError):
        services.workshop_start_apply(workshop_id=ws.pk)
    ws.refresh_from_db()
    assert ws.state == WorkshopState.CREATING


@pytest.mark.parametrize("name", ["Dev", "-dev", "dev-", "dev_1", "a" * 41, "", "dév"])
def test_names_must_be_dns_labels(user, catalog, driver, name):
    with pytest.raises(ValidationError):
        services.workshop_create(
            user=user, name=name, image=catalog["image"], preset=catalog["presets"]["2C/4G"]
        )


def test_names_are_unique_per_user_only(user, other_user, catalog, driver, plans):
    SubscriptionFactory(user=user, plan_code="trial")
    services.workshop_create(
        user=user, name="dev-1", image=catalog["image"], preset=catalog["presets"]["2C/4G"]
    )
    with pytest.raises(ValidationError):
        services.workshop_create(
            user=user, name="dev-1", image=catalog["image"], preset=catalog["presets"]["2C/4G"]
        )
    services.workshop_create(
        user=other_user, name="dev-1", image=catalog["image"], preset=catalog["presets"]["2C/4G"]
    )


def test_env_values_are_encrypted_at_rest(user, make_workshop):
    ws = make_workshop(user, env={"OPENAI_API_KEY": "sk-secret-123"})
    var = WorkshopEnvVar.objects.get(workshop=ws)
    assert "sk-secret-123" not in var.value_encrypted
    assert var.plaintext() == "sk-secret-123"
    assert var.masked == "••••"


def test_platform_env_is_injected_and_the_users_value_wins(user, make_workshop, driver):
    ws = make_workshop(user, env={"PIP_INDEX_URL": "https://example.org/simple", "A": "1"})
    env = driver.specs[ws.workload_name].env
    assert env["HF_ENDPOINT"] == "http://hfmirror.mas.zetyun.cn:8082"
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "url.https://gh-proxy.com/github.com/.insteadOf"
    assert env["GIT_CONFIG_VALUE_0"] == "https://github.com/"
    assert env["PIP_INDEX_URL"] == "https://example.org/simple"
    assert env["A"] == "1"


def test_catalog_load_is_idempotent_and_keeps_staff_edits(catalog):
    from workshops import catalog as workshops_catalog
    from workshops.models import Image, PlatformEnvVar, ResourcePreset

    PlatformEnvVar.objects.filter(key="HF_ENDPOINT").update(value="https://mirror.example")
    workshops_catalog.load()
    assert Image.objects.count() == 10
    assert list(ResourcePreset.objects.filter(recommended=True).values_list("name", flat=True)) == [
        "4C/16G"
    ]
    assert PlatformEnvVar.objects.get(key="HF_ENDPOINT").value == "https://mirror.example"


def test_load_catalog_command_loads_workshops_catalog(db):
    from django.core.management import call_command

    from workshops.models import Image, PlatformEnvVar, ResourcePreset

    call_command("load_catalog")
    call_command("load_catalog")
    assert Image.objects.count() == 10
    assert ResourcePreset.objects.count() == 4
    assert PlatformEnvVar.objects.filter(key="HF_ENDPOINT").count() == 1
