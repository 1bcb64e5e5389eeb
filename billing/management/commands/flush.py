"""``flush`` that also works on SQLite, where the ledger's row triggers would refuse it.

Migration billing 0004 makes billing_ledgerentry append-only in the database:
row triggers refuse UPDATE and DELETE. ``flush`` empties every table — the
one legitimate way to delete ledger rows, used by TransactionTestCase (and so
pytest-django's ``transaction=True`` tests) after each test and by a
developer resetting a local database. On PostgreSQL it runs TRUNCATE, which
fires no row triggers. On SQLite it runs ``DELETE FROM <table>``, which does.

So on SQLite this command drops every trigger, runs Django's flush and
re-creates the triggers from their stored SQL, all in one transaction: no
other connection ever sees the tables without their triggers, and a failed
flush rolls the drop back. Call sites need no change: ``call_command("flush")``
finds this command because the billing app overrides Django's.
"""

from __future__ import annotations

from django.core.management.commands import flush
from django.db import connections, transaction


class Command(flush.Command):
    def handle(self, **options):
        database = options["database"]
        connection = connections[database]
        if connection.vendor != "sqlite":
            return super().handle(**options)
        if options["interactive"]:
            # Ask before taking SQLite's write lock, not while holding it.
            confirm = input(
                "You have requested a flush of the database.\n"
                f'This will IRREVERSIBLY DESTROY all data currently in the "{connection.settings_dict["NAME"]}" database,\n'
                "and return each table to an empty state.\n"
                "Are you sure you want to do this?\n\n"
                "    Type 'yes' to continue, or 'no' to cancel: "
            )
            if confirm != "yes":
                self.stdout.write("Flush cancelled.")
                return
            options = {**options, "interactive": False}
        with transaction.atomic(using=database):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
                )
                triggers = cursor.fetchall()
                for name, _sql in triggers:
                    cursor.execute(f"DROP TRIGGER {connection.ops.quote_name(name)}")
            super().handle(**options)
            with connection.cursor() as cursor:
                for _name, sql in triggers:
                    cursor.execute(sql)
