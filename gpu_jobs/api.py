"""GPU jobs REST API (SPEC §4.1, §7) for the IDE plugin and the dashboard.

Every job and configuration is looked up through ``selectors.jobs_for`` /
``configurations_for`` (DESIGN rule 2): another user's id, and a deleted
job, are a 404 on every endpoint. ENV values are write-only: responses carry
``env_keys`` (names) only.

Errors use the project's format (``aladdin.lib.api``). An admission refusal
(``admission.JobRefused``) is **409** with the refusal's code
(``multi_card``, ``parallelism``, ``quota_exceeded``, ``balance``, ``storage``; ``shape``
cannot happen here: the serializer asks for at least one card) and the
message with the numbers — 409 like workshops' quota refusal: the request is
well-formed, the account's state (plan, balance, running jobs) refuses it.
Bad input (``services.JobError`` with fields) is 400; stopping a job that is
not running is 409 ``state_conflict``.
"""

from __future__ import annotations

import json

from django.http import HttpResponse
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import exceptions, generics, renderers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aladdin.cluster.base import DriverError
from aladdin.lib.api import ErrorSerializer
from aladdin.lib.api_schema import LIST_ERRORS, NOT_FOUND, error_responses
from aladdin.lib.serializers import (
    CachedFieldsModelSerializer,
    ChoiceLabelField,
    SaidReasonFields,
)
from aladdin.lib.streaming import attachment
from aladdin.lib.units import format_micro
from aladdin.workloads.monitor import WorkloadMetricsView
from billing import selectors as billing_selectors
from billing import services as billing_services
from storage import files as storage_files

from . import costs as cost_reports
from . import logs, selectors, services
from .choices import JobKind, JobState
from .models import GpuType, Job, JobConfiguration

IDEMPOTENCY_KEY_MAX = Job._meta.get_field("idempotency_key").max_length


# --- serializers ------------------------------------------------------------------


class GpuTypeSerializer(CachedFieldsModelSerializer):
    price_dcu_per_hour = serializers.SerializerMethodField(help_text='Per card, e.g. "2.56".')

    class Meta:
        model = GpuType
        fields = [
            "code",
            "name",
            "memory_gb",
            "price_micro_per_hour",
            "price_dcu_per_hour",
            "parallelism_weight",
            "cpu_millicores",
            "memory_mib",
            "multi_card_allowed",
        ]

    def get_price_dcu_per_hour(self, obj) -> str:
        return format_micro(obj.price_micro_per_hour)


class PortUrlSerializer(serializers.Serializer):
    port = serializers.IntegerField()
    url = serializers.CharField(help_text="Opens the job's server in a browser (its own site).")


