"""Billing REST API for the IDE plugin: balance, plans, ledger, and orders.

Every endpoint reads only ``request.user``'s data (DESIGN rule 2): an order
is looked up with ``user=request.user``, so another user's order id is a
404. Amounts are integers (µDCU, fen) with a DCU string beside them for
display.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aladdin.lib.api import ErrorSerializer
from aladdin.lib.api_schema import LIST_ERRORS, NOT_FOUND, error_responses
from aladdin.lib.serializers import (
    CachedFieldsModelSerializer,
    ChoiceLabelField,
    SaidReasonFields,
)
from aladdin.lib.timeutil import day_start, parse_as_of
from aladdin.lib.units import format_micro

from . import payments, selectors
from .choices import LedgerKind
from .models import LedgerEntry, Order

# --- serializers --------------------------------------------------------------------


class PlanSummarySerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    tier = serializers.IntegerField(help_text="0 free, 1 trial, 2 basic, 3 advanced.")
    gpu_parallelism = serializers.IntegerField()
    free_storage_gib = serializers.IntegerField()
    max_storage_gib = serializers.IntegerField()


class CarriedSerializer(serializers.Serializer):
    amount_micro = serializers.IntegerField(help_text="Carried compute, in µDCU.")
    amount_dcu = serializers.CharField(help_text='The same in DCU, e.g. "10".')
    carry_until = serializers.DateTimeField(help_text="When it expires unless reactivated.")


class QueuedSerializer(serializers.Serializer):
    plan = serializers.CharField(help_text="Plan code.")
    plan_name = serializers.CharField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()


class BalanceSerializer(serializers.Serializer):
    active_micro = serializers.IntegerField(help_text="Spendable compute, in µDCU.")
    active_dcu = serializers.CharField(help_text='The same in DCU, e.g. "56.6".')
    carried = CarriedSerializer(many=True, help_text="Carried-over (inactive) compute.")
    carried_micro = serializers.IntegerField(help_text="Sum of carried compute, in µDCU.")
    debt_micro = serializers.IntegerField(
        help_text="Arrears in µDCU; the next grant pays them first."
    )
    debt_dcu = serializers.CharField()
    plan = PlanSummarySerializer(help_text="The plan whose allowances apply now (free if none).")
    period_ends_at = serializers.DateTimeField(
        allow_null=True, help_text="End of the current period; null on the free tier."
    )
    queued = QueuedSerializer(many=True, help_text="Periods bought to start later, in order.")


class PlanEffectSerializer(serializers.Serializer):
    effect = serializers.ChoiceField(
        choices=["now", "queued", "pack"],
        help_text="now: starts (or upgrades) at once; queued: starts at starts_at; "
        "pack: an extension pack added to the current period.",
    )
    starts_at = serializers.DateTimeField(allow_null=True)
    allowed = serializers.BooleanField(
        help_text="False for an extension pack when no plan is active."
    )


class PlanOfferSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField(help_text="plan or extension.")
    tier = serializers.IntegerField(allow_null=True)
    dcu_micro = serializers.IntegerField(help_text="Compute granted, in µDCU.")
    dcu = serializers.CharField()
    gpu_parallelism = serializers.IntegerField()
    free_storage_gib = serializers.IntegerField()
    max_storage_gib = serializers.IntegerField()
    period_days = serializers.IntegerField()
    price_fen = serializers.IntegerField(help_text="Standard price, in fen (0.01 yuan).")
    education_price_fen = serializers.IntegerField(help_text="Education price, in fen.")
    your_price_fen = serializers.IntegerField(help_text="What this user pays, in fen.")
    effect = PlanEffectSerializer(help_text="What buying it now would do.")


class LedgerEntrySerializer(SaidReasonFields, CachedFieldsModelSerializer):
    delta_dcu = serializers.SerializerMethodField(help_text='Signed DCU, e.g. "+20", "-0.03".')
    kind_display = ChoiceLabelField(source="kind")

    class Meta:
        model = LedgerEntry
        fields = (
            "id",
            "created_at",
            "kind",
            "kind_display",
            "delta_micro",
            "delta_dcu",
            "reason",
            "reason_id",
            "reason_params",
        )

    def get_delta_dcu(self, entry) -> str:
        text = format_micro(entry.delta_micro)
        return f"+{text}" if entry.delta_micro > 0 else text


class LedgerQuerySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=LedgerKind.choices, required=False)
    since = serializers.CharField(required=False)
    until = serializers.CharField(required=False)

    @staticmethod
    def _parse(text: str, *, end: bool) -> datetime:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            # A date is a whole Asia/Shanghai day, at either end of the range.
            return day_start(day + timedelta(days=1)) if end else day_start(day)
        try:
            return parse_as_of(text)
        except ValueError as exc:
            raise serializers.ValidationError(
                _("Give an ISO 8601 date or time, e.g. 2026-05-01 or 2026-05-01T08:00:00+08:00.")
            ) from exc

    def validate_since(self, value: str) -> datetime:
        return self._parse(value, end=False)

    def validate_until(self, value: str) -> datetime:
        return self._parse(value, end=True)

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["until"] <= attrs["since"]:
            raise serializers.ValidationError({"until": _("The end is before the start.")})
        return attrs


# --- views ---------------------------------------------------------------------------


class BalanceView(APIView):
    """The user's compute balance (SPEC §3.5): active, carried, arrears, plan, queue."""

    @extend_schema(responses=BalanceSerializer, operation_id="billing_balance")
    def get(self, request):
        balance = selectors.balance_for(request.user)
        plan = balance.plan
        data = {
            "active_micro": balance.active_micro,
            "active_dcu": format_micro(balance.active_micro),
            "carried": [
                {
                    "amount_micro": g.remaining_micro,
                    "amount_dcu": format_micro(g.remaining_micro),
                    "carry_until": g.carry_until,
                }
                for g in balance.carried
            ],
            "carried_micro": balance.carried_micro,
            "debt_micro": balance.debt_micro,
            "debt_dcu": format_micro(balance.debt_micro),
            "plan": {
                "code": plan.code,
                "name": plan.name,
                "tier": plan.tier,
                "gpu_parallelism": plan.gpu_parallelism,
                "free_storage_gib": plan.free_storage_gib,
                "max_storage_gib": plan.max_storage_gib,
            },
            "period_ends_at": balance.subscription.ends_at if balance.subscription else None,
            "queued": [
                {
                    "plan": sub.plan.code,
                    "plan_name": sub.plan.name,
                    "starts_at": sub.starts_at,
                    "ends_at": sub.ends_at,
                }
                for sub in selectors.queued_subscriptions(request.user).order_by("starts_at", "pk")
            ],
        }
        return Response(BalanceSerializer(data).data)


