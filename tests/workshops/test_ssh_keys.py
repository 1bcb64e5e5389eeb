"""SSH keys: which keys are accepted, the limit, one account per key, revocation (issue 13)."""

from __future__ import annotations

import asyncssh
import pytest
from django.core.exceptions import ValidationError

from aladdin.accounts import services as account_services
from tests.workshops.sshkeys import public_key
from workshops import selectors, services
from workshops.models import SSHKey

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("algorithm", "options", "bits"),
    [
        ("ssh-ed25519", {}, 256),
        ("ecdsa-sha2-nistp256", {}, 256),
        ("ecdsa-sha2-nistp384", {}, 384),
        ("ecdsa-sha2-nistp521", {}, 521),
        ("ssh-rsa", {"key_size": 3072}, 3072),
    ],
)
def test_ed25519_ecdsa_and_rsa_of_3072_bits_are_accepted(user, algorithm, options, bits):
    line = public_key(algorithm, **options)

    key = services.ssh_key_add(user=user, public_key=line)

    assert key.algorithm == algorithm
    assert key.bits == bits
    assert key.fingerprint == asyncssh.import_public_key(line).get_fingerprint("sha256")
    assert key.fingerprint.startswith("SHA256:")
    assert key.name == "me@laptop"  # the comment names a key without a name


def test_rsa_below_3072_bits_is_refused_with_the_numbers(user):
    with pytest.raises(ValidationError) as refused:
        services.ssh_key_add(user=user, public_key=public_key("ssh-rsa", key_size=2048))
    assert "2048 bits; at least 3072" in str(refused.value)
    assert not SSHKey.objects.exists()


def test_dsa_and_garbage_and_private_keys_are_refused_saying_why(user):
    dsa = public_key("ssh-dss")
    private = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()

    messages = {}
    for label, text in {"dsa": dsa, "garbage": "hello", "private": private, "empty": " "}.items():
        with pytest.raises(ValidationError) as refused:
            services.ssh_key_add(user=user, public_key=text)
        messages[label] = " ".join(refused.value.message_dict["public_key"])

    assert "ssh-dss are not accepted: use ed25519, ECDSA or RSA of at least 3072" in messages["dsa"]
    assert "not an OpenSSH public key" in messages["garbage"]
    assert "private key" in messages["private"]
    assert "Paste a public key" in messages["empty"]


def test_a_key_with_options_or_extra_spaces_is_stored_as_one_clean_line(user):
    line = public_key("ssh-ed25519", comment="a@b")
    key = services.ssh_key_add(user=user, public_key=f"  {line}\n", name="laptop")
    assert key.public_key == line
    assert key.name == "laptop"


def test_at_most_20_keys_per_user(user):
    for _ in range(services.SSH_KEYS_PER_USER):
        services.ssh_key_add(user=user, public_key=public_key())

    with pytest.raises(ValidationError, match="20 SSH keys"):
        services.ssh_key_add(user=user, public_key=public_key())

    # A revoked key frees its place.
    services.ssh_key_revoke(key=SSHKey.objects.filter(user=user).first())
    services.ssh_key_add(user=user, public_key=public_key())


def test_a_key_registered_anywhere_is_refused_the_same_way(user, other_user):
    line = public_key()
    services.ssh_key_add(user=other_user, public_key=line)

    with pytest.raises(ValidationError) as elsewhere:
        services.ssh_key_add(user=user, public_key=line)
    with pytest.raises(ValidationError) as own:
        services.ssh_key_add(user=other_user, public_key=line)

    assert "already registered" in str(elsewhere.value)
    assert elsewhere.value.messages == own.value.messages


def test_a_revoked_key_may_be_registered_again(user, other_user):
    line = public_key()
    key = services.ssh_key_add(user=other_user, public_key=line)
    services.ssh_key_revoke(key=key)

    again = services.ssh_key_add(user=user, public_key=line)

    assert again.fingerprint == key.fingerprint
    assert list(selectors.ssh_keys_for(other_user)) == []


def test_generate_registers_the_public_key_and_returns_a_private_key_that_matches(user):
    key, private = services.ssh_key_generate(user=user, name="ide")

    loaded = asyncssh.import_private_key(private)
    assert loaded.get_fingerprint("sha256") == key.fingerprint
    assert key.algorithm == "ssh-ed25519"
    assert key.name == "ide"
    # Never stored: nothing of the private key is in the database row.
    assert "PRIVATE" not in key.public_key
    assert private.split("\n")[1] not in str(SSHKey.objects.filter(pk=key.pk).values().get())


def test_a_ban_revokes_every_key(user, staff):
    services.ssh_key_add(user=user, public_key=public_key())
    services.ssh_key_add(user=user, public_key=public_key())

    account_services.user_ban(user=user, actor=staff, reason="mining")

    assert selectors.ssh_keys_for(user).count() == 0
    assert SSHKey.objects.filter(user=user, revoked_at__isnull=False).count() == 2


def test_a_password_reset_by_staff_revokes_every_key(user, staff, other_user):
    services.ssh_key_add(user=user, public_key=public_key())
    kept = services.ssh_key_add(user=other_user, public_key=public_key())

    account_services.user_password_set_by_staff(user=user, actor=staff, password="n3w-Passw0rd!")

    assert selectors.ssh_keys_for(user).count() == 0
    assert list(selectors.ssh_keys_for(other_user)) == [kept]
    user.refresh_from_db()
    assert user.check_password("n3w-Passw0rd!")


def test_the_back_office_password_form_revokes_keys_and_names_the_actor(user, staff_client, staff):
    from aladdin.accounts.models import StaffAction

    services.ssh_key_add(user=user, public_key=public_key())

    response = staff_client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": "An0ther-pass!", "password2": "An0ther-pass!", "set_usable_password": "true"},
    )

    assert response.status_code == 302, response.content[:2000]
    assert selectors.ssh_keys_for(user).count() == 0
    action = StaffAction.objects.get(target_user=user, action="password_reset")
    assert action.actor == staff


def test_a_login_records_the_keys_last_use_and_the_users_activity(user, make_workshop):
    key = services.ssh_key_add(user=user, public_key=public_key())
    assert key.last_used_at is None

    services.ssh_login_record(key_id=key.pk)

    key.refresh_from_db()
    user.refresh_from_db()
    assert key.last_used_at is not None
    assert user.last_activity_at == key.last_used_at


def test_the_login_target_is_the_same_none_for_every_refusal(user, other_user, make_workshop):
    mine = services.ssh_key_add(user=user, public_key=public_key())
    theirs = services.ssh_key_add(user=other_user, public_key=public_key())
    workshop = make_workshop(user, name="dev")
    make_workshop(other_user, name="theirs")

    assert selectors.ssh_login_target(username="dev", fingerprint=mine.fingerprint) == (
        mine,
        workshop,
    )
    assert selectors.ssh_login_target(username="dev", fingerprint=theirs.fingerprint) is None
    assert selectors.ssh_login_target(username="theirs", fingerprint=mine.fingerprint) is None
    assert selectors.ssh_login_target(username="nope", fingerprint=mine.fingerprint) is None
    services.ssh_key_revoke(key=mine)
    assert selectors.ssh_login_target(username="dev", fingerprint=mine.fingerprint) is None
