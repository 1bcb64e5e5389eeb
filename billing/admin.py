"""Back office of billing: plans, read-only balances, vouchers, the arrears queue,
orders with refunds, payment notifications and invoice requests.

Balances change only through services (DESIGN rule 5): the ledger, grants and
subscriptions are read-only here; staff act through the "grant voucher" action
(services.voucher_grant), the arrears review form
(services.arrears_review_decide), the "refund" action on an order
(payments.refund_create + refund_execute) and the invoice form
(payments.invoice_issue), each recorded as a StaffAction.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, IntegerField, OuterRef, Subquery, Sum, Value, When
from django.template.response import TemplateResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from aladdin.backoffice.admin_audit import AuditedModelAdmin
from aladdin.backoffice.columns import dcu_column, reason_column, yuan_column
from aladdin.lib.units import FEN_PER_YUAN, dcu_to_micro, fen_to_yuan_str, format_micro

from . import payments, selectors, services
from .models import (
    Account,
    ArrearsReview,
    Grant,
    Invoice,
    LedgerEntry,
    Order,
    PaymentNotification,
    Plan,
    Refund,
    Subscription,
)
from .templatetags.billing import signed_dcu


class PlanForm(forms.ModelForm):
    """A plan with its compute in DCU and its prices in yuan, as the dashboard shows them.

    The model keeps integers (µDCU, fen; DESIGN rule 5); staff never type those.
    """

    dcu = forms.DecimalField(
        label=_("Compute per period (DCU)"),
        min_value=Decimal(0),
        max_digits=15,
        decimal_places=6,
        help_text=_("Up to six decimals, e.g. 300 or 0.5."),
    )
    price_yuan = forms.DecimalField(
        label=_("Price (yuan)"), min_value=Decimal(0), max_digits=12, decimal_places=2
    )
    education_price_yuan = forms.DecimalField(
        label=_("Education price (yuan)"), min_value=Decimal(0), max_digits=12, decimal_places=2
    )

    class Meta:
        model = Plan
        # The integer columns (dcu_micro, price_fen, education_price_fen) are
        # set in clean() from the DCU and yuan fields above.
        fields = (
            "code",
            "name",
            "kind",
            "tier",
            "gpu_parallelism",
            "free_storage_gib",
            "max_storage_gib",
            "period_days",
            "is_active",
            "sort_order",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plan = self.instance
        # Decimals, not strings: has_changed() compares the initial value with
        # the cleaned Decimal, and a string never equals it (every save would
        # record every field as changed in the audit log).
        self.initial.setdefault("dcu", Decimal(format_micro(plan.dcu_micro or 0)))
        self.initial.setdefault("price_yuan", Decimal(fen_to_yuan_str(plan.price_fen or 0)))
        self.initial.setdefault(
            "education_price_yuan", Decimal(fen_to_yuan_str(plan.education_price_fen or 0))
        )

    def clean(self):
        cleaned = super().clean()
        # construct_instance() copies only the model's own form fields: set
        # the integer columns here, before the model's validation runs.
        if cleaned.get("dcu") is not None:
            self.instance.dcu_micro = dcu_to_micro(cleaned["dcu"])
        if cleaned.get("price_yuan") is not None:
            self.instance.price_fen = int(cleaned["price_yuan"] * FEN_PER_YUAN)
        if cleaned.get("education_price_yuan") is not None:
            self.instance.education_price_fen = int(cleaned["education_price_yuan"] * FEN_PER_YUAN)
        return cleaned


@admin.register(Plan)
class PlanAdmin(AuditedModelAdmin):
    """Plans and prices are data that staff edit (SPEC §3.1); each edit asks why (audit log)."""

    audit_action = "plan"

    form = PlanForm
    list_display = (
        "code",
        "name",
        "kind",
        "tier",
        "dcu",
        "gpu_parallelism",
        "price_yuan",
        "education_price_yuan",
        "is_active",
        "sort_order",
    )
    fields = (
        "code",
        "name",
        "kind",
        "tier",
        "dcu",
        "gpu_parallelism",
        "free_storage_gib",
        "max_storage_gib",
        "price_yuan",
        "education_price_yuan",
        "period_days",
        "is_active",
        "sort_order",
    )
    list_filter = ("kind", "is_active")
    search_fields = ("code", "name")
    ordering = ("sort_order", "pk")

    dcu = dcu_column("dcu_micro", _("Compute per period (DCU)"))

    price_yuan = yuan_column("price_fen", _("Price (yuan)"))

    education_price_yuan = yuan_column("education_price_fen", _("Education price (yuan)"))


def _support_queue_filter(label, rows):
    """A list filter ``?queue=open`` showing exactly one of the back office's queues.

    ``rows(queryset)`` narrows a queryset to the queue; aladdin/backoffice/queues.py
    counts the same rows and links here.
    """

    class SupportQueueFilter(admin.SimpleListFilter):
        title = _("support queue")
        parameter_name = "queue"

        def lookups(self, request, model_admin):
            return [("open", label)]

        def queryset(self, request, queryset):
            return rows(queryset) if self.value() == "open" else queryset

    return SupportQueueFilter


class _ViewOnlyAdmin(admin.ModelAdmin):
    # Balances change only through services, with a ledger entry under the
    # account lock (DESIGN rule 5); editing them here would bypass both.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _PhoneSearchMixin:
    # Staff type numbers as students do (13800138000); they are stored as +86….
    def get_search_results(self, request, queryset, search_term):
        from aladdin.accounts.phone import normalize_phone

        try:
            search_term = normalize_phone(search_term)
        except Exception:  # noqa: BLE001 - not a phone: search as typed
            pass
        return super().get_search_results(request, queryset, search_term)


# --- grant voucher (an action with a confirmation page) ---------------------------


class VoucherForm(forms.Form):
    amount_dcu = forms.DecimalField(
        label=_("Amount (DCU)"),
        min_value=Decimal("0.000001"),
        max_digits=15,
        decimal_places=6,
        help_text=_("Up to six decimals, e.g. 10 or 0.5."),
    )
    reason = forms.CharField(
        label=_("Reason (shown to the user in the ledger, recorded with your name)"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )
    # One key per confirmation page: submitting the same page twice (a double
    # click, a resent POST) grants each user one voucher, not two.
    voucher_key = forms.UUIDField(widget=forms.HiddenInput)

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(gettext("A reason is required."))
        return reason


def _users_of(queryset) -> list:
    """The users behind a queryset of billing Accounts (or of Users themselves)."""
    if queryset.model is Account:
        return [a.user for a in queryset.select_related("user").order_by("user_id")]
    return list(queryset.order_by("pk"))


@admin.action(description=_("Grant voucher"), permissions=["grant_voucher"])
def grant_voucher(modeladmin, request, queryset):
    """Give the selected users compute (SPEC §8); it counts as an extension pack.

    Two steps, like "ban for mining": the action shows a page asking the amount
    and the reason; submitting it calls services.voucher_grant for each user.
    """
    users = _users_of(queryset)
    if request.POST.get("confirm_voucher"):
        form = VoucherForm(request.POST)
        if form.is_valid():
            amount_micro = dcu_to_micro(form.cleaned_data["amount_dcu"])
            key = form.cleaned_data["voucher_key"]
            try:
                for user in users:
                    services.voucher_grant(
                        user=user,
                        amount_micro=amount_micro,
                        reason=form.cleaned_data["reason"],
                        key=f"admin:{key}:{user.pk}",
                        actor=request.user,
                    )
            except services.BillingError as exc:
                modeladmin.message_user(request, " ".join(exc.messages), messages.ERROR)
                return None
            modeladmin.message_user(
                request,
                gettext("Voucher of %(amount)s DCU granted to %(n)d user(s).")
                % {"amount": format_micro(amount_micro), "n": len(users)},
                messages.SUCCESS,
            )
            return None
    else:
        form = VoucherForm(initial={"voucher_key": uuid.uuid4()})
    return TemplateResponse(
        request,
        "billing/admin_voucher_confirm.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": _("Grant voucher"),
            "users": users,
            "objects": queryset,
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
        },
    )


@admin.register(Account)
class AccountAdmin(_PhoneSearchMixin, _ViewOnlyAdmin):
    list_display = ("user", "debt_dcu", "next_event_at")
    fields = readonly_fields = ("user", "debt_dcu", "next_event_at")
    search_fields = ("user__phone", "user__username")
    actions = [grant_voucher]

    debt_dcu = dcu_column("debt_micro", _("Arrears (DCU)"))

    def has_grant_voucher_permission(self, request):
        # A voucher is a new grant: staff who may add grants may give vouchers.
        return request.user.has_perm("billing.add_grant")


# --- arrears review queue ------------------------------------------------------------


class ArrearsDecisionForm(forms.ModelForm):
    decision = forms.ChoiceField(
        label=_("Decision"),
        # No default: staff choose explicitly; "pending" is not a decision.
        choices=[("", "---------")]
        + [c for c in ArrearsReview.Decision.choices if c[0] != ArrearsReview.Decision.PENDING],
    )
    note = forms.CharField(
        label=_("Note (why; recorded with your name)"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )

    class Meta:
        model = ArrearsReview
        fields = ("decision", "note")

    def clean_note(self):
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError(gettext("A note is required."))
        return note


@admin.register(ArrearsReview)
class ArrearsReviewAdmin(_PhoneSearchMixin, admin.ModelAdmin):
    """Accounts whose arrears reached 10 DCU; staff decide clean, hold or contact (SPEC §3.5)."""

    form = ArrearsDecisionForm
    list_display = (
        "user",
        "opened_at",
        "debt_at_open",
        "current_debt",
        "decision",
        "decided_by",
        "decided_at",
    )
    list_filter = (
        _support_queue_filter(
            _("Pending decision"),
            lambda qs: qs.filter(decision=ArrearsReview.Decision.PENDING),
        ),
        "decision",
    )
    search_fields = ("user__phone", "user__username")
    list_select_related = ("user", "decided_by")
    fields = (
        "user",
        "opened_at",
        "debt_at_open",
        "current_debt",
        "decision",
        "note",
        "decided_by",
        "decided_at",
    )
    readonly_fields = (
        "user",
        "opened_at",
        "debt_at_open",
        "current_debt",
        "decided_by",
        "decided_at",
    )

    def get_queryset(self, request):
        debt = Account.objects.filter(user_id=OuterRef("user_id")).values("debt_micro")[:1]
        return super().get_queryset(request).annotate(current_debt_micro=Subquery(debt))

    def get_ordering(self, request):
        # The queue: undecided reviews first, the oldest first among them.
        pending_first = Case(
            When(decision=ArrearsReview.Decision.PENDING, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return (pending_first.asc(), "opened_at", "pk")

    debt_at_open = dcu_column("debt_micro_at_open", _("Arrears when opened (DCU)"))

    @admin.display(description=_("Arrears now (DCU)"), ordering="current_debt_micro")
    def current_debt(self, obj):
        micro = getattr(obj, "current_debt_micro", None)
        if micro is None:
            micro = (
                Account.objects.filter(user_id=obj.user_id)
                .values_list("debt_micro", flat=True)
                .first()
            )
        return format_micro(micro or 0)

    def save_model(self, request, obj, form, change):
        # Not obj.save(): the decision goes through the service, which records
        # who decided, when and why (a StaffAction) under a row lock.
        services.arrears_review_decide(
            review=obj,
            actor=request.user,
            decision=form.cleaned_data["decision"],
            note=form.cleaned_data["note"],
        )
        obj.refresh_from_db()

    def has_add_permission(self, request):
        # Reviews are opened by charges when arrears reach 10 DCU, never by hand.
        return False

    def has_delete_permission(self, request, obj=None):
        # The queue is the record of staff decisions.
        return False


@admin.register(Subscription)
class SubscriptionAdmin(_ViewOnlyAdmin):
    list_display = ("user", "plan", "state", "starts_at", "ends_at", "source")
    list_filter = ("state", "plan")
    search_fields = ("user__phone", "source")


@admin.register(Grant)
class GrantAdmin(_ViewOnlyAdmin):
    list_display = (
        "user",
        "grant_class",
        "tier",
        "granted_dcu",
        "remaining_dcu",
        "state",
        "active_until",
        "carry_until",
        "may_carry",
    )
    list_filter = ("grant_class", "state")
    search_fields = ("user__phone",)
    list_select_related = ("user",)
    fields = readonly_fields = (
        "user",
        "subscription",
        "grant_class",
        "tier",
        "granted_dcu",
        "remaining_dcu",
        "state",
        "active_until",
        "carry_until",
        "may_carry",
        "parent",
        "created_at",
    )

    granted_dcu = dcu_column("granted_micro", _("Granted (DCU)"))

    remaining_dcu = dcu_column("remaining_micro", _("Remaining (DCU)"))


@admin.register(LedgerEntry)
class LedgerEntryAdmin(_ViewOnlyAdmin):
    """The ledger is append-only: read-only here too."""

    list_display = ("created_at", "user", "kind", "delta_dcu", "reason_shown", "grant")
    # Vouchers are ledger entries of kind "voucher": the filter (and the home
    # page's "Vouchers granted" link, ?kind__exact=voucher) lists them.
    list_filter = ("kind",)
    search_fields = ("user__phone", "idempotency_key", "reason")
    list_select_related = ("user", "grant")
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "created_at",
        "user",
        "kind",
        "delta_dcu",
        "reason_shown",
        "grant",
        "idempotency_key",
    )
    reason_shown = reason_column

    @admin.display(description=_("Change (DCU)"), ordering="delta_micro")
    def delta_dcu(self, obj):
        return signed_dcu(obj.delta_micro)


# --- orders and refunds (SPEC §5) -----------------------------------------------------


def _refundable_fen(order: Order) -> int:
    """What is left to refund: paid, less refunded and less refunds still in progress."""
    pending = (
        order.refunds.filter(state=Refund.State.REQUESTED).aggregate(s=Sum("amount_fen"))["s"] or 0
    )
    return max(order.price_fen - order.refunded_fen - pending, 0)


class RefundForm(forms.Form):
    amount_yuan = forms.DecimalField(
        label=_("Amount (yuan)"),
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        help_text=_(
            "At most what is left to refund; the unspent share of the compute bought is taken back."
        ),
    )
    reason = forms.CharField(
        label=_("Reason (recorded with your name)"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )
    # One token per confirmation page, passed to the refund service as its
    # request key: a double click or a resent POST of the page refunds once.
    refund_token = forms.UUIDField(widget=forms.HiddenInput)

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(gettext("A reason is required."))
        return reason


@admin.action(description=_("Refund"), permissions=["refund"])
def refund_order(modeladmin, request, queryset):
    """Refund all or part of one paid order: a page asks the amount and the reason."""
    orders = list(queryset.select_related("plan", "user")[:2])
    if len(orders) != 1:
        modeladmin.message_user(
            request, gettext("Choose exactly one order to refund."), messages.ERROR
        )
        return None
    order = orders[0]
    if request.POST.get("confirm_refund"):
        form = RefundForm(request.POST)
        if form.is_valid():
            try:
                refund = payments.order_refund(
                    order=order,
                    amount_fen=int(form.cleaned_data["amount_yuan"] * FEN_PER_YUAN),
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                    request_key=str(form.cleaned_data["refund_token"]),
                )
            except payments.RefundAlreadyRequested as exc:
                modeladmin.message_user(request, " ".join(exc.messages), messages.WARNING)
                return None
            except services.BillingError as exc:
                modeladmin.message_user(request, " ".join(exc.messages), messages.ERROR)
                return None
            modeladmin.message_user(
                request,
                gettext(
                    "Refunded %(amount)s yuan of order %(order)s; %(dcu)s DCU of unspent compute taken back."
                )
                % {
                    "amount": fen_to_yuan_str(refund.amount_fen),
                    "order": order.out_trade_no,
                    "dcu": format_micro(refund.reversed_micro),
                },
                messages.SUCCESS,
            )
            return None
    else:
        form = RefundForm(
            initial={
                "amount_yuan": fen_to_yuan_str(_refundable_fen(order)),
                "refund_token": uuid.uuid4(),
            }
        )
    return TemplateResponse(
        request,
        "billing/admin_refund_confirm.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": _("Refund order %(order)s") % {"order": order.out_trade_no},
            "order": order,
            "refundable_fen": _refundable_fen(order),
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
        },
    )


class SupportResolveForm(forms.Form):
    reason = forms.CharField(
        label=_("What was done (recorded with your name)"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(gettext("A reason is required."))
        return reason


@admin.action(description=_("Mark handled (take off the support queue)"), permissions=["refund"])
def resolve_support(modeladmin, request, queryset):
    """Payments flagged for support: once refunded or fulfilled by hand, say so (with what was done)."""
    orders = list(queryset.filter(needs_support=True).select_related("user", "plan"))
    if not orders:
        modeladmin.message_user(
            request, gettext("None of the selected orders is flagged for support."), messages.ERROR
        )
        return None
    if request.POST.get("confirm_resolve"):
        form = SupportResolveForm(request.POST)
        if form.is_valid():
            for order in orders:
                payments.order_support_resolve(
                    order=order, actor=request.user, reason=form.cleaned_data["reason"]
                )
            modeladmin.message_user(
                request,
                gettext("%(n)d order(s) taken off the support queue.") % {"n": len(orders)},
                messages.SUCCESS,
            )
            return None
    else:
        form = SupportResolveForm()
    return TemplateResponse(
        request,
        "billing/admin_support_resolve_confirm.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": _("Mark payments handled"),
            "orders": orders,
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
        },
    )


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RefundInline(_ReadOnlyInline):
    model = Refund
    fields = (
        "out_request_no",
        "amount_yuan",
        "state",
        "reason",
        "reversed_dcu",
        "created_by",
        "created_at",
        "error",
    )
    readonly_fields = fields

    amount_yuan = yuan_column("amount_fen", _("Amount (yuan)"), ordering=None)

    reversed_dcu = dcu_column("reversed_micro", _("Compute taken back (DCU)"), ordering=None)


class NotificationInline(_ReadOnlyInline):
    model = PaymentNotification
    fields = ("received_at", "source", "trade_status", "outcome", "detail")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(_PhoneSearchMixin, _ViewOnlyAdmin):
    """Orders are paid by Alipay and refunded by the "Refund" action, never edited."""

    list_display = (
        "out_trade_no",
        "user",
        "plan",
        "price_yuan",
        "state",
        "channel",
        "created_at",
        "paid_at",
        "refunded_yuan",
        "needs_support",
    )
    list_filter = (
        _support_queue_filter(_("Flagged for support"), selectors.orders_flagged),
        "state",
        "needs_support",
        "channel",
        "plan",
    )
    search_fields = ("out_trade_no", "trade_no", "user__phone", "user__username")
    list_select_related = ("user", "plan")
    date_hierarchy = "created_at"
    actions = [refund_order, resolve_support]
    inlines = [RefundInline, NotificationInline]
    fields = readonly_fields = (
        "out_trade_no",
        "user",
        "plan",
        "price_yuan",
        "education_price",
        "channel",
        "state",
        "trade_no",
        "created_at",
        "expires_at",
        "paid_at",
        "closed_at",
        "refunded_yuan",
        "subscription",
        "grant",
        "needs_support",
        "support_note",
    )

    price_yuan = yuan_column("price_fen", _("Price (yuan)"))

    refunded_yuan = yuan_column("refunded_fen", _("Refunded (yuan)"))

    def has_refund_permission(self, request):
        return request.user.has_perm("billing.add_refund")


@admin.action(description=_("Retry at Alipay"), permissions=["refund"])
def retry_refund(modeladmin, request, queryset):
    """Carry out refunds that Alipay refused or did not answer (same out_request_no)."""
    done = 0
    for refund in queryset.filter(state=Refund.State.REQUESTED).order_by("pk"):
        try:
            payments.refund_execute(refund_id=refund.pk)
        except services.BillingError as exc:
            modeladmin.message_user(
                request, f"{refund.out_request_no}: {' '.join(exc.messages)}", messages.ERROR
            )
        else:
            done += 1
    modeladmin.message_user(
        request, gettext("%(n)d refund(s) completed.") % {"n": done}, messages.INFO
    )


@admin.register(Refund)
class RefundAdmin(_PhoneSearchMixin, _ViewOnlyAdmin):
    """Refunds are made from an order ("Refund" action); a failed one can be retried."""

    list_display = (
        "out_request_no",
        "order",
        "amount_yuan",
        "state",
        "reversed_dcu",
        "created_by",
        "created_at",
        "completed_at",
        "error",
    )
    list_filter = (
        _support_queue_filter(_("Failed at Alipay"), selectors.refunds_failed),
        "state",
    )
    search_fields = ("out_request_no", "order__out_trade_no", "order__user__phone")
    list_select_related = ("order", "created_by")
    actions = [retry_refund]
    fields = readonly_fields = (
        "out_request_no",
        "order",
        "amount_yuan",
        "state",
        "reason",
        "reversed_dcu",
        "error",
        "created_by",
        "created_at",
        "completed_at",
    )

    amount_yuan = yuan_column("amount_fen", _("Amount (yuan)"))

    reversed_dcu = dcu_column("reversed_micro", _("Compute taken back (DCU)"))

    def has_refund_permission(self, request):
        return request.user.has_perm("billing.add_refund")


@admin.register(PaymentNotification)
class PaymentNotificationAdmin(_ViewOnlyAdmin):
    """Every Alipay notification and trade query result, for audit; flagged ones first."""

    list_display = ("received_at", "out_trade_no", "trade_status", "source", "outcome", "detail")
    list_filter = ("outcome", "source")
    search_fields = ("out_trade_no",)

    def get_ordering(self, request):
        # Flagged notifications (money for a closed order, a pack that could
        # not be granted) need support: they lead the list.
        flagged_first = Case(
            When(outcome=PaymentNotification.Outcome.FLAGGED, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return (flagged_first.asc(), "-received_at", "-pk")


# --- invoices --------------------------------------------------------------------------

INVOICE_PDF_MAX_BYTES = 10 * 1024 * 1024


class InvoiceIssueForm(forms.ModelForm):
    """Staff attach the issued invoice; saving calls payments.invoice_issue."""

    issued_pdf = forms.FileField(
        label=_("Issued invoice (PDF)"),
        help_text=_("Uploading it marks the request issued; the user can then download it."),
    )

    class Meta:
        model = Invoice
        fields = ()

    def clean_issued_pdf(self):
        upload = self.cleaned_data["issued_pdf"]
        if upload.size > INVOICE_PDF_MAX_BYTES:
            raise forms.ValidationError(gettext("The file is larger than 10 MB."))
        head = upload.read(5)
        upload.seek(0)
        if head != b"%PDF-":
            raise forms.ValidationError(gettext("This is not a PDF file."))
        return upload


@admin.register(Invoice)
class InvoiceAdmin(_PhoneSearchMixin, admin.ModelAdmin):
    """Invoice requests: staff issue the invoice elsewhere and upload the PDF here."""

    form = InvoiceIssueForm
    list_display = (
        "order",
        "user_phone",
        "title_type",
        "title",
        "tax_number",
        "amount_yuan",
        "state",
        "requested_at",
        "issued_at",
    )
    list_filter = (
        _support_queue_filter(
            _("Not issued yet"), lambda qs: qs.filter(state=Invoice.State.REQUESTED)
        ),
        "state",
        "title_type",
    )
    search_fields = ("order__out_trade_no", "title", "tax_number", "order__user__phone")
    list_select_related = ("order__user",)
    readonly_fields = (
        "order",
        "user_phone",
        "item_name",
        "amount_yuan",
        "title_type",
        "title",
        "tax_number",
        "email",
        "state",
        "requested_at",
        "pdf",
        "issued_at",
        "issued_by",
    )
    fields = (*readonly_fields, "issued_pdf")

    def get_ordering(self, request):
        # The queue: requests still to issue first, the oldest first among them.
        requested_first = Case(
            When(state=Invoice.State.REQUESTED, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return (requested_first.asc(), "requested_at", "pk")

    @admin.display(description=_("Phone"), ordering="order__user__phone")
    def user_phone(self, obj):
        return obj.order.user.phone

    amount_yuan = yuan_column("amount_fen", _("Amount (yuan)"))

    def save_model(self, request, obj, form, change):
        # Not obj.save(): the service stores the file, marks the request
        # issued and records who did it (a StaffAction) under a row lock.
        payments.invoice_issue(invoice=obj, pdf=form.cleaned_data["issued_pdf"], actor=request.user)
        obj.refresh_from_db()

    def has_add_permission(self, request):
        # Users request invoices from their orders page.
        return False

    def has_delete_permission(self, request, obj=None):
        return False
