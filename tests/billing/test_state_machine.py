"""SPEC §3 as a state machine: the billing core against a small reference model.

Hypothesis drives random sequences of subscriptions (first, upgrade, same-tier
renewal, lower tier queued), extension packs, staff vouchers, charges (with
replayed idempotency keys), storage fees, clock jumps (often exactly onto a
period boundary) and period processing through ``billing.services``, with a
simulated clock passed as ``at=`` to every call. After every step the portal
is compared with ``Model`` below: a reference of SPEC §3.2–3.5 written from the
SPEC's table, sharing no code with ``billing.services``.

The portal applies due time events (periods ending and starting, grants
carrying over or expiring) lazily, whenever a service is called or periods are
processed; the model applies them at exactly the same moments
(``Model.apply_until``), so even the not-yet-processed state is compared.

The canary test swaps the spending order in the portal on purpose
(a wrong ``spend_rank`` injected by the test) and expects the machine to notice.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.db.models import Count, Q, Sum
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from aladdin.accounts.models import User
from billing import selectors, services
from billing.choices import GrantState, LedgerKind, SubscriptionState
from billing.models import Account, Grant, LedgerEntry, Plan, Subscription
from billing.services import ledger

from .conftest import SH, sh

# --- the reference model (SPEC §3, written from the SPEC only) -----------------

DCU = 1_000_000
PERIOD = timedelta(days=30)  # §3.2: a plan is valid for 30 days
CARRY = timedelta(days=30)  # §3.3: unused compute carries over for 30 days
DEBT_CAP = 10 * DCU  # §3.5: the user never bears more than 10 DCU of arrears
PLAN_DCU = {1: 20 * DCU, 2: 56_600_000, 3: 500 * DCU}  # §3.1: Trial, Basic, Advanced
PACK_DCU = 10 * DCU  # §3.1: extension pack
TIER_CODE = {1: "trial", 2: "basic", 3: "advanced"}
# §3.4: activated carry-over > extension packs (and vouchers) > plan compute.
CLASS_RANK = {"carry_over": 0, "extension": 1, "plan": 2}

T0 = sh(2026, 3, 1, 8)


@dataclass
class Period:
    tier: int
    start: datetime
    end: datetime
    started: bool = False


@dataclass
class Bucket:
    """Active compute: class "carry_over" (activated), "extension" or "plan"."""

    cls: str
    tier: int | None
    amount: int
    active_until: datetime
    may_carry: bool


@dataclass
class Carried:
    """Carried-over (inactive) compute: cannot be spent until a subscription activates it."""

    amount: int
    carry_until: datetime


@dataclass
class Model:
    periods: list[Period] = field(default_factory=list)  # current (started) + queued, in order
    active: list[Bucket] = field(default_factory=list)
    carried: list[Carried] = field(default_factory=list)
    debt: int = 0
    covered: int = 0  # arrears beyond the cap paid by the platform's vouchers
    vouchers: int = 0  # compute given by staff vouchers

    # -- pieces of the §3.2 table

    def _new_grant(self, cls: str, tier, amount: int, until: datetime, may_carry: bool) -> None:
        # §3.2/§3.5: the next grant pays the debt first.
        settle = min(self.debt, amount)
        self.debt -= settle
        self.active.append(Bucket(cls, tier, amount - settle, until, may_carry))

    def _activate_carried(self, at: datetime, until: datetime) -> None:
        # §3.3: a subscription within the 30 days activates carried compute until
        # the new period ends; activated carry-over may not carry again.
        for c in self.carried:
            if c.carry_until > at:
                self.active.append(Bucket("carry_over", None, c.amount, until, False))
        self.carried = [c for c in self.carried if c.carry_until <= at]

    def _start(self, p: Period) -> None:
        p.started = True
        self._activate_carried(p.start, p.end)
        self._new_grant("plan", p.tier, PLAN_DCU[p.tier], p.end, True)

    def event_times(self) -> list[datetime]:
        times = [b.active_until for b in self.active] + [c.carry_until for c in self.carried]
        times += [p.end if p.started else p.start for p in self.periods]
        return times

    def _apply_at(self, e: datetime) -> None:
        # A period ends.
        self.periods = [p for p in self.periods if not (p.started and p.end <= e)]
        # Its compute: the leftover carries for 30 days, or expires if it may not
        # carry (activated carry-over).
        keep = []
        for b in self.active:
            if b.active_until > e:
                keep.append(b)
            elif b.amount > 0 and b.may_carry:
                self.carried.append(Carried(b.amount, b.active_until + CARRY))
        self.active = keep
        # Carried compute reaching 30 days expires.
        self.carried = [c for c in self.carried if c.carry_until > e]
        # A queued period starting at this instant reactivates what just carried.
        for p in self.periods:
            if not p.started and p.start <= e:
                self._start(p)

    def apply_until(self, t: datetime) -> None:
        """Apply, in time order, every time event at or before ``t``."""
        while True:
            due = [e for e in self.event_times() if e <= t]
            if not due:
                return
            self._apply_at(min(due))

    def current(self, t: datetime) -> Period | None:
        for p in self.periods:
            if p.started and p.start <= t < p.end:
                return p
        return None

    # -- operations (each first applies what is due, as the portal does)

    def subscribe(self, tier: int, t: datetime) -> tuple[str, Period]:
        self.apply_until(t)
        cur = self.current(t)
        if cur is None:
            # First subscription, or after a lapse: it starts now.
            assert not self.periods, "model: queued periods without a current one"
            p = Period(tier, t, t + PERIOD)
            self.periods = [p]
            self._start(p)
            return "now", p
        if tier > cur.tier:
            # Upgrade: now, for 30 days; earlier compute refreshed to the new end
            # (may_carry unchanged); queued periods shift behind the new one.
            end = t + PERIOD
            queued = [q for q in self.periods if q is not cur]
            for b in self.active:
                if b.active_until > t:
                    b.active_until = end
            p = Period(tier, t, end)
            self.periods = [p]
            self._start(p)
            start = end
            for q in queued:
                length = q.end - q.start
                q.start, q.end = start, start + length
                start += length
                self.periods.append(q)
            return "now", p
        # Same or lower tier: queued after the last period.
        last = self.periods[-1].end
        p = Period(tier, last, last + PERIOD)
        self.periods.append(p)
        return "queued", p

    def pack(self, t: datetime) -> Period | None:
        """An extension pack lives and carries like the current period's plan compute."""
        self.apply_until(t)
        cur = self.current(t)
        if cur is not None:
            self._new_grant("extension", None, PACK_DCU, cur.end, True)
        return cur

    def voucher(self, amount: int, t: datetime) -> None:
        """A staff voucher counts as an extension pack (§3.4); without a plan the
        portal's decision is: active 30 days, no carry-over."""
        self.apply_until(t)
        self.vouchers += amount
        cur = self.current(t)
        if cur is not None:
            self._new_grant("extension", None, amount, cur.end, True)
        else:
            self._new_grant("extension", None, amount, t + CARRY, False)

    def charge(self, amount: int, t: datetime) -> tuple[int, int]:
        """Spend in the §3.4 order; what cannot be paid becomes debt (capped)."""
        self.apply_until(t)
        spendable = sorted(
            (b for b in self.active if b.active_until > t),
            key=lambda b: (
                CLASS_RANK[b.cls],
                b.tier if b.cls == "plan" else 0,  # lower tier first
                b.active_until,  # within a class, the earliest expiry first
            ),
        )
        left = amount
        for b in spendable:
            take = min(b.amount, left)
            b.amount -= take
            left -= take
        if left:
            self.debt += left
            if self.debt > DEBT_CAP:
                self.covered += self.debt - DEBT_CAP
                self.debt = DEBT_CAP
        return amount - left, left

    # -- views

    def active_total(self, t: datetime) -> int:
        return sum(b.amount for b in self.active if b.active_until > t)

    def by_class(self, t: datetime) -> dict:
        out: dict = defaultdict(int)
        for b in self.active:
            if b.active_until > t:
                out[(b.cls, b.tier if b.cls == "plan" else None)] += b.amount
        return {k: v for k, v in out.items() if v}

    def carried_total(self, t: datetime) -> int:
        return sum(c.amount for c in self.carried if c.carry_until > t)

    def held_total(self) -> int:
        """Everything not yet expired, including what is due but not yet processed."""
        return sum(b.amount for b in self.active) + sum(c.amount for c in self.carried)


