from aladdin.accounts.models import BannedPhone, StaffAction


def test_staff_find_users_by_phone_as_students_type_it(staff_client, make_user):
    target = make_user(phone="+8613912345678")
    make_user(phone="+8613700000000")

    response = staff_client.get("/admin/accounts/user/", {"q": "13912345678"})

    assert response.status_code == 200
    assert list(response.context["cl"].queryset) == [target]


def test_ban_action_asks_for_a_reason_then_bans(staff_client, make_user):
    target = make_user()
    form = {"action": "ban_for_mining", "_selected_action": [target.pk]}

    # given: the first post shows the confirmation page and bans nobody
    response = staff_client.post("/admin/accounts/user/", form)
    assert response.status_code == 200
    assert b"ban_reason" in response.content
    target.refresh_from_db()
    assert target.banned_at is None

    # when: confirmed with a reason
    staff_client.post(
        "/admin/accounts/user/", {**form, "confirm_ban": "1", "ban_reason": "GPU mining"}
    )

    # then
    target.refresh_from_db()
    assert target.banned_at is not None and not target.is_active
    assert BannedPhone.objects.filter(phone=target.phone, reason="GPU mining").exists()
    assert StaffAction.objects.filter(target_user=target, action="ban").exists()


def test_ban_action_without_reason_bans_nobody(staff_client, make_user):
    target = make_user()
    staff_client.post(
        "/admin/accounts/user/",
        {"action": "ban_for_mining", "_selected_action": [target.pk], "confirm_ban": "1"},
    )
    target.refresh_from_db()
    assert target.banned_at is None
