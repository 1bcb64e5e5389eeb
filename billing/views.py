"""Billing pages of the dashboard: plans, checkout, orders, invoices, ledger (SPEC §3, §5).

Thin views (DESIGN rule 2): every page shows only the logged-in user's data;
an order is fetched with ``user=request.user`` so another user's order
number is a 404 on every page. Orders are created, paid and invoiced by
billing.payments; no page here fulfils an order: only a verified Alipay
notification (or a trade query) does.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from aladdin.lib import charts
from aladdin.lib.pagination import CountingPaginator
from aladdin.lib.timeutil import day_start
from aladdin.lib.units import format_micro

from . import alipay, payments, sandbox, selectors
from .choices import LedgerKind
from .forms import CheckoutForm, InvoiceRequestForm
from .models import Invoice, Order
from .services import BillingError

LEDGER_PAGE_SIZE = 50
ORDERS_PAGE_SIZE = 50
USAGE_DAYS = 30
# The return page and the QR page look again this often while an order is pending.
STATUS_REFRESH_SECONDS = 3


# --- pages ------------------------------------------------------------------------


@login_required
def plans(request):
    """The billing page: balance, current and queued periods, and the plans for sale."""
    now = timezone.now()
    # The offers, the current period and the balance card all start from the
    # subscription in force: read once here for the three.
    current = selectors.current_subscription(request.user, now)
    return render(
        request,
        "billing/plans.html",
        {
            "offers": selectors.plan_offers(request.user, at=now, current=current),
            "current": current,
            "balance": selectors.balance_for(request.user, now, current=current),
            "channels": Order.Channel.choices,
            "checkout_key": uuid.uuid4(),
            "sandbox": settings.ALIPAY_SANDBOX,
        },
    )


class _DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        # <input type="date"> sends and expects ISO dates whatever the language.
        super().__init__(format="%Y-%m-%d")


class LedgerFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"),
        required=False,
        choices=[("", gettext_lazy("All kinds")), *LedgerKind.choices],
    )
    since = forms.DateField(label=gettext_lazy("From"), required=False, widget=_DateInput())
    until = forms.DateField(
        label=gettext_lazy("To (inclusive)"), required=False, widget=_DateInput()
    )

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", _("The end date is before the start date."))
        return data


@login_required
def ledger(request):
    """The user's ledger, newest first, filtered by a GET form, 50 entries a page."""
    form = LedgerFilterForm(request.GET or None)
    filters: dict = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "kind": data["kind"] or None,
            "since": day_start(data["since"]) if data["since"] else None,
            # Inclusive end date: everything before the next day starts.
            "until": day_start(data["until"] + timedelta(days=1)) if data["until"] else None,
        }
    entries = selectors.ledger_entries(request.user, **filters)
    page = CountingPaginator(entries, LEDGER_PAGE_SIZE).get_page(request.GET.get("page"))
    usage = selectors.daily_usage_micro(request.user, days=USAGE_DAYS)
    return render(
        request,
        "billing/ledger.html",
        {
            "form": form,
            "page": page,
            "filtered": any(v is not None for v in filters.values()),
            "usage": usage,
            "usage_total_micro": sum(micro for _day, micro in usage),
            "usage_chart": charts.daily_chart(
                [day.isoformat() for day, _micro in usage],
                [charts.Series(_("DCU used"), [format_micro(micro) for _day, micro in usage])],
            ),
            "usage_days": USAGE_DAYS,
        },
    )


# --- checkout and payment ----------------------------------------------------------


def _own_order(request, out_trade_no: str) -> Order:
    # Ownership in the lookup itself: another user's order number is a 404.
    return get_object_or_404(
        Order.objects.select_related("plan"), out_trade_no=out_trade_no, user=request.user
    )


def _payment_target(request, order: Order) -> tuple[str, str]:
    """Where ``order`` is paid, with the absolute URLs Alipay (or the sandbox) calls back."""
    absolute = request.build_absolute_uri
    return payments.order_payment_target(
        order,
        return_url=absolute(reverse("billing:order_return", args=[order.out_trade_no])),
        notify_url=absolute(reverse("billing:alipay_notify")),
        sandbox_url=absolute(reverse("billing:sandbox_pay", args=[order.out_trade_no])),
    )


