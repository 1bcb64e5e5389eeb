"""The Monitor as the portal shows it: a workload's CPU, memory and GPU use (issue 18, SPEC §7).

The samples are the cluster's (:meth:`ClusterDriver.workload_metrics`, which
says why they are pulled on demand rather than stored here); this module
reads them for one job or workshop and gives the API's shape, which the
pages' charts (``static/js/monitor.js``) read too.
"""

from __future__ import annotations

from datetime import datetime

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema

# DRF ships no types (djangorestframework-stubs is not installed): the view and
# serializers below are typed at their edges only.
from rest_framework import serializers  # type: ignore[import-untyped]
from rest_framework.request import Request  # type: ignore[import-untyped]
from rest_framework.response import Response  # type: ignore[import-untyped]
from rest_framework.views import APIView  # type: ignore[import-untyped]

from aladdin import cluster
from aladdin.cluster.base import DriverError, WorkloadMetrics
from aladdin.lib.api_schema import NOT_FOUND, error_responses
from aladdin.lib.errors import DomainError


class MetricsUnavailable(DomainError):  # noqa: N818 - reads as the condition
    """The cluster cannot be asked for a workload's metrics now: 503, try again shortly."""

    http_status = 503
    error_code = "metrics_unavailable"

    def error_detail(self) -> str:
        return _("Resource use cannot be read right now. Try again shortly.")


def read_metrics(name: str, since: datetime | None = None) -> WorkloadMetrics:
    """``name``'s samples after ``since``. Raises MetricsUnavailable (cluster unreachable)."""
    try:
        return cluster.get_driver().workload_metrics(name=name, since=since)
    except DriverError as exc:
        raise MetricsUnavailable() from exc


class GpuSampleSerializer(serializers.Serializer):
    index = serializers.CharField(help_text="The card's device number on its host.")
    utilization_percent = serializers.FloatField(
        help_text="Share of the interval the card was busy, 0-100."
    )
    memory_used_mib = serializers.IntegerField(help_text="Card memory in use, MiB.")
    memory_total_mib = serializers.IntegerField(help_text="The card's memory, MiB.")


class MetricSampleSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="End of the sample's period.")
    period_seconds = serializers.FloatField(
        help_text="What the sample covers; older samples are averages over longer periods."
    )
    cpu_percent = serializers.FloatField(
        allow_null=True, help_text="CPU used, percent of one core (200 = two cores busy)."
    )
    memory_bytes = serializers.IntegerField(allow_null=True, help_text="Memory in use, bytes.")
    gpus = GpuSampleSerializer(many=True, help_text="One per card; empty without GPU metrics.")


class MetricsSerializer(serializers.Serializer):
    available = serializers.BooleanField(
        help_text="False: the cluster keeps no metrics of it (it never ran, its samples are "
        "no longer kept, or the backend keeps none); samples is then empty."
    )
    gpu_metrics = serializers.BooleanField(
        help_text="False: its cards report no use (virtual cards, no NVML)."
    )
    interval_seconds = serializers.FloatField(help_text="How often the cluster samples.")
    samples = MetricSampleSerializer(many=True, help_text="Oldest first, taken after since.")


class MetricsQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(
        required=False, help_text="Only samples taken after this time (ISO 8601)."
    )


class WorkloadMetricsView(APIView):
    """``GET …/<id>/metrics?since=``: the owner's workload's samples; another user's id is 404."""

    def workload_name(self, request: Request, pk: int) -> str:
        """The workload's cluster name, after the ownership check (raises NotFound).

        Each app's view says how its rows name their workloads (jobs,
        workshops); this base only answers for them.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must say which workload its id names (workload_name)"
        )

    @extend_schema(
        parameters=[OpenApiParameter("since", str, description="ISO 8601 time; optional.")],
        responses={
            200: MetricsSerializer,
            **error_responses(
                {
                    400: "A since that is not an ISO 8601 time.",
                    404: NOT_FOUND,
                    503: "metrics_unavailable: the cluster cannot be asked right now.",
                }
            ),
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        """CPU, memory and per-GPU use, sampled every few seconds (downsampled as they age)."""
        name = self.workload_name(request, pk)
        query = MetricsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        metrics = read_metrics(name, query.validated_data.get("since"))
        return Response(MetricsSerializer(metrics).data)
