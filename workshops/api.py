"""Workshops REST API (SPEC §6) for the dashboard and the IDE plugin.

Every workshop is looked up with ``user=request.user`` (DESIGN rule 2):
another user's id is a 404 on every endpoint. ENV values are write-only.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from aladdin.lib.api_schema import LIST_ERRORS, NOT_FOUND, error_responses
from aladdin.lib.serializers import (
    CachedFieldsModelSerializer,
    ChoiceLabelField,
    SaidReasonFields,
)
from aladdin.workloads.env import env_key, parse_env
from aladdin.workloads.models import Image
from aladdin.workloads.monitor import WorkloadMetricsView

from . import selectors, services
from .models import ResourcePreset, SSHKey, Workshop, dns_label

# --- serializers ------------------------------------------------------------------


class ImageSerializer(CachedFieldsModelSerializer):
    ref = serializers.CharField(read_only=True, help_text='"name:tag", e.g. "torch:2.5.1-cu124".')
    launchable = serializers.BooleanField(
        read_only=True,
        help_text="Whether a workload may be started on it now (it may wait for its build).",
    )
    build_facts = serializers.JSONField(
        read_only=True,
        help_text='Measured in the built image: "python", "packages" (name: version), "cuda".',
    )
    build_step = serializers.CharField(
        source="build_step_text",
        read_only=True,
        help_text="While building: what the build is doing, in the request's language "
        '("installing pip"); "" otherwise.',
    )

    class Meta:
        model = Image
        fields = [
            "id",
            "name",
            "tag",
            "ref",
            "description",
            "python_version",
            "packages",
            "apt_packages",
            "conda",
            "cuda",
            "container_image",
            "build_state",
            "build_progress",
            "build_step",
            "build_reason",
            "cpu_only",
            "launchable",
            "build_facts",
        ]


class PresetSerializer(CachedFieldsModelSerializer):
    label = serializers.CharField(read_only=True, help_text='e.g. "CPU:4 MEM:16G".')

    class Meta:
        model = ResourcePreset
        fields = ["id", "name", "label", "cpu_millicores", "memory_mib", "recommended"]


class EnvVarSerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.CharField(default="••••", help_text="Always masked.")


class WorkshopSerializer(SaidReasonFields, CachedFieldsModelSerializer):
    image = ImageSerializer(read_only=True)
    preset = PresetSerializer(read_only=True)
    state_display = ChoiceLabelField(source="state")
    host_alias = serializers.CharField(read_only=True)
    resources_pending = serializers.BooleanField(
        read_only=True, help_text="Edited resources that apply on the next start."
    )
    env = serializers.SerializerMethodField()

    class Meta:
        model = Workshop
        fields = [
            "id",
            "name",
            "image",
            "preset",
            "cpu_millicores",
            "memory_mib",
            "applied_cpu_millicores",
            "applied_memory_mib",
            "resources_pending",
            "state",
            "state_display",
            "reason",
            "reason_id",
            "reason_params",
            "waiting_for_image",
            "runtime_facts",
            "host_alias",
            "env",
            "created_at",
            "started_at",
            "stopped_at",
        ]

    @extend_schema_field(EnvVarSerializer(many=True))
    def get_env(self, obj) -> list[dict]:
        return [{"key": var.key, "value": var.masked} for var in obj.env_vars.all()]


class WorkshopCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=40, validators=[dns_label])
    image = serializers.PrimaryKeyRelatedField(queryset=Image.objects.filter(is_active=True))
    preset = serializers.PrimaryKeyRelatedField(
        queryset=ResourcePreset.objects.filter(is_active=True)
    )
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text="Variables, write-only (stored encrypted).",
    )

    def validate_env(self, value):
        for key in value:
            try:
                env_key(key)
            except ValidationError as exc:
                raise serializers.ValidationError(f"{key}: {exc.messages[0]}") from exc
        return value


class WorkshopPatchSerializer(serializers.Serializer):
    preset = serializers.PrimaryKeyRelatedField(
        queryset=ResourcePreset.objects.filter(is_active=True), required=False
    )
    env = serializers.CharField(
        required=False, help_text="KEY=VALUE lines to set (added or replaced)."
    )

    def validate_env(self, value):
        try:
            return parse_env(value)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


def _own(request, pk) -> Workshop:
    return get_object_or_404(selectors.workshops_for(request.user), pk=pk)


# --- views ----------------------------------------------------------------------------


# The services' refusals (aladdin.lib.errors, mapped in aladdin.lib.api), for the schema.
_CONFLICT = (
    "quota_exceeded: CPU/memory over the plan's quota; state_conflict: not allowed in the "
    "workshop's state (or storage over the allowance, or the cluster refused)."
)


@extend_schema_view(get=extend_schema(responses={200: ImageSerializer(many=True), **LIST_ERRORS}))
class ImagesView(generics.ListAPIView):
    """Images a workshop or job can use."""

    serializer_class = ImageSerializer

    def get_queryset(self):
        return selectors.active_images()


@extend_schema_view(get=extend_schema(responses={200: PresetSerializer(many=True), **LIST_ERRORS}))
class PresetsView(generics.ListAPIView):
    """CPU/memory presets; "recommended" marks the default."""

    serializer_class = PresetSerializer

    def get_queryset(self):
        return selectors.active_presets()


class WorkshopsView(generics.GenericAPIView):
    serializer_class = WorkshopSerializer

    @extend_schema(
        operation_id="workshops_list",
        responses={200: WorkshopSerializer(many=True), **LIST_ERRORS},
    )
    def get(self, request):
        rows = selectors.workshops_for(request.user).prefetch_related("env_vars")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(WorkshopSerializer(page, many=True).data)

    @extend_schema(
        operation_id="workshops_create",
        request=WorkshopCreateSerializer,
        responses={
            201: WorkshopSerializer,
            **error_responses({400: "Bad input; fields say where.", 409: _CONFLICT}),
        },
    )
    def post(self, request):
        data = WorkshopCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        workshop = services.workshop_create(user=request.user, **data.validated_data)
        return Response(WorkshopSerializer(workshop).data, status=status.HTTP_201_CREATED)


class WorkshopView(APIView):
    @extend_schema(
        operation_id="workshops_retrieve",
        responses={200: WorkshopSerializer, **error_responses({404: NOT_FOUND})},
    )
    def get(self, request, pk: int):
        return Response(WorkshopSerializer(_own(request, pk)).data)

    @extend_schema(
        operation_id="workshops_update",
        request=WorkshopPatchSerializer,
        responses={
            200: WorkshopSerializer,
            **error_responses(
                {400: "Bad input; fields say where.", 404: NOT_FOUND, 409: _CONFLICT}
            ),
        },
        description="Change resources (they apply on the next start) or set ENV variables.",
    )
    def patch(self, request, pk: int):
        workshop = _own(request, pk)
        data = WorkshopPatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "preset" in data.validated_data:
            services.workshop_update_resources(
                workshop=workshop, preset=data.validated_data["preset"]
            )
        for key, value in data.validated_data.get("env", {}).items():
            services.workshop_env_set(workshop=workshop, key=key, value=value)
        return Response(WorkshopSerializer(_own(request, pk)).data)

    @extend_schema(
        operation_id="workshops_destroy",
        responses={202: WorkshopSerializer, **error_responses({404: NOT_FOUND, 409: _CONFLICT})},
    )
    def delete(self, request, pk: int):
        workshop = services.workshop_delete(workshop=_own(request, pk))
        return Response(WorkshopSerializer(workshop).data, status=status.HTTP_202_ACCEPTED)


class WorkshopActionView(APIView):
    action_name = ""

    @extend_schema(
        request=None,
        responses={202: WorkshopSerializer, **error_responses({404: NOT_FOUND, 409: _CONFLICT})},
    )
    def post(self, request, pk: int):
        service = {"start": services.workshop_start, "stop": services.workshop_stop}[
            self.action_name
        ]
        workshop = service(workshop=_own(request, pk))
        return Response(WorkshopSerializer(workshop).data, status=status.HTTP_202_ACCEPTED)


class WorkshopStartView(WorkshopActionView):
    """Start a stopped or failed workshop."""

    action_name = "start"


class WorkshopStopView(WorkshopActionView):
    """Stop a workshop; files under /root stay."""

    action_name = "stop"


# --- SSH keys ---------------------------------------------------------------------


class SSHKeySerializer(CachedFieldsModelSerializer):
    class Meta:
        model = SSHKey
        fields = [
            "id",
            "name",
            "algorithm",
            "bits",
            "fingerprint",
            "public_key",
            "created_at",
            "last_used_at",
        ]
        extra_kwargs = {
            "fingerprint": {"help_text": 'SHA256, as OpenSSH prints it: "SHA256:…".'},
            "last_used_at": {
                "help_text": "The last login through the SSH gateway (to the minute)."
            },
        }


class SSHKeyAddSerializer(serializers.Serializer):
    public_key = serializers.CharField(
        help_text="One OpenSSH public key line: ed25519, ECDSA, or RSA of at least 3072 bits."
    )
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)


class SSHKeyGenerateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)


class SSHKeyGeneratedSerializer(serializers.Serializer):
    key = SSHKeySerializer()
    private_key = serializers.CharField(
        help_text="The private key (OpenSSH format). Returned once, never stored: save it now."
    )


def _own_key(request, pk) -> SSHKey:
    return get_object_or_404(selectors.ssh_keys_for(request.user), pk=pk)


_KEY_REFUSED = "Not a key the gateway accepts, the limit of 20, or a key already registered."


class SSHKeysView(generics.GenericAPIView):
    serializer_class = SSHKeySerializer

    @extend_schema(
        operation_id="ssh_keys_list", responses={200: SSHKeySerializer(many=True), **LIST_ERRORS}
    )
    def get(self, request):
        page = self.paginate_queryset(selectors.ssh_keys_for(request.user))
        return self.get_paginated_response(SSHKeySerializer(page, many=True).data)

    @extend_schema(
        operation_id="ssh_keys_create",
        request=SSHKeyAddSerializer,
        responses={201: SSHKeySerializer, **error_responses({400: _KEY_REFUSED})},
    )
    def post(self, request):
        data = SSHKeyAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = services.ssh_key_add(user=request.user, **data.validated_data)
        return Response(SSHKeySerializer(key).data, status=status.HTTP_201_CREATED)


class SSHKeyGenerateView(APIView):
    @extend_schema(
        operation_id="ssh_keys_generate",
        request=SSHKeyGenerateSerializer,
        responses={201: SSHKeyGeneratedSerializer, **error_responses({400: _KEY_REFUSED})},
        description="Generate an ed25519 pair and register its public key. The private key "
        "is in this answer only.",
    )
    def post(self, request):
        data = SSHKeyGenerateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, private = services.ssh_key_generate(user=request.user, **data.validated_data)
        body = {"key": SSHKeySerializer(key).data, "private_key": private}
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class SSHKeyView(APIView):
    @extend_schema(
        operation_id="ssh_keys_retrieve",
        responses={200: SSHKeySerializer, **error_responses({404: NOT_FOUND})},
    )
    def get(self, request, pk: int):
        return Response(SSHKeySerializer(_own_key(request, pk)).data)

    @extend_schema(
        operation_id="ssh_keys_revoke",
        responses={204: None, **error_responses({404: NOT_FOUND})},
        description="Revoke the key: the gateway refuses it from now on.",
    )
    def delete(self, request, pk: int):
        services.ssh_key_revoke(key=_own_key(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SSHConfigSerializer(serializers.Serializer):
    host_alias = serializers.CharField(help_text='The config\'s Host, e.g. "dev.bj1".')
    host = serializers.CharField(help_text="The gateway's public host name (HostName).")
    port = serializers.IntegerField(help_text="The gateway's public port (Port).")
    user = serializers.CharField(help_text="The workshop's name: the SSH user selects it.")
    identity_file = serializers.CharField(
        help_text="IdentityFile: the key's file under ~/.alaya/ssh/ (from the key's name)."
    )
    host_key_alias = serializers.CharField(help_text="HostKeyAlias: the known_hosts entry's name.")
    known_hosts_file = serializers.CharField(help_text="Where the config reads known_hosts from.")
    known_hosts = serializers.ListField(
        child=serializers.CharField(),
        help_text="known_hosts lines of the gateway's host keys (empty before its first start).",
    )
    config = serializers.CharField(help_text="The ssh_config block, ready to write.")


class WorkshopSSHConfigView(APIView):
    @extend_schema(
        operation_id="workshops_ssh_config",
        parameters=[
            OpenApiParameter(
                "key",
                int,
                required=False,
                description="An SSH key's id: its file becomes the IdentityFile "
                "(default: the key used last, else the newest).",
            )
        ],
        responses={200: SSHConfigSerializer, **error_responses({404: NOT_FOUND})},
        description="The ssh_config block and known_hosts lines that reach this workshop "
        "through the SSH gateway, with no trust-on-first-use question.",
    )
    def get(self, request, pk: int):
        workshop = _own(request, pk)
        key_id = request.query_params.get("key")
        if key_id is None:
            key = selectors.ssh_default_key(request.user)
        elif key_id.isdigit():
            key = _own_key(request, int(key_id))
        else:
            raise Http404
        config = selectors.workshop_ssh_config(workshop=workshop, key=key)
        return Response(SSHConfigSerializer(config).data)


class WorkshopMetricsView(WorkloadMetricsView):
    """The Monitor: the workshop's CPU, memory and GPU use while it runs."""

    def workload_name(self, request, pk: int) -> str:
        return _own(request, pk).workload_name


urlpatterns = [
    path("ssh-keys", SSHKeysView.as_view(), name="api-ssh-keys"),
    path("ssh-keys/generate", SSHKeyGenerateView.as_view(), name="api-ssh-keys-generate"),
    path("ssh-keys/<int:pk>", SSHKeyView.as_view(), name="api-ssh-key"),
    path("images", ImagesView.as_view(), name="api-images"),
    path("presets", PresetsView.as_view(), name="api-presets"),
    path("workshops", WorkshopsView.as_view(), name="api-workshops"),
    path("workshops/<int:pk>", WorkshopView.as_view(), name="api-workshop"),
    path("workshops/<int:pk>/start", WorkshopStartView.as_view(), name="api-workshop-start"),
    path("workshops/<int:pk>/stop", WorkshopStopView.as_view(), name="api-workshop-stop"),
    path("workshops/<int:pk>/metrics", WorkshopMetricsView.as_view(), name="api-workshop-metrics"),
    path(
        "workshops/<int:pk>/ssh-config",
        WorkshopSSHConfigView.as_view(),
        name="api-workshop-ssh-config",
    ),
]
