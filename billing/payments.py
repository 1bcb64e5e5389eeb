"""Order services: checkout, Alipay notifications, reconciliation, refunds, invoices (SPEC §5).

The module that talks to Alipay. The billing core (``billing.services``)
grants compute and takes back a refund's share (``services.refund_apply``);
this module decides when an order is paid and fulfils it exactly once, in
the transaction that records the payment (the order row is locked first, so
duplicate, late or concurrent notifications find it already paid).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin.accounts.services import notification_create

from . import alipay, selectors, services
from .choices import PlanKind, SubscriptionState
from .models import (
    Invoice,
    Order,
    PaymentNotification,
    Plan,
    Refund,
    Subscription,
)

logger = logging.getLogger("aladdin.billing.payments")

PAID_STATUSES = {"TRADE_SUCCESS", "TRADE_FINISHED"}
RECONCILE_AFTER = timedelta(minutes=2)


def price_for(user, plan: Plan) -> int:
    """What ``user`` pays for ``plan`` now, in fen: the education price for education users."""
    return plan.education_price_fen if user.is_education else plan.price_fen


def _new_out_trade_no(at: datetime) -> str:
    # Unguessable: the date for support, then 80 random bits.
    return "ALD" + timezone.localtime(at).strftime("%Y%m%d") + secrets.token_hex(10).upper()


@transaction.atomic
def order_create(
    *, user, plan: Plan, channel: str = Order.Channel.PAGE, client_key: str = "", at=None
) -> Order:
    """Create a pending order at the user's price; a retried client key returns the same order."""
    at = at or timezone.now()
    if client_key:
        existing = Order.objects.filter(user=user, client_key=client_key).first()
        if existing is not None:
            if existing.plan_id != plan.pk:
                raise services.BillingError(
                    _("This Idempotency-Key was already used for another product.")
                )
            return existing
    if not plan.is_active or (plan.kind == PlanKind.PLAN and not plan.tier):
        raise services.BillingError(_("%(plan)s is not for sale.") % {"plan": plan.name})
    if channel not in Order.Channel.values:
        raise services.BillingError(_("Choose the Alipay page or the QR code."))
    if plan.kind == PlanKind.EXTENSION:
        from .selectors import current_subscription

        if current_subscription(user, at) is None:
            raise services.BillingError(
                _("An extension pack needs an active plan. Subscribe to a plan first.")
            )
    return Order.objects.create(
        user=user,
        plan=plan,
        price_fen=price_for(user, plan),
        education_price=user.is_education,
        out_trade_no=_new_out_trade_no(at),
        channel=channel,
        created_at=at,
        expires_at=at + timedelta(minutes=settings.ALIPAY_PAYMENT_WINDOW_MINUTES),
        client_key=client_key,
    )


@transaction.atomic
def order_create_once(
    *, user, plan: Plan, channel: str = Order.Channel.PAGE, client_key: str, at=None
) -> tuple[Order, bool]:
    """:func:`order_create` for a retryable request: (the order, whether this call made it).

    The key is looked up under the user's account lock, in the transaction
    that creates the order, so of concurrent calls with one key exactly one
    creates the order (True) and every other gets that order (False). A
    look-up before the call, outside the lock, let two concurrent requests
    both answer "created".
    """
    services.account_lock(user=user)
    existed = bool(client_key) and Order.objects.filter(user=user, client_key=client_key).exists()
    order = order_create(user=user, plan=plan, channel=channel, client_key=client_key, at=at)
    return order, not existed


def order_subject(order: Order) -> str:
    # SPEC §5: the item is a technical service fee.
    return f"{Invoice.ITEM_NAME} - Aladdin {order.plan.name}"


