"""Benchmark: storage.services.nightly_charge against a raw ledger bulk insert.

    .venv/bin/python bench/storage_nightly_charge.py [--sizes 10000 100000] [--repeats 3]

For each size N, in a fresh process with a fresh SQLite file database:

- setup (not measured): N Trial subscribers with active grants, made as in
  bench/billing_charge_batch.py (one through the services, N-1 bulk copies);
- (a) nightly_charge for one Asia/Shanghai day on which every user peaked at
  50 GiB (Trial: 30 GiB free, so 0.03 DCU each): the DailyPeak rows of that
  day are bulk inserted (not timed), then nightly_charge runs (timed): it
  reads the peaks, finds each user's plan on that day, charges through
  billing's charge_batch and writes StorageCharge rows and the settled flags;
- (b) baseline, same run: LedgerEntry.objects.bulk_create of N rows in one
  transaction.

Each is run --repeats times (a different day each time), alternating; the
median counts. One line per size, then the growth between sizes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

GIB = 1 << 30
FEE_MICRO = 30_000  # (50 - 30) GiB x 0.0015 DCU


def run_one(n: int, repeats: int) -> dict:
    from billing_charge_batch import _make_subscribers, _setup_django

    tmp = Path(tempfile.mkdtemp(prefix="aladdin-bench-"))
    _setup_django(tmp / "bench.sqlite3")

    from django.core.management import call_command
    from django.db import transaction

    from billing.models import Grant, LedgerEntry
    from storage import services
    from storage.models import DailyPeak, StorageCharge
    from storage.selectors import shanghai_day

    call_command("migrate", verbosity=0, interactive=False)
    started = time.perf_counter()
    user_ids, at = _make_subscribers(n)
    setup_s = time.perf_counter() - started
    grant_of = dict(
        Grant.objects.filter(grant_class="carry_over", state="active").values_list("user_id", "pk")
    )
    yesterday = shanghai_day(at) - timedelta(days=1)

    charge_times, raw_times = [], []
    for run in range(repeats):
        day = yesterday - timedelta(days=run)
        DailyPeak.objects.bulk_create(
            [DailyPeak(user_id=u, day=day, peak_bytes=50 * GIB) for u in user_ids],
            batch_size=2000,
        )
        started = time.perf_counter()
        made = services.nightly_charge(as_of=at)
        charge_times.append(time.perf_counter() - started)
        assert made == n, made
        assert StorageCharge.objects.filter(day=day, amount_micro=FEE_MICRO).count() == n

        entries = [
            LedgerEntry(
                user_id=u,
                grant_id=grant_of[u],
                delta_micro=-FEE_MICRO,
                kind="charge",
                reason="Storage fee",
                idempotency_key=f"raw:{run}:{u}",
                created_at=at,
            )
            for u in user_ids
        ]
        started = time.perf_counter()
        with transaction.atomic():
            LedgerEntry.objects.bulk_create(entries)
        raw_times.append(time.perf_counter() - started)
    return {
        "n": n,
        "setup_s": round(setup_s, 2),
        "charge_s": statistics.median(charge_times),
        "raw_s": statistics.median(raw_times),
        "charge_runs": [round(t, 3) for t in charge_times],
        "raw_runs": [round(t, 3) for t in raw_times],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.repeats)), flush=True)
        return

    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"size {n} failed:\n{proc.stdout}\n{proc.stderr}")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        r = json.loads(line.removeprefix("RESULT "))
        results.append(r)
        print(
            f"nightly_charge N={n}: {r['charge_s']:.3f} s; bulk insert {r['raw_s']:.3f} s; "
            f"ratio {r['charge_s'] / r['raw_s']:.1f}x (median of {args.repeats}: "
            f"charge {r['charge_runs']}, raw {r['raw_runs']}; setup {r['setup_s']} s)",
            flush=True,
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"growth N={a['n']}->{b['n']} (x{b['n'] / a['n']:g}): "
            f"nightly_charge x{b['charge_s'] / a['charge_s']:.1f}, "
            f"bulk insert x{b['raw_s'] / a['raw_s']:.1f}"
        )


if __name__ == "__main__":
    main()
