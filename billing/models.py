"""Billing core: plans, subscriptions, compute grants and the append-only ledger.

Units (SPEC §2, DESIGN rule 5): compute in integer µDCU (1 DCU = 1,000,000 µDCU),
money in integer fen (0.01 yuan). No floats, no decimal columns.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .choices import GrantClass, GrantState, LedgerKind, PlanKind, SubscriptionState


class Plan(models.Model):
    """A product that can be bought: a 30-day subscription plan or an extension pack.

    Plans are data, not constants (SPEC §3.1): staff edit them in the admin and
    migration 0002 seeds them. ``tier`` orders subscription plans (an upgrade is
    a higher tier); extension packs have no tier.
    """

    code = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=PlanKind.choices, default=PlanKind.PLAN)
    tier = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text=_("0 free, 1 trial, 2 basic, 3 advanced; empty for extension packs."),
    )
    dcu_micro = models.BigIntegerField(
        default=0, help_text=_("Compute granted per period, in µDCU (1 DCU = 1,000,000 µDCU).")
    )
    gpu_parallelism = models.PositiveIntegerField(
        default=0, help_text=_("GPUs usable at once while this plan is the highest active.")
    )
    free_storage_gib = models.PositiveIntegerField(
        default=0, help_text=_("Storage included free of charge, in GiB.")
    )
    max_storage_gib = models.PositiveIntegerField(
        default=0, help_text=_("Largest storage allowance the user may expand to, in GiB.")
    )
    price_fen = models.BigIntegerField(default=0, help_text=_("Price in fen (0.01 yuan)."))
    education_price_fen = models.BigIntegerField(
        default=0, help_text=_("Price for verified education users, in fen (0.01 yuan).")
    )
    period_days = models.PositiveSmallIntegerField(default=30)
    is_active = models.BooleanField(default=True, help_text=_("Offered for sale."))
    sort_order = models.IntegerField(default=0)

    class Meta:
        ordering = ("sort_order", "pk")
        constraints = [
            models.CheckConstraint(condition=Q(dcu_micro__gte=0), name="plan_dcu_micro_gte_0"),
            models.CheckConstraint(condition=Q(price_fen__gte=0), name="plan_price_fen_gte_0"),
            models.CheckConstraint(
                condition=Q(education_price_fen__gte=0), name="plan_education_price_fen_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Account(models.Model):
    """A user's billing account: one per user, and the row every balance change locks.

    Services lock it with ``select_for_update()`` before touching the user's
    grants or ledger (DESIGN rule 5), so concurrent charges serialise here.
    ``debt_micro`` is the arrears not yet paid by a grant (SPEC §3.5).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="billing_account"
    )
    debt_micro = models.BigIntegerField(
        default=0, help_text=_("Arrears in µDCU (1 DCU = 1,000,000 µDCU); never negative.")
    )
    next_event_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text=_(
            "Earliest time a period starts or ends or a grant lapses; derived, kept so "
            "charges and the beat task skip period processing when nothing is due."
        ),
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(debt_micro__gte=0), name="account_debt_micro_gte_0"),
        ]

    def __str__(self) -> str:
        return f"Account of {self.user}"


class Subscription(models.Model):
    """One 30-day period of a plan for a user: queued, active or ended (SPEC §3.2)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    state = models.CharField(
        max_length=16, choices=SubscriptionState.choices, default=SubscriptionState.QUEUED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(
        max_length=200, blank=True, help_text=_("What created it, e.g. an order number.")
    )

    class Meta:
        ordering = ("starts_at", "pk")
        indexes = [models.Index(fields=("user", "state"), name="billing_sub_user_state")]
        constraints = [
            models.CheckConstraint(
                # An upgrade at the very instant a period starts ends it there.
                condition=Q(ends_at__gte=F("starts_at")),
                name="subscription_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} for {self.user} from {self.starts_at:%Y-%m-%d}"


class Grant(models.Model):
    """A quantity of compute a user may spend, with its own life cycle (SPEC §3.2–3.4).

    ``remaining_micro`` changes only together with a LedgerEntry, under a lock on
    the user's Account, and only through ``billing.services.ledger.write``. ``active_until`` is when active compute stops being
    spendable; ``carry_until`` is set while the grant is carried (inactive).
    ``may_carry`` is False once carry-over has been activated: it cannot carry again.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="grants"
    )
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="grants"
    )
    grant_class = models.CharField(max_length=16, choices=GrantClass.choices)
    tier = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text=_("Plan tier of a plan grant; empty for other classes.")
    )
    granted_micro = models.BigIntegerField(
        help_text=_("Compute granted, in µDCU (1 DCU = 1,000,000 µDCU).")
    )
    remaining_micro = models.BigIntegerField(
        help_text=_("Compute left, in µDCU (1 DCU = 1,000,000 µDCU).")
    )
    state = models.CharField(max_length=16, choices=GrantState.choices, default=GrantState.ACTIVE)
    active_until = models.DateTimeField()
    carry_until = models.DateTimeField(null=True, blank=True)
    may_carry = models.BooleanField(default=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="carried_into",
        help_text=_("The grant whose unused compute this carry-over holds."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("active_until", "pk")
        indexes = [models.Index(fields=("user", "state"), name="billing_grant_user_state")]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining_micro__gte=0) & Q(remaining_micro__lte=F("granted_micro")),
                name="grant_remaining_between_0_and_granted",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_grant_class_display()} #{self.pk} of {self.user}"


