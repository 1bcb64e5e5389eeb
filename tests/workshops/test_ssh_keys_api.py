"""/api/v1/ssh-keys: list, add, generate, revoke (issue 13)."""

from __future__ import annotations

import asyncssh
import pytest

from tests.workshops.sshkeys import public_key
from workshops import services
from workshops.models import SSHKey

pytestmark = pytest.mark.django_db


def test_add_list_and_revoke(client, user):
    client.force_login(user)
    line = public_key(comment="me@laptop")

    added = client.post("/api/v1/ssh-keys", {"public_key": line}, content_type="application/json")
    assert added.status_code == 201, added.content
    body = added.json()
    assert body["fingerprint"].startswith("SHA256:")
    assert body["name"] == "me@laptop"
    assert body["last_used_at"] is None

    listed = client.get("/api/v1/ssh-keys").json()["results"]
    assert [k["id"] for k in listed] == [body["id"]]
    assert client.get(f"/api/v1/ssh-keys/{body['id']}").json()["public_key"] == line

    assert client.delete(f"/api/v1/ssh-keys/{body['id']}").status_code == 204
    assert client.get("/api/v1/ssh-keys").json()["results"] == []
    assert client.get(f"/api/v1/ssh-keys/{body['id']}").status_code == 404
    assert SSHKey.objects.get(pk=body["id"]).revoked_at is not None


def test_a_refused_key_is_a_400_that_says_why(client, user):
    client.force_login(user)
    answer = client.post(
        "/api/v1/ssh-keys",
        {"public_key": public_key("ssh-rsa", key_size=2048)},
        content_type="application/json",
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "invalid"
    assert "at least 3072" in " ".join(body["fields"]["public_key"])


def test_generate_returns_the_private_key_once(client, user):
    client.force_login(user)

    answer = client.post(
        "/api/v1/ssh-keys/generate", {"name": "ide"}, content_type="application/json"
    )

    assert answer.status_code == 201, answer.content
    assert answer["Cache-Control"] == "no-store"
    body = answer.json()
    private = asyncssh.import_private_key(body["private_key"])
    assert private.get_fingerprint("sha256") == body["key"]["fingerprint"]
    # Nothing else ever shows it again.
    listed = client.get("/api/v1/ssh-keys").content.decode()
    assert "PRIVATE KEY" not in listed


def test_another_users_key_is_a_404_and_stays(client, user, other_user):
    theirs = services.ssh_key_add(user=other_user, public_key=public_key())
    client.force_login(user)

    assert client.get(f"/api/v1/ssh-keys/{theirs.pk}").status_code == 404
    assert client.delete(f"/api/v1/ssh-keys/{theirs.pk}").status_code == 404
    assert client.get("/api/v1/ssh-keys").json()["results"] == []
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_anonymous_is_refused(client):
    assert client.get("/api/v1/ssh-keys").status_code in {401, 403}