def order_payment_target(order: Order, *, return_url: str, notify_url: str, sandbox_url: str):
    """Where the user pays: ("redirect", url) for the page cashier, ("qr", content) for QR.

    In the local sandbox both go to the sandbox page instead of Alipay.
    """
    if settings.ALIPAY_SANDBOX:
        if order.channel == Order.Channel.QR:
            return "qr", sandbox_url
        return "redirect", sandbox_url
    if order.channel == Order.Channel.QR:
        if not order.qr_code:
            code = alipay.precreate(
                out_trade_no=order.out_trade_no,
                amount_fen=order.price_fen,
                subject=order_subject(order),
                notify_url=notify_url,
                expires_at=order.expires_at,
            )
            Order.objects.filter(pk=order.pk).update(qr_code=code)
            order.qr_code = code
        return "qr", order.qr_code
    return "redirect", alipay.page_pay_url(
        out_trade_no=order.out_trade_no,
        amount_fen=order.price_fen,
        subject=order_subject(order),
        return_url=return_url,
        notify_url=notify_url,
        expires_at=order.expires_at,
    )


# --- fulfilment ------------------------------------------------------------------


def _record(order, params, *, outcome, detail="", source="notify") -> PaymentNotification:
    return PaymentNotification.objects.create(
        order=order,
        out_trade_no=str(params.get("out_trade_no", ""))[:64],
        trade_status=str(params.get("trade_status", ""))[:32],
        params={k: v for k, v in params.items() if k != "sign"},
        outcome=outcome,
        detail=detail,
        source=source,
    )


@transaction.atomic
def order_fulfil(*, order_id: int, trade_no: str, params: dict, source: str, at=None) -> str:
    """Record the payment of an order and grant what it bought, once. Returns the outcome."""
    at = at or timezone.now()
    # Lock the order row only: FOR UPDATE over the join would also lock the
    # plan (serialising every buyer of it) and the user row.
    order = (
        Order.objects.select_for_update(of=("self",))
        .select_related("plan", "user")
        .get(pk=order_id)
    )
    if order.state in {Order.State.PAID, Order.State.PARTLY_REFUNDED, Order.State.REFUNDED}:
        _record(order, params, outcome=PaymentNotification.Outcome.DUPLICATE, source=source)
        return PaymentNotification.Outcome.DUPLICATE
    if order.state == Order.State.CLOSED:
        # Money arrived for an order we closed: never drop it, flag it.
        note = _(
            "Payment %(trade_no)s arrived after the order was closed; refund or fulfil by hand."
        ) % {"trade_no": trade_no}
        Order.objects.filter(pk=order.pk).update(needs_support=True, support_note=note)
        _record(
            order, params, outcome=PaymentNotification.Outcome.FLAGGED, detail=note, source=source
        )
        logger.error("late payment for closed order %s", order.out_trade_no)
        return PaymentNotification.Outcome.FLAGGED
    # Pending: pay and fulfil in one go.
    order.state = Order.State.PAID
    order.paid_at = at
    order.trade_no = trade_no
    try:
        with transaction.atomic():
            if order.plan.kind == PlanKind.EXTENSION:
                order.grant = services.extension_pack_buy(
                    user=order.user, plan=order.plan, source=order.out_trade_no, at=at
                )
            else:
                order.subscription = services.subscription_create(
                    user=order.user, plan=order.plan, source=order.out_trade_no, at=at
                )
    except services.BillingError as exc:
        # Paid, but what it bought cannot be granted now (e.g. a pack whose
        # plan lapsed before the payment): keep the money on record for support.
        order.needs_support = True
        order.support_note = " ".join(exc.messages)
        order.save()
        _record(
            order,
            params,
            outcome=PaymentNotification.Outcome.FLAGGED,
            detail=order.support_note,
            source=source,
        )
        return PaymentNotification.Outcome.FLAGGED
    order.save()
    _record(order, params, outcome=PaymentNotification.Outcome.FULFILLED, source=source)
    notification_create(
        user=order.user,
        message="order_paid",
        params={
            "order": order.out_trade_no,
            "plan": order.plan.name,
            "amount": order.price_fen,
        },
        at=at,
    )
    return PaymentNotification.Outcome.FULFILLED


