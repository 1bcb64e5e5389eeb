"""Benchmark: the ledger's write path against the raw writes of the same work, SQLite and PostgreSQL.

    .venv/bin/python bench/ledger_writes.py [--sizes 10000 100000] [--databases sqlite postgresql]
                                            [--repeats 3] [--profile]

For each database and each size N, in a fresh process with a fresh database
(SQLite: a file with the portal's settings, WAL, synchronous=NORMAL, BEGIN
IMMEDIATE; PostgreSQL 15: a private server started as the tests start it,
tests/pg.py, fsync off), migrated, then:

- setup (not timed): N subscribers, each with an activated carry-over, a
  Trial plan grant and an extension pack (one made through billing.services,
  the other N-1 copies of its rows written with executemany / COPY);
- (a) the metering tick: ``services.charge_batch`` with one ChargeRequest
  per user (0.01 DCU each, paid from the carry-over);
- (b) the nightly storage charge: ``storage.services.nightly_charge`` for a
  day on which every user peaked at 50 GiB (0.03 DCU each; the DailyPeak
  rows are inserted first, not timed);
- the baseline of each, timed in the same run right after it: the raw writes
  of the same work through the database driver in one transaction — one
  ``executemany`` INSERT of the N ledger rows and one ``executemany`` of the N
  grant UPDATEs they imply (``remaining_micro = remaining_micro - %s``);
- for information on PostgreSQL: ``COPY`` of the same N ledger rows.

Each is run ``--repeats`` times, alternating; the best run of each counts
(the least disturbed on a shared machine), and the median of the runs'
ratios is printed beside it.

One RESULT line per (database, size), then the ratios and the growth from
the smallest to the largest size. ``--profile`` adds, for the tick and the
night at the smallest size, the time inside the database driver by
statement shape (the rest is Python) and cProfile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.pg starts PostgreSQL as the tests do
DCU = 1_000_000
TICK_MICRO = DCU // 100  # 0.01 DCU: about one minute of a GPU
GIB = 1 << 30
PEAK_BYTES = 50 * GIB
FEE_MICRO = 30_000  # (50 - 30) GiB x 0.0015 DCU on Trial


# --- setup -------------------------------------------------------------------------


def _setup_django(database_url: str, var_dir: Path) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["ALADDIN_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
    import django

    django.setup()


def _copy_rows(model, rows: list[tuple], columns: list[str]) -> None:
    """Insert ``rows`` as fast as the driver allows (COPY on PostgreSQL)."""
    from django.db import connection

    table = model._meta.db_table
    cols = ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)


def make_subscribers(n: int):
    """N users, each with an activated carry-over, a Trial plan grant and an extension pack.

    Returns (user ids, the time to charge at, {user id: carry-over grant id}).
    """
    from django.contrib.auth import get_user_model
    from django.core.management.color import no_style
    from django.db import connection, transaction
    from django.utils import timezone

    from billing import services
    from billing.models import Account, Grant, LedgerEntry, Plan, Subscription

    User = get_user_model()
    trial = Plan.objects.get(code="trial")
    pack = Plan.objects.get(code="extension")
    now = timezone.now()
    t0 = now - timedelta(days=40)

    # The template subscriber, made by the services exactly as in production.
    template = User.objects.create_user(phone="+8613900000000", password=None)
    services.subscription_create(user=template, plan=trial, at=t0)
    services.charge(
        user=template, kind="test", key="bench-setup", amount_micro=5 * DCU, reason="setup"
    )
    # Period 1 ends at t0+30d: 15 DCU carries; period 2 (t0+31d) activates it.
    services.subscription_create(user=template, plan=trial, at=t0 + timedelta(days=31))
    services.extension_pack_buy(user=template, plan=pack, at=t0 + timedelta(days=31))
    classes = sorted(
        Grant.objects.filter(user=template, state="active").values_list("grant_class", flat=True)
    )
    assert classes == ["carry_over", "extension", "plan"], classes

    # Copies: every row of the template with its pk shifted by i * (the
    # largest pk of its table), foreign keys shifted the same way, unique
    # text made unique. Values are adapted for the database once, here.
    models = {"user": User, "account": Account, "sub": Subscription, "grant": Grant}
    models["entry"] = LedgerEntry
    fk_kind = {
        "user_id": "user",
        "subscription_id": "sub",
        "grant_id": "grant",
        "parent_id": "grant",
    }
    stride = {k: max(m.objects.values_list("pk", flat=True)) for k, m in models.items()}
    with transaction.atomic():
        for kind, model in models.items():
            fields = model._meta.concrete_fields
            columns = [f.column for f in fields]
            for obj in model.objects.order_by("pk"):
                template_row = []
                for f in fields:
                    value = getattr(obj, f.attname)
                    if value is not None and f.attname not in ("id", *fk_kind):
                        value = f.get_db_prep_value(value, connection)
                    template_row.append(value)
                shifts = [
                    stride[kind] if f.attname == "id" else stride.get(fk_kind.get(f.attname), 0)
                    for f in fields
                ]
                unique = {
                    i: f.attname
                    for i, f in enumerate(fields)
                    if f.attname in ("phone", "username", "idempotency_key")
                }
                rows = []
                for i in range(1, n):
                    row = [
                        v + i * s if (s and v is not None) else v
                        for v, s in zip(template_row, shifts, strict=True)
                    ]
                    for j, name in unique.items():
                        if row[j] is not None:
                            row[j] = f"+86139{i:08d}" if name == "phone" else f"{row[j]}@{i}"
                    rows.append(tuple(row))
                _copy_rows(model, rows, columns)
    if connection.vendor == "postgresql":
        # Copies carry explicit ids: move the sequences past them.
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), list(models.values())):
                cursor.execute(sql)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    user_ids = [template.pk + i * stride["user"] for i in range(n)]
    carry = dict(
        Grant.objects.filter(grant_class="carry_over", state="active").values_list("user_id", "pk")
    )
    assert len(carry) == n
    return user_ids, now, carry


# --- the baselines ---------------------------------------------------------------


def _raw_rows(user_ids, carry, amount: int, reason: str, tag: str, at):
    """The ledger rows and grant UPDATEs of N charges, keys ``<tag>:<user id>``."""
    from django.db import connection

    when = connection.ops.adapt_datetimefield_value(at)
    ledger = [(u, carry[u], -amount, "charge", reason, f"{tag}:{u}", when) for u in user_ids]
    grants = [(amount, carry[u]) for u in user_ids]
    return ledger, grants


def raw_writes(ledger_rows, grant_rows) -> tuple[float, float]:
    """executemany of the ledger rows and of the grant UPDATEs, one transaction.

    Returns (seconds for all of it with the commit, seconds of the INSERT alone).
    """
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO billing_ledgerentry "
            "(user_id, grant_id, delta_micro, kind, reason, idempotency_key, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            ledger_rows,
        )
        inserted = time.perf_counter() - started
        cursor.executemany(
            "UPDATE billing_grant SET remaining_micro = remaining_micro - %s WHERE id = %s",
            grant_rows,
        )
    return time.perf_counter() - started, inserted


def copy_rows(ledger_rows) -> float:
    """PostgreSQL COPY of the ledger rows, one transaction: seconds."""
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(
            "COPY billing_ledgerentry "
            "(user_id, grant_id, delta_micro, kind, reason, idempotency_key, created_at) FROM STDIN"
        ) as copy:
            for row in ledger_rows:
                copy.write_row(row)
    return time.perf_counter() - started


# --- the measured work -----------------------------------------------------------


def tick(user_ids, at, run: int) -> float:
    from billing.services import ChargeRequest, charge_batch

    requests = [
        ChargeRequest(u, "gpu", f"bench:{run}:{u}", TICK_MICRO, "GPU metering tick")
        for u in user_ids
    ]
    started = time.perf_counter()
    results = charge_batch(requests=requests, at=at)
    seconds = time.perf_counter() - started
    assert len(results) == len(user_ids)
    assert all(r.charged_micro == TICK_MICRO and not r.debt_micro for r in results.values())
    return seconds


def _peaks(user_ids, at, run: int):
    """The DailyPeak rows of the night's day (not timed): every user at 50 GiB."""
    from storage.models import DailyPeak
    from storage.selectors import shanghai_day

    day = shanghai_day(at) - timedelta(days=1 + run)
    DailyPeak.objects.bulk_create(
        [DailyPeak(user_id=u, day=day, peak_bytes=PEAK_BYTES) for u in user_ids], batch_size=5000
    )
    return day


