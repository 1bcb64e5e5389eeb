"""The database itself refuses to change or delete ledger rows (billing 0004, squashed into 0001_squashed_0009).

In-process tests use the suite's SQLite test database, built by the
migrations. The same checks run on a migrated SQLite file and on PostgreSQL
in a separate process (as production points the portal at PostgreSQL through
DATABASE_URL), together with the reverse migration and ``flush``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.core.management.commands.flush import Command as DjangoFlush
from django.db import IntegrityError, connection, transaction

from billing import services
from billing.models import LedgerEntry
from tests import pg

# The private PostgreSQL server fixture (tests/pg.py), used by name below.
postgres_server = pg.postgres_server

REPO = Path(__file__).resolve().parents[2]
DCU = 1_000_000
TRIGGERS = {"billing_ledgerentry_no_update", "billing_ledgerentry_no_delete"}


def sqlite_triggers() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
            ["billing_ledgerentry"],
        )
        return {name for (name,) in cursor.fetchall()}


def raw(sql: str, params=()) -> None:
    # A savepoint, so the refused statement leaves the test's transaction usable.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def voucher(user, key: str, dcu: int = 5) -> LedgerEntry:
    services.voucher_grant(user=user, amount_micro=dcu * DCU, reason="Trigger test", key=key)
    return LedgerEntry.objects.get(idempotency_key=f"voucher:{key}")


@pytest.fixture(autouse=True)
def _sqlite_only(request):
    if "postgres_server" not in request.fixturenames and connection.vendor != "sqlite":
        pytest.skip("the in-process tests check the SQLite triggers")


@pytest.mark.django_db
def test_migrated_database_has_the_ledger_triggers():
    # A later migration that rebuilds billing_ledgerentry on SQLite would drop
    # them silently; this notices.
    assert sqlite_triggers() == TRIGGERS


@pytest.mark.django_db
def test_raw_update_of_a_ledger_entry_is_refused(user):
    entry = voucher(user, "raw-update")

    with pytest.raises(IntegrityError, match="billing_ledgerentry is append-only"):
        raw("UPDATE billing_ledgerentry SET delta_micro = 0 WHERE id = %s", [entry.pk])

    entry.refresh_from_db()
    assert entry.delta_micro == 5 * DCU


@pytest.mark.django_db
def test_raw_delete_of_a_ledger_entry_is_refused(user):
    entry = voucher(user, "raw-delete")

    with pytest.raises(IntegrityError, match="billing_ledgerentry is append-only"):
        raw("DELETE FROM billing_ledgerentry WHERE id = %s", [entry.pk])
    with pytest.raises(IntegrityError, match="billing_ledgerentry is append-only"):
        raw("DELETE FROM billing_ledgerentry")

    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.django_db
def test_inserting_ledger_entries_still_works(user):
    voucher(user, "insert-a")
    voucher(user, "insert-b")

    assert LedgerEntry.objects.filter(user=user).count() == 2


# Two transactional tests in a row: each starts from an empty ledger, so the
# flush after the first one deleted its rows (through the triggers) and left
# the triggers in place for the second.


@pytest.mark.django_db(transaction=True)
def test_transactional_test_creates_ledger_rows(user):
    assert LedgerEntry.objects.count() == 0

    voucher(user, "transactional-1")

    assert LedgerEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_next_transactional_test_starts_from_an_empty_ledger(user):
    assert LedgerEntry.objects.count() == 0
    assert sqlite_triggers() == TRIGGERS

    entry = voucher(user, "transactional-2")

    with pytest.raises(IntegrityError, match="append-only"):
        raw("DELETE FROM billing_ledgerentry WHERE id = %s", [entry.pk])
    assert LedgerEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_ledger_and_keeps_its_triggers(user):
    voucher(user, "flush")

    call_command("flush", interactive=False, verbosity=0)

    assert LedgerEntry.objects.count() == 0
    assert sqlite_triggers() == TRIGGERS


@pytest.mark.django_db(transaction=True)
def test_djangos_own_flush_is_refused_by_the_sqlite_triggers(user):
    # Why billing overrides flush: on SQLite Django flushes with DELETE FROM,
    # which fires the row triggers (PostgreSQL's TRUNCATE does not).
    voucher(user, "django-flush")

    with pytest.raises(CommandError):
        call_command(DjangoFlush(), interactive=False, verbosity=0)

    assert LedgerEntry.objects.count() == 1


# --- the same in a separate process: SQLite file and PostgreSQL ----------------

SCRIPT = """
import json, os
from importlib import import_module

import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
django.setup()

from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.core.management.commands.flush import Command as DjangoFlush
from django.db import IntegrityError, connection, transaction