class JobSerializer(SaidReasonFields, CachedFieldsModelSerializer):
    gpu_type = serializers.SlugRelatedField(slug_field="code", read_only=True)
    gpu_type_name = serializers.CharField(source="gpu_type.name", read_only=True)
    kind_display = ChoiceLabelField(source="kind")
    state_display = ChoiceLabelField(source="state")
    name = serializers.CharField(source="display_name", read_only=True)
    active = serializers.SerializerMethodField(help_text="Starting or running (holds cards).")
    port_urls = serializers.SerializerMethodField(
        help_text="Each exposed port's URL while the job runs (external access)."
    )
    cards = serializers.IntegerField(read_only=True, help_text="Cards per worker × workers.")
    parallelism = serializers.IntegerField(read_only=True)
    env_keys = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="ENV names; values never."
    )
    price_micro_per_hour = serializers.SerializerMethodField(
        help_text="The job's price (all its cards), in µDCU per hour."
    )
    price_dcu_per_hour = serializers.SerializerMethodField()
    charged_dcu = serializers.SerializerMethodField()
    billed_so_far_micro = serializers.SerializerMethodField(
        help_text="Owed from allocation to now (or to the release), in µDCU; "
        "charged_micro is what the ledger already has."
    )
    billed_so_far_dcu = serializers.SerializerMethodField()
    logs_url = serializers.SerializerMethodField(
        help_text="Websocket of the live output (ws:// or wss://); add ?offset=<bytes> to resume."
    )
    debug_url = serializers.SerializerMethodField(
        help_text="GPU Debug only (else null): the websocket that carries the Debug Adapter "
        "Protocol to the job's debugpy, one DAP JSON message per text frame; open it once "
        "the job is running."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "name",
            "kind",
            "kind_display",
            "entry",
            "python_module",
            "args",
            "env_keys",
            "workdir",
            "image",
            "interpreter",
            "gpu_type",
            "gpu_type_name",
            "cards_per_worker",
            "workers",
            "cards",
            "parallelism",
            "ports",
            "port_urls",
            "state",
            "state_display",
            "active",
            "reason",
            "reason_id",
            "reason_params",
            "waiting_for_image",
            "runtime_facts",
            "exit_code",
            "gpu_devices",
            "created_at",
            "started_at",
            "ended_at",
            "stop_requested_at",
            "price_micro_per_hour",
            "price_dcu_per_hour",
            "charged_micro",
            "charged_dcu",
            "billed_so_far_micro",
            "billed_so_far_dcu",
            "logs_url",
            "debug_url",
        ]
        read_only_fields = fields

    def _billing(self, obj) -> selectors.JobBilling:
        cache = self.context.setdefault("_billing", {})
        if obj.pk not in cache:
            cache[obj.pk] = selectors.job_billing(obj)
        return cache[obj.pk]

    def get_active(self, obj) -> bool:
        return selectors.is_active(obj)

    def get_price_micro_per_hour(self, obj) -> int:
        return self._billing(obj).price_micro_per_hour

    def get_price_dcu_per_hour(self, obj) -> str:
        return format_micro(self._billing(obj).price_micro_per_hour)

    def get_charged_dcu(self, obj) -> str:
        return format_micro(obj.charged_micro)

    def get_billed_so_far_micro(self, obj) -> int:
        return self._billing(obj).billed_so_far_micro

    def get_billed_so_far_dcu(self, obj) -> str:
        return format_micro(self._billing(obj).billed_so_far_micro)

    @extend_schema_field(PortUrlSerializer(many=True))
    def get_port_urls(self, obj) -> list[dict]:
        return [
            {"port": row.port, "url": selectors.port_url(row)} for row in selectors.open_ports(obj)
        ]

    def _ws_url(self, ws_path: str) -> str:
        request = self.context.get("request")
        if request is None:
            return ws_path
        scheme = "wss" if request.is_secure() else "ws"
        return f"{scheme}://{request.get_host()}{ws_path}"

    def get_logs_url(self, obj) -> str:
        return self._ws_url(f"/ws/jobs/{obj.pk}/logs/")

    def get_debug_url(self, obj) -> str | None:
        if obj.kind != JobKind.DEBUG:
            return None
        return self._ws_url(f"/ws/jobs/{obj.pk}/debug/")


class LaunchFieldsSerializer(serializers.Serializer):
    """The launch parameters shared by jobs and configurations (SPEC §7)."""

    kind = serializers.ChoiceField(
        choices=JobKind.choices,
        default=JobKind.RUN,
        help_text="run, debug, shell or task. debug runs the file under debugpy, which waits "
        "for the IDE on debug_url; task is Run Task: torchrun over `workers` workers.",
    )
    entry = serializers.CharField(
        max_length=1024,
        help_text="A Python file or shell script (relative paths are under /root), "
        "or a module name with python_module.",
    )
    python_module = serializers.BooleanField(default=False, help_text="Run as python -m entry.")
    args = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        default=list,
        help_text="Arguments, a list of strings.",
    )
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        default=dict,
        write_only=True,
        help_text="ENV variables as an object; write-only (stored encrypted).",
    )
    workdir = serializers.CharField(max_length=1024, default="", allow_blank=True)
    image = serializers.CharField(
        max_length=255,
        default="",
        allow_blank=True,
        help_text='A catalog image "name:tag" (GET /images); default python:3.11.',
    )
    interpreter = serializers.CharField(
        max_length=1024,
        default="",
        allow_blank=True,
        help_text="A conda python under /root; wins over the image.",
    )
    gpu_type = serializers.SlugRelatedField(
        slug_field="code",
        queryset=GpuType.objects.all(),
        help_text='Card preset code: "40g" or "80g" (GET /gpu-types).',
    )
    cards_per_worker = serializers.IntegerField(min_value=1, max_value=64, default=1)
    workers = serializers.IntegerField(
        min_value=1,
        max_value=64,
        default=1,
        help_text="Run Task only (1 otherwise): workers, each with cards_per_worker cards.",
    )
    ports = serializers.ListField(
        child=serializers.IntegerField(), default=list, help_text="External HTTP ports."
    )