def _payable(order: Order, now=None) -> bool:
    return order.state == Order.State.PENDING and order.expires_at > (now or timezone.now())


@login_required
@require_POST
def checkout(request):
    """Buy a plan or a pack: create the order, then send the user to pay it."""
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a plan and how to pay."))
        return redirect("billing:plans")
    plan = selectors.plans_for_sale().filter(code=form.cleaned_data["plan"]).first()
    if plan is None:
        messages.error(request, _("This product is not for sale."))
        return redirect("billing:plans")
    channel = form.cleaned_data["channel"]
    key = form.cleaned_data["key"]
    try:
        order = payments.order_create(
            user=request.user,
            plan=plan,
            channel=channel,
            client_key=f"web:{key}:{plan.code}:{channel}" if key else "",
        )
    except BillingError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("billing:plans")
    if not _payable(order):
        # The same page submitted again long after: that order is over.
        messages.error(request, _("This order can no longer be paid. Please buy again."))
        return redirect("billing:plans")
    return _go_pay(request, order)


def _payment_unavailable(request, exc):
    messages.error(
        request,
        _("Alipay cannot take the payment right now (%(error)s). Try again shortly.")
        % {"error": exc},
    )
    return redirect("billing:orders")


def _go_pay(request, order: Order):
    try:
        kind, target = _payment_target(request, order)
    except alipay.AlipayError as exc:
        return _payment_unavailable(request, exc)
    if kind == "redirect":
        return redirect(target)
    # A QR code: drawn on our own page (a GET, so reloading it is harmless).
    return redirect("billing:order_pay", out_trade_no=order.out_trade_no)


def _qr_svg(content: str) -> str:
    # The SVG is the library's drawing of the code's modules (rects in one
    # path); the content only becomes geometry, never markup.
    svg = qrcode.make(content, image_factory=qrcode.image.svg.SvgPathImage).to_string()
    return mark_safe(svg.decode())