# --- the machine -------------------------------------------------------------------

_phones = itertools.count(13912000001)

amounts = st.one_of(
    st.integers(0, 30 * DCU),
    st.sampled_from([0, 1, DCU, 5 * DCU, 10 * DCU, 20 * DCU, 30 * DCU]),
)


class BillingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # Each example runs inside a savepoint of the test's transaction and
        # rolls back in teardown(), so examples never see each other's rows.
        self.savepoint = transaction.savepoint()
        self.user = User.objects.create_user(phone=f"+86{next(_phones)}")
        self.plans = {p.code: p for p in Plan.objects.all()}
        self.now = T0
        self.model = Model()
        self.charges: dict[str, tuple] = {}  # full key -> (kind, key, amount, charged, debt)
        self.serial = itertools.count(1)

    def teardown(self):
        transaction.savepoint_rollback(self.savepoint)

    def _key(self, prefix: str) -> str:
        return f"u{self.user.pk}-{prefix}{next(self.serial)}"

    def _snapshot(self):
        return (
            list(
                LedgerEntry.objects.filter(user=self.user)
                .order_by("pk")
                .values_list("pk", "idempotency_key", "delta_micro", "kind", "created_at", "grant")
            ),
            list(
                Grant.objects.filter(user=self.user)
                .order_by("pk")
                .values_list(
                    "pk",
                    "grant_class",
                    "tier",
                    "state",
                    "granted_micro",
                    "remaining_micro",
                    "active_until",
                    "carry_until",
                    "may_carry",
                )
            ),
            list(
                Subscription.objects.filter(user=self.user)
                .order_by("pk")
                .values_list("pk", "state", "starts_at", "ends_at")
            ),
            list(Account.objects.filter(user=self.user).values_list("debt_micro", "next_event_at")),
        )

    # -- rules

    @rule(tier=st.sampled_from([1, 2, 3]))
    def subscribe(self, tier):
        effect, expected = self.model.subscribe(tier, self.now)
        sub = services.subscription_create(
            user=self.user, plan=self.plans[TIER_CODE[tier]], source=self._key("s"), at=self.now
        )
        sub.refresh_from_db()
        state = SubscriptionState.ACTIVE if effect == "now" else SubscriptionState.QUEUED
        assert (sub.plan.tier, sub.state, sub.starts_at, sub.ends_at) == (
            tier,
            state,
            expected.start,
            expected.end,
        ), f"subscription ({effect})"

    @rule()
    def buy_pack(self):
        probe = copy.deepcopy(self.model)
        if probe.pack(self.now) is None:
            # No active plan: refused; the portal's atomic block also rolls back
            # the period processing it did first, so the model stays as it was.
            with pytest.raises(services.BillingError, match="needs an active plan"):
                services.extension_pack_buy(
                    user=self.user, plan=self.plans["extension"], source=self._key("p"), at=self.now
                )
            return
        self.model = probe
        grant = services.extension_pack_buy(
            user=self.user, plan=self.plans["extension"], source=self._key("p"), at=self.now
        )
        assert grant.granted_micro == PACK_DCU
        assert grant.active_until == self.model.current(self.now).end

    @rule(dcu=st.integers(1, 10))
    def staff_voucher(self, dcu):
        self.model.voucher(dcu * DCU, self.now)
        services.voucher_grant(
            user=self.user,
            amount_micro=dcu * DCU,
            reason="goodwill",
            key=self._key("v"),
            at=self.now,
        )

    def _charge(self, kind: str, key: str, amount: int) -> None:
        full = f"{kind}:{key}"
        result = services.charge(
            user=self.user, kind=kind, key=key, amount_micro=amount, reason="use", at=self.now
        )
        if amount == 0:
            assert (result.charged_micro, result.debt_micro, result.replayed) == (0, 0, False)
            return
        charged, debt = self.model.charge(amount, self.now)
        assert (result.charged_micro, result.debt_micro, result.replayed) == (
            charged,
            debt,
            False,
        ), "charge result"
        self.charges[full] = (kind, key, amount, charged, debt)
        # No compute is ever taken from a grant that is carried or expired at
        # the charge time (the grant rows are as they were at the charge).
        entries = LedgerEntry.objects.filter(user=self.user, kind=LedgerKind.CHARGE).filter(
            Q(idempotency_key=full) | Q(idempotency_key__startswith=f"{full}#")
        )
        taken = 0
        for entry in entries.select_related("grant"):
            grant = entry.grant
            assert grant is not None and entry.created_at == self.now
            assert grant.state == GrantState.ACTIVE and grant.active_until > entry.created_at, (
                f"charge {full} took compute from {grant.state} grant {grant.pk}"
            )
            taken -= entry.delta_micro
        assert taken == charged

    def _replay(self, full: str, amount: int) -> None:
        kind, key, original, charged, debt = self.charges[full]
        before = self._snapshot()
        result = services.charge(
            user=self.user, kind=kind, key=key, amount_micro=amount, reason="use", at=self.now
        )
        if original == 0:
            # A zero charge wrote nothing, so there is nothing to replay; a
            # second call with the key must still change nothing.
            assert (result.charged_micro, result.debt_micro) == (0, 0)
        else:
            assert result.replayed, f"replayed charge {full} not reported as replayed"
            assert (result.charged_micro, result.debt_micro) == (charged, debt), "replayed result"
        assert self._snapshot() == before, f"replaying {full} changed something"

    @rule(amount=amounts)
    def charge(self, amount):
        self._charge("test", self._key("c"), amount)

    @precondition(lambda self: self.charges)
    @rule(i=st.integers(0, 50), same_amount=st.booleans())
    def replay_charge(self, i, same_amount):
        keys = list(self.charges)
        full = keys[i % len(keys)]
        amount = self.charges[full][2] if same_amount else self.charges[full][2] + DCU
        self._replay(full, amount)

    @rule(amount=st.one_of(st.integers(0, 5 * DCU), st.just(30_000)))
    def storage_fee(self, amount):
        # One fee per Asia/Shanghai day, charged even into arrears (§3.5). The
        # portal's storage_fee_charge uses the real clock, so the same key is
        # built here and charged at the simulated time.
        day = self.now.astimezone(SH).date()
        key = f"{self.user.pk}:{day.isoformat()}"
        if f"storage:{key}" in self.charges:
            self._replay(f"storage:{key}", amount)
        else:
            self._charge("storage", key, amount)

    @rule(
        seconds=st.one_of(
            st.integers(1, 40 * 86400), st.integers(1, 10 * 86400), st.integers(1, 3600)
        )
    )
    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)

    @rule(offset=st.sampled_from([0, 0, -1, 1]))
    def advance_to_next_event(self, offset):
        probe = copy.deepcopy(self.model)
        probe.apply_until(self.now)
        upcoming = [t for t in probe.event_times() if t > self.now]
        if not upcoming:
            self.now += timedelta(days=1)
            return
        self.now = max(self.now, min(upcoming) + timedelta(seconds=offset))

    @rule()
    def process_twice(self):
        services.billing_process_due(as_of=self.now)
        self.model.apply_until(self.now)
        before = self._snapshot()
        services.billing_process_due(as_of=self.now)
        assert self._snapshot() == before, "a second processing run changed something"
        next_event = (
            Account.objects.filter(user=self.user).values_list("next_event_at", flat=True).first()
        )
        assert next_event is None or next_event > self.now

    # -- invariants

    @invariant()
    def portal_agrees_with_model(self):
        now, model = self.now, self.model
        assert selectors.active_balance_micro(self.user, now) == model.active_total(now), (
            "active balance"
        )
        by_class: dict = defaultdict(int)
        carried = held = 0
        for cls, tier, state, remaining, granted, active_until, carry_until in Grant.objects.filter(
            user=self.user
        ).values_list(
            "grant_class",
            "tier",
            "state",
            "remaining_micro",
            "granted_micro",
            "active_until",
            "carry_until",
        ):
            assert 0 <= remaining <= granted
            held += remaining
            if state == GrantState.ACTIVE and active_until > now:
                by_class[(cls, tier if cls == "plan" else None)] += remaining
            elif state == GrantState.CARRIED and carry_until > now:
                carried += remaining
        assert {k: v for k, v in by_class.items() if v} == model.by_class(now), (
            "per-class active totals"
        )
        assert carried == model.carried_total(now), "carried total"
        assert held == model.held_total(), "compute held"

        debt = Account.objects.filter(user=self.user).values_list("debt_micro", flat=True).first()
        assert (debt or 0) == model.debt, "debt"
        assert 0 <= model.debt <= DEBT_CAP

        ledger = LedgerEntry.objects.filter(user=self.user).aggregate(
            total=Sum("delta_micro"),
            vouchers=Sum("delta_micro", filter=Q(kind=LedgerKind.VOUCHER)),
            rows=Count("pk"),
            keys=Count("idempotency_key", distinct=True),
        )
        assert (ledger["total"] or 0) == held - (debt or 0), "ledger sum"
        assert ledger["rows"] == ledger["keys"], "idempotency keys"
        # Staff vouchers plus the platform's vouchers for arrears beyond 10 DCU.
        assert (ledger["vouchers"] or 0) == model.vouchers + model.covered, "vouchers"

        periods = list(
            Subscription.objects.filter(
                user=self.user, state__in=[SubscriptionState.ACTIVE, SubscriptionState.QUEUED]
            )
            .order_by("starts_at", "pk")
            .values_list("plan__tier", "starts_at", "ends_at", "state")
        )
        assert periods == [
            (
                p.tier,
                p.start,
                p.end,
                SubscriptionState.ACTIVE if p.started else SubscriptionState.QUEUED,
            )
            for p in model.periods
        ], "periods"


