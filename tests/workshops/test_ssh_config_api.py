"""GET /api/v1/workshops/{id}/ssh-config: the block the plugin writes, with known_hosts (issue 13)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from aladdin.lib.ssh_host_keys import load_or_create
from tests.workshops.sshkeys import public_key
from workshops import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def host_keys(settings, tmp_path):
    settings.SSH_HOST_KEYS_DIR = tmp_path / "ssh"
    settings.SSH_PUBLIC_HOST = "ssh.example.edu"
    settings.SSH_PUBLIC_PORT = 2222
    return load_or_create(settings.SSH_HOST_KEYS_DIR)


def test_the_config_names_the_workshop_the_gateway_and_the_key(
    client, user, make_workshop, host_keys
):
    ws = make_workshop(user, name="dev")
    services.ssh_key_add(user=user, public_key=public_key(), name="old key")
    laptop = services.ssh_key_add(user=user, public_key=public_key(), name="laptop/ed25519")
    client.force_login(user)

    body = client.get(f"/api/v1/workshops/{ws.pk}/ssh-config").json()

    assert body["config"] == (
        "Host dev.bj1\n"
        "    HostName ssh.example.edu\n"
        "    Port 2222\n"
        "    User dev\n"
        "    IdentityFile ~/.alaya/ssh/laptop-ed25519\n"
        "    IdentitiesOnly yes\n"
        "    HostKeyAlias aladdin-gateway.ssh.example.edu.2222\n"
        "    UserKnownHostsFile ~/.alaya/ssh/known_hosts\n"
    )
    assert (body["host_alias"], body["user"], body["port"]) == ("dev.bj1", "dev", 2222)
    expected = {
        "aladdin-gateway.ssh.example.edu.2222 "
        + " ".join(k.export_public_key("openssh").decode().split()[:2])
        for k in host_keys
    }
    assert set(body["known_hosts"]) == expected
    assert laptop.pk  # the newest key is the default while none was used


def test_the_key_used_last_is_the_default_and_another_can_be_asked_for(
    client, user, make_workshop, host_keys
):
    ws = make_workshop(user)
    used = services.ssh_key_add(user=user, public_key=public_key(), name="used")
    newest = services.ssh_key_add(user=user, public_key=public_key(), name="我的钥匙")
    type(used).objects.filter(pk=used.pk).update(last_used_at=timezone.now())
    client.force_login(user)

    default = client.get(f"/api/v1/workshops/{ws.pk}/ssh-config").json()
    asked = client.get(f"/api/v1/workshops/{ws.pk}/ssh-config?key={newest.pk}").json()

    assert default["identity_file"] == "~/.alaya/ssh/used"
    # a name with nothing file-safe in it: the key's id instead
    assert asked["identity_file"] == f"~/.alaya/ssh/aladdin-key-{newest.pk}"


def test_without_keys_the_config_names_the_usual_file_and_no_host_keys_before_the_gateway(
    client, user, make_workshop, settings, tmp_path
):
    settings.SSH_HOST_KEYS_DIR = tmp_path / "none"
    ws = make_workshop(user)
    client.force_login(user)

    body = client.get(f"/api/v1/workshops/{ws.pk}/ssh-config").json()

    assert body["identity_file"] == "~/.alaya/ssh/id_ed25519"
    assert body["known_hosts"] == []


def test_another_users_workshop_or_key_is_404(client, user, other_user, make_workshop, host_keys):
    theirs = make_workshop(other_user, name="theirs")
    mine = make_workshop(user, name="mine")
    their_key = services.ssh_key_add(user=other_user, public_key=public_key(), name="k")
    client.force_login(user)

    assert client.get(f"/api/v1/workshops/{theirs.pk}/ssh-config").status_code == 404
    assert (
        client.get(f"/api/v1/workshops/{mine.pk}/ssh-config?key={their_key.pk}").status_code == 404
    )
    assert client.get(f"/api/v1/workshops/{mine.pk}/ssh-config?key=x").status_code == 404


def test_the_workshop_page_shows_the_same_block_with_copy_buttons(
    client, user, make_workshop, host_keys
):
    ws = make_workshop(user, name="dev")
    client.force_login(user)

    api = client.get(f"/api/v1/workshops/{ws.pk}/ssh-config").json()
    page = client.get(f"/workshops/{ws.pk}/").content.decode()

    assert api["config"].replace("\n", "") in page.replace("\n", "")
    assert api["known_hosts"][0] in page
    assert page.count("data-copy-target=") == 3
