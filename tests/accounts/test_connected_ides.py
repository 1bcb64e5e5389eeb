"""Connected IDEs: listed on the account page, revoked there, by a password change or a ban."""

from __future__ import annotations

from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from aladdin.accounts import services
from tests.accounts.test_ide_oauth import ide_login, me, refresh

PASSWORD = "S3cure-pass-word"


def live_refresh_tokens(user):
    return get_refresh_token_model().objects.filter(user=user, revoked__isnull=True)


def test_account_page_lists_the_connected_ide(client, user):
    ide_login(client, user)
    token = live_refresh_tokens(user).get()
    client.force_login(user)

    response = client.get("/account/")

    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('data-testid="ide-row"') == 1
    assert "Aladdin IDE plugin" in page
    assert f"/account/ides/{token.pk}/revoke/" in page


def test_account_page_lists_one_row_per_login_even_after_refreshes(client, user):
    vscode = ide_login(client, user)
    ide_login(client, user)
    refresh(client, vscode["refresh_token"])
    client.force_login(user)

    page = client.get("/account/").content.decode()

    assert page.count('data-testid="ide-row"') == 2


def test_account_page_does_not_list_another_users_ide(client, user, other_user):
    ide_login(client, other_user)
    client.force_login(user)

    page = client.get("/account/").content.decode()

    assert 'data-testid="ide-row"' not in page


def test_revoking_an_ide_on_the_account_page_ends_its_tokens(client, user):
    tokens = ide_login(client, user)
    token = live_refresh_tokens(user).get()
    client.force_login(user)

    response = client.post(f"/account/ides/{token.pk}/revoke/")

    assert response.status_code == 302
    assert response["Location"] == "/account/"
    assert not live_refresh_tokens(user).exists()
    assert me(client, tokens["access_token"]).status_code == 401
    assert refresh(client, tokens["refresh_token"]).status_code == 400
    assert 'data-testid="ide-row"' not in client.get("/account/").content.decode()


def test_revoking_one_ide_leaves_the_others_connected(client, user):
    first = ide_login(client, user)
    second = ide_login(client, user)
    first_row = live_refresh_tokens(user).order_by("pk").first()
    client.force_login(user)

    client.post(f"/account/ides/{first_row.pk}/revoke/")

    assert me(client, first["access_token"]).status_code == 401
    assert me(client, second["access_token"]).status_code == 200


def test_revoking_another_users_ide_is_404(client, user, other_user):
    tokens = ide_login(client, other_user)
    theirs = live_refresh_tokens(other_user).get()
    client.force_login(user)

    response = client.post(f"/account/ides/{theirs.pk}/revoke/")

    assert response.status_code == 404
    assert me(client, tokens["access_token"]).status_code == 200


def test_revoking_an_already_revoked_ide_is_404(client, user):
    ide_login(client, user)
    token = live_refresh_tokens(user).get()
    client.force_login(user)
    client.post(f"/account/ides/{token.pk}/revoke/")

    response = client.post(f"/account/ides/{token.pk}/revoke/")

    assert response.status_code == 404


def test_revoke_needs_a_post(client, user):
    ide_login(client, user)
    token = live_refresh_tokens(user).get()
    client.force_login(user)

    response = client.get(f"/account/ides/{token.pk}/revoke/")

    assert response.status_code == 405
    assert live_refresh_tokens(user).exists()


def test_password_change_revokes_all_ide_tokens(client, user):
    first = ide_login(client, user)
    second = ide_login(client, user)
    client.force_login(user)

    response = client.post(
        "/accounts/password/change/",
        {
            "oldpassword": PASSWORD,
            "password1": "An0ther-g00d-pass",
            "password2": "An0ther-g00d-pass",
        },
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("An0ther-g00d-pass")
    assert not live_refresh_tokens(user).exists()
    assert not get_access_token_model().objects.filter(user=user).exists()
    for tokens in (first, second):
        assert me(client, tokens["access_token"]).status_code == 401
        assert refresh(client, tokens["refresh_token"]).status_code == 400


def test_a_failed_password_change_keeps_the_ide_connected(client, user):
    tokens = ide_login(client, user)
    client.force_login(user)

    client.post(
        "/accounts/password/change/",
        {
            "oldpassword": "wrong",
            "password1": "An0ther-g00d-pass",
            "password2": "An0ther-g00d-pass",
        },
    )

    assert me(client, tokens["access_token"]).status_code == 200


def test_ban_revokes_tokens_and_the_banned_users_token_is_refused(client, user, staff):
    tokens = ide_login(client, user)

    services.user_ban(user=user, actor=staff, reason="Mining on a Trial plan")

    assert not live_refresh_tokens(user).exists()
    response = me(client, tokens["access_token"])
    assert response.status_code == 401
    assert set(response.json()) == {"code", "detail", "fields"}
    assert refresh(client, tokens["refresh_token"]).status_code == 400


def test_a_disabled_users_surviving_token_is_refused(client, user):
    # Belt and braces: even a token that escaped revocation stops working
    # once the account is disabled.
    tokens = ide_login(client, user)
    type(user).objects.filter(pk=user.pk).update(is_active=False)

    response = me(client, tokens["access_token"])

    assert response.status_code == 401
    assert set(response.json()) == {"code", "detail", "fields"}


def test_oauth_revoke_all_leaves_other_users_connected(client, user, other_user):
    mine = ide_login(client, user)
    theirs = ide_login(client, other_user)

    services.oauth_revoke_all(user=user)

    assert me(client, mine["access_token"]).status_code == 401
    assert me(client, theirs["access_token"]).status_code == 200
