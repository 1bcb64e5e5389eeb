"""Storage REST API for the IDE plugin and the CLI.

GET /api/v1/storage, POST /api/v1/storage/expand, PUT /api/v1/files/upload.
All read and change only ``request.user``'s volume (DESIGN rule 2).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from aladdin.lib.api_schema import error_responses
from aladdin.lib.units import format_micro
from billing import selectors as billing_selectors

from . import files, selectors, services
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
    # The plan and the allowance row read once, for every figure below (a
    # page view read them nine times over through the one-figure selectors).
    now = timezone.now()
    subscription = billing_selectors.current_subscription(user, now)
    plan = billing_selectors.plan_of(subscription)
    row = selectors.allowance_row(user)
    used = row.last_bytes if row else 0
    allowance = selectors.allowance_of(plan, row)
    retention = selectors.retention_of(user, now, row=row, has_plan=subscription is not None)
    return {
        "used_bytes": used,
        "used_gib": round(used / GIB, 2),
        "sampled_at": row.last_sampled_at if row else None,
        "allowance_gib": allowance,
        "free_gib": plan.free_storage_gib,
        "max_gib": max(plan.max_storage_gib, plan.free_storage_gib),
        "can_expand": plan.max_storage_gib > plan.free_storage_gib,
        "over_allowance": selectors.over_allowance_of(row, allowance) is not None,
        "reclaim_at": None if (row and row.hold) else retention.reclaim_at,
        "days": [
            {**d, "fee_dcu": format_micro(d["fee_micro"])}
            for d in selectors.daily_history(user, days=30, at=now)
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


# Like the files page (storage/views.py): the CLI sends 8 MiB; a request never holds more.
UPLOAD_CHUNK_MAX = 16 * 1024 * 1024
UPLOAD_READ = 1024 * 1024


class UploadQuerySerializer(serializers.Serializer):
    folder = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        help_text='Folder under /root to upload into, relative ("" is /root itself); it must exist.',
    )
    name = serializers.CharField(help_text="The file's name (no slashes).")
    offset = serializers.IntegerField(
        min_value=0, help_text="Where this chunk starts: 0 for the first, then the last answer's."
    )
    total = serializers.IntegerField(
        min_value=0, help_text="The whole file's size in bytes (checked against the allowance)."
    )


class UploadSerializer(serializers.Serializer):
    offset = serializers.IntegerField(help_text="Bytes now in the file: the next chunk's offset.")
    total = serializers.IntegerField()
    done = serializers.BooleanField(help_text="The last chunk arrived: the file has its name.")


class FileUploadView(APIView):
    """One chunk of a file upload into the user's volume, the raw request body (``aladdin upload``).

    The same operation as the files page: the first chunk (offset 0) checks
    the storage allowance with ``total`` before anything is written and
    starts a hidden ``.<name>.part``; each later chunk must start where the
    last answer's ``offset`` says; the last one gives the file its name,
    replacing a file of that name. It runs as the user, inside their
    isolation (the cluster's files access), never on the portal's host.
    """

    @extend_schema(
        parameters=[UploadQuerySerializer],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={
            200: UploadSerializer,
            **error_responses(
                {
                    400: "invalid: a bad name or offsets, a chunk over 16 MiB, or an upload "
                    "that was interrupted (start again at offset 0).",
                    404: "not_found: the folder does not exist.",
                    409: "state_conflict: the volume cannot be reached now; try again.",
                    413: "storage_allowance_exceeded: the file would not fit in the storage "
                    "allowance; detail says what was asked, used and allowed.",
                }
            ),
        },
        operation_id="files_upload",
    )
    def put(self, request):
        query = UploadQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > UPLOAD_CHUNK_MAX:
            raise serializers.ValidationError(
                _("A chunk is at most %(mib)d MiB: send the file in smaller pieces.")
                % {"mib": UPLOAD_CHUNK_MAX // (1024 * 1024)}
            )
        # The body is read here as it arrives (never request.data: no parser
        # holds the whole chunk), and handed to the user's files session.
        raw = request._request

        def body() -> Iterator[bytes]:
            while chunk := raw.read(UPLOAD_READ):
                yield chunk

        data = query.validated_data
        end = files.file_upload_chunk(
            user=request.user,
            folder=data["folder"],
            name=data["name"],
            offset=data["offset"],
            total=data["total"],
            chunks=body(),
        )
        return Response(
            UploadSerializer(
                {"offset": end, "total": data["total"], "done": end >= data["total"]}
            ).data
        )


urlpatterns = [
    path("files/upload", FileUploadView.as_view(), name="api-files-upload"),
    path("storage", StorageView.as_view(), name="api-storage"),
    path("storage/expand", ExpandView.as_view(), name="api-storage-expand"),
]
