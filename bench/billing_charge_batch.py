"""Benchmark: services.charge_batch (one metering tick) against a raw ledger bulk insert.

    .venv/bin/python bench/billing_charge_batch.py [--sizes 1000 10000] [--repeats 3] [--profile]

For each size N, in a fresh process with a fresh SQLite file database (the
portal's settings: WAL, synchronous=NORMAL, BEGIN IMMEDIATE):

- setup (not measured): N users, each with a Trial subscription whose unused
  compute carried over and was activated by a second Trial subscription, the
  new period's plan grant and an extension pack: three active grants, as a
  real subscriber has. One user is made through billing.services; the other
  N-1 are copies of its rows (users, accounts, subscriptions, grants, ledger),
  bulk inserted, so that the setup takes seconds, not minutes.
- (a) services.charge_batch with one ChargeRequest per user (0.01 DCU each);
- (b) baseline, same run, timed the same way: LedgerEntry.objects.bulk_create
  of N rows with unique keys, in one transaction.

Each is run --repeats times, alternating; the median counts. One line per
size, then the growth factor between the smallest and largest size.
--profile also prints, for a batch of 1,000 charges, the statements the charge
path runs per charge and the time spent inside the database driver.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DCU = 1_000_000
TICK_MICRO = DCU // 100  # 0.01 DCU: a one-minute GPU metering tick, roughly


def _setup_django(db_path: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ["ALADDIN_VAR_DIR"] = str(db_path.parent)
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def _make_subscribers(n: int):
    """N users with an activated carry-over, a plan grant and an extension pack each.

    Returns (user ids, the time to charge at).
    """
    from django.contrib.auth import get_user_model
    from django.db import transaction
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
    # Period 1 ends at t0+30d: 15 DCU carries; period 2 activates it.
    services.subscription_create(user=template, plan=trial, at=t0 + timedelta(days=31))
    services.extension_pack_buy(user=template, plan=pack, at=t0 + timedelta(days=31))
    active = Grant.objects.filter(user=template, state="active")
    classes = sorted(active.values_list("grant_class", flat=True))
    assert classes == ["carry_over", "extension", "plan"], classes

    # Copies: the template's rows of each model with their pks shifted by
    # i * (the template's largest pk), so copies never collide and foreign
    # keys map the same way.
    def rows(model):
        return list(model.objects.order_by("pk"))

    users, accounts, subs, grants, entries = (
        rows(User),
        rows(Account),
        rows(Subscription),
        rows(Grant),
        rows(LedgerEntry),
    )
    assert [u.pk for u in users] == [template.pk]
    stride = {
        "user": template.pk,
        "sub": max(s.pk for s in subs),
        "grant": max(g.pk for g in grants),
        "entry": max(e.pk for e in entries),
        "account": max(a.pk for a in accounts),
    }

    def copy(obj, i, pk_stride, **changes):
        values = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}
        values["id"] = obj.pk + i * pk_stride
        for attname in ("user_id", "subscription_id", "grant_id"):
            if values.get(attname) is not None:
                kind = {"user_id": "user", "subscription_id": "sub", "grant_id": "grant"}[attname]
                values[attname] += i * stride[kind]
        values.update(changes)
        return type(obj)(**values)

    with transaction.atomic():
        for model, source, key, extra in (
            (User, users, "user", lambda o, i: {"phone": f"+86139{i:08d}"}),
            (Account, accounts, "account", lambda o, i: {}),
            (Subscription, subs, "sub", lambda o, i: {}),
            (Grant, grants, "grant", lambda o, i: {}),
            (
                LedgerEntry,
                entries,
                "entry",
                lambda o, i: {"idempotency_key": f"{o.idempotency_key}@{i}"},
            ),
        ):
            model.objects.bulk_create(
                [copy(o, i, stride[key], **extra(o, i)) for i in range(1, n) for o in source],
                batch_size=2000,
            )
    user_ids = [template.pk + i * stride["user"] for i in range(n)]
    return user_ids, now


def _charge_requests(user_ids, run: int):
    from billing.services import ChargeRequest

    return [
        ChargeRequest(
            user_id=uid,
            kind="gpu",
            key=f"bench:{run}:{uid}",
            amount_micro=TICK_MICRO,
            reason="GPU metering tick",
        )
        for uid in user_ids
    ]


def _raw_entries(user_ids, grant_of, run: int, at):
    from billing.models import LedgerEntry

    return [
        LedgerEntry(
            user_id=uid,
            grant_id=grant_of[uid],
            delta_micro=-TICK_MICRO,
            kind="charge",
            reason="GPU metering tick",
            idempotency_key=f"raw:{run}:{uid}",
            created_at=at,
        )
        for uid in user_ids
    ]


def _shape(sql: str) -> str:
    head = sql[:80]
    for prefix, table, name in (
        ("SELECT", "billing_grant", "SELECT spendable grants (spending order)"),
        ("SELECT", "billing_ledgerentry", "SELECT ledger key exists (idempotency)"),
        ("SELECT", "billing_account", "SELECT accounts (lock)"),
        ("UPDATE", "billing_grant", "UPDATE grant remaining (bulk_update)"),
        ("INSERT", "billing_ledgerentry", "INSERT ledger entries"),
    ):
        if sql.startswith(prefix) and table in (sql.split(" FROM ", 1)[-1][:40] + head):
            return name
    return head[:40]


def _profile(user_ids, at) -> dict:
    """Where one charge_batch of 1,000 charges spends its time, by SQL statement shape.

    An execute wrapper times each statement inside the database driver
    (SQLite's work plus the driver call); the rest of the wall time is Python:
    the ORM building and compiling queries, and the service's own code.
    """
    from django.db import connection

    from billing import services

    sample = user_ids[:1000]
    requests = _charge_requests(sample, run=999)
    count: Counter[str] = Counter()
    seconds: Counter[str] = Counter()

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            shape = _shape(sql)
            count[shape] += 1
            seconds[shape] += time.perf_counter() - started

    started = time.perf_counter()
    with connection.execute_wrapper(timed):
        services.charge_batch(requests=requests, at=at)
    wall = time.perf_counter() - started
    return {
        "charges": len(sample),
        "wall_s": round(wall, 3),
        "db_s": round(sum(seconds.values()), 3),
        "queries": sum(count.values()),
        "by_shape": {
            k: {"count": v, "per_charge": v / len(sample), "db_seconds": round(seconds[k], 4)}
            for k, v in count.most_common()
        },
    }


def run_one(n: int, repeats: int, profile: bool) -> dict:
    """In this process: a fresh database, N subscribers, then the timings."""
    tmp = Path(tempfile.mkdtemp(prefix="aladdin-bench-"))
    _setup_django(tmp / "bench.sqlite3")

    from django.core.management import call_command
    from django.db import transaction

    from billing import services
    from billing.models import Grant, LedgerEntry

    call_command("migrate", verbosity=0, interactive=False)
    setup_started = time.perf_counter()
    user_ids, at = _make_subscribers(n)
    setup_seconds = time.perf_counter() - setup_started
    grant_of = dict(
        Grant.objects.filter(grant_class="carry_over", state="active").values_list("user_id", "pk")
    )

    charge_times, raw_times = [], []
    for run in range(repeats):
        requests = _charge_requests(user_ids, run)
        started = time.perf_counter()
        results = services.charge_batch(requests=requests, at=at)
        charge_times.append(time.perf_counter() - started)
        assert len(results) == n and all(
            r.charged_micro == TICK_MICRO and r.debt_micro == 0 for r in results.values()
        )
        entries = _raw_entries(user_ids, grant_of, run, at)

        started = time.perf_counter()
        with transaction.atomic():
            LedgerEntry.objects.bulk_create(entries)
        raw_times.append(time.perf_counter() - started)

    out = {
        "n": n,
        "setup_s": round(setup_seconds, 2),
        "charge_s": statistics.median(charge_times),
        "raw_s": statistics.median(raw_times),
        "charge_runs": [round(t, 3) for t in charge_times],
        "raw_runs": [round(t, 3) for t in raw_times],
    }
    if profile:
        out["profile"] = _profile(user_ids, at)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.repeats, args.profile)), flush=True)
        return

    results = []
    for n in args.sizes:
        # One process per size: Django's settings, and so its database, are per process.
        cmd = [sys.executable, __file__, "--one", str(n), "--repeats", str(args.repeats)]
        if args.profile:
            cmd.append("--profile")
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"size {n} failed:\n{proc.stdout}\n{proc.stderr}")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        r = json.loads(line.removeprefix("RESULT "))
        results.append(r)
        print(
            f"charge_batch N={n}: {r['charge_s']:.3f} s, {n / r['charge_s']:,.0f} charges/s; "
            f"bulk insert {r['raw_s']:.3f} s, {n / r['raw_s']:,.0f} rows/s; "
            f"ratio {r['charge_s'] / r['raw_s']:.1f}x "
            f"(median of {args.repeats}: charge {r['charge_runs']}, raw {r['raw_runs']}; "
            f"setup {r['setup_s']} s)",
            flush=True,
        )
        if "profile" in r:
            p = r["profile"]
            print(
                f"  profile: {p['charges']} charges in {p['wall_s']} s: {p['queries']} queries, "
                f"{p['db_s']} s of it in the database driver, the rest in Python (ORM)"
            )
            for shape, s in p["by_shape"].items():
                print(
                    f"    {s['per_charge']:.2f}/charge  {s['count']:>5}  "
                    f"{s['db_seconds']:.3f} s in the driver  {shape}"
                )
    if len(results) > 1:
        a, b = results[0], results[-1]
        size = b["n"] / a["n"]
        print(
            f"growth N={a['n']}->{b['n']} (x{size:g}): charge_batch x{b['charge_s'] / a['charge_s']:.1f}, "
            f"bulk insert x{b['raw_s'] / a['raw_s']:.1f}"
        )


if __name__ == "__main__":
    main()
