"""The ledger is append-only in the database too, not only in the ORM (DESIGN rule 5).

LedgerEntry.save() and LedgerQuerySet.update() refuse changes, but raw SQL, a
data fix in a shell or another client would not go through them. These
triggers make the database itself refuse UPDATE and DELETE of ledger rows;
both backends report it as an IntegrityError.

- SQLite: BEFORE UPDATE and BEFORE DELETE triggers that RAISE(ABORT, ...).
- PostgreSQL: a plpgsql function raising SQLSTATE 23001 (restrict_violation),
  called by a BEFORE UPDATE OR DELETE ... FOR EACH ROW trigger.
- Other vendors: nothing (the portal supports only these two).

Emptying every table stays possible, as `flush` must (TransactionTestCase
teardown, `manage.py flush`): PostgreSQL flushes with TRUNCATE, which fires
no row triggers; on SQLite flush issues DELETE FROM, which does, so the
billing app overrides the flush command (billing/management/commands/flush.py)
to drop the triggers and re-create them verbatim inside the flush's own
transaction.

Beware on SQLite: a later migration that makes Django rebuild the
billing_ledgerentry table (most AlterField/AddField/RemoveField on it) drops
these triggers with the old table. Such a migration must re-create them
(copy the SQL below). tests/billing/test_ledger_triggers.py checks that the
migrated test database still has them.
"""

from django.db import migrations

MESSAGE = "billing_ledgerentry is append-only"

SQLITE_FORWARD = [
    f"""
    CREATE TRIGGER billing_ledgerentry_no_update
    BEFORE UPDATE ON billing_ledgerentry
    BEGIN
        SELECT RAISE(ABORT, '{MESSAGE}');
    END
    """,
    f"""
    CREATE TRIGGER billing_ledgerentry_no_delete
    BEFORE DELETE ON billing_ledgerentry
    BEGIN
        SELECT RAISE(ABORT, '{MESSAGE}');
    END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS billing_ledgerentry_no_update",
    "DROP TRIGGER IF EXISTS billing_ledgerentry_no_delete",
]

POSTGRESQL_FORWARD = [
    f"""
    CREATE OR REPLACE FUNCTION billing_ledgerentry_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER billing_ledgerentry_append_only
    BEFORE UPDATE OR DELETE ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billing_ledgerentry_append_only()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS billing_ledgerentry_append_only ON billing_ledgerentry",
    "DROP FUNCTION IF EXISTS billing_ledgerentry_append_only()",
]

FORWARD = {"sqlite": SQLITE_FORWARD, "postgresql": POSTGRESQL_FORWARD}
REVERSE = {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRESQL_REVERSE}


def _run(statements):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_account_next_event_arrears"),
    ]

    operations = [
        migrations.RunPython(_run(FORWARD), _run(REVERSE), elidable=False),
    ]
