from __future__ import annotations

from django.urls import reverse

from workshops.choices import WorkshopState


def test_staff_stop_action_stops_running_workshops(client, make_user, user, make_workshop):
    staff = make_user(is_staff=True, is_superuser=True)
    ws = make_workshop(user)
    client.force_login(staff)
    form = {"action": "stop_workshops", "_selected_action": [ws.pk]}
    asked = client.post(reverse("admin:workshops_workshop_changelist"), form)
    assert asked.status_code == 200 and b"audit_reason" in asked.content
    response = client.post(
        reverse("admin:workshops_workshop_changelist"),
        {**form, "confirm_reason": "1", "audit_reason": "mining"},
    )
    assert response.status_code == 302
    ws.refresh_from_db()
    assert ws.state == WorkshopState.STOPPING


def test_admin_pages_render_and_search_by_phone(client, make_user, user, make_workshop):
    staff = make_user(is_staff=True, is_superuser=True)
    make_workshop(user)
    client.force_login(staff)
    for name in ["image", "resourcepreset", "platformenvvar", "workshopevent"]:
        assert client.get(reverse(f"admin:workshops_{name}_changelist")).status_code == 200
    page = client.get(
        reverse("admin:workshops_workshop_changelist"), {"q": user.phone, "state": "running"}
    )
    assert page.status_code == 200
    assert "dev" in page.content.decode()
