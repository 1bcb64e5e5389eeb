from __future__ import annotations

import pytest

from workshops.choices import WorkshopState
from workshops.models import Workshop, WorkshopEnvVar


def test_images_and_presets(client, user, catalog):
    client.force_login(user)
    images = client.get("/api/v1/images").json()["results"]
    assert {"torch:2.5.1-cu124", "ubuntu:22.04"} <= {i["ref"] for i in images}
    presets = client.get("/api/v1/presets").json()["results"]
    assert [p["label"] for p in presets if p["recommended"]] == ["CPU:4 MEM:16G"]


def test_create_list_stop_start_delete(client, user, catalog, driver):
    client.force_login(user)
    created = client.post(
        "/api/v1/workshops",
        {
            "name": "dev",
            "image": catalog["image"].pk,
            "preset": catalog["presets"]["2C/4G"].pk,
            "env": {"TOKEN": "t0p-secret"},
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["state"] == "creating"
    assert body["env"] == [{"key": "TOKEN", "value": "••••"}]
    assert "t0p-secret" not in created.content.decode()
    pk = body["id"]
    assert [w["id"] for w in client.get("/api/v1/workshops").json()["results"]] == [pk]
    Workshop.objects.filter(pk=pk).update(state=WorkshopState.RUNNING)
    assert client.post(f"/api/v1/workshops/{pk}/stop").json()["state"] == "stopping"
    Workshop.objects.filter(pk=pk).update(state=WorkshopState.STOPPED)
    assert client.post(f"/api/v1/workshops/{pk}/start").json()["state"] == "creating"
    assert client.post(f"/api/v1/workshops/{pk}/start").status_code == 409
    patched = client.patch(
        f"/api/v1/workshops/{pk}",
        {"preset": catalog["presets"]["2C/4G"].pk, "env": "OTHER=1"},
        content_type="application/json",
    )
    assert patched.status_code == 200
    assert WorkshopEnvVar.objects.filter(workshop_id=pk).count() == 2
    assert client.delete(f"/api/v1/workshops/{pk}").json()["state"] == "deleting"


def test_quota_refusal_is_409_with_the_message(client, user, catalog, driver, plans):
    client.force_login(user)
    response = client.post(
        "/api/v1/workshops",
        {"name": "big", "image": catalog["image"].pk, "preset": catalog["presets"]["16C/64G"].pk},
        content_type="application/json",
    )
    assert response.status_code == 409
    assert "exceeded quota" in response.content.decode()


@pytest.mark.parametrize(
    "method,suffix",
    [("get", ""), ("patch", ""), ("delete", ""), ("post", "/start"), ("post", "/stop")],
)
def test_another_users_workshop_is_404(client, user, other_user, make_workshop, method, suffix):
    ws = make_workshop(other_user)
    client.force_login(user)
    response = getattr(client, method)(
        f"/api/v1/workshops/{ws.pk}{suffix}", {}, content_type="application/json"
    )
    assert response.status_code == 404
    ws.refresh_from_db()
    assert ws.state == WorkshopState.RUNNING


def test_anonymous_is_refused(client, db):
    assert client.get("/api/v1/workshops").status_code in (401, 403)


def test_a_quota_refusal_is_409_quota_exceeded_as_for_jobs(client, user, catalog, make_workshop):
    # The free tier's quota is one 2 CPU / 4 GiB workshop, and one is running.
    make_workshop(user, name="one", preset="2C/4G")
    client.force_login(user)

    response = client.post(
        "/api/v1/workshops",
        {"name": "two", "image": catalog["image"].pk, "preset": catalog["presets"]["2C/4G"].pk},
        content_type="application/json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "quota_exceeded"
    assert "exceeded quota" in response.json()["detail"]