def payment_handle_notification(params: dict[str, str]) -> bool:
    """Handle one asynchronous notification. True: answer "success" (handled, duplicates too)."""
    keys = alipay.keys()
    if not alipay.verify_notification(params, keys.alipay_public_key_pem):
        _record(None, params, outcome=PaymentNotification.Outcome.REJECTED, detail="bad signature")
        return False
    if params.get("app_id") != keys.app_id:
        _record(None, params, outcome=PaymentNotification.Outcome.REJECTED, detail="wrong app_id")
        return False
    if params.get("seller_id") != keys.seller_id:
        _record(
            None, params, outcome=PaymentNotification.Outcome.REJECTED, detail="wrong seller_id"
        )
        return False
    order = Order.objects.filter(out_trade_no=params.get("out_trade_no", "")).first()
    if order is None:
        _record(None, params, outcome=PaymentNotification.Outcome.REJECTED, detail="unknown order")
        return False
    if alipay.amount_to_fen(params.get("total_amount", "")) != order.price_fen:
        _record(order, params, outcome=PaymentNotification.Outcome.REJECTED, detail="wrong amount")
        return False
    status = params.get("trade_status", "")
    if params.get("refund_fee") or params.get("gmt_refund"):
        # A refund notice: the payment was handled long ago; never fulfil again.
        _record(order, params, outcome=PaymentNotification.Outcome.IGNORED, detail="refund notice")
        return True
    if status in PAID_STATUSES:
        order_fulfil(
            order_id=order.pk, trade_no=params.get("trade_no", ""), params=params, source="notify"
        )
        return True
    if status == "TRADE_CLOSED":
        order_close(order_id=order.pk, reason="closed by Alipay", params=params)
        return True
    _record(order, params, outcome=PaymentNotification.Outcome.IGNORED, detail=status)
    return True


@transaction.atomic
def order_close(*, order_id: int, reason: str, params: dict | None = None, at=None) -> bool:
    """Close a pending order; a paid one is left alone. True if it was closed now."""
    at = at or timezone.now()
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.state != Order.State.PENDING:
        if params is not None:
            _record(order, params, outcome=PaymentNotification.Outcome.IGNORED, detail=reason)
        return False
    Order.objects.filter(pk=order.pk).update(state=Order.State.CLOSED, closed_at=at)
    if params is not None:
        _record(order, params, outcome=PaymentNotification.Outcome.IGNORED, detail=reason)
    return True


def order_reconcile(*, order_id: int, at=None) -> str:
    """Ask Alipay about one pending order: fulfil it if paid, close it when its time is up.

    Returns what happened: "fulfilled", "closed", "pending" or "error".
    """
    at = at or timezone.now()
    order = Order.objects.get(pk=order_id)
    if order.state != Order.State.PENDING:
        return order.state
    if settings.ALIPAY_SANDBOX:
        # No gateway to ask: the sandbox only notifies.
        if order.expires_at <= at and order_close(order_id=order.pk, reason="expired", at=at):
            return "closed"
        return "pending"
    try:
        trade = alipay.query(out_trade_no=order.out_trade_no)
    except alipay.AlipayError as exc:
        if exc.sub_code != "ACQ.TRADE_NOT_EXIST":
            logger.warning("trade query for %s failed: %s", order.out_trade_no, exc)
            return "error"
        trade = {}  # a QR trade nobody scanned yet: unpaid
    status = trade.get("trade_status", "")
    if status in PAID_STATUSES:
        if alipay.amount_to_fen(trade.get("total_amount", "")) != order.price_fen:
            _record(order, trade, outcome="rejected", detail="query: wrong amount", source="query")
            return "error"
        order_fulfil(
            order_id=order.pk, trade_no=trade.get("trade_no", ""), params=trade, source="query"
        )
        return "fulfilled"
    if order.expires_at <= at:
        if trade:
            try:
                alipay.close(out_trade_no=order.out_trade_no)
            except alipay.AlipayError as exc:
                if exc.sub_code != "ACQ.TRADE_NOT_EXIST":
                    logger.warning("trade close for %s failed: %s", order.out_trade_no, exc)
                    return "error"
        order_close(order_id=order.pk, reason="unpaid after the payment window", at=at)
        return "closed"
    return "pending"


def orders_reconcile_due(*, at=None) -> dict[str, int]:
    """Reconcile every pending order older than 2 minutes (the beat task)."""
    at = at or timezone.now()
    counts: dict[str, int] = {}
    for order_id in Order.objects.filter(
        state=Order.State.PENDING, created_at__lte=at - RECONCILE_AFTER
    ).values_list("pk", flat=True):
        outcome = order_reconcile(order_id=order_id, at=at)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