class JobCreateSerializer(LaunchFieldsSerializer):
    pass


class ConfigurationSerializer(CachedFieldsModelSerializer):
    gpu_type = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    env_keys = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = JobConfiguration
        fields = ["id", *JobConfiguration.SHOWN_FIELDS]
        read_only_fields = fields


class ConfigurationWriteSerializer(LaunchFieldsSerializer):
    name = serializers.CharField(max_length=100)
    entry = serializers.CharField(max_length=1024, default="", allow_blank=True)
    gpu_type = serializers.SlugRelatedField(
        slug_field="code",
        queryset=GpuType.objects.all(),
        allow_null=True,
        default=None,
        help_text='Card preset code: "40g" or "80g".',
    )


class JobListQuerySerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=JobState.choices, required=False)
    kind = serializers.ChoiceField(choices=JobKind.choices, required=False)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


# No job's output reaches 1 TiB (the local agent keeps at most
# ALADDIN_LOCAL_LOG_MAX_MIB of it, Kubernetes rotates container logs long
# before), so a larger offset cannot exist. Passed on, it made the host's file
# seek fail (ext4 refuses past 16 TiB) and came back as a 503, as if the
# cluster were down; it is bad input.
LOG_OFFSET_MAX = 2**40


class LogOffsetSerializer(serializers.Serializer):
    """``?offset=``: also what the log websocket resumes from (gpu_jobs.consumers)."""

    offset = serializers.IntegerField(min_value=0, max_value=LOG_OFFSET_MAX, default=0)


class LogQuerySerializer(LogOffsetSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=logs.MAX_CHUNK, default=logs.MAX_CHUNK)


# --- helpers ------------------------------------------------------------------------


def _own_job(request, pk) -> Job:
    job = selectors.jobs_for(request.user).filter(pk=pk).first()
    if job is None:
        raise exceptions.NotFound()
    return job


def _own_configuration(request, pk) -> JobConfiguration:
    config = selectors.configurations_for(request.user).filter(pk=pk).first()
    if config is None:
        raise exceptions.NotFound()
    return config


def _job_data(request, job: Job) -> dict:
    return JobSerializer(job, context={"request": request}).data


_REFUSAL_CODES = "multi_card, parallelism, quota_exceeded, balance, storage"


# --- views ------------------------------------------------------------------------------


