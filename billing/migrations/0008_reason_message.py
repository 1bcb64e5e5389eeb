"""Ledger reasons as message ids (aladdin.lib.said): two columns beside the text.

On SQLite, adding a NOT NULL column rebuilds billing_ledgerentry, which drops
the append-only triggers with the old table (see 0004): they are re-created
after. Existing rows keep their text and get no id (the ledger is never
rewritten); on PostgreSQL the columns are added in place.
"""

from importlib import import_module

from django.db import migrations, models

triggers = import_module("billing.migrations.0004_ledger_append_only_triggers")


def _sqlite(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for sql in statements:
                schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_backoffice_labels"),
    ]

    operations = [
        # Backward, this runs last: after the columns' removal rebuilt the table.
        migrations.RunPython(
            migrations.RunPython.noop,
            _sqlite(triggers.SQLITE_REVERSE + triggers.SQLITE_FORWARD),
            elidable=False,
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="reason_id",
            field=models.CharField(
                blank=True, default="", max_length=64, verbose_name="reason message"
            ),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="reason_params",
            field=models.JSONField(blank=True, default=dict, verbose_name="reason parameters"),
        ),
        # Forward: the rebuilt table has no triggers yet.
        migrations.RunPython(
            _sqlite(triggers.SQLITE_REVERSE + triggers.SQLITE_FORWARD),
            migrations.RunPython.noop,
            elidable=False,
        ),
    ]
