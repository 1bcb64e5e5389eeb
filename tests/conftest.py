from __future__ import annotations

import itertools

import pytest
from django.core.cache import cache

from aladdin.accounts.models import User

_phones = itertools.count(13800000001)


def next_phone() -> str:
    return f"+86{next(_phones)}"


@pytest.fixture(autouse=True)
def _english_outside_requests():
    # Service messages are translated at call time, and the default language
    # is zh-hans; tests assert on the English source text. Requests still get
    # their language from LocaleMiddleware.
    from django.utils import translation

    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _clean_redis():
    # Rate-limit counters and heartbeats must not leak between tests.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_user(db):
    def _make(phone: str | None = None, password: str = "S3cure-pass-word", **extra) -> User:
        extra.setdefault("phone_verified", True)
        # Tests read pages in English (the source strings); the zh-hans
        # default is covered by the sign-up and language tests.
        extra.setdefault("language", "en")
        return User.objects.create_user(phone=phone or next_phone(), password=password, **extra)

    return _make


@pytest.fixture
def user(make_user) -> User:
    return make_user()


@pytest.fixture
def other_user(make_user) -> User:
    return make_user()
