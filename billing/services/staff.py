"""What support staff do to a user's compute: vouchers, forfeits (a ban), arrears decisions (SPEC §3.5, §8).

Each action is recorded as a StaffAction (who, when, what, why).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin.lib.said import Said

from .. import selectors
from ..choices import GrantClass, GrantState, LedgerKind, SubscriptionState
from ..models import ArrearsReview, Grant, LedgerEntry, Subscription
from . import ledger, periods
from .ledger import BillingError


def _record(**fields) -> None:
    from aladdin.accounts.models import StaffAction

    StaffAction.objects.create(**fields)


@transaction.atomic
def voucher_grant(
    *, user, amount_micro: int, reason: str, key: str, actor=None, at: datetime | None = None
) -> Grant:
    """Staff give compute; it counts as an extension pack (SPEC §3.4 decision).

    With an active plan it lives and carries like that period's packs; without
    one it is active for 30 days and does not carry. The same ``key`` twice
    grants once and returns the first grant.
    """
    at = at or timezone.now()
    if amount_micro <= 0:
        raise BillingError(_("A voucher must be worth more than 0 DCU."))
    if not reason.strip():
        raise BillingError(_("A reason is required for a voucher."))
    account = ledger.lock_account(user)
    periods.bring_up_to_date(account, as_of=at)
    existing = LedgerEntry.objects.filter(idempotency_key=f"voucher:{key}").first()
    if existing is not None:
        return existing.grant
    current = selectors.current_subscription(user, at)
    grant = ledger.open_grant(
        user_id=account.user_id,
        amount=amount_micro,
        kind=LedgerKind.VOUCHER,
        reason=reason,
        key=f"voucher:{key}",
        at=at,
        pays_debt_of=account,
        grant_class=GrantClass.EXTENSION,
        active_until=current.ends_at if current else at + timedelta(days=periods.CARRY_DAYS),
        subscription=current,
        may_carry=current is not None,
    )
    if actor is not None:
        _record(
            actor=actor,
            target_user_id=user.pk,
            action="voucher",
            reason=reason,
            details={"amount_micro": amount_micro, "grant": grant.pk},
        )
    periods.refresh_next_event(account)
    return grant


@dataclass(frozen=True)
class ForfeitResult:
    """What a forfeit took: µDCU of compute cleared, µDCU of arrears written off, grants hit."""

    cleared_micro: int
    written_off_micro: int
    grant_ids: list[int]


@transaction.atomic
def billing_forfeit_all(*, user, reason: str, at: datetime | None = None) -> ForfeitResult:
    """Clear every grant, active or carried, end every period, write off arrears (a ban).

    Each grant's remainder leaves with a FORFEIT entry carrying ``reason``.
    The arrears of a banned account are written off too (a DEBT_SETTLE entry
    without a grant): a final GPU charge that lands after the forfeit (a
    release the cluster confirmed late) must not leave the banned user
    owing the platform, nor put them in the arrears queue. Safe to call
    again: a grant is forfeited once (its key), and arrears already written
    off are 0; the back office calls it again after each late final charge.
    """
    at = at or timezone.now()
    account = ledger.lock_account(user)
    grants = list(
        Grant.objects.filter(
            user_id=user.pk, state__in=[GrantState.ACTIVE, GrantState.CARRIED]
        ).order_by("pk")
    )
    cleared = ledger.take_all(
        grants,
        kind=LedgerKind.FORFEIT,
        reason=lambda g: reason,
        key=lambda g: f"forfeit:{g.pk}",
        at=at,
    )
    Grant.objects.filter(pk__in=[g.pk for g in grants]).update(state=GrantState.EXPIRED)
    Subscription.objects.filter(user_id=user.pk, state=SubscriptionState.QUEUED).update(
        state=SubscriptionState.ENDED
    )
    Subscription.objects.filter(user_id=user.pk, state=SubscriptionState.ACTIVE).update(
        state=SubscriptionState.ENDED, ends_at=at
    )
    written_off = account.debt_micro
    if written_off > 0:
        # The key names the last entry before the write-off: the same arrears
        # are written off once, new arrears (a later charge) get a new key.
        last = LedgerEntry.objects.filter(user_id=user.pk).order_by("-pk").values("pk").first()
        ledger.write(
            [
                ledger.Entry(
                    user.pk,
                    None,
                    written_off,
                    LedgerKind.DEBT_SETTLE,
                    Said("ledger.arrears_written_off", {"reason": reason}),
                    f"forfeit:debt:{last['pk'] if last else 0}",
                    at,
                )
            ]
        )
    periods.refresh_next_event(account)
    return ForfeitResult(cleared, written_off, [g.pk for g in grants])


@transaction.atomic
def arrears_review_decide(
    *, review: ArrearsReview, actor, decision: str, note: str
) -> ArrearsReview:
    """Record a staff decision on an arrears review (who, when, what, why)."""
    if decision not in {c for c, _l in ArrearsReview.Decision.choices} - {"pending"}:
        raise BillingError(_("Choose clean, hold or contact."))
    review = ArrearsReview.objects.select_for_update().get(pk=review.pk)
    review.decision = decision
    review.decided_by = actor
    review.decided_at = timezone.now()
    review.note = note
    review.save(update_fields=["decision", "decided_by", "decided_at", "note"])
    _record(
        actor=actor,
        target_user_id=review.user_id,
        action=f"arrears_{decision}",
        reason=note,
        details={"review": review.pk},
    )
    return review
