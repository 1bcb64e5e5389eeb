"""IDE plugin login: authorization code + PKCE (S256 only), tokens, the API with a bearer token.

Every test drives the real endpoints (/o/authorize/, /o/token/, /o/revoke_token/,
/api/v1/me) with Django's test client, as the VSCode / Cursor extension would.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.urls import reverse
from oauth2_provider.models import Grant, get_access_token_model, get_refresh_token_model

from aladdin.accounts.choices import EducationStatus

CLIENT_ID = settings.OAUTH_IDE_CLIENT_ID
VSCODE_REDIRECT = "vscode://AlayaNeW.aladdin/auth-callback"
CURSOR_REDIRECT = "cursor://AlayaNeW.aladdin/auth-callback"
LOOPBACK_REDIRECT = "http://127.0.0.1:53219/callback"


# --- helpers (also used by the other IDE test files) -------------------------


def ensure_ide_client():
    """The plugin's OAuth client as the data migration creates it.

    Transactional tests flush the database, data migrations included, so
    re-run the migration's own function rather than rely on the row.
    """
    migration = importlib.import_module("aladdin.accounts.migrations.0002_ide_oauth_application")
    migration.create_client(django_apps, None)
    return django_apps.get_model("oauth2_provider", "Application").objects.get(client_id=CLIENT_ID)


@pytest.fixture
def ide_client_app(db):
    return ensure_ide_client()


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge), computed as RFC 7636 §4.2 says."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def authorize(client, *, redirect_uri=VSCODE_REDIRECT, state="state-123", **params):
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "state": state,
        "scope": "ide",
        **params,
    }
    return client.get("/o/authorize/?" + urlencode(query))


def return_link(response) -> str:
    """The href of the "Return to <IDE>" button on the page."""
    match = re.search(r'href="([^"]+)"\s+data-testid="return-to-ide"', response.content.decode())
    assert match, "the page has no return-to-IDE link"
    return html.unescape(match.group(1))


def query_of(uri: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(uri).query).items()}


def exchange(client, *, code, verifier, redirect_uri=VSCODE_REDIRECT):
    return client.post(
        "/o/token/",
        {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
        },
    )


def refresh(client, refresh_token):
    return client.post(
        "/o/token/",
        {"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": refresh_token},
    )


def me(client, access_token):
    return client.get("/api/v1/me", headers={"authorization": f"Bearer {access_token}"})


def ide_login(client, user, *, redirect_uri=VSCODE_REDIRECT) -> dict:
    """Log ``user`` in from the plugin end to end; returns the token response."""
    ensure_ide_client()
    client.force_login(user)
    verifier, challenge = pkce_pair()
    response = authorize(
        client, redirect_uri=redirect_uri, code_challenge=challenge, code_challenge_method="S256"
    )
    link = return_link(response) if response.status_code == 200 else response["Location"]
    tokens = exchange(
        client, code=query_of(link)["code"], verifier=verifier, redirect_uri=redirect_uri
    )
    assert tokens.status_code == 200, tokens.content
    # The plugin's later calls carry no session, only its token.
    client.logout()
    return tokens.json()


@pytest.fixture
def en_user(make_user):
    return make_user(phone="+8613812345678", language="en")


# --- authorization request: PKCE S256 is required ----------------------------


def test_authorize_without_code_challenge_is_rejected(client, en_user, ide_client_app):
    client.force_login(en_user)

    response = authorize(client)

    # The IDE is told (it shows the error); no code is issued.
    assert "Login was not completed" in response.content.decode()
    params = query_of(return_link(response))
    assert params["error"] == "invalid_request"
    assert "code" not in params
    assert not Grant.objects.exists()


def test_authorize_with_plain_code_challenge_method_is_rejected(client, en_user, ide_client_app):
    client.force_login(en_user)
    verifier, _challenge = pkce_pair()

    response = authorize(client, code_challenge=verifier, code_challenge_method="plain")

    assert "error=invalid_request" in html.unescape(response.content.decode())
    assert not Grant.objects.exists()


def test_authorize_with_a_challenge_but_no_method_is_rejected_as_plain(
    client, en_user, ide_client_app
):
    # oauthlib reads a missing code_challenge_method as "plain" (RFC 7636 §4.3).
    client.force_login(en_user)
    _verifier, challenge = pkce_pair()

    response = authorize(client, code_challenge=challenge)

    assert "error=invalid_request" in html.unescape(response.content.decode())
    assert not Grant.objects.exists()


def test_authorize_for_an_anonymous_visitor_asks_to_log_in_first(client, ide_client_app):
    _verifier, challenge = pkce_pair()

    response = authorize(client, code_challenge=challenge, code_challenge_method="S256")

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login") + "?next=/o/authorize/")
    assert not Grant.objects.exists()


def test_authorize_to_an_unregistered_redirect_uri_is_refused(client, en_user, ide_client_app):
    client.force_login(en_user)
    _verifier, challenge = pkce_pair()

    response = authorize(
        client,
        redirect_uri="vscode://evil.extension/auth-callback",
        code_challenge=challenge,
        code_challenge_method="S256",
    )

    # Never redirected (or linked) to an unregistered URI: the error is shown here.
    assert response.status_code == 400
    assert "evil.extension" not in response.get("Location", "")
    assert not Grant.objects.exists()


# --- authorization response: the "Return to VSCode" page ---------------------


def test_vscode_redirect_shows_the_return_to_vscode_page_with_code_and_state(
    client, en_user, ide_client_app
):
    client.force_login(en_user)
    _verifier, challenge = pkce_pair()

    response = authorize(client, code_challenge=challenge, code_challenge_method="S256")

    assert response.status_code == 200
    assert "Return to VSCode" in response.content.decode()
    assert "You are logged in" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    link = return_link(response)
    assert link.startswith(VSCODE_REDIRECT + "?")
    params = query_of(link)
    assert params["state"] == "state-123"
    grant = Grant.objects.get(code=params["code"])
    assert grant.user == en_user
    assert grant.code_challenge_method == "S256"


def test_cursor_redirect_shows_the_return_to_cursor_page(client, en_user, ide_client_app):
    client.force_login(en_user)
    _verifier, challenge = pkce_pair()

    response = authorize(
        client, redirect_uri=CURSOR_REDIRECT, code_challenge=challenge, code_challenge_method="S256"
    )

    assert response.status_code == 200
    assert "Return to Cursor" in response.content.decode()
    link = return_link(response)
    assert link.startswith(CURSOR_REDIRECT + "?")
    assert "code" in query_of(link)


@pytest.mark.parametrize("port", [53219, 8080])
def test_loopback_redirect_on_any_port_is_followed_directly(client, en_user, ide_client_app, port):
    client.force_login(en_user)
    _verifier, challenge = pkce_pair()
    redirect_uri = f"http://127.0.0.1:{port}/callback"

    response = authorize(
        client, redirect_uri=redirect_uri, code_challenge=challenge, code_challenge_method="S256"
    )

    assert response.status_code == 302
    assert response["Location"].startswith(redirect_uri + "?")
    params = query_of(response["Location"])
    assert params["state"] == "state-123"
    assert Grant.objects.filter(code=params["code"]).exists()


# --- token request -----------------------------------------------------------


def test_a_wrong_code_verifier_is_refused_and_burns_the_code(client, en_user, ide_client_app):
    client.force_login(en_user)
    verifier, challenge = pkce_pair()
    link = return_link(authorize(client, code_challenge=challenge, code_challenge_method="S256"))
    code = query_of(link)["code"]
    client.logout()

    wrong = exchange(client, code=code, verifier=pkce_pair()[0])
    right_afterwards = exchange(client, code=code, verifier=verifier)

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert right_afterwards.status_code == 400
    assert right_afterwards.json()["error"] == "invalid_grant"
    assert not get_access_token_model().objects.exists()


def test_a_missing_code_verifier_is_refused_and_burns_the_code(client, en_user, ide_client_app):
    client.force_login(en_user)
    verifier, challenge = pkce_pair()
    code = query_of(
        return_link(authorize(client, code_challenge=challenge, code_challenge_method="S256"))
    )["code"]
    client.logout()

    missing = client.post(
        "/o/token/",
        {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "code": code,
            "redirect_uri": VSCODE_REDIRECT,
        },
    )

    assert missing.status_code == 400
    assert exchange(client, code=code, verifier=verifier).status_code == 400


def test_the_right_verifier_returns_access_and_refresh_tokens(client, en_user, ide_client_app):
    tokens = ide_login(client, en_user)

    assert tokens["token_type"] == "Bearer"
    assert tokens["access_token"] and tokens["refresh_token"]
    assert tokens["scope"] == "ide"
    assert tokens["expires_in"] == settings.OAUTH2_PROVIDER["ACCESS_TOKEN_EXPIRE_SECONDS"]
    # RFC 9700 token storage: only checksums are kept.
    stored = get_access_token_model().objects.get(user=en_user)
    assert tokens["access_token"] not in (stored.token, "")
    assert stored.token == ""


def test_a_code_can_be_exchanged_only_once(client, en_user, ide_client_app):
    client.force_login(en_user)
    verifier, challenge = pkce_pair()
    code = query_of(
        return_link(authorize(client, code_challenge=challenge, code_challenge_method="S256"))
    )["code"]
    client.logout()

    first = exchange(client, code=code, verifier=verifier)
    second = exchange(client, code=code, verifier=verifier)

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


def _code_for(client, user) -> tuple[str, str]:
    """A fresh authorization code for ``user`` and its verifier; the client is logged out."""
    client.force_login(user)
    verifier, challenge = pkce_pair()
    code = query_of(
        return_link(authorize(client, code_challenge=challenge, code_challenge_method="S256"))
    )["code"]
    client.logout()
    return code, verifier


def test_replaying_a_code_revokes_the_tokens_of_its_first_exchange(client, en_user, ide_client_app):
    # given a code that was exchanged once
    code, verifier = _code_for(client, en_user)
    first = exchange(client, code=code, verifier=verifier).json()
    assert me(client, first["access_token"]).status_code == 200

    # when it is presented again (a stolen code, RFC 6749 §4.1.2)
    replay = exchange(client, code=code, verifier=verifier)

    # then the replay is refused and the first exchange's tokens stop working
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert me(client, first["access_token"]).status_code == 401
    assert refresh(client, first["refresh_token"]).status_code == 400


def test_replaying_a_code_also_revokes_the_tokens_refreshed_since(client, en_user, ide_client_app):
    code, verifier = _code_for(client, en_user)
    first = exchange(client, code=code, verifier=verifier).json()
    renewed = refresh(client, first["refresh_token"]).json()

    exchange(client, code=code, verifier=verifier)

    assert me(client, renewed["access_token"]).status_code == 401
    assert refresh(client, renewed["refresh_token"]).status_code == 400


def test_replaying_a_code_leaves_the_users_other_logins_alone(client, en_user, ide_client_app):
    code, verifier = _code_for(client, en_user)
    exchange(client, code=code, verifier=verifier)
    other_login = ide_login(client, en_user)

    exchange(client, code=code, verifier=verifier)

    assert me(client, other_login["access_token"]).status_code == 200


def test_loopback_login_exchanges_with_the_same_port(client, en_user, ide_client_app):
    tokens = ide_login(client, en_user, redirect_uri=LOOPBACK_REDIRECT)

    assert me(client, tokens["access_token"]).status_code == 200


# --- the API with the plugin's token -----------------------------------------


def test_me_with_a_bearer_token_shows_the_masked_phone_education_and_language(
    client, make_user, ide_client_app
):
    user = make_user(phone="+8613812345678", language="en", education_status=EducationStatus.EMAIL)
    tokens = ide_login(client, user)

    response = me(client, tokens["access_token"])

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.pk
    assert body["phone"] == "+86 138****5678"
    assert "13812345678" not in response.content.decode()
    assert body["education"] is True
    assert body["education_status"] == "email"
    assert body["language"] == "en"


def test_me_without_a_token_is_401_in_the_api_error_shape(client, db):
    response = client.get("/api/v1/me")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert set(response.json()) == {"code", "detail", "fields"}
    assert response.json()["code"] == "not_authenticated"


def test_me_with_an_unknown_token_is_401_in_the_api_error_shape(client, db):
    response = me(client, "not-a-token")

    assert response.status_code == 401
    assert set(response.json()) == {"code", "detail", "fields"}
    assert response.json()["fields"] == {}


def test_refresh_grant_returns_a_new_access_token_and_rotates_the_refresh_token(
    client, en_user, ide_client_app
):
    tokens = ide_login(client, en_user)

    refreshed = refresh(client, tokens["refresh_token"])

    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert new["access_token"] != tokens["access_token"]
    assert me(client, new["access_token"]).status_code == 200
    # The superseded access token stops working at once.
    assert me(client, tokens["access_token"]).status_code == 401


def test_reusing_an_old_refresh_token_is_refused_and_revokes_the_whole_family(
    client, en_user, ide_client_app
):
    # given a plugin that refreshed once, and a thief holding the first refresh token
    first = ide_login(client, en_user)
    second = refresh(client, first["refresh_token"]).json()

    # when the thief replays the old refresh token
    replay = refresh(client, first["refresh_token"])

    # then it is refused, and the legitimate (newest) tokens die with it
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert me(client, second["access_token"]).status_code == 401
    assert refresh(client, second["refresh_token"]).status_code == 400
    assert not get_refresh_token_model().objects.filter(user=en_user, revoked__isnull=True).exists()


def test_a_token_revoked_at_the_revoke_endpoint_is_refused_by_the_api(
    client, en_user, ide_client_app
):
    tokens = ide_login(client, en_user)

    # Public client: no secret, client_id in the body (RFC 7009 §2.1).
    revoked = client.post(
        "/o/revoke_token/",
        {
            "token": tokens["access_token"],
            "token_type_hint": "access_token",
            "client_id": CLIENT_ID,
        },
    )

    assert revoked.status_code == 200
    response = me(client, tokens["access_token"])
    assert response.status_code == 401
    assert set(response.json()) == {"code", "detail", "fields"}
    # Revoking the access token also revokes its refresh token (DOT does, RFC 7009 §2.1 MAY).
    assert refresh(client, tokens["refresh_token"]).status_code == 400


def test_a_refresh_token_revoked_at_the_revoke_endpoint_ends_the_connection(
    client, en_user, ide_client_app
):
    tokens = ide_login(client, en_user)

    client.post(
        "/o/revoke_token/",
        {
            "token": tokens["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": CLIENT_ID,
        },
    )

    assert me(client, tokens["access_token"]).status_code == 401
    assert refresh(client, tokens["refresh_token"]).status_code == 400


def test_a_revoked_token_is_refused_even_from_a_browser_logged_in_to_the_portal(
    client, en_user, ide_client_app
):
    # A request that presents a token is judged by the token, not by the
    # session cookie that happens to travel with it.
    tokens = ide_login(client, en_user)
    client.post(
        "/o/revoke_token/",
        {"token": tokens["access_token"], "client_id": CLIENT_ID},
    )
    client.force_login(en_user)

    response = me(client, tokens["access_token"])

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    # Without a token the session still works (the dashboard's own calls).
    assert client.get("/api/v1/me").status_code == 200
