"""Billing core: plans, subscriptions, compute grants and the append-only ledger.

Units (SPEC §2, DESIGN rule 5): compute in integer µDCU (1 DCU = 1,000,000 µDCU),
money in integer fen (0.01 yuan). No floats, no decimal columns.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aladdin.lib.said import SaidReason
from aladdin.lib.units import format_micro

from .choices import GrantClass, GrantState, LedgerKind, PlanKind, SubscriptionState


class Plan(models.Model):
    """A product that can be bought: a 30-day subscription plan or an extension pack.

    Plans are data, not constants (SPEC §3.1): staff edit them in the admin and
    migration 0002 seeds them. ``tier`` orders subscription plans (an upgrade is
    a higher tier); extension packs have no tier.
    """

    code = models.SlugField(unique=True, verbose_name=_("code"))
    name = models.CharField(max_length=100, verbose_name=_("name"))
    kind = models.CharField(
        max_length=16, choices=PlanKind.choices, default=PlanKind.PLAN, verbose_name=_("kind")
    )
    tier = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text=_("0 free, 1 trial, 2 basic, 3 advanced; empty for extension packs."),
        verbose_name=_("tier"),
    )
    dcu_micro = models.BigIntegerField(
        default=0,
        help_text=_("Compute granted per period, in µDCU (1 DCU = 1,000,000 µDCU)."),
        verbose_name=_("compute per period (µDCU)"),
    )
    gpu_parallelism = models.PositiveIntegerField(
        default=0,
        help_text=_("GPUs usable at once while this plan is the highest active."),
        verbose_name=_("GPU parallelism"),
    )
    free_storage_gib = models.PositiveIntegerField(
        default=0,
        help_text=_("Storage included free of charge, in GiB."),
        verbose_name=_("free storage (GiB)"),
    )
    max_storage_gib = models.PositiveIntegerField(
        default=0,
        help_text=_("Largest storage allowance the user may expand to, in GiB."),
        verbose_name=_("maximum storage (GiB)"),
    )
    price_fen = models.BigIntegerField(
        default=0, help_text=_("Price in fen (0.01 yuan)."), verbose_name=_("price (fen)")
    )
    education_price_fen = models.BigIntegerField(
        default=0,
        help_text=_("Price for verified education users, in fen (0.01 yuan)."),
        verbose_name=_("education price (fen)"),
    )
    period_days = models.PositiveSmallIntegerField(default=30, verbose_name=_("period (days)"))
    is_active = models.BooleanField(
        default=True, help_text=_("Offered for sale."), verbose_name=_("on sale")
    )
    sort_order = models.IntegerField(default=0, verbose_name=_("sort order"))

    class Meta:
        verbose_name = _("plan")
        verbose_name_plural = _("plans")
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
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="billing_account",
        verbose_name=_("user"),
    )
    debt_micro = models.BigIntegerField(
        default=0,
        help_text=_("Arrears in µDCU (1 DCU = 1,000,000 µDCU); never negative."),
        verbose_name=_("arrears (µDCU)"),
    )
    next_event_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text=_(
            "Earliest time a period starts or ends or a grant lapses; derived, kept so "
            "charges and the beat task skip period processing when nothing is due."
        ),
        verbose_name=_("next event at"),
    )

    class Meta:
        verbose_name = _("billing account")
        verbose_name_plural = _("billing accounts")
        constraints = [
            models.CheckConstraint(condition=Q(debt_micro__gte=0), name="account_debt_micro_gte_0"),
        ]

    def __str__(self) -> str:
        return f"Account of {self.user}"


class Subscription(models.Model):
    """One 30-day period of a plan for a user: queued, active or ended (SPEC §3.2)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="subscriptions",
        verbose_name=_("user"),
    )
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, related_name="subscriptions", verbose_name=_("plan")
    )
    starts_at = models.DateTimeField(verbose_name=_("starts at"))
    ends_at = models.DateTimeField(verbose_name=_("ends at"))
    state = models.CharField(
        max_length=16,
        choices=SubscriptionState.choices,
        default=SubscriptionState.QUEUED,
        verbose_name=_("state"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    source = models.CharField(
        max_length=200,
        blank=True,
        help_text=_("What created it, e.g. an order number."),
        verbose_name=_("source"),
    )

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
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
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="grants",
        verbose_name=_("user"),
    )
    subscription = models.ForeignKey(
        Subscription,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="grants",
        verbose_name=_("subscription"),
    )
    grant_class = models.CharField(
        max_length=16, choices=GrantClass.choices, verbose_name=_("class")
    )
    tier = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text=_("Plan tier of a plan grant; empty for other classes."),
        verbose_name=_("tier"),
    )
    granted_micro = models.BigIntegerField(
        help_text=_("Compute granted, in µDCU (1 DCU = 1,000,000 µDCU)."),
        verbose_name=_("granted (µDCU)"),
    )
    remaining_micro = models.BigIntegerField(
        help_text=_("Compute left, in µDCU (1 DCU = 1,000,000 µDCU)."),
        verbose_name=_("remaining (µDCU)"),
    )
    state = models.CharField(
        max_length=16,
        choices=GrantState.choices,
        default=GrantState.ACTIVE,
        verbose_name=_("state"),
    )
    active_until = models.DateTimeField(verbose_name=_("active until"))
    carry_until = models.DateTimeField(null=True, blank=True, verbose_name=_("carried until"))
    may_carry = models.BooleanField(default=True, verbose_name=_("may carry over"))
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="carried_into",
        help_text=_("The grant whose unused compute this carry-over holds."),
        verbose_name=_("carried from"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("compute grant")
        verbose_name_plural = _("compute grants")
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


class LedgerEntry(SaidReason):
    """One change of a user's compute, debt or vouchers: append-only (SPEC §3.5).

    ``delta_micro`` is signed (positive adds compute). ``idempotency_key`` is
    unique so a retried event inserts nothing twice (DESIGN rule 6).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="ledger_entries",
        verbose_name=_("user"),
    )
    grant = models.ForeignKey(
        Grant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_entries",
        verbose_name=_("grant"),
    )
    delta_micro = models.BigIntegerField(
        help_text=_("Signed change, in µDCU (1 DCU = 1,000,000 µDCU)."),
        verbose_name=_("change (µDCU)"),
    )
    kind = models.CharField(max_length=16, choices=LedgerKind.choices, verbose_name=_("kind"))
    reason = models.TextField(verbose_name=_("reason"))
    idempotency_key = models.CharField(
        max_length=200, unique=True, verbose_name=_("idempotency key")
    )
    # The time of the event, not of the insert: processing that catches up
    # after downtime records when a period really ended.
    created_at = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("time"))

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ("created_at", "pk")
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        indexes = [models.Index(fields=("user", "created_at"), name="billing_ledger_user_time")]

    def __str__(self) -> str:
        # DCU as the dashboard writes it: admin titles show this, never raw µDCU.
        return f"{self.kind} {format_micro(self.delta_micro)} DCU for {self.user}"

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
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="arrears_reviews",
        verbose_name=_("user"),
    )
    opened_at = models.DateTimeField(default=timezone.now, verbose_name=_("opened at"))
    debt_micro_at_open = models.BigIntegerField(
        help_text=_("Arrears when opened, in µDCU."), verbose_name=_("arrears when opened (µDCU)")
    )
    decision = models.CharField(
        max_length=16,
        choices=Decision.choices,
        default=Decision.PENDING,
        verbose_name=_("decision"),
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(null=True, blank=True, verbose_name=_("decided at"))
    note = models.TextField(blank=True, verbose_name=_("note"))

    class Meta:
        verbose_name = _("arrears review")
        verbose_name_plural = _("arrears reviews")
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
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="orders",
        verbose_name=_("user"),
    )
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, related_name="orders", verbose_name=_("plan")
    )
    price_fen = models.BigIntegerField(
        help_text=_("Amount to pay, in fen (0.01 yuan)."), verbose_name=_("price (fen)")
    )
    education_price = models.BooleanField(
        default=False,
        help_text=_("The education price applied when the order was made."),
        verbose_name=_("education price"),
    )
    out_trade_no = models.CharField(max_length=64, unique=True, verbose_name=_("order number"))
    channel = models.CharField(
        max_length=8, choices=Channel.choices, default=Channel.PAGE, verbose_name=_("channel")
    )
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, verbose_name=_("state")
    )
    trade_no = models.CharField(
        max_length=64,
        blank=True,
        help_text=_("Alipay's trade number."),
        verbose_name=_("Alipay trade number"),
    )
    qr_code = models.TextField(blank=True, verbose_name=_("QR code"))
    created_at = models.DateTimeField(
        default=timezone.now, db_index=True, verbose_name=_("created at")
    )
    expires_at = models.DateTimeField(
        help_text=_("Unpaid orders are closed at this time."), verbose_name=_("expires at")
    )
    paid_at = models.DateTimeField(null=True, blank=True, verbose_name=_("paid at"))
    closed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("closed at"))
    refunded_fen = models.BigIntegerField(
        default=0, help_text=_("Refunded so far, in fen."), verbose_name=_("refunded (fen)")
    )
    subscription = models.ForeignKey(
        Subscription,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("subscription"),
    )
    grant = models.ForeignKey(
        Grant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("grant"),
    )
    client_key = models.CharField(
        max_length=100,
        blank=True,
        help_text=_("The API client's Idempotency-Key; a retried POST returns the same order."),
        verbose_name=_("client key"),
    )
    needs_support = models.BooleanField(
        default=False,
        help_text=_("Money arrived for a closed order: support must act."),
        verbose_name=_("needs support"),
    )
    support_note = models.TextField(blank=True, verbose_name=_("support note"))

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
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
        Order,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notifications",
        verbose_name=_("order"),
    )
    out_trade_no = models.CharField(
        max_length=64, blank=True, db_index=True, verbose_name=_("order number")
    )
    trade_status = models.CharField(max_length=32, blank=True, verbose_name=_("trade status"))
    params = models.JSONField(default=dict, verbose_name=_("parameters"))
    source = models.CharField(
        max_length=16, default="notify", help_text=_("notify or query"), verbose_name=_("source")
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices, verbose_name=_("outcome"))
    detail = models.TextField(blank=True, verbose_name=_("detail"))
    received_at = models.DateTimeField(default=timezone.now, verbose_name=_("received at"))

    class Meta:
        verbose_name = _("payment notification")
        verbose_name_plural = _("payment notifications")
        ordering = ("-received_at", "-pk")

    def __str__(self) -> str:
        return f"{self.out_trade_no} {self.trade_status} {self.outcome}"


class Refund(models.Model):
    """A refund of all or part of an order, made by staff (SPEC §5)."""

    class State(models.TextChoices):
        REQUESTED = "requested", _("Requested")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("order")
    )
    out_request_no = models.CharField(max_length=64, unique=True, verbose_name=_("refund number"))
    amount_fen = models.BigIntegerField(
        help_text=_("Refunded amount, in fen."), verbose_name=_("amount (fen)")
    )
    reason = models.TextField(verbose_name=_("reason"))
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.REQUESTED, verbose_name=_("state")
    )
    reversed_micro = models.BigIntegerField(
        default=0,
        help_text=_("Unspent compute taken back, in µDCU."),
        verbose_name=_("compute taken back (µDCU)"),
    )
    error = models.TextField(blank=True, verbose_name=_("error"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))
    completed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("completed at"))
    request_key = models.CharField(
        max_length=100,
        blank=True,
        help_text=_(
            "The requester's key (the back office's confirmation page): "
            "a request repeated with it refunds once."
        ),
        verbose_name=_("request key"),
    )

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
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

    order = models.OneToOneField(
        Order, on_delete=models.PROTECT, related_name="invoice", verbose_name=_("order")
    )
    title_type = models.CharField(
        max_length=16, choices=TitleType.choices, verbose_name=_("title type")
    )
    title = models.CharField(max_length=200, verbose_name=_("title"))
    tax_number = models.CharField(max_length=30, blank=True, verbose_name=_("tax number"))
    email = models.EmailField(verbose_name=_("e-mail"))
    item_name = models.CharField(max_length=50, default=ITEM_NAME, verbose_name=_("item"))
    amount_fen = models.BigIntegerField(
        help_text=_("Invoiced amount, in fen."), verbose_name=_("amount (fen)")
    )
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.REQUESTED, verbose_name=_("state")
    )
    pdf = models.FileField(upload_to="invoices/%Y/%m/", blank=True, verbose_name=_("invoice PDF"))
    requested_at = models.DateTimeField(default=timezone.now, verbose_name=_("requested at"))
    issued_at = models.DateTimeField(null=True, blank=True, verbose_name=_("issued at"))
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("issued by"),
    )

    class Meta:
        verbose_name = _("invoice request")
        verbose_name_plural = _("invoice requests")
        ordering = ("-requested_at",)

    def __str__(self) -> str:
        return f"Invoice for {self.order}"


class Budget(models.Model):
    """A user's monthly compute budget (issue 20): alerts at 80 % and 100 %, optionally a hard stop.

    Spend is what the ledger charged in the calendar month (Asia/Shanghai):
    GPU time and storage, paid from compute or owed as arrears. With
    ``hard_stop`` a launch that would start while the month's spend has
    reached the budget is refused; what already runs is never stopped for it.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="budget",
        verbose_name=_("user"),
    )
    monthly_micro = models.BigIntegerField(
        verbose_name=_("monthly budget (µDCU)"),
        validators=[MinValueValidator(1)],
    )
    hard_stop = models.BooleanField(
        default=False, verbose_name=_("refuse new launches once it is spent")
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("budget")
        verbose_name_plural = _("budgets")

    def __str__(self) -> str:
        return f"{self.user} {self.monthly_micro}"


class BudgetAlert(models.Model):
    """One alert sent: a threshold (80 or 100 %) crossed in a month. Unique, so each is sent once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="budget_alerts",
        verbose_name=_("user"),
    )
    month = models.DateField(verbose_name=_("month"), help_text=_("Its first day."))
    threshold = models.PositiveSmallIntegerField(verbose_name=_("threshold (%)"))
    spent_micro = models.BigIntegerField(verbose_name=_("spent (µDCU)"))
    budget_micro = models.BigIntegerField(verbose_name=_("budget (µDCU)"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("budget alert")
        verbose_name_plural = _("budget alerts")
        constraints = [
            models.UniqueConstraint(fields=["user", "month", "threshold"], name="budget_alert_once")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.month:%Y-%m} {self.threshold}%"
