"""Storage REST API for the IDE plugin: GET /api/v1/storage, POST /api/v1/storage/expand.

Both read and change only ``request.user``'s volume (DESIGN rule 2).
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from aladdin.lib.api_schema import error_responses
from aladdin.lib.units import format_micro
from billing import selectors as billing_selectors

from . import selectors, services
from .choices import GIB


class DaySerializer(serializers.Serializer):
    day = serializers.DateField(help_text="Asia/Shanghai calendar day.")
    peak_gib = serializers.FloatField(help_text="Largest use that day, in GiB.")
    fee_micro = serializers.IntegerField(help_text="Fee charged for that day, in µDCU.")
    fee_dcu = serializers.CharField()


class StorageSerializer(serializers.Serializer):
    used_bytes = serializers.IntegerField(help_text="Last sampled use, in bytes.")
    used_gib = serializers.FloatField()
    sampled_at = serializers.DateTimeField(allow_null=True)
    allowance_gib = serializers.IntegerField(help_text="The volume's size (allowance), in GiB.")
    free_gib = serializers.IntegerField(help_text="Free storage of the plan, in GiB.")
    max_gib = serializers.IntegerField(help_text="Largest allowance the plan allows, in GiB.")
    can_expand = serializers.BooleanField()
    over_allowance = serializers.BooleanField(
        help_text="Use is over the allowance: new workloads are refused."
    )
    reclaim_at = serializers.DateTimeField(
        allow_null=True, help_text="When the volume is reclaimed unless you log in (no plan)."
    )
    days = DaySerializer(many=True, help_text="The last 30 days, oldest first.")


class ExpandSerializer(serializers.Serializer):
    allowance_gib = serializers.IntegerField(min_value=1, help_text="New allowance, in GiB.")


def storage_summary(user) -> dict:
    plan = billing_selectors.current_plan(user)
    row = selectors.allowance_row(user)
    used = row.last_bytes if row else 0
    allowance = selectors.allowance_gib(user)
    over = selectors.over_allowance(user)
    retention = selectors.retention_for(user)
    return {
        "used_bytes": used,
        "used_gib": round(used / GIB, 2),
        "sampled_at": row.last_sampled_at if row else None,
        "allowance_gib": allowance,
        "free_gib": plan.free_storage_gib,
        "max_gib": max(plan.max_storage_gib, plan.free_storage_gib),
        "can_expand": plan.max_storage_gib > plan.free_storage_gib,
        "over_allowance": over is not None,
        "reclaim_at": None if (row and row.hold) else retention.reclaim_at,
        "days": [
            {**d, "fee_dcu": format_micro(d["fee_micro"])}
            for d in selectors.daily_history(user, days=30)
        ],
    }


class StorageView(APIView):
    """The user's volume: use, allowance, plan limits, 30 days of peaks and fees (SPEC §4.2)."""

    @extend_schema(responses=StorageSerializer, operation_id="storage_get")
    def get(self, request):
        return Response(StorageSerializer(storage_summary(request.user)).data)


class ExpandView(APIView):
    """Set the allowance, up to the plan's maximum; the free tier cannot expand."""

    @extend_schema(
        request=ExpandSerializer,
        responses={
            200: StorageSerializer,
            **error_responses(
                {
                    400: "Refused: the free tier, above the plan's maximum, below the free "
                    "storage or below the current use; detail says which, with the numbers."
                }
            ),
        },
        operation_id="storage_expand",
    )
    def post(self, request):
        form = ExpandSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.storage_expand(
            user=request.user, allowance_gib=form.validated_data["allowance_gib"]
        )
        return Response(StorageSerializer(storage_summary(request.user)).data)


urlpatterns = [
    path("storage", StorageView.as_view(), name="api-storage"),
    path("storage/expand", ExpandView.as_view(), name="api-storage-expand"),
]