class LedgerQuerySet(models.QuerySet):
    def update(self, **kwargs):
        # Bulk updates would bypass LedgerEntry.save(); the ledger is append-only.
        raise TypeError("LedgerEntry rows are append-only and cannot be updated")


class LedgerEntry(models.Model):
    """One change of a user's compute, debt or vouchers: append-only (SPEC §3.5).

    ``delta_micro`` is signed (positive adds compute). ``idempotency_key`` is
    unique so a retried event inserts nothing twice (DESIGN rule 6).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    grant = models.ForeignKey(
        Grant, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    delta_micro = models.BigIntegerField(
        help_text=_("Signed change, in µDCU (1 DCU = 1,000,000 µDCU).")
    )
    kind = models.CharField(max_length=16, choices=LedgerKind.choices)
    reason = models.TextField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    # The time of the event, not of the insert: processing that catches up
    # after downtime records when a period really ended.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ("created_at", "pk")
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=("user", "created_at"), name="billing_ledger_user_time")]

    def __str__(self) -> str:
        return f"{self.kind} {self.delta_micro} µDCU for {self.user}"

    def save(self, *args, **kwargs):
        # The one exception to "no logic in save()": the ledger is the audit trail
        # of every balance, so an entry once written must never change. A mistake
        # is corrected by a new, compensating entry.
        if not self._state.adding:
            raise TypeError("LedgerEntry rows are append-only and cannot be updated")
        super().save(*args, **kwargs)


class ArrearsReview(models.Model):
    """Staff review of an account whose arrears reached 10 DCU (SPEC §3.5).

    The platform may clean the user's data; staff decide case by case and
    the decision is recorded here.
    """

    class Decision(models.TextChoices):
        PENDING = "pending", _("Pending")
        CLEAN = "clean", _("Clean the data")
        HOLD = "hold", _("Hold (keep the data)")
        CONTACT = "contact", _("Contact the user")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="arrears_reviews"
    )
    opened_at = models.DateTimeField(default=timezone.now)
    debt_micro_at_open = models.BigIntegerField(help_text=_("Arrears when opened, in µDCU."))
    decision = models.CharField(max_length=16, choices=Decision.choices, default=Decision.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ("-opened_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("user",),
                condition=Q(decision="pending"),
                name="one_pending_arrears_review_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"Arrears review of {self.user} ({self.decision})"


# --- orders, payments, refunds, invoices (SPEC §5) ----------------------------------


class Order(models.Model):
    """A purchase of a plan or an extension pack, paid through Alipay.

    Fulfilled exactly once: the subscription or pack is granted in the same
    transaction that records the payment (the order row is locked first).
    """

    class State(models.TextChoices):
        PENDING = "pending", _("Awaiting payment")
        PAID = "paid", _("Paid")
        CLOSED = "closed", _("Closed (not paid)")
        PARTLY_REFUNDED = "partly_refunded", _("Partly refunded")
        REFUNDED = "refunded", _("Refunded")

    class Channel(models.TextChoices):
        PAGE = "page", _("Alipay page")
        QR = "qr", _("Alipay QR code")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="orders")
    price_fen = models.BigIntegerField(help_text=_("Amount to pay, in fen (0.01 yuan)."))
    education_price = models.BooleanField(
        default=False, help_text=_("The education price applied when the order was made.")
    )
    out_trade_no = models.CharField(max_length=64, unique=True)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.PAGE)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    trade_no = models.CharField(max_length=64, blank=True, help_text=_("Alipay's trade number."))
    qr_code = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(help_text=_("Unpaid orders are closed at this time."))
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    refunded_fen = models.BigIntegerField(default=0, help_text=_("Refunded so far, in fen."))
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    grant = models.ForeignKey(
        Grant, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    client_key = models.CharField(
        max_length=100,
        blank=True,
        help_text=_("The API client's Idempotency-Key; a retried POST returns the same order."),
    )
    needs_support = models.BooleanField(
        default=False, help_text=_("Money arrived for a closed order: support must act.")
    )
    support_note = models.TextField(blank=True)

    class Meta:
        ordering = ("-created_at", "-pk")
        constraints = [
            models.UniqueConstraint(
                fields=("user", "client_key"),
                condition=~Q(client_key=""),
                name="order_unique_client_key_per_user",
            ),
            models.CheckConstraint(condition=Q(price_fen__gt=0), name="order_price_positive"),
            models.CheckConstraint(
                condition=Q(refunded_fen__gte=0) & Q(refunded_fen__lte=F("price_fen")),
                name="order_refund_within_price",
            ),
        ]

    def __str__(self) -> str:
        return self.out_trade_no


class PaymentNotification(models.Model):
    """Every Alipay notification received (verified or not), for audit and support."""

    class Outcome(models.TextChoices):
        FULFILLED = "fulfilled", _("Fulfilled the order")
        DUPLICATE = "duplicate", _("Already handled")
        IGNORED = "ignored", _("No action needed")
        FLAGGED = "flagged", _("Flagged for support")
        REJECTED = "rejected", _("Rejected")

    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    out_trade_no = models.CharField(max_length=64, blank=True, db_index=True)
    trade_status = models.CharField(max_length=32, blank=True)
    params = models.JSONField(default=dict)
    source = models.CharField(max_length=16, default="notify", help_text=_("notify or query"))
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-received_at", "-pk")

    def __str__(self) -> str:
        return f"{self.out_trade_no} {self.trade_status} {self.outcome}"


class Refund(models.Model):
    """A refund of all or part of an order, made by staff (SPEC §5)."""

    class State(models.TextChoices):
        REQUESTED = "requested", _("Requested")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    out_request_no = models.CharField(max_length=64, unique=True)
    amount_fen = models.BigIntegerField(help_text=_("Refunded amount, in fen."))
    reason = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.REQUESTED)
    reversed_micro = models.BigIntegerField(
        default=0, help_text=_("Unspent compute taken back, in µDCU.")
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    request_key = models.CharField(
        max_length=100,
        blank=True,
        help_text=_(
            "The requester's key (the back office's confirmation page): "
            "a request repeated with it refunds once."
        ),
    )

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="refund_amount_positive"),
            # DESIGN rule 6: the key is inserted with the refund, in its
            # transaction, so a double submit cannot make two refunds.
            models.UniqueConstraint(
                fields=("order", "request_key"),
                condition=~Q(request_key=""),
                name="refund_unique_request_key_per_order",
            ),
        ]

    def __str__(self) -> str:
        return self.out_request_no


class Invoice(models.Model):
    """An invoice request for a paid order, and the issued PDF (one per order)."""

    ITEM_NAME = "技术服务费"

    class TitleType(models.TextChoices):
        PERSONAL = "personal", _("Personal")
        COMPANY = "company", _("Company")

    class State(models.TextChoices):
        REQUESTED = "requested", _("Requested")
        ISSUED = "issued", _("Issued")

    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="invoice")
    title_type = models.CharField(max_length=16, choices=TitleType.choices)
    title = models.CharField(max_length=200)
    tax_number = models.CharField(max_length=30, blank=True)
    email = models.EmailField()
    item_name = models.CharField(max_length=50, default=ITEM_NAME)
    amount_fen = models.BigIntegerField(help_text=_("Invoiced amount, in fen."))
    state = models.CharField(max_length=16, choices=State.choices, default=State.REQUESTED)
    pdf = models.FileField(upload_to="invoices/%Y/%m/", blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    issued_at = models.DateTimeField(null=True, blank=True)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("-requested_at",)

    def __str__(self) -> str:
        return f"Invoice for {self.order}"