# --- refunds -------------------------------------------------------------------------


class RefundAlreadyRequested(services.BillingError):
    """A refund request repeated with its key (a double submit): refused, nothing done.

    ``refund`` is the refund the first request made.
    """

    def __init__(self, refund: Refund):
        super().__init__(_("This refund was already submitted."))
        self.refund = refund


@transaction.atomic
def refund_create(
    *, order: Order, amount_fen: int, reason: str, actor, request_key: str = ""
) -> Refund:
    """Staff ask for a full or partial refund; :func:`refund_execute` carries it out.

    ``request_key`` (e.g. the back office's confirmation page) makes a repeat
    of the same request raise :class:`RefundAlreadyRequested` instead of
    refunding twice: the key is checked under the order's lock and stored,
    unique per order, with the refund it made (DESIGN rule 6).
    """
    order = Order.objects.select_for_update().get(pk=order.pk)
    if request_key:
        first = Refund.objects.filter(order=order, request_key=request_key).first()
        if first is not None:
            raise RefundAlreadyRequested(first)
    try:
        with transaction.atomic():
            return _refund_create_locked(order, amount_fen, reason, actor, request_key)
    except IntegrityError:
        # The backstop: the key's unique index refuses a second refund even
        # if the check above was raced (a caller that did not lock the order).
        first = Refund.objects.filter(order=order, request_key=request_key).first()
        if not request_key or first is None:
            raise
        raise RefundAlreadyRequested(first) from None


def _refund_create_locked(order: Order, amount_fen: int, reason: str, actor, request_key) -> Refund:
    if order.state not in {Order.State.PAID, Order.State.PARTLY_REFUNDED}:
        raise services.BillingError(_("Only paid orders can be refunded."))
    if not reason.strip():
        raise services.BillingError(_("A reason is required for a refund."))
    pending = sum(
        order.refunds.filter(state=Refund.State.REQUESTED).values_list("amount_fen", flat=True)
    )
    left = order.price_fen - order.refunded_fen - pending
    if not 0 < amount_fen <= left:
        raise services.BillingError(
            _(
                "The refund must be between 0.01 and %(left)s yuan (paid %(paid)s, refunded %(done)s)."
            )
            % {
                "left": alipay.fen_to_amount(left),
                "paid": alipay.fen_to_amount(order.price_fen),
                "done": alipay.fen_to_amount(order.refunded_fen),
            }
        )
    if (
        order.subscription_id
        and amount_fen < left
        and Subscription.objects.filter(
            pk=order.subscription_id, state=SubscriptionState.QUEUED
        ).exists()
    ):
        # A period that has not started has no compute yet to take a share
        # of: a partial refund would hand back money and still grant it all.
        raise services.BillingError(
            _("This period has not started yet: refund the rest of it in full, or partly later.")
        )
    number = order.refunds.count() + 1
    refund = Refund.objects.create(
        order=order,
        out_request_no=f"{order.out_trade_no}R{number}",
        amount_fen=amount_fen,
        reason=reason,
        created_by=actor,
        request_key=request_key,
    )
    from aladdin.accounts.models import StaffAction

    StaffAction.objects.create(
        actor=actor,
        target_user_id=order.user_id,
        action="refund",
        reason=reason,
        details={"order": order.out_trade_no, "amount_fen": amount_fen},
    )
    return refund


def order_refund(
    *, order: Order, amount_fen: int, reason: str, actor, request_key: str = ""
) -> Refund:
    """Refund all or part of an order now: :func:`refund_create` then :func:`refund_execute`.

    A repeat with the same ``request_key`` raises :class:`RefundAlreadyRequested`;
    if Alipay refuses, the refund stays requested (retry it from the refunds list).
    """
    refund = refund_create(
        order=order, amount_fen=amount_fen, reason=reason, actor=actor, request_key=request_key
    )
    return refund_execute(refund_id=refund.pk)


