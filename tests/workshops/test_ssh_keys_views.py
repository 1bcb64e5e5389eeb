"""The SSH keys page: list with fingerprints, add, generate and download once, revoke."""

from __future__ import annotations

import base64
import re

import asyncssh
import pytest

from tests.workshops.sshkeys import public_key
from workshops import selectors, services

pytestmark = pytest.mark.django_db


def test_the_page_lists_fingerprint_name_and_last_use(client, user):
    key = services.ssh_key_add(user=user, public_key=public_key(), name="laptop")
    client.force_login(user)

    page = client.get("/workshops/keys/").content.decode()

    assert key.fingerprint in page
    assert "laptop" in page
    assert "never" in page


def test_add_a_key_and_see_a_refusal(client, user):
    client.force_login(user)

    added = client.post("/workshops/keys/", {"public_key": public_key(), "add": ""})
    refused = client.post(
        "/workshops/keys/", {"public_key": public_key("ssh-rsa", key_size=2048), "add": ""}
    )

    assert added.status_code == 302
    assert selectors.ssh_keys_for(user).count() == 1
    assert refused.status_code == 400
    assert "at least 3072" in refused.content.decode()


def test_generate_shows_and_offers_the_private_key_once(client, user):
    client.force_login(user)

    answer = client.post("/workshops/keys/", {"name": "ide", "generate": ""})

    assert answer.status_code == 201
    assert answer["Cache-Control"] == "no-store"
    page = answer.content.decode()
    data_url = re.search(r'href="data:application/octet-stream;base64,([^"]+)"', page).group(1)
    private = asyncssh.import_private_key(base64.b64decode(data_url))
    key = selectors.ssh_keys_for(user).get()
    assert private.get_fingerprint("sha256") == key.fingerprint
    assert "PRIVATE KEY" not in client.get("/workshops/keys/").content.decode()


def test_revoke(client, user):
    key = services.ssh_key_add(user=user, public_key=public_key())
    client.force_login(user)

    assert client.post(f"/workshops/keys/{key.pk}/revoke/").status_code == 302
    assert selectors.ssh_keys_for(user).count() == 0


def test_another_users_key_is_a_404(client, user, other_user):
    theirs = services.ssh_key_add(user=other_user, public_key=public_key())
    client.force_login(user)

    assert client.post(f"/workshops/keys/{theirs.pk}/revoke/").status_code == 404
    assert client.get("/workshops/keys/").content.decode().count(theirs.fingerprint) == 0
    assert selectors.ssh_keys_for(other_user).count() == 1


def test_the_page_speaks_chinese_to_a_chinese_user(client, user):
    user.language = "zh-hans"
    user.save(update_fields=["language"])
    client.force_login(user)
    page = client.get("/workshops/keys/").content.decode()
    assert "SSH 密钥" in page
    assert "生成密钥对" in page


def test_the_workshop_page_shows_the_ssh_command_and_the_host_key_fingerprints(
    client, user, make_workshop, settings, tmp_path
):
    from aladdin.lib.ssh_host_keys import load_or_create

    settings.SSH_HOST_KEYS_DIR = tmp_path / "ssh"
    settings.SSH_PUBLIC_HOST = "ssh.example.edu"
    settings.SSH_PUBLIC_PORT = 2222
    keys = load_or_create(settings.SSH_HOST_KEYS_DIR)
    workshop = make_workshop(user, name="dev")
    client.force_login(user)

    page = client.get(f"/workshops/{workshop.pk}/").content.decode()

    assert "ssh -p 2222 dev@ssh.example.edu" in page
    for key in keys:
        assert key.get_fingerprint("sha256") in page
    # Made once: loading again gives the same keys.
    again = load_or_create(settings.SSH_HOST_KEYS_DIR)
    assert [k.get_fingerprint("sha256") for k in again] == [
        k.get_fingerprint("sha256") for k in keys
    ]