def _settings(examples: int, **extra) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=extra.pop("steps", 20),
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        **extra,
    )


# The Hypothesis profile's count (tests/conftest.py): 100 in `make test`, 500 in
# `make test-nightly`; ALADDIN_HYPOTHESIS_EXAMPLES overrides it for a local run.
EXAMPLES = int(os.environ.get("ALADDIN_HYPOTHESIS_EXAMPLES") or settings.default.max_examples)


def test_plans_are_those_of_the_spec(db):
    plans = {p.code: p.dcu_micro for p in Plan.objects.all()}
    assert {code: plans[code] for code in TIER_CODE.values()} == {
        TIER_CODE[tier]: dcu for tier, dcu in PLAN_DCU.items()
    }
    assert plans["extension"] == PACK_DCU


# About 100 s for 500 examples (nightly) on an idle 2-core machine; the margin is for a busy one.
@pytest.mark.timeout(600)
def test_billing_state_machine_agrees_with_the_spec_model(db):
    run_state_machine_as_test(BillingMachine, settings=_settings(EXAMPLES))


def _plan_compute_first(right):
    """A wrong SPEC §3.4 order: the classes reversed, plan compute spent first."""

    def wrong(grant):
        rank, *rest = right(grant)
        return (-rank, *rest)

    return wrong


def test_canary_a_wrong_spending_order_is_caught(db, monkeypatch):
    monkeypatch.setattr(ledger, "spend_rank", _plan_compute_first(ledger.spend_rank))
    with pytest.raises(AssertionError, match="per-class active totals"):
        run_state_machine_as_test(
            BillingMachine,
            settings=_settings(200, phases=[Phase.explicit, Phase.generate]),
        )