from billing import services
from billing.models import LedgerEntry, Plan


def attempt(sql):
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    except IntegrityError as exc:
        return "IntegrityError: " + str(exc).strip()
    except Exception as exc:
        return "other " + type(exc).__name__ + ": " + str(exc).strip()
    return "allowed"


def triggers():
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger"
                " WHERE tgrelid = 'billing_ledgerentry'::regclass AND NOT tgisinternal"
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master"
                " WHERE type = 'trigger' AND tbl_name = 'billing_ledgerentry'"
            )
        return sorted(name for (name,) in cursor.fetchall())


out = {"vendor": connection.vendor}
call_command("migrate", verbosity=0, interactive=False)
out["triggers"] = triggers()
user = get_user_model().objects.create_user(phone="13800138000", password=None)
services.voucher_grant(user=user, amount_micro=5_000_000, reason="Trigger test", key="t1")
services.charge(user=user, kind="test", key="t1", amount_micro=2_000_000, reason="Trigger test")
out["update"] = attempt("UPDATE billing_ledgerentry SET delta_micro = 0")
out["delete"] = attempt("DELETE FROM billing_ledgerentry")
out["rows"] = LedgerEntry.objects.count()
out["sum"] = sum(LedgerEntry.objects.values_list("delta_micro", flat=True))

# The trigger operation's own reverse and forward, as the migrations run it
# (a new database takes billing's squashed migration, whose last step it is;
# one that applied 0004 ran the same functions).
ledger_triggers = import_module("billing.migrations.0004_ledger_append_only_triggers")
with connection.schema_editor() as editor:
    ledger_triggers._run(ledger_triggers.REVERSE)(None, editor)
out["triggers_after_reverse"] = triggers()
out["update_after_reverse"] = attempt("UPDATE billing_ledgerentry SET reason = 'fixed'")
with connection.schema_editor() as editor:
    ledger_triggers._run(ledger_triggers.FORWARD)(None, editor)
out["triggers_after_forward"] = triggers()
out["update_after_forward"] = attempt("UPDATE billing_ledgerentry SET reason = 'again'")

# billing's migrations all the way back and forward again.
call_command("migrate", "billing", "zero", verbosity=0, interactive=False)
out["ledger_after_zero"] = "billing_ledgerentry" in connection.introspection.table_names()
call_command("migrate", verbosity=0, interactive=False)
out["triggers_after_remigrate"] = triggers()
out["plans_after_remigrate"] = sorted(Plan.objects.values_list("code", flat=True))

call_command("flush", interactive=False, verbosity=0)
out["rows_after_flush"] = LedgerEntry.objects.count()
out["triggers_after_flush"] = triggers()
print("RESULT " + json.dumps(out))
"""


def run_script(database_url: str, var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=database_url, ALADDIN_VAR_DIR=str(var_dir))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"script failed:\n{proc.stdout}\n{proc.stderr}"
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def assert_append_only(out: dict, triggers: list[str]) -> None:
    assert out["triggers"] == triggers
    assert out["update"].startswith("IntegrityError: billing_ledgerentry is append-only")
    assert out["delete"].startswith("IntegrityError: billing_ledgerentry is append-only")
    # grant +5, charge −2: both rows still there, unchanged.
    assert (out["rows"], out["sum"]) == (2, 3 * DCU)
    # The reverse migration removes the triggers; migrating forward restores them.
    assert out["triggers_after_reverse"] == []
    assert out["update_after_reverse"] == "allowed"
    assert out["triggers_after_forward"] == triggers
    assert out["update_after_forward"].startswith("IntegrityError")
    # Back to zero drops the ledger (its triggers first); forward makes both
    # again and seeds the plans.
    assert out["ledger_after_zero"] is False
    assert out["triggers_after_remigrate"] == triggers
    assert out["plans_after_remigrate"] == ["advanced", "basic", "extension", "free", "trial"]
    # flush still empties the table (TRUNCATE on PostgreSQL, billing's flush on SQLite).
    assert out["rows_after_flush"] == 0
    assert out["triggers_after_flush"] == triggers


def test_sqlite_file_database_refuses_ledger_changes(tmp_path):
    out = run_script(f"sqlite:///{tmp_path / 'triggers.sqlite3'}", tmp_path)

    assert out["vendor"] == "sqlite"
    assert_append_only(out, sorted(TRIGGERS))


@pytest.mark.postgres
def test_postgresql_refuses_ledger_changes(postgres_server, tmp_path):
    out = run_script(postgres_server.create_database("billing_ledger_triggers"), tmp_path)

    assert out["vendor"] == "postgresql"
    assert_append_only(out, ["billing_ledgerentry_append_only"])
