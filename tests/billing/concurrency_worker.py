"""Run the "32 threads charge one account" scenario against DATABASE_URL and print the outcome.

Run as ``python -m tests.billing.concurrency_worker`` from the repository root
with DATABASE_URL set (a SQLite file or a PostgreSQL database, migrated here).
It prints one line ``RESULT {json}`` for tests/billing/test_concurrency.py.

A separate process with real threads and real connections, because the
suite's own SQLite test database is in-memory with shared cache, which
ignores the busy timeout and so cannot show how SQLite serialises writers.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

THREADS = int(os.environ.get("CONCURRENCY_THREADS", "32"))
DCU = 1_000_000
BALANCE_MICRO = 100 * DCU
CHARGE_MICRO = 10 * DCU


def main() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
    import django

    django.setup()

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, connections
    from django.db.models import Sum
    from django.utils import timezone

    from billing import selectors, services
    from billing.models import Account, ArrearsReview, Grant, LedgerEntry

    call_command("migrate", verbosity=0, interactive=False)
    user = get_user_model().objects.create_user(phone="13800138000", password=None)
    services.voucher_grant(
        user=user, amount_micro=BALANCE_MICRO, reason="Concurrency test balance", key="conc"
    )
    connections.close_all()

    barrier = threading.Barrier(THREADS)
    results: list[dict] = [{} for _ in range(THREADS)]

    def charge_once(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            started = time.monotonic()
            result = services.charge(
                user=user,
                kind="test",
                key=f"conc-{i}",
                amount_micro=CHARGE_MICRO,
                reason=f"Concurrent charge {i}",
            )
            results[i] = {
                "charged_micro": result.charged_micro,
                "debt_micro": result.debt_micro,
                "seconds": round(time.monotonic() - started, 3),
            }
        except Exception as exc:
            results[i] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        finally:
            # Each thread has its own connection; close it so none is left open.
            connections.close_all()

    threads = [threading.Thread(target=charge_once, args=(i,)) for i in range(THREADS)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - began

    account = Account.objects.get(user=user)
    ledger_sum = LedgerEntry.objects.filter(user=user).aggregate(s=Sum("delta_micro"))["s"] or 0
    remaining_sum = Grant.objects.filter(user=user).aggregate(s=Sum("remaining_micro"))["s"] or 0
    outcome = {
        "vendor": connection.vendor,
        "threads": THREADS,
        "alive": sum(t.is_alive() for t in threads),
        "elapsed": round(elapsed, 3),
        "results": results,
        "active_balance_micro": selectors.active_balance_micro(user, timezone.now()),
        "debt_micro": account.debt_micro,
        "ledger_sum_micro": ledger_sum,
        "remaining_sum_micro": remaining_sum,
        "charge_entries_micro": -(
            LedgerEntry.objects.filter(user=user, kind="charge").aggregate(s=Sum("delta_micro"))[
                "s"
            ]
            or 0
        ),
        "pending_reviews": ArrearsReview.objects.filter(user=user, decision="pending").count(),
    }
    connections.close_all()
    return outcome


if __name__ == "__main__":
    if not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL must name the database to run the scenario against")
    print("RESULT " + json.dumps(main()), flush=True)
