"""Charges: spending compute for use (GPU metering, storage fees), one at a time or a tick at once.

A charge first brings the user's periods up to its time (a period that ended
before the charge must not pay for it), then spends through the ledger in
the SPEC §3.4 order (``ledger.spend``). A single charge and a batch run the
same code per charge; the batch only reads and writes for all its users at
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from aladdin.lib.said import Reason

from ..choices import LedgerKind
from ..models import Account, LedgerEntry
from . import ledger, periods

CHARGE_KINDS = {"gpu", "cpu", "storage", "test"}


@dataclass(frozen=True)
class ChargeResult:
    """What a charge did. ``exhausted``: no active compute is left afterwards."""

    charged_micro: int
    debt_micro: int
    exhausted: bool
    replayed: bool = False


@dataclass(frozen=True)
class ChargeRequest:
    """One charge of a batch: ``kind`` and ``key`` make its idempotency key."""

    user_id: int
    kind: str
    key: str
    amount_micro: int
    reason: Reason


def _full_key(kind: str, key: str) -> str:
    if kind not in CHARGE_KINDS:
        raise ValueError(f"unknown charge kind {kind!r}")
    return f"{kind}:{key}"


def _replayed_result(user_id: int, key: str) -> ChargeResult:
    """What the charge with ``key`` did the first time, read back from its entries."""
    entries = LedgerEntry.objects.filter(user_id=user_id).filter(
        Q(idempotency_key=key) | Q(idempotency_key__startswith=f"{key}#")
    )
    charged = debt = 0
    for e in entries:
        if e.kind == LedgerKind.CHARGE:
            charged -= e.delta_micro
        elif e.kind == LedgerKind.DEBT:
            debt -= e.delta_micro
    return ChargeResult(charged_micro=charged, debt_micro=debt, exhausted=debt > 0, replayed=True)


def _spend(account, grants: list, amount: int, *, reason, key, at, entries) -> ChargeResult:
    debt = ledger.spend(account, grants, amount, reason=reason, key=key, at=at, entries=entries)
    return ChargeResult(
        charged_micro=amount - debt,
        debt_micro=debt,
        exhausted=debt > 0 or all(g.remaining_micro == 0 for g in grants),
    )


@transaction.atomic
def charge(
    *, user, kind: str, key: str, amount_micro: int, reason: Reason, at: datetime | None = None
) -> ChargeResult:
    """Spend ``amount_micro`` of the user's active compute (SPEC §3.4 order).

    ``kind`` prefixes the idempotency key ("gpu", "storage", …): the same
    (kind, key) charged twice is applied once and the second call returns the
    first result with ``replayed=True``. What the balance cannot pay becomes
    debt; arrears beyond 10 DCU are covered by an automatic voucher.
    """
    if amount_micro < 0:
        raise ValueError("a charge cannot be negative")
    at = at or timezone.now()
    full_key = _full_key(kind, key)
    account = ledger.lock_account(user)
    if ledger.known_keys([full_key]):
        return _replayed_result(user.pk, full_key)
    if amount_micro == 0:
        return ChargeResult(0, 0, exhausted=False)
    periods.process_due(account, as_of=at)
    grants = ledger.spendable([account.user_id], at).get(account.user_id, [])
    entries: list[ledger.Entry] = []
    result = _spend(
        account, grants, amount_micro, reason=reason, key=full_key, at=at, entries=entries
    )
    ledger.write(entries)
    return result


@transaction.atomic
def charge_batch(
    *, requests: Sequence[ChargeRequest], at: datetime | None = None
) -> dict[str, ChargeResult]:
    """Apply many charges in one transaction (a metering tick): same rules as charge().

    Built for 100,000 users per tick: the accounts are locked in user order
    (concurrent batches cannot deadlock) with one statement, as are the reads
    of known keys and spendable grants; every charge then runs
    ``ledger.spend`` in memory, in request order, and one ``ledger.write``
    stores them all. Returns results by full idempotency key.
    """
    at = at or timezone.now()
    with ledger.no_cyclic_gc():
        return _charge_batch(requests, at)


def _charge_batch(requests: Sequence[ChargeRequest], at: datetime) -> dict[str, ChargeResult]:
    keyed = [(_full_key(r.kind, r.key), r) for r in requests]
    balances = ledger.lock_accounts((r.user_id for r in requests), at=at)
    due = [user_id for user_id, a in balances.items() if a.due]
    # An Account (after period processing) stands in for its AccountBalance: same fields.
    accounts: dict[int, ledger.AccountBalance | Account] = dict(balances)
    for chunk in ledger.chunks(due):
        # Rare (a period ended since the user's last charge): model instances,
        # which period processing needs; its writes keep their debt current.
        for account in Account.objects.filter(user_id__in=chunk).order_by("user_id"):
            periods.process_due(account, as_of=at)
            accounts[account.user_id] = account
    known = ledger.known_keys([k for k, _r in keyed])
    grants = ledger.spendable(list(accounts), at)

    results: dict[str, ChargeResult] = {}
    entries: list[ledger.Entry] = []
    for full_key, request in keyed:
        if full_key in results:
            continue  # the same key twice in one batch: applied once
        if full_key in known:
            results[full_key] = _replayed_result(request.user_id, full_key)
            continue
        if request.amount_micro <= 0:
            results[full_key] = ChargeResult(0, 0, exhausted=False)
            continue
        results[full_key] = _spend(
            accounts[request.user_id],
            grants.get(request.user_id, []),
            request.amount_micro,
            reason=request.reason,
            key=full_key,
            at=at,
            entries=entries,
        )
    ledger.write(entries)
    return results


def storage_fee_charge(*, user, day, amount_micro: int, reason: Reason) -> ChargeResult:
    """The storage fee of one Asia/Shanghai day; charged even into arrears (SPEC §3.5)."""
    return charge(
        user=user,
        kind="storage",
        key=f"{user.pk}:{day.isoformat()}",
        amount_micro=amount_micro,
        reason=reason,
    )