def night(user_ids, at, run: int) -> float:
    from storage import services as storage_services
    from storage.models import StorageCharge

    day = _peaks(user_ids, at, run)
    started = time.perf_counter()
    made = storage_services.nightly_charge(as_of=at)
    seconds = time.perf_counter() - started
    assert made == len(user_ids), made
    assert StorageCharge.objects.filter(day=day, amount_micro=FEE_MICRO).count() == len(user_ids)
    return seconds


def _night_profiled(user_ids, at, run: int):
    from storage import services as storage_services

    _peaks(user_ids, at, run)
    return lambda: storage_services.nightly_charge(as_of=at)


def _tick_profiled(user_ids, at, run: int):
    from billing.services import ChargeRequest, charge_batch

    requests = [
        ChargeRequest(u, "gpu", f"bench:{run}:{u}", TICK_MICRO, "GPU metering tick")
        for u in user_ids
    ]
    return lambda: charge_batch(requests=requests, at=at)


def _shape(sql: str) -> str:
    verb = sql.split(None, 1)[0].upper()
    for table in (
        "billing_ledgerentry",
        "billing_grant",
        "billing_account",
        "billing_subscription",
        "billing_plan",
        "storage_dailypeak",
        "storage_storagecharge",
    ):
        if table in sql[:200]:
            lock = " FOR UPDATE" if "FOR UPDATE" in sql else ""
            return f"{verb} {table}{lock}"
    return f"{verb} {sql[:40]}"


