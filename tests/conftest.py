"""Fixtures every test directory shares; the objects they build come from tests/factories.py.

- users: ``user``, ``other_user``, ``make_user(...)``, ``staff`` (staff and superuser),
  ``staff_client``, ``student`` and ``student_client``;
- seeded catalogs: ``plans``, ``cards`` (GPU types), ``catalog`` (images, presets);
- builders: ``subscribe``, ``make_workshop``, ``make_job``;
- the cluster driver: ``driver`` (a recording ``tests.fakes.FakeDriver``) and
  ``use_driver(any_driver)`` (a real LocalDriver on a private agent, a broken one):
  the one way tests choose the portal's driver.

Hypothesis runs under a profile chosen by ``HYPOTHESIS_PROFILE``: ``ci`` (the
default, ``make test``: 100 examples) or ``nightly`` (``make test-nightly``: 500).
Tests marked ``nightly`` run only under the nightly profile.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, settings

from aladdin.accounts.models import User
from tests import factories
from tests.factories import next_phone  # noqa: F401 - imported from here by older tests
from tests.fakes import FakeDriver
from tests.servers import migrated_db  # noqa: F401 - a fixture (_test_db_from_migrated)

# --- Hypothesis tiers ------------------------------------------------------------------

# DESIGN "Tests and CI": derandomized (the same examples on every run, so a
# failure reproduces anywhere), no deadline (a busy 2-core machine is slow).
# The nightly profile only runs more of them.
_HYPOTHESIS_COMMON = dict(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("ci", max_examples=100, **_HYPOTHESIS_COMMON)
settings.register_profile("nightly", max_examples=500, **_HYPOTHESIS_COMMON)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(HYPOTHESIS_PROFILE)
NIGHTLY = HYPOTHESIS_PROFILE == "nightly"


def examples(ci: int) -> int:
    """A test's own example count under ``ci``, scaled like the profile (×5 nightly).

    For tests whose examples are too slow for the profile's 100 in ``make test``.
    """
    return max(1, ci * settings.default.max_examples // 100)


def pytest_collection_modifyitems(config, items):
    if NIGHTLY:
        return
    skip = pytest.mark.skip(reason="nightly tier: make test-nightly (HYPOTHESIS_PROFILE=nightly)")
    for item in items:
        if item.get_closest_marker("nightly"):
            item.add_marker(skip)


# --- every test ------------------------------------------------------------------------


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


# --- users -----------------------------------------------------------------------------


@pytest.fixture
def make_user(db):
    """``make_user(phone=None, password=..., **fields)``: a verified student (UserFactory)."""

    def _make(phone: str | None = None, password: str = factories.PASSWORD, **extra) -> User:
        if phone is not None:
            extra["phone"] = phone
        return factories.UserFactory(password=password, **extra)

    return _make


@pytest.fixture
def user(make_user) -> User:
    return make_user()


@pytest.fixture
def other_user(make_user) -> User:
    return make_user()


@pytest.fixture
def staff(db) -> User:
    """A member of staff with every permission (the back office's superuser)."""
    return factories.UserFactory(admin=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def student(make_user) -> User:
    return make_user()


@pytest.fixture
def student_client(client, student):
    client.force_login(student)
    return client


# --- seeded catalogs -------------------------------------------------------------------


@pytest.fixture
def plans(db) -> dict:
    """The seeded plans by code (seeded again: a transaction=True test's flush empties them)."""
    return factories.seeded_plans()


@pytest.fixture
def cards(db) -> dict:
    """The seeded GPU types by code ("40g", "80g")."""
    return factories.seeded_cards()


@pytest.fixture
def catalog(db) -> dict:
    """The default image (``catalog["image"]``) and the presets by name."""
    return factories.seeded_catalog()


# --- the cluster driver ----------------------------------------------------------------


@pytest.fixture
def use_driver(monkeypatch):
    """``use_driver(d)`` makes ``d`` the portal's cluster driver for this test; returns ``d``.

    Patched where every ``get_driver()`` ends, whichever way a module imported
    it (``cluster.get_driver()`` or ``from aladdin.cluster import get_driver``).
    """

    def _use(driver):
        monkeypatch.setattr("aladdin.cluster._driver_for", lambda name: driver)
        return driver

    return _use


@pytest.fixture
def driver(use_driver) -> FakeDriver:
    """The portal's driver for this test: an in-memory fake that records every call."""
    return use_driver(FakeDriver())


# --- builders --------------------------------------------------------------------------


@pytest.fixture
def subscribe(plans):
    """``subscribe(user, "basic", at)``: ``subscription_create`` through SubscriptionFactory."""

    def _subscribe(user, code: str, at):
        return factories.SubscriptionFactory(user=user, plan=plans[code], at=at)

    return _subscribe


@pytest.fixture
def make_workshop(catalog, driver, plans):
    """``make_workshop(user, name="dev", preset="2C/4G", env=None, run=True)`` on the fake driver."""

    def _make(user, name="dev", preset="2C/4G", env=None, run=True):
        return factories.WorkshopFactory(user=user, name=name, preset=preset, env=env, run=run)

    return _make


@pytest.fixture
def make_job(cards):
    """``make_job(user, card="80g", cards_per_worker=1, workers=1, **fields)``: a running job."""

    def _make(user, card="80g", cards_per_worker=1, workers=1, **extra):
        return factories.JobFactory(
            user=user, card=card, cards_per_worker=cards_per_worker, workers=workers, **extra
        )

    return _make


# --- the test database -------------------------------------------------------------------


@pytest.fixture(scope="session")
def _test_db_from_migrated(migrated_db):  # noqa: F811 - the imported fixture
    """SQLite test databases start as a copy of the run's migrated file (tests.servers.migrated_db).

    Django would migrate each worker's in-memory database anew (114
    migrations: 5 s of an idle core, 14 s on the busy machine of a run);
    a copy takes milliseconds, and the migrate that follows has nothing
    to apply. PostgreSQL tests make their
    own databases (tests/pg.py).
    """
    from django.db.backends.sqlite3.creation import DatabaseCreation

    original = DatabaseCreation._create_test_db
    kept: list[sqlite3.Connection] = []

    def create(self, verbosity, autoclobber, keepdb=False):
        name = original(self, verbosity, autoclobber, keepdb)
        if keepdb:
            return name
        source = sqlite3.connect(f"file:{migrated_db}?mode=ro", uri=True)
        target = sqlite3.connect(name, uri=True)
        try:
            source.backup(target)
        finally:
            source.close()
        if self.is_in_memory_db(name):
            # A shared in-memory database lives while one connection to it is open.
            kept.append(target)
        else:
            target.close()
        return name

    DatabaseCreation._create_test_db = create
    yield
    DatabaseCreation._create_test_db = original
    for connection in kept:
        connection.close()


@pytest.fixture(scope="session")
def django_db_setup(_test_db_from_migrated, django_db_setup):
    """pytest-django's test databases, made from the migrated copy above."""
    yield


# --- image builds (issue 14) ------------------------------------------------------------


@pytest.fixture(scope="session")
def built_images():
    """The session's image builds (tests.cluster.conftest.BuiltImages); removed at the end of the session."""
    base = Path(tempfile.mkdtemp(prefix="aladdin-images-"))
    os.chmod(base, 0o711)
    (base / "var").mkdir(mode=0o700)
    from tests.cluster.conftest import BuiltImages

    yield BuiltImages(base)
    # In the background: the torch image alone is 40,000 files, 10-20 s to
    # remove, which the end of every test process would otherwise wait for.
    subprocess.Popen(
        ["rm", "-rf", "--", str(base)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
