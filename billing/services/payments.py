"""What a payment event does to compute: a refund takes back the unspent share (SPEC §5).

The order side (checkout, Alipay notifications, reconciliation, asking
Alipay for a refund, invoices) is ``billing/payments.py``, the module that
talks to Alipay; it calls :func:`refund_apply` once Alipay has refunded.
Fulfilment grants through ``subscriptions`` (subscription_create,
extension_pack_buy).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from aladdin.lib.said import Said

from ..choices import GrantClass, GrantState, LedgerKind, SubscriptionState
from ..models import Grant, Order, Refund, Subscription
from . import ledger, periods


def _order_grants(order: Order) -> list[Grant]:
    """The compute an order bought, following carry-over into its new grants."""
    roots: list[Grant]
    if order.grant_id and order.grant:
        roots = [order.grant]
    elif order.subscription_id:
        roots = list(
            Grant.objects.filter(
                subscription_id=order.subscription_id, parent=None, grant_class=GrantClass.PLAN
            )
        )
    else:
        roots = []
    grants: list[Grant] = []
    frontier = roots
    while frontier:
        grants.extend(frontier)
        frontier = list(Grant.objects.filter(parent__in=frontier))
    return grants


@transaction.atomic
def refund_apply(*, refund_id: int, at: datetime) -> Refund:
    """Record a refund Alipay made: take back the refunded share of the unspent compute, once.

    The refund row is locked and marked succeeded in the same transaction as
    the ledger entries (keyed by its ``out_request_no``), so a retry finds it
    done and changes nothing (DESIGN rule 6).
    """
    refund = Refund.objects.select_for_update().get(pk=refund_id)
    if refund.state == Refund.State.SUCCEEDED:
        return refund
    order = Order.objects.select_for_update().get(pk=refund.order_id)
    account = ledger.lock_account(order.user)
    bought_grants = _order_grants(order)
    grants = [g for g in bought_grants if g.state in (GrantState.ACTIVE, GrantState.CARRIED)]
    # What the order granted (the plan may have been edited since); the
    # plan's figure only for a period that has not started yet.
    roots = [g for g in bought_grants if g.parent_id is None]
    bought = sum(g.granted_micro for g in roots) if roots else order.plan.dcu_micro
    # The refunded share of what was bought, never more than is still unspent.
    # Cumulative shares, so partial refunds that add up to the price take
    # back all of it (rounding each part down separately would leave µDCU).
    share = (
        bought * (order.refunded_fen + refund.amount_fen) // order.price_fen
        - bought * order.refunded_fen // order.price_fen
    )
    to_reverse = min(share, sum(g.remaining_micro for g in grants))
    left = to_reverse
    entries: list[ledger.Entry] = []
    # Active compute first, then carried; not the spending order: a refund
    # takes back what this order bought, wherever it now sits.
    for grant in sorted(grants, key=lambda g: (g.state != GrantState.ACTIVE, g.pk)):
        take = min(grant.remaining_micro, left)
        if take <= 0:
            continue
        entries.append(
            ledger.Entry(
                order.user_id,
                grant.pk,
                -take,
                LedgerKind.REFUND,
                Said("ledger.refund", {"order": order.out_trade_no, "amount": take}),
                f"refund:{refund.out_request_no}:{grant.pk}",
                at,
            )
        )
        left -= take
    ledger.write(entries)
    order.refunded_fen += refund.amount_fen
    fully = order.refunded_fen >= order.price_fen
    order.state = Order.State.REFUNDED if fully else Order.State.PARTLY_REFUNDED
    order.save(update_fields=["refunded_fen", "state"])
    if fully and order.subscription_id:
        # A fully refunded subscription ends now (a queued one never starts).
        Subscription.objects.filter(
            pk=order.subscription_id, state=SubscriptionState.QUEUED
        ).update(state=SubscriptionState.ENDED)
        Subscription.objects.filter(
            pk=order.subscription_id, state=SubscriptionState.ACTIVE
        ).update(state=SubscriptionState.ENDED, ends_at=at)
        periods.refresh_next_event(account)
    refund.state = Refund.State.SUCCEEDED
    refund.reversed_micro = to_reverse
    refund.completed_at = at
    refund.error = ""
    refund.save(update_fields=["state", "reversed_micro", "completed_at", "error"])
    return refund