def profile(work) -> dict:
    """Time inside the driver by statement shape, and cProfile's top functions."""
    from django.db import connection

    count: Counter[str] = Counter()
    seconds: Counter[str] = Counter()

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            shape = _shape(sql) + (" (executemany)" if many else "")
            count[shape] += 1
            seconds[shape] += time.perf_counter() - started

    profiler = cProfile.Profile()
    started = time.perf_counter()
    with connection.execute_wrapper(timed):
        profiler.enable()
        work()
        profiler.disable()
    wall = time.perf_counter() - started
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    return {
        "wall_s": round(wall, 3),
        "driver_s": round(sum(seconds.values()), 3),
        "by_shape": [(shape, count[shape], round(s, 4)) for shape, s in seconds.most_common()],
        "cprofile": out.getvalue(),
    }


def run_one(database: str, n: int, repeats: int, do_profile: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="aladdin-bench-"))
    server = None
    try:
        if database == "postgresql":
            from tests import pg

            server = pg.start()
            url = server.create_database("bench")
        else:
            url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        _setup_django(url, tmp)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0, interactive=False)
        started = time.perf_counter()
        user_ids, at, carry = make_subscribers(n)
        setup_s = time.perf_counter() - started

        out: dict = {"database": database, "n": n, "setup_s": round(setup_s, 1)}
        out["versions"] = {
            "sqlite": __import__("sqlite3").sqlite_version,
            "server": connection.cursor().connection.info.server_version
            if database == "postgresql"
            else None,
        }
        for name, work, prepare, amount, reason in (
            ("tick", tick, _tick_profiled, TICK_MICRO, "GPU metering tick"),
            ("night", night, _night_profiled, FEE_MICRO, "Storage fee"),
        ):
            times, raw, inserts, copies = [], [], [], []
            for run in range(repeats):
                times.append(work(user_ids, at, run))
                ledger_rows, grant_rows = _raw_rows(
                    user_ids, carry, amount, reason, f"{name}{run}", at
                )
                total, inserted = raw_writes(ledger_rows, grant_rows)
                raw.append(total)
                inserts.append(inserted)
                if database == "postgresql":
                    copy_tag = f"copy-{name}{run}"
                    copy_rows_, _g = _raw_rows(user_ids, carry, amount, reason, copy_tag, at)
                    copies.append(copy_rows(copy_rows_))
            # Best of the repeats: on a shared machine the least disturbed run
            # is the one closest to the code's own cost (timeit's rule);
            # the runs are printed too.
            out[name] = {
                "s": min(times),
                "raw_s": min(raw),
                "insert_s": min(inserts),
                "copy_s": min(copies) if copies else None,
                "median_ratio": statistics.median(t / r for t, r in zip(times, raw, strict=True)),
                "runs": [round(t, 3) for t in times],
                "raw_runs": [round(t, 3) for t in raw],
            }
            if do_profile:
                out[name]["profile"] = profile(prepare(user_ids, at, repeats + 10))
        # The invariant still holds for every user (the raw writes keep it
        # too: each row with its grant UPDATE; COPY rows have none, left out).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM billing_account a "
                "LEFT JOIN (SELECT user_id, SUM(delta_micro) AS s FROM billing_ledgerentry "
                "  WHERE idempotency_key NOT LIKE %s GROUP BY user_id) l ON l.user_id = a.user_id "
                "LEFT JOIN (SELECT user_id, SUM(remaining_micro) AS r FROM billing_grant "
                "  GROUP BY user_id) g ON g.user_id = a.user_id "
                "WHERE COALESCE(l.s, 0) != COALESCE(g.r, 0) - a.debt_micro",
                ["copy-%"],
            )
            out["invariant_violations"] = cursor.fetchone()[0]
        return out
    finally:
        from django.conf import settings

        if settings.configured:
            from django.db import connections

            connections.close_all()
        if server is not None:
            from tests import pg

            pg.stop(server)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        database, n = args.one[0], int(args.one[1])
        result = run_one(database, n, args.repeats, args.profile)
        print("RESULT " + json.dumps(result), flush=True)
        return

    for database in args.databases:
        results = []
        for n in args.sizes:
            # One process per run: Django's settings, and so its database, are per process.
            cmd = [
                sys.executable,
                __file__,
                "--one",
                database,
                str(n),
                "--repeats",
                str(args.repeats),
            ]
            if args.profile and n == min(args.sizes):
                cmd.append("--profile")
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{database} N={n} failed:\n{proc.stdout}\n{proc.stderr}")
            line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
            r = json.loads(line.removeprefix("RESULT "))
            results.append(r)
            for name, label in (("tick", "tick charge_batch"), ("night", "storage nightly_charge")):
                m = r[name]
                copy = f"; COPY {m['copy_s']:.3f} s" if m["copy_s"] is not None else ""
                print(
                    f"{database} {label} N={n}: {m['s']:.3f} s; raw executemany "
                    f"{m['raw_s']:.3f} s (INSERT alone {m['insert_s']:.3f} s); "
                    f"ratio {m['s'] / m['raw_s']:.1f}x{copy} "
                    f"(best of {len(m['runs'])}; median of the runs' ratios "
                    f"{m['median_ratio']:.1f}x; runs {m['runs']}, raw {m['raw_runs']}; "
                    f"setup {r['setup_s']} s; "
                    f"invariant violations {r['invariant_violations']})",
                    flush=True,
                )
                if "profile" in m:
                    p = m["profile"]
                    print(
                        f"  profile {label} N={n}: {p['wall_s']} s, {p['driver_s']} s of it "
                        "in the database driver, the rest in Python"
                    )
                    for shape, count, seconds in p["by_shape"]:
                        print(f"    {seconds:8.3f} s  {count:>5}x  {shape}")
                    print("    " + "\n    ".join(p["cprofile"].strip().splitlines()[-16:]))
        if len(results) > 1:
            a, b = results[0], results[-1]
            for name in ("tick", "night"):
                print(
                    f"{database} {name} growth N={a['n']}->{b['n']} (x{b['n'] / a['n']:g}): "
                    f"service x{b[name]['s'] / a[name]['s']:.1f}, "
                    f"raw x{b[name]['raw_s'] / a[name]['raw_s']:.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
