"""charge_batch (a metering tick) applies exactly what charge() would, one by one."""

from __future__ import annotations

from datetime import timedelta

from billing import selectors, services
from billing.models import Grant, LedgerEntry

from .conftest import sh

DCU = 1_000_000
T0 = sh(2026, 3, 1, 8)


def _rich_user(make_user, plans):
    """A user with activated carry-over, a Trial plan grant and an extension pack."""
    user = make_user()
    services.subscription_create(user=user, plan=plans["trial"], at=T0)
    services.charge(
        user=user, kind="test", key=f"u{user.pk}", amount_micro=12 * DCU, reason="r", at=T0
    )
    t1 = T0 + timedelta(days=35)
    services.subscription_create(user=user, plan=plans["trial"], at=t1)
    services.extension_pack_buy(user=user, plan=plans["extension"], source=f"p{user.pk}", at=t1)
    return user


def _state(user):
    grants = sorted(
        (g.grant_class, g.tier, g.remaining_micro, g.state) for g in Grant.objects.filter(user=user)
    )
    ledger = sorted(
        (e.kind, e.delta_micro, e.idempotency_key.split(":", 2)[-1])
        for e in LedgerEntry.objects.filter(user=user, kind__in=["charge", "debt"])
    )
    return grants, ledger, selectors.account_for(user).debt_micro


def test_a_batch_spends_in_the_same_order_and_amounts_as_single_charges(make_user, plans):
    at = T0 + timedelta(days=36)
    single, batched = _rich_user(make_user, plans), _rich_user(make_user, plans)
    amounts = [3 * DCU, 9 * DCU, 17 * DCU, 40 * DCU]  # through carry-over, pack, plan, into debt
    for i, amount in enumerate(amounts):
        services.charge(
            user=single,
            kind="gpu",
            key=f"job{single.pk}:{i}",
            amount_micro=amount,
            reason="gpu",
            at=at,
        )
    results = {}
    for i, amount in enumerate(amounts):
        results.update(
            services.charge_batch(
                requests=[
                    services.ChargeRequest(
                        batched.pk, "gpu", f"job{batched.pk}:{i}", amount, "gpu"
                    ),
                ],
                at=at,
            )
        )
    g1, l1, d1 = _state(single)
    g2, l2, d2 = _state(batched)
    assert g1 == g2
    assert [e[:2] for e in l1] == [e[:2] for e in l2]
    assert d1 == d2 == 10 * DCU  # capped by the automatic voucher
    last = results[f"gpu:job{batched.pk}:3"]
    assert last.exhausted and last.debt_micro > 0


def test_a_batch_of_many_users_charges_each_once(make_user, plans):
    at = T0 + timedelta(days=36)
    users = [_rich_user(make_user, plans) for _ in range(5)]
    requests = [services.ChargeRequest(u.pk, "gpu", f"tick:{u.pk}", 2 * DCU, "gpu") for u in users]
    # The same key twice in one batch and again in a later batch: applied once.
    requests.append(requests[0])
    first = services.charge_batch(requests=requests, at=at)
    again = services.charge_batch(requests=requests[:2], at=at)
    for u in users:
        assert selectors.active_balance_micro(u, at) == 36 * DCU  # 8 + 10 + 20 - 2
    assert all(not r.replayed for r in first.values())
    assert all(r.replayed for r in again.values())
    assert again[f"gpu:tick:{users[0].pk}"].charged_micro == 2 * DCU


def test_a_batch_with_period_events_due_and_debt_keeps_the_ledger_invariant(make_user, plans):
    # given users whose period ended before the tick (processing is due), one
    # with no compute at all (all of it becomes debt, capped at 10 DCU)
    at = T0 + timedelta(days=70)  # the second period (from T0+35d) ended at T0+65d
    users = [_rich_user(make_user, plans) for _ in range(3)]
    broke = make_user()
    requests = [services.ChargeRequest(u.pk, "gpu", f"late:{u.pk}", 3 * DCU, "gpu") for u in users]
    requests.append(services.ChargeRequest(broke.pk, "storage", f"{broke.pk}:d", 25 * DCU, "s"))

    results = services.charge_batch(requests=requests, at=at)

    # then nothing was spendable (periods lapsed first), so it all became debt
    for u in [*users, broke]:
        key = f"storage:{u.pk}:d" if u == broke else f"gpu:late:{u.pk}"
        assert results[key].charged_micro == 0 and results[key].exhausted
        ledger = sum(LedgerEntry.objects.filter(user=u).values_list("delta_micro", flat=True))
        remaining = sum(g.remaining_micro for g in Grant.objects.filter(user=u))
        assert ledger == remaining - selectors.account_for(u).debt_micro
    assert selectors.account_for(broke).debt_micro == 10 * DCU  # the rest: a platform voucher


def test_a_batch_leaves_the_garbage_collector_as_it_found_it(make_user, plans):
    import gc

    user = _rich_user(make_user, plans)
    request = services.ChargeRequest(user.pk, "gpu", "gc", DCU, "gpu")
    assert gc.isenabled()
    services.charge_batch(requests=[request], at=T0 + timedelta(days=36))
    assert gc.isenabled()
