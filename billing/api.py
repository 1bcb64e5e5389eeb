"""Billing REST API for the IDE plugin: balance, plans with prices and effects, ledger.

Every endpoint reads only ``request.user``'s data (DESIGN rule 2); there is
no id in any URL, so another user's data cannot even be named. Amounts are
integers (µDCU, fen) with a DCU string beside them for display.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from aladdin.lib.timeutil import day_start

from . import selectors
from .choices import LedgerKind
from .models import LedgerEntry
from .tasks import parse_as_of
from .units import format_micro

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


class LedgerEntrySerializer(serializers.ModelSerializer):
    delta_dcu = serializers.SerializerMethodField(help_text='Signed DCU, e.g. "+20", "-0.03".')
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)

    class Meta:
        model = LedgerEntry
        fields = ("id", "created_at", "kind", "kind_display", "delta_micro", "delta_dcu", "reason")

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


class PlansView(APIView):
    """Plans for sale with this user's price and what buying each now would do."""

    @extend_schema(responses=PlanOfferSerializer(many=True), operation_id="billing_plans")
    def get(self, request):
        offers = selectors.plan_offers(request.user, at=timezone.now())
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
        return Response(PlanOfferSerializer(data, many=True).data)


class LedgerView(generics.ListAPIView):
    """The user's ledger, newest first, 50 a page (``?page=``, ``?page_size=`` up to 200)."""

    serializer_class = LedgerEntrySerializer

    def get_queryset(self):
        query = LedgerQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.ledger_entries(self.request.user, **query.validated_data)

    @extend_schema(
        operation_id="billing_ledger",
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