class GpuTypesView(generics.ListAPIView):
    """Card presets: price per card and hour, parallelism weight, CPU/memory per card."""

    serializer_class = GpuTypeSerializer

    def get_queryset(self):
        return selectors.gpu_types()

    @extend_schema(
        operation_id="gpu_types_list", responses={200: GpuTypeSerializer(many=True), **LIST_ERRORS}
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class JobsView(generics.GenericAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        query = JobListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.job_list(self.request.user, **query.validated_data)

    @extend_schema(
        operation_id="jobs_list",
        parameters=[
            OpenApiParameter("state", str, enum=JobState.values, description="Only this state."),
            OpenApiParameter("kind", str, enum=JobKind.values, description="Only this kind."),
            OpenApiParameter(
                "active", bool, description="1: only starting/running jobs; 0: only ended ones."
            ),
        ],
        responses={
            200: JobSerializer(many=True),
            **LIST_ERRORS,
            **error_responses({400: "A bad state, kind or active; fields say which."}),
        },
    )
    def get(self, request):
        """The user's jobs (not deleted), newest first, paginated."""
        rows = self.get_queryset()
        page = self.paginate_queryset(rows)
        data = JobSerializer(page, many=True, context={"request": request}).data
        return self.get_paginated_response(data)

    @extend_schema(
        operation_id="jobs_create",
        request=JobCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                location=OpenApiParameter.HEADER,
                required=False,
                description="A client-chosen unique key (up to 64 characters); a retry with "
                "it returns the same job with 200 instead of starting another.",
            )
        ],
        responses={
            201: OpenApiResponse(JobSerializer, description="A new job, starting or running."),
            200: OpenApiResponse(JobSerializer, description="The job of this key (a retry)."),
            400: OpenApiResponse(ErrorSerializer, description="Bad input; fields say where."),
            409: OpenApiResponse(
                ErrorSerializer,
                description=f"Refused by admission; code is one of {_REFUSAL_CODES}, "
                "detail says what was asked, used, allowed and what to do.",
            ),
        },
        examples=[
            OpenApiExample(
                "Run a file on one 80G card",
                value={
                    "kind": "run",
                    "entry": "/root/train.py",
                    "args": ["--epochs", "3"],
                    "env": {"WANDB_API_KEY": "..."},
                    "gpu_type": "80g",
                    "cards_per_worker": 1,
                },
                request_only=True,
            )
        ],
    )
    def post(self, request):
        """Launch a job (GPU Run or Run Shell): admitted, then started on the cluster."""
        body = JobCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > IDEMPOTENCY_KEY_MAX:
            raise serializers.ValidationError(
                _("The Idempotency-Key header is longer than %(n)d characters.")
                % {"n": IDEMPOTENCY_KEY_MAX}
            )
        job, created = services.job_create_once(
            user=request.user, idempotency_key=key, **body.validated_data
        )
        # The start task ran at commit (or will): answer with the row as it is now.
        job.refresh_from_db()
        return Response(
            _job_data(request, job),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class JobView(APIView):
    @extend_schema(
        operation_id="jobs_retrieve",
        responses={200: JobSerializer, **error_responses({404: NOT_FOUND})},
    )
    def get(self, request, pk: int):
        """One job: state, reason, exit code, times, cards, price and billing so far."""
        return Response(_job_data(request, _own_job(request, pk)))

    @extend_schema(
        operation_id="jobs_destroy",
        request=None,
        responses={
            204: OpenApiResponse(description="Deleted."),
            **error_responses({404: NOT_FOUND}),
        },
    )
    def delete(self, request, pk: int):
        """Delete a job: a running job is stopped and released first, then its logs go.

        The job disappears from the API at once (later requests are 404).
        """
        services.job_delete(job=_own_job(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobStopView(APIView):
    @extend_schema(
        operation_id="jobs_stop",
        request=None,
        responses={
            202: JobSerializer,
            **error_responses(
                {404: NOT_FOUND, 409: "state_conflict: the job is not starting or running."}
            ),
        },
    )
    def post(self, request, pk: int):
        """Stop a starting or running job; billing ends when its cards are released."""
        job = services.job_stop(job=_own_job(request, pk))
        job.refresh_from_db()
        return Response(_job_data(request, job), status=status.HTTP_202_ACCEPTED)


class PortAddSerializer(serializers.Serializer):
    port = serializers.IntegerField(help_text="1024-65535: the port the job's server listens on.")


class JobPortsView(APIView):
    @extend_schema(
        operation_id="jobs_ports_add",
        request=PortAddSerializer,
        responses={
            201: PortUrlSerializer,
            **error_responses(
                {
                    400: "invalid: not a port 1024-65535, or the job has 8 ports already.",
                    404: NOT_FOUND,
                    409: "state_conflict: the job is not starting or running.",
                }
            ),
        },
    )
    def post(self, request, pk: int):
        """Expose a port of a starting or running job at its own URL (external access).

        A job's server must listen on 0.0.0.0. The URL answers while the port
        stays and the job runs; adding an open port again returns its URL.
        """
        job = _own_job(request, pk)  # another user's id is 404 before anything is read
        body = PortAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row = services.port_add(job=job, port=body.validated_data["port"])
        return Response(
            {"port": row.port, "url": selectors.port_url(row)}, status=status.HTTP_201_CREATED
        )


class JobPortView(APIView):
    @extend_schema(
        operation_id="jobs_ports_remove",
        request=None,
        responses={204: None, **error_responses({404: NOT_FOUND + " Or the port is not open."})},
    )
    def delete(self, request, pk: int, port: int):
        """Stop exposing a port: its URL answers 404 at once and open connections are cut."""
        services.port_remove(job=_own_job(request, pk), port=port)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PlainTextRenderer(renderers.BaseRenderer):
    """text/plain for the log endpoint; error bodies (dicts) are written as JSON text."""

    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return data.encode(self.charset)
        return json.dumps(data).encode(self.charset)


class JobLogsView(APIView):
    # JSON first: errors answer in the API's format unless the client asks
    # for text/plain only; the log itself is always text.
    renderer_classes = [renderers.JSONRenderer, PlainTextRenderer]

    @extend_schema(
        operation_id="jobs_logs",
        parameters=[
            OpenApiParameter(
                "offset",
                int,
                description=f"Byte offset to read from (default 0, at most {LOG_OFFSET_MAX}).",
            ),
            OpenApiParameter("limit", int, description="At most this many bytes (≤ 1 MiB)."),
        ],
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR,
                description="The output from offset. Headers: X-Log-Offset (the offset to "
                "ask next), X-Log-Ended (true once the job ended and nothing follows).",
            ),
            **error_responses(
                {
                    400: "A bad offset or limit (negative, too large, not a number).",
                    404: NOT_FOUND,
                    503: "logs_unavailable: the cluster cannot read the output right now.",
                }
            ),
        },
    )
    def get(self, request, pk: int):
        """A chunk of the job's output as text (the websocket streams it live)."""
        job = _own_job(request, pk)
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            chunk = logs.read_logs(job, **query.validated_data)
        except DriverError as exc:
            # Reading output is not an action the cluster refused (409): it is
            # unavailable for now, and the client should retry.
            raise logs.LogsUnavailable() from exc
        response = HttpResponse(chunk.data, content_type="text/plain; charset=utf-8")
        response["X-Log-Offset"] = str(chunk.offset)
        response["X-Log-Ended"] = "true" if chunk.ended else "false"
        return response


def _log_response(request, read):
    try:
        log_file = read()
    except storage_files.FileNotFound:
        raise exceptions.NotFound() from None
    return attachment(
        request,
        log_file.chunks,
        name=log_file.name,
        content_type=log_file.content_type,
        size=log_file.size,
    )


def _log_file_responses(media_type: str, description: str, *, not_found: str) -> dict:
    """The schema of a Log Download: a streamed file, or why not."""
    return {
        (200, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=description),
        **error_responses(
            {
                404: f"{NOT_FOUND} Or {not_found}",
                503: "logs_unavailable: the cluster cannot read the output right now.",
            }
        ),
    }


class JobLogDownloadView(APIView):
    @extend_schema(
        operation_id="jobs_log_download",
        parameters=[
            OpenApiParameter(
                "worker", int, description="Run Task only: the worker's index (default 0)."
            )
        ],
        responses=_log_file_responses(
            "text/plain",
            "The whole output as a file (Content-Disposition: attachment): "
            "a dev job's output, or one worker's log of a Run Task.",
            not_found="a worker this task does not have, or its log is gone.",
        ),
    )
    def get(self, request, pk: int):
        """Log Download: the job's output (a task's worker with ?worker=N), streamed."""
        job = _own_job(request, pk)
        if job.kind != JobKind.TASK:
            return _log_response(request, lambda: logs.output_file(job))
        query = LogWorkerSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        worker = query.validated_data["worker"]
        return _log_response(request, lambda: logs.worker_file(job, worker))


class JobLogArchiveView(APIView):
    @extend_schema(
        operation_id="jobs_log_archive",
        responses=_log_file_responses(
            "application/gzip",
            "Every worker's log of a Run Task in one .tar.gz, streamed (task-<id>/worker-<n>.log).",
            not_found="not a Run Task, or its logs are gone.",
        ),
    )
    def get(self, request, pk: int):
        """Log Download of a whole task: a .tar.gz of /root/.aladdin/tasks/<id>/."""
        job = _own_job(request, pk)
        if job.kind != JobKind.TASK:
            raise exceptions.NotFound()
        return _log_response(request, lambda: logs.archive_file(job))


class LogWorkerSerializer(serializers.Serializer):
    worker = serializers.IntegerField(min_value=0, max_value=1023, default=0)


class JobMetricsView(WorkloadMetricsView):
    """The Monitor: the job's CPU, memory and GPU use while it runs (SPEC §7)."""

    def workload_name(self, request, pk: int) -> str:
        return _own_job(request, pk).workload_name


class ConfigurationsView(generics.GenericAPIView):
    serializer_class = ConfigurationSerializer

    def get_queryset(self):
        return selectors.configurations_for(self.request.user)

    @extend_schema(
        operation_id="job_configurations_list",
        responses={200: ConfigurationSerializer(many=True), **LIST_ERRORS},
    )
    def get(self, request):
        """The user's saved launch configurations, by name."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ConfigurationSerializer(page, many=True).data)

    @extend_schema(
        operation_id="job_configurations_create",
        request=ConfigurationWriteSerializer,
        responses={
            201: ConfigurationSerializer,
            **error_responses({400: "Bad input or a name already used; fields say where."}),
        },
    )
    def post(self, request):
        """Save a named configuration ("Save as configuration"); names are unique per user."""
        body = ConfigurationWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        config = services.configuration_save(user=request.user, **body.validated_data)
        return Response(ConfigurationSerializer(config).data, status=status.HTTP_201_CREATED)


def _configuration_values(config: JobConfiguration) -> dict:
    return {
        "name": config.name,
        "kind": config.kind,
        "entry": config.entry,
        "python_module": config.python_module,
        "args": config.args,
        "env": config.get_env(),
        "workdir": config.workdir,
        "image": config.image,
        "interpreter": config.interpreter,
        "gpu_type": config.gpu_type,
        "cards_per_worker": config.cards_per_worker,
        "workers": config.workers,
        "ports": config.ports,
    }


_CONFIGURATION_WRITE_ERRORS = error_responses(
    {400: "Bad input or a name already used; fields say where.", 404: NOT_FOUND}
)


class ConfigurationView(APIView):
    @extend_schema(
        operation_id="job_configurations_retrieve",
        responses={200: ConfigurationSerializer, **error_responses({404: NOT_FOUND})},
    )
    def get(self, request, pk: int):
        return Response(ConfigurationSerializer(_own_configuration(request, pk)).data)

    def _save(self, request, pk: int, *, partial: bool):
        config = _own_configuration(request, pk)
        body = ConfigurationWriteSerializer(data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        values = _configuration_values(config) if partial else {}
        values.update(body.validated_data)
        config = services.configuration_save(user=request.user, configuration=config, **values)
        return Response(ConfigurationSerializer(config).data)

    @extend_schema(
        operation_id="job_configurations_update",
        request=ConfigurationWriteSerializer,
        responses={200: ConfigurationSerializer, **_CONFIGURATION_WRITE_ERRORS},
        description="Replace every field; omitted fields take their defaults (env included).",
    )
    def put(self, request, pk: int):
        return self._save(request, pk, partial=False)

    @extend_schema(
        operation_id="job_configurations_partial_update",
        request=ConfigurationWriteSerializer,
        responses={200: ConfigurationSerializer, **_CONFIGURATION_WRITE_ERRORS},
        description="Change the given fields; env, when given, replaces the whole ENV.",
    )
    def patch(self, request, pk: int):
        return self._save(request, pk, partial=True)

    @extend_schema(
        operation_id="job_configurations_destroy",
        responses={
            204: OpenApiResponse(description="Deleted."),
            **error_responses({404: NOT_FOUND}),
        },
    )
    def delete(self, request, pk: int):
        services.configuration_delete(configuration=_own_configuration(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Mounted under /api/v1/ by aladdin/urls.py. "jobs/configurations" comes
# before "jobs/<int:pk>" (the int converter would not match it anyway).

# --- costs and budget (issue 20) ---------------------------------------------------------


class JobCostSerializer(serializers.Serializer):
    job_id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    card = serializers.CharField()
    micro = serializers.IntegerField(help_text="µDCU charged in the month.")
    deleted = serializers.BooleanField()


class DayCostSerializer(serializers.Serializer):
    day = serializers.DateField()
    gpu_micro = serializers.IntegerField()
    storage_micro = serializers.IntegerField()
    other_micro = serializers.IntegerField()
    total_micro = serializers.IntegerField()


class CostReportSerializer(serializers.Serializer):
    month = serializers.DateField(help_text="Its first day (Asia/Shanghai calendar month).")
    total_micro = serializers.IntegerField(help_text="All charges of the month: equals the ledger.")
    storage_micro = serializers.IntegerField()
    other_micro = serializers.IntegerField()
    by_kind = serializers.DictField(child=serializers.IntegerField(), help_text="µDCU by job kind.")
    by_card = serializers.DictField(child=serializers.IntegerField(), help_text="µDCU by card.")
    budget_micro = serializers.IntegerField(allow_null=True)
    jobs = JobCostSerializer(many=True)
    days = DayCostSerializer(many=True)


class CostsView(APIView):
    @extend_schema(
        operation_id="costs_retrieve",
        parameters=[OpenApiParameter("month", str, description='"YYYY-MM" (default: this month).')],
        responses={200: CostReportSerializer},
    )
    def get(self, request):
        """Where a month's compute went: per job, per day, by kind and card, storage (µDCU)."""
        report = cost_reports.cost_report(
            request.user, cost_reports.parse_month(request.query_params.get("month"))
        )
        data = CostReportSerializer(report).data
        # by_kind keyed by the kind's code, not its label, for scripts.
        data["by_kind"] = {}
        for job in report.jobs:
            data["by_kind"][job.kind] = data["by_kind"].get(job.kind, 0) + job.micro
        return Response(data)


class BudgetSerializer(serializers.Serializer):
    monthly_micro = serializers.IntegerField(min_value=1, help_text="The monthly budget in µDCU.")
    hard_stop = serializers.BooleanField(
        default=False, help_text="Refuse new launches once this month's charges reach it."
    )


class BudgetView(APIView):
    @extend_schema(
        operation_id="budget_retrieve",
        responses={200: BudgetSerializer, **error_responses({404: "No budget is set."})},
    )
    def get(self, request):
        """The monthly budget."""
        budget = billing_selectors.budget_for(request.user)
        if budget is None:
            raise exceptions.NotFound(_("No budget is set."))
        return Response(BudgetSerializer(budget).data)

    @extend_schema(
        operation_id="budget_set",
        request=BudgetSerializer,
        responses={200: BudgetSerializer, **error_responses({400: "Bad input."})},
    )
    def put(self, request):
        """Set the monthly budget (alerts at 80 % and 100 %; ``hard_stop`` refuses launches)."""
        body = BudgetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        budget = billing_services.budget_set(user=request.user, **body.validated_data)
        return Response(BudgetSerializer(budget).data)

    @extend_schema(operation_id="budget_delete", responses={204: None})
    def delete(self, request):
        """Remove the monthly budget."""
        billing_services.budget_set(user=request.user, monthly_micro=None)
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("gpu-types", GpuTypesView.as_view(), name="api-gpu-types"),
    path("costs", CostsView.as_view(), name="api-costs"),
    path("budget", BudgetView.as_view(), name="api-budget"),
    path("jobs", JobsView.as_view(), name="api-jobs"),
    path("jobs/configurations", ConfigurationsView.as_view(), name="api-job-configurations"),
    path(
        "jobs/configurations/<int:pk>",
        ConfigurationView.as_view(),
        name="api-job-configuration",
    ),
    path("jobs/<int:pk>", JobView.as_view(), name="api-job"),
    path("jobs/<int:pk>/stop", JobStopView.as_view(), name="api-job-stop"),
    path("jobs/<int:pk>/ports", JobPortsView.as_view(), name="api-job-ports"),
    path("jobs/<int:pk>/ports/<int:port>", JobPortView.as_view(), name="api-job-port"),
    path("jobs/<int:pk>/logs", JobLogsView.as_view(), name="api-job-logs"),
    path("jobs/<int:pk>/logs/download", JobLogDownloadView.as_view(), name="api-job-log-download"),
    path("jobs/<int:pk>/logs/archive", JobLogArchiveView.as_view(), name="api-job-log-archive"),
    path("jobs/<int:pk>/metrics", JobMetricsView.as_view(), name="api-job-metrics"),
]
