"""Audited edits in the back office: plans, prices, images, presets and platform env
defaults ask for a reason and leave a record with the changed fields before and after;
deletes ask why too; stops, key revokes and image builds go through a reason page."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from aladdin.accounts.models import StaffAction
from aladdin.backoffice.admin_audit import AuditedModelAdmin, json_safe
from aladdin.workloads.models import PlatformEnvVar
from billing.models import Plan
from tests.factories import UserFactory
from tests.workshops.sshkeys import public_key
from workshops import services as workshop_services
from workshops.models import ResourcePreset

pytestmark = pytest.mark.django_db


def form_of(response) -> dict:
    """The change form's current values, as the browser would post them back."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        if isinstance(value, list | tuple):
            data[name] = [json_safe(v) for v in value]
            continue
        data[name] = json_safe(value)
    return data


def support_member(*codenames: str):
    """A staff account with only the given permissions (``app.codename``)."""
    member = UserFactory(is_staff=True)
    for name in codenames:
        app, codename = name.split(".")
        member.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return member


def test_a_plan_edit_without_a_reason_is_refused_and_changes_nothing(staff_client, plans):
    plan = plans["basic"]
    url = reverse("admin:billing_plan_change", args=[plan.pk])
    data = {**form_of(staff_client.get(url)), "price_yuan": str(plan.price_fen / 100 + 1)}
    data.pop("audit_reason", None)

    response = staff_client.post(url, data)

    assert response.status_code == 200
    assert "audit_reason" in response.context["adminform"].form.errors
    plan.refresh_from_db()
    assert Plan.objects.get(pk=plan.pk).price_fen == plan.price_fen
    assert not StaffAction.objects.exists()


def test_a_plan_price_edit_is_recorded_with_before_and_after(staff, staff_client, plans):
    plan = plans["basic"]
    old_price = plan.price_fen
    url = reverse("admin:billing_plan_change", args=[plan.pk])
    page = staff_client.get(url)
    assert "audit_reason" in page.content.decode()
    # Staff type yuan (the plan keeps fen): 365.00 -> 366.00.
    new_yuan = Decimal(old_price) / 100 + 1
    data = {**form_of(page), "price_yuan": str(new_yuan), "audit_reason": "spring prices"}

    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    plan.refresh_from_db()
    assert plan.price_fen == old_price + 100
    record = StaffAction.objects.get()
    assert (record.actor, record.action, record.reason) == (staff, "plan_change", "spring prices")
    assert set(record.before) == set(record.after) == {"price_yuan"}
    assert Decimal(record.before["price_yuan"]) == Decimal(old_price) / 100
    assert Decimal(record.after["price_yuan"]) == new_yuan
    assert record.subject_type == "billing.plan" and record.subject_id == str(plan.pk)


def test_adding_and_deleting_a_platform_default_are_recorded_with_their_reasons(
    staff, staff_client
):
    add = staff_client.post(
        reverse("admin:workshops_platformenvvar_add"),
        {
            "key": "HF_ENDPOINT",
            "value": "https://hf-mirror.example",
            "sort": 0,
            "is_active": "on",
            "audit_reason": "faster downloads",
        },
    )
    assert add.status_code == 302
    var = PlatformEnvVar.objects.get(key="HF_ENDPOINT")
    added = StaffAction.objects.get(action="platform_env_add")
    assert added.reason == "faster downloads"
    assert added.after["key"] == "HF_ENDPOINT" and added.before == {}

    delete_url = reverse("admin:workshops_platformenvvar_delete", args=[var.pk])
    # Without a reason nothing is deleted and the page says why.
    refused = staff_client.post(delete_url, {"post": "yes"})
    assert refused.status_code == 200
    assert "audit_reason" in refused.content.decode()
    assert PlatformEnvVar.objects.filter(pk=var.pk).exists()

    deleted = staff_client.post(delete_url, {"post": "yes", "audit_reason": "mirror is down"})

    assert deleted.status_code == 302
    assert not PlatformEnvVar.objects.filter(pk=var.pk).exists()
    record = StaffAction.objects.get(action="platform_env_delete")
    assert record.reason == "mirror is down"
    assert record.before["value"] == "https://hf-mirror.example" and record.after == {}