class PlansView(generics.GenericAPIView):
    """Plans for sale with this user's price and what buying each now would do."""

    serializer_class = PlanOfferSerializer

    @extend_schema(
        responses={200: PlanOfferSerializer(many=True), **LIST_ERRORS},
        operation_id="billing_plans",
    )
    def get(self, request):
        offers = self.paginate_queryset(selectors.plan_offers(request.user, at=timezone.now()))
        data = [
            {
                "code": o.plan.code,
                "name": o.plan.name,
                "kind": o.plan.kind,
                "tier": o.plan.tier,
                "dcu_micro": o.plan.dcu_micro,
                "dcu": format_micro(o.plan.dcu_micro),
                "gpu_parallelism": o.plan.gpu_parallelism,
                "free_storage_gib": o.plan.free_storage_gib,
                "max_storage_gib": o.plan.max_storage_gib,
                "period_days": o.plan.period_days,
                "price_fen": o.plan.price_fen,
                "education_price_fen": o.plan.education_price_fen,
                "your_price_fen": o.your_price_fen,
                "effect": o.effect,
            }
            for o in offers
        ]
        return self.get_paginated_response(PlanOfferSerializer(data, many=True).data)


class LedgerView(generics.ListAPIView):
    """The user's ledger, newest first, 50 a page (``?page=``, ``?page_size=`` up to 200)."""

    serializer_class = LedgerEntrySerializer

    def get_queryset(self):
        query = LedgerQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.ledger_entries(self.request.user, **query.validated_data)

    @extend_schema(
        operation_id="billing_ledger",
        responses={
            200: LedgerEntrySerializer(many=True),
            **LIST_ERRORS,
            **error_responses({400: "A bad kind, since or until; fields say which."}),
        },
        parameters=[
            OpenApiParameter("kind", str, enum=LedgerKind.values, description="Only this kind."),
            OpenApiParameter(
                "since",
                OpenApiTypes.STR,
                description="ISO 8601 date or time, inclusive; a date starts at 00:00 "
                "Asia/Shanghai, a time without offset is Asia/Shanghai time.",
            ),
            OpenApiParameter(
                "until",
                OpenApiTypes.STR,
                description="ISO 8601 date (inclusive: the whole Asia/Shanghai day) or "
                "time (exclusive).",
            ),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- orders ---------------------------------------------------------------------------


class OrderCreateSerializer(serializers.Serializer):
    plan = serializers.SlugField(help_text='Plan or pack code, e.g. "trial" (see /billing/plans).')
    channel = serializers.ChoiceField(
        choices=Order.Channel.choices,
        default=Order.Channel.PAGE,
        help_text="page: open pay_url in a browser (Alipay's cashier); "
        "qr: draw qr_code for the Alipay app to scan.",
    )

    def validate_plan(self, code: str):
        plan = selectors.plans_for_sale().filter(code=code).first()
        if plan is None:
            raise serializers.ValidationError(_("No product with this code is for sale."))
        return plan


class OrderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    out_trade_no = serializers.CharField(help_text="The order number Alipay shows.")
    plan = serializers.CharField(source="plan.code", help_text="Plan or pack code.")
    plan_name = serializers.CharField(source="plan.name")
    channel = serializers.ChoiceField(choices=Order.Channel.choices)
    price_fen = serializers.IntegerField(help_text="Amount to pay, in fen (0.01 yuan).")
    education_price = serializers.BooleanField(help_text="The education price applied.")
    state = serializers.ChoiceField(choices=Order.State.choices)
    expires_at = serializers.DateTimeField(help_text="Unpaid orders are closed at this time.")
    pay_url = serializers.CharField(
        allow_null=True,
        help_text="page orders awaiting payment: open it in a browser to pay; null otherwise.",
    )
    qr_code = serializers.CharField(
        allow_null=True,
        help_text="qr orders awaiting payment: the content to draw as a QR code; null otherwise.",
    )
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)


def _order_data(request, order: Order) -> dict:
    pay_url = qr_code = None
    if order.state == Order.State.PENDING and order.expires_at > timezone.now():
        absolute = request.build_absolute_uri
        # An unreachable gateway (alipay.AlipayError) is the API's 503
        # payment_unavailable (aladdin.lib.errors).
        kind, target = payments.order_payment_target(
            order,
            return_url=absolute(reverse("billing:order_return", args=[order.out_trade_no])),
            notify_url=absolute(reverse("billing:alipay_notify")),
            sandbox_url=absolute(reverse("billing:sandbox_pay", args=[order.out_trade_no])),
        )
        if kind == "qr":
            qr_code = target
        else:
            pay_url = target
    return OrderSerializer(
        {
            "id": order.pk,
            "out_trade_no": order.out_trade_no,
            "plan": order.plan,
            "channel": order.channel,
            "price_fen": order.price_fen,
            "education_price": order.education_price,
            "state": order.state,
            "expires_at": order.expires_at,
            "pay_url": pay_url,
            "qr_code": qr_code,
            "created_at": order.created_at,
            "paid_at": order.paid_at,
        }
    ).data


IDEMPOTENCY_KEY_MAX = Order._meta.get_field("client_key").max_length


class OrdersView(APIView):
    """Buy a plan or an extension pack: creates an order awaiting payment (SPEC §5).

    Send an ``Idempotency-Key`` header (up to 100 characters, e.g. a UUID) to
    retry safely: the same key returns the same order with 200 instead of
    creating a second one. The order is fulfilled once Alipay confirms the
    payment; poll ``GET /billing/orders/{id}`` for its state.
    """

    @extend_schema(
        operation_id="billing_order_create",
        request=OrderCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                location=OpenApiParameter.HEADER,
                required=False,
                description="A client-chosen unique key; a retry with it returns the same order.",
            )
        ],
        responses={
            201: OpenApiResponse(OrderSerializer, description="A new order."),
            200: OpenApiResponse(OrderSerializer, description="The order of this key (a retry)."),
            400: OpenApiResponse(
                ErrorSerializer,
                description="Unknown plan, bad channel, a pack without an active plan, "
                "or a key already used for another product.",
            ),
            503: OpenApiResponse(ErrorSerializer, description="Alipay is unreachable."),
        },
        examples=[
            OpenApiExample(
                "Buy Trial by QR code",
                value={"plan": "trial", "channel": "qr"},
                request_only=True,
            )
        ],
    )
    def post(self, request):
        body = OrderCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > IDEMPOTENCY_KEY_MAX:
            raise serializers.ValidationError(
                _("The Idempotency-Key header is longer than %(n)d characters.")
                % {"n": IDEMPOTENCY_KEY_MAX}
            )
        order, created = payments.order_create_once(
            user=request.user,
            plan=body.validated_data["plan"],
            channel=body.validated_data["channel"],
            client_key=key,
        )
        return Response(
            _order_data(request, order),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class OrderDetailView(APIView):
    """One of the user's orders: its state and, while it awaits payment, where to pay."""

    @extend_schema(
        operation_id="billing_order",
        responses={200: OrderSerializer, **error_responses({404: NOT_FOUND})},
    )
    def get(self, request, pk: int):
        order = get_object_or_404(Order.objects.select_related("plan"), pk=pk, user=request.user)
        return Response(_order_data(request, order))


# Mounted under /api/v1/ by aladdin/urls.py.
order_urlpatterns = [
    path("billing/orders", OrdersView.as_view(), name="api-billing-orders"),
    path("billing/orders/<int:pk>", OrderDetailView.as_view(), name="api-billing-order"),
]