@login_required
@require_GET
def order_pay(request, out_trade_no: str):
    """Pay a pending order: the cashier for page orders, the QR code page for QR orders.

    Also "Pay again" from the orders page. Once the order is no longer
    pending (paid, closed) it sends the user to the return page instead, so
    the QR page, which reloads itself, turns into the result by itself.
    """
    order = _own_order(request, out_trade_no)
    if order.state != Order.State.PENDING:
        return redirect("billing:order_return", out_trade_no=order.out_trade_no)
    if not _payable(order):
        messages.error(request, _("The time to pay this order is over. Please buy again."))
        return redirect("billing:order_return", out_trade_no=order.out_trade_no)
    if order.channel != Order.Channel.QR:
        return _go_pay(request, order)
    try:
        kind, target = _payment_target(request, order)
    except alipay.AlipayError as exc:
        return _payment_unavailable(request, exc)
    if kind == "redirect":
        return redirect(target)
    return render(
        request,
        "billing/order_pay.html",
        {
            "order": order,
            "qr_svg": _qr_svg(target),
            "sandbox": settings.ALIPAY_SANDBOX,
            "sandbox_url": target if settings.ALIPAY_SANDBOX else "",
            "minutes_left": max(int((order.expires_at - timezone.now()).total_seconds() // 60), 0),
            "refresh_seconds": STATUS_REFRESH_SECONDS,
            "item_name": Invoice.ITEM_NAME,
        },
    )


@login_required
@require_GET
def order_return(request, out_trade_no: str):
    """Where Alipay sends the user back: the order's status, read from the database.

    It never fulfils anything (the query string Alipay appends is ignored):
    only the verified notification or a trade query does. While the order
    is pending the page reloads itself every few seconds.
    """
    order = _own_order(request, out_trade_no)
    context = {
        "order": order,
        "item_name": Invoice.ITEM_NAME,
        "refresh_seconds": STATUS_REFRESH_SECONDS,
        "pending": order.state == Order.State.PENDING,
        "payable": _payable(order),
        "received": order.paid_at is not None,
        "subscription": order.subscription if order.subscription_id else None,
        "grant": order.grant if order.grant_id else None,
    }
    return render(request, "billing/order_return.html", context)


@login_required
@require_GET
def orders(request):
    """The user's orders, newest first, with Pay again and the invoice of each."""
    now = timezone.now()
    # A plain read of the user's own rows; selectors.py is the billing core's.
    queryset = (
        Order.objects.filter(user=request.user)
        .select_related("plan", "invoice")
        .order_by("-created_at", "-pk")
    )
    page = CountingPaginator(queryset, ORDERS_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = []
    for order in page:
        invoice = getattr(order, "invoice", None)
        rows.append(
            {
                "order": order,
                "payable": _payable(order, now),
                "invoice": invoice,
                "invoiceable": invoice is None and selectors.order_invoiceable(order),
            }
        )
    return render(
        request,
        "billing/orders.html",
        {"page": page, "rows": rows, "item_name": Invoice.ITEM_NAME},
    )


# --- invoices ------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def invoice_request(request, out_trade_no: str):
    """Ask for the invoice of a paid order; once asked, the page shows the request."""
    order = _own_order(request, out_trade_no)
    invoice = Invoice.objects.filter(order=order).first()
    invoiceable = selectors.order_invoiceable(order)
    form = None
    if invoice is None and invoiceable:
        form = InvoiceRequestForm(
            request.POST or None,
            initial={"email": request.user.education_email},
        )
        if request.method == "POST" and form.is_valid():
            try:
                payments.invoice_request(order=order, **form.cleaned_data)
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    # Per-field rules (title, tax number) shown at their fields.
                    form.add_error(None, exc)
                else:
                    messages.error(request, " ".join(exc.messages))
                    return redirect("billing:orders")
            else:
                messages.success(
                    request,
                    _("Invoice requested. You can download it here once it is issued."),
                )
                return redirect("billing:orders")
    elif request.method == "POST":
        messages.error(
            request,
            _("An invoice was already requested for this order.")
            if invoice
            else _("Invoices are issued for paid orders only."),
        )
        return redirect("billing:orders")
    return render(
        request,
        "billing/invoice_request.html",
        {
            "order": order,
            "invoice": invoice,
            "form": form,
            "invoiceable": invoiceable,
            "item_name": Invoice.ITEM_NAME,
            "amount_fen": order.price_fen - order.refunded_fen,
        },
    )


@login_required
@require_GET
def invoice_download(request, out_trade_no: str):
    """The issued invoice's PDF, to the order's owner only."""
    order = _own_order(request, out_trade_no)
    invoice = Invoice.objects.filter(order=order, state=Invoice.State.ISSUED).first()
    if invoice is None or not invoice.pdf:
        raise Http404
    return FileResponse(
        invoice.pdf.open("rb"),
        as_attachment=True,
        filename=f"invoice-{order.out_trade_no}.pdf",
        content_type="application/pdf",
    )


# --- Alipay notifications and the local payment sandbox ---------------------------


@csrf_exempt
@require_POST
def alipay_notify(request):
    """Alipay's asynchronous notification. Replies exactly "success" once handled."""
    params = {k: v for k, v in request.POST.items()}
    handled = payments.payment_handle_notification(params)
    return HttpResponse("success" if handled else "failure", content_type="text/plain")


def _sandbox_only():
    if not settings.ALIPAY_SANDBOX:
        raise Http404


@login_required
def sandbox_pay(request, out_trade_no: str):
    """The local payment sandbox (development only): pay or abandon an order.

    Paying signs a notification with the sandbox's "Alipay" key and posts it
    over HTTP to the real notify endpoint, so the real verification runs.
    """
    _sandbox_only()
    order = get_object_or_404(Order, out_trade_no=out_trade_no, user=request.user)
    result = None
    if request.method == "POST" and order.state == Order.State.PENDING:
        params = sandbox.notification_for(order)
        try:
            result = sandbox.post_notification(
                request.build_absolute_uri(reverse("billing:alipay_notify")), params
            )
        except OSError as exc:
            # The notify endpoint unreachable (a proxy, a wrong Host): say so on
            # the page rather than with a server error.
            result = str(exc)
        if result == "success":
            return redirect("billing:order_return", out_trade_no=order.out_trade_no)
    return render(
        request,
        "billing/sandbox_pay.html",
        {"order": order, "result": result, "item_name": Invoice.ITEM_NAME},
    )
