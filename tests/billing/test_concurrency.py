"""32 threads each charge 10 DCU against a 100 DCU balance: exactly 10 are paid, nothing is lost.

The scenario runs in a separate process (tests/billing/concurrency_worker.py)
with real threads, each with its own connection, against a real database
file or server: the suite's in-memory SQLite test database uses shared cache
and ignores the busy timeout (DESIGN "Tests and CI"), and a subprocess keeps
the suite's own database untouched.

What SPEC §3.5 implies for the 22 charges the balance cannot pay: each goes
wholly to arrears; arrears stop at 10 DCU (a pending review opens) and every
10 DCU beyond is covered at once by a platform voucher. So afterwards: 10
charges fully paid, active balance 0, debt exactly 10 DCU, and the ledger
still sums to the grants' remaining compute minus the debt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg

# The private PostgreSQL server fixture (tests/pg.py), used by name below.
postgres_server = pg.postgres_server

REPO = Path(__file__).resolve().parents[2]
DCU = 1_000_000
THREADS = 32


def run_scenario(database_url: str, var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DATABASE_URL=database_url,
        ALADDIN_VAR_DIR=str(var_dir),
        CONCURRENCY_THREADS=str(THREADS),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tests.billing.concurrency_worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"worker failed:\n{proc.stdout}\n{proc.stderr}"
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def assert_exactly_ten_paid_and_nothing_lost(outcome: dict) -> None:
    results = outcome["results"]
    errors = [r for r in results if "error" in r]
    assert not errors, errors[0]["trace"]
    assert outcome["alive"] == 0
    assert len(results) == THREADS

    fully_paid = [r for r in results if r["debt_micro"] == 0]
    into_debt = [r for r in results if r["debt_micro"] > 0]
    assert len(fully_paid) == 10
    assert all(r["charged_micro"] == 10 * DCU for r in fully_paid)
    # Once the balance is 0 a charge pays nothing and owes all of it.
    assert len(into_debt) == THREADS - 10
    assert all(r == {**r, "charged_micro": 0, "debt_micro": 10 * DCU} for r in into_debt)

    # No lost update: exactly the 100 DCU balance was spent, not more, not less.
    assert sum(r["charged_micro"] for r in results) == 100 * DCU
    assert outcome["charge_entries_micro"] == 100 * DCU
    assert outcome["active_balance_micro"] == 0
    assert outcome["remaining_sum_micro"] == 0
    # Arrears stop at the 10 DCU cap; the rest was covered by platform vouchers.
    assert outcome["debt_micro"] == 10 * DCU
    assert outcome["pending_reviews"] == 1
    # The ledger invariant: Σ ledger == Σ remaining − debt.
    assert outcome["ledger_sum_micro"] == outcome["remaining_sum_micro"] - outcome["debt_micro"]


def test_concurrent_charges_on_sqlite_pay_exactly_the_balance(tmp_path):
    # given a SQLite file database (WAL, BEGIN IMMEDIATE, 20 s busy timeout)
    url = f"sqlite:///{tmp_path / 'concurrency.sqlite3'}"

    # when 32 threads charge 10 DCU each against 100 DCU at the same moment
    outcome = run_scenario(url, tmp_path)

    # then exactly 10 are paid and no update is lost
    assert outcome["vendor"] == "sqlite"
    assert_exactly_ten_paid_and_nothing_lost(outcome)


@pytest.mark.postgres
def test_concurrent_charges_on_postgresql_pay_exactly_the_balance(postgres_server, tmp_path):
    # given a fresh PostgreSQL database
    url = postgres_server.create_database("billing_concurrency")

    # when 32 threads charge 10 DCU each against 100 DCU at the same moment
    outcome = run_scenario(url, tmp_path)

    # then the account row lock serialises them: exactly 10 paid, nothing lost
    assert outcome["vendor"] == "postgresql"
    assert_exactly_ten_paid_and_nothing_lost(outcome)