def test_a_preset_edit_is_recorded(staff_client, catalog):
    preset = ResourcePreset.objects.first()
    url = reverse("admin:workshops_resourcepreset_change", args=[preset.pk])
    data = {
        **form_of(staff_client.get(url)),
        "memory_mib": preset.memory_mib + 1024,
        "audit_reason": "more memory",
    }

    assert staff_client.post(url, data).status_code == 302

    record = StaffAction.objects.get(action="preset_change")
    assert record.before == {"memory_mib": preset.memory_mib}
    assert record.after == {"memory_mib": preset.memory_mib + 1024}


def test_the_bulk_delete_action_is_gone_from_audited_lists(staff_client, plans):
    response = staff_client.get(reverse("admin:billing_plan_changelist"))
    form = response.context["action_form"]
    assert form is None or "delete_selected" not in dict(form.fields["action"].choices)


def test_an_audited_admin_refuses_list_editable():
    with pytest.raises(TypeError):
        type("Bad", (AuditedModelAdmin,), {"list_editable": ["name"]})


def test_staff_without_the_change_permission_cannot_edit_a_plan(client, plans):
    client.force_login(support_member("billing.view_plan"))
    plan = plans["basic"]
    url = reverse("admin:billing_plan_change", args=[plan.pk])

    assert client.get(url).status_code == 200  # may look
    response = client.post(url, {"price_fen": 1, "audit_reason": "x"})

    assert response.status_code == 403
    assert not StaffAction.objects.exists()


def test_revoking_an_ssh_key_asks_why_and_is_recorded(staff, staff_client, user):
    key = workshop_services.ssh_key_add(user=user, public_key=public_key())
    url = reverse("admin:workshops_sshkey_changelist")
    form = {"action": "revoke_keys", "_selected_action": [key.pk]}

    asked = staff_client.post(url, form)
    assert asked.status_code == 200 and b"audit_reason" in asked.content
    key.refresh_from_db()
    assert key.revoked_at is None

    staff_client.post(url, {**form, "confirm_reason": "1", "audit_reason": "key leaked"})

    key.refresh_from_db()
    assert key.revoked_at is not None
    record = StaffAction.objects.get(action="ssh_key_revoke")
    assert (record.actor, record.target_user, record.reason) == (staff, user, "key leaked")


def test_a_reason_page_posted_without_a_reason_does_nothing(staff_client, user):
    key = workshop_services.ssh_key_add(user=user, public_key=public_key())
    response = staff_client.post(
        reverse("admin:workshops_sshkey_changelist"),
        {
            "action": "revoke_keys",
            "_selected_action": [key.pk],
            "confirm_reason": "1",
            "audit_reason": "   ",
        },
    )
    assert response.status_code == 200
    assert "a reason is required" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None


def test_an_image_build_asks_why_and_is_recorded(staff_client, catalog, monkeypatch):
    from workshops import tasks

    asked_for: list[int] = []
    monkeypatch.setattr(tasks.build_image, "delay", lambda pk: asked_for.append(pk))
    image = catalog["image"]
    url = reverse(f"admin:{image._meta.app_label}_image_changelist")

    staff_client.post(
        url,
        {
            "action": "build_now",
            "_selected_action": [image.pk],
            "confirm_reason": "1",
            "audit_reason": "CUDA update",
        },
    )

    record = StaffAction.objects.get(action="image_build")
    assert record.reason == "CUDA update" and record.subject_id == str(image.pk)