def refund_execute(*, refund_id: int, at=None) -> Refund:
    """Refund at Alipay (retries reuse out_request_no) and reverse the unspent share, once."""
    at = at or timezone.now()
    refund = Refund.objects.select_related("order").get(pk=refund_id)
    if refund.state == Refund.State.SUCCEEDED:
        return refund
    if not settings.ALIPAY_SANDBOX:
        try:
            alipay.refund(
                out_trade_no=refund.order.out_trade_no,
                amount_fen=refund.amount_fen,
                out_request_no=refund.out_request_no,
                reason=refund.reason,
            )
        except alipay.AlipayError as exc:
            Refund.objects.filter(pk=refund.pk).update(error=str(exc))
            raise services.BillingError(
                _("Alipay refused the refund: %(error)s") % {"error": exc}
            ) from exc
    return services.refund_apply(refund_id=refund.pk, at=at)


# --- invoices --------------------------------------------------------------------------


@transaction.atomic
def invoice_request(
    *, order: Order, title_type: str, title: str, tax_number: str, email: str
) -> Invoice:
    """A user asks for the invoice of a paid order (one per order)."""
    order = Order.objects.select_for_update().get(pk=order.pk)
    if not selectors.order_invoiceable(order):
        raise services.BillingError(_("Invoices are issued for paid orders only."))
    if Invoice.objects.filter(order=order).exists():
        raise services.BillingError(_("An invoice was already requested for this order."))
    title = title.strip()
    tax_number = tax_number.strip().upper()
    errors = {}
    if not title:
        errors["title"] = _("Enter the invoice title (your name or the company's name).")
    if title_type == Invoice.TitleType.COMPANY and not tax_number:
        errors["tax_number"] = _("A company invoice needs the company's tax number.")
    if tax_number and not (15 <= len(tax_number) <= 20 and tax_number.isalnum()):
        errors["tax_number"] = _("A tax number has 15 to 20 letters and digits.")
    if errors:
        raise ValidationError(errors)
    return Invoice.objects.create(
        order=order,
        title_type=title_type,
        title=title,
        tax_number=tax_number,
        email=email,
        amount_fen=order.price_fen - order.refunded_fen,
    )


@transaction.atomic
def invoice_issue(*, invoice: Invoice, pdf, actor) -> Invoice:
    """Staff attach the issued PDF; the user can then download it."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    invoice.pdf.save(f"invoice-{invoice.order.out_trade_no}.pdf", pdf, save=False)
    invoice.state = Invoice.State.ISSUED
    invoice.issued_at = timezone.now()
    invoice.issued_by = actor
    invoice.save()
    from aladdin.accounts.models import StaffAction

    StaffAction.objects.create(
        actor=actor,
        target_user_id=invoice.order.user_id,
        action="invoice_issued",
        details={"order": invoice.order.out_trade_no},
    )
    return invoice


@transaction.atomic
def order_support_resolve(*, order: Order, actor, reason: str) -> Order:
    """Take an order flagged for support off the queue once staff have dealt with it.

    A payment flagged by :func:`order_fulfil` (money for a closed order, or a
    paid order that could not be fulfilled) is refunded with the "Refund"
    action or fulfilled by hand; this records that it was handled, by whom and
    how, and clears ``needs_support``. Raises BillingError when the order is
    not flagged or the reason is empty.
    """
    reason = (reason or "").strip()
    if not reason:
        raise services.BillingError(_("A reason is required."))
    order = Order.objects.select_for_update().get(pk=order.pk)
    if not order.needs_support:
        raise services.BillingError(
            _("Order %(order)s is not flagged for support.") % {"order": order.out_trade_no}
        )
    note_before = order.support_note
    order.needs_support = False
    order.support_note = "\n".join(
        line
        for line in (
            note_before,
            _("Handled by %(actor)s: %(reason)s") % {"actor": actor, "reason": reason},
        )
        if line
    )
    order.save(update_fields=["needs_support", "support_note"])
    from aladdin.accounts.models import StaffAction

    StaffAction.objects.create(
        actor=actor,
        target_user_id=order.user_id,
        action="order_support_resolved",
        reason=reason,
        subject_type=order._meta.label_lower,
        subject_id=str(order.pk),
        subject_repr=order.out_trade_no,
        before={"needs_support": True, "support_note": note_before},
        after={"needs_support": False, "support_note": order.support_note},
        details={"order": order.out_trade_no},
    )
    return order
