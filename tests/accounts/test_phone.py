"""Mainland mobile numbers: what people type, stored as E.164 (+86…), masked when shown."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from aladdin.accounts.adapter import AccountAdapter, MainlandPhoneField
from aladdin.accounts.models import BannedPhone, User
from aladdin.accounts.phone import mask_phone, normalize_phone


@pytest.mark.parametrize(
    "typed",
    [
        "13800138000",
        "+8613800138000",
        "+86 138 0013 8000",
        "0086-138-0013-8000",
        "86 13800138000",
        "(+86) 138-0013-8000",
        " 13800138000 ",
    ],
)
def test_normalize_what_people_type(typed):
    assert normalize_phone(typed) == "+8613800138000"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "1380013800",  # 10 digits
        "138001380001",  # 12 digits
        "12800138000",  # no mainland mobile starts with 12
        "02012345678",  # a landline
        "+1 415 555 0100",
        "+85261234567",  # Hong Kong
        "8613800138000x",
        "１３８００１３８０００",  # full-width digits are not guessed at
        "138００138000",
    ],
)
def test_reject_what_is_not_a_mainland_mobile(typed):
    with pytest.raises(ValidationError) as refused:
        normalize_phone(typed)
    assert refused.value.code == "invalid_phone"


def test_mask_phone():
    assert mask_phone("+8613800138000") == "+86 138****8000"


def test_the_form_field_cleans_to_e164(db):
    assert MainlandPhoneField(required=True).clean("138 0013 8000") == "+8613800138000"


def test_the_form_field_refuses_banned_numbers(db):
    BannedPhone.objects.create(phone="+8613800138000", reason="mining")

    with pytest.raises(ValidationError):
        MainlandPhoneField(required=True).clean("13800138000")


def test_the_user_manager_stores_e164(db):
    user = User.objects.create_user(phone="138-0013-8000", password="x")

    assert user.phone == "+8613800138000"
    assert User.objects.get_by_natural_key("13800138000") == user


def test_the_adapter_finds_users_by_any_spelling_of_their_number(make_user):
    user = make_user(phone="+8613800138000")
    adapter = AccountAdapter()

    assert adapter.get_user_by_phone("138 0013 8000") == user
    assert adapter.get_phone(user) == ("+8613800138000", True)
    assert adapter.get_user_by_phone("not a phone") is None
    assert adapter.get_user_by_phone("13900139000") is None


def test_the_adapter_stores_numbers_as_e164(make_user):
    user = make_user(phone="+8613800138000")

    AccountAdapter().set_phone(user, "139 0013 9000", False)

    user.refresh_from_db()
    assert (user.phone, user.phone_verified) == ("+8613900139000", False)