def test_a_staff_stop_of_a_job_is_recorded_with_its_reason(
    staff, staff_client, user, make_job, driver, django_capture_on_commit_callbacks
):
    job = make_job(user)
    form = {"action": "stop_jobs", "_selected_action": [job.pk]}
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            reverse("admin:gpu_jobs_job_changelist"),
            {**form, "confirm_reason": "1", "audit_reason": "mining"},
        )

    record = StaffAction.objects.get(action="job_stop")
    assert (record.actor, record.target_user, record.reason) == (staff, user, "mining")
    assert record.before == {"state": "running"}


def test_a_storage_hold_asks_why_and_records_the_reason(staff, staff_client, user):
    from storage.models import StorageAllowance

    row = StorageAllowance.objects.create(user=user)
    url = reverse("admin:storage_storageallowance_changelist")
    form = {"action": "hold_storage", "_selected_action": [row.pk]}

    asked = staff_client.post(url, form)
    assert asked.status_code == 200 and b"audit_reason" in asked.content
    row.refresh_from_db()
    assert not row.hold

    staff_client.post(url, {**form, "confirm_reason": "1", "audit_reason": "thesis data"})

    row.refresh_from_db()
    assert row.hold and row.hold_reason == "thesis data"
    record = StaffAction.objects.get(action="storage_hold")
    assert (record.actor, record.target_user, record.reason) == (staff, user, "thesis data")


def test_an_education_approval_asks_why_and_records_the_reason(staff, staff_client, user):
    url = reverse("admin:accounts_user_changelist")
    form = {"action": "approve_education", "_selected_action": [user.pk]}

    asked = staff_client.post(url, form)
    assert asked.status_code == 200 and b"audit_reason" in asked.content

    staff_client.post(url, {**form, "confirm_reason": "1", "audit_reason": "student card seen"})

    user.refresh_from_db()
    assert user.education_status == "staff"
    record = StaffAction.objects.get(action="education_approve")
    assert record.reason == "student card seen"


@pytest.mark.parametrize(
    "model",
    [
        "billing.plan",
        "gpu_jobs.gputype",
        "workshops.image",
        "workshops.resourcepreset",
        "workshops.platformenvvar",
    ],
)
def test_every_audited_form_asks_for_a_reason(staff_client, plans, cards, catalog, model):
    from django.apps import apps

    app_label, name = model.split(".")
    obj = apps.get_model(app_label, name).objects.order_by("pk").first()
    if obj is None:  # no row seeded: the add form
        url = reverse(f"admin:{app_label}_{name}_add")
    else:
        url = reverse(f"admin:{app_label}_{name}_change", args=[obj.pk])

    response = staff_client.get(url)

    assert response.status_code == 200
    assert 'name="audit_reason"' in response.content.decode()


def test_a_support_agent_edits_platform_defaults_with_a_reason_but_cannot_delete(client):
    var = PlatformEnvVar.objects.create(key="PIP_INDEX_URL", value="https://pypi.example")
    agent = support_member("workshops.view_platformenvvar", "workshops.change_platformenvvar")
    client.force_login(agent)
    url = reverse("admin:workshops_platformenvvar_change", args=[var.pk])

    response = client.post(
        url,
        {
            "key": var.key,
            "value": "https://mirror.example",
            "sort": 0,
            "is_active": "on",
            "audit_reason": "new mirror",
        },
    )

    assert response.status_code == 302
    assert StaffAction.objects.get(action="platform_env_change").actor == agent
    delete = client.post(
        reverse("admin:workshops_platformenvvar_delete", args=[var.pk]),
        {"post": "yes", "audit_reason": "x"},
    )
    assert delete.status_code == 403
    assert PlatformEnvVar.objects.filter(pk=var.pk).exists()


def test_staff_who_may_only_look_see_no_reason_field(client, plans):
    client.force_login(support_member("billing.view_plan"))

    page = client.get(reverse("admin:billing_plan_change", args=[plans["basic"].pk]))

    assert page.status_code == 200
    assert "audit_reason" not in page.content.decode()
    assert "Reason for this change" not in page.content.decode()
