"""Back office for workshops: catalog (images, presets, platform env) and workshops."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from aladdin.backoffice import services as backoffice_services
from aladdin.backoffice.admin_audit import AuditedModelAdmin, reason_action
from aladdin.backoffice.columns import reason_column
from aladdin.workloads.models import Image, PlatformEnvVar

from . import services
from .choices import WorkshopState
from .models import ResourcePreset, SSHKey, Workshop, WorkshopEvent

BUILD_FIELDS = Image.BUILD_FIELDS


@admin.register(Image)
class ImageAdmin(AuditedModelAdmin):
    """The catalog: each image's recipe (staff edit it) and where its build stands (read-only).

    Editing a recipe gives it a new key: the backend builds a new
    environment beside the old one, so running workloads keep theirs.
    """

    list_display = ["name", "tag", "is_active", "build_state", "build_progress", "cpu_only", "sort"]
    # No list_editable: every edit goes through the form, which asks why (audit log).
    audit_action = "image"
    list_filter = ["build_state", "is_active"]
    search_fields = ["name", "tag", "description"]
    actions = ["build_now"]
    fieldsets = [
        (None, {"fields": ["name", "tag", "description", "is_active", "sort"]}),
        (
            _("Recipe"),
            {
                "fields": [
                    "python_version",
                    "packages",
                    "apt_packages",
                    "conda",
                    "cuda",
                    "base_os",
                    "container_image",
                ]
            },
        ),
        (_("Build on this platform"), {"fields": BUILD_FIELDS}),
    ]
    # The backend's answer (workshops.sync_images), never edited by hand.
    readonly_fields = BUILD_FIELDS

    @admin.action(description=_("Build now (or retry a failed build)"), permissions=["change"])
    def build_now(self, request, queryset):
        return reason_action(
            self,
            request,
            queryset,
            title=_("Build images now"),
            warning=_("The backend builds each selected image again (or retries a failed build)."),
            apply=lambda image, reason: backoffice_services.image_build_by_staff(
                image=image, actor=request.user, reason=reason
            ),
            done=lambda n: (
                _("Build requested for %(count)s image(s); the list shows their progress.")
                % {"count": n}
            ),
        )


@admin.register(ResourcePreset)
class ResourcePresetAdmin(AuditedModelAdmin):
    list_display = ["name", "label", "cpu_millicores", "memory_mib", "recommended", "is_active"]
    audit_action = "preset"

    @admin.display(description=_("label"))
    def label(self, obj: ResourcePreset) -> str:
        return obj.label


@admin.register(PlatformEnvVar)
class PlatformEnvVarAdmin(AuditedModelAdmin):
    list_display = ["key", "value", "description", "is_active", "sort"]
    audit_action = "platform_env"


@admin.register(Workshop)
class WorkshopAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "state", "image", "preset", "created_at"]
    list_filter = ["state"]
    search_fields = ["name", "user__phone"]
    list_select_related = ["user", "image", "preset"]
    # Staff see and stop workshops; they never see ENV values (write-only, encrypted).
    readonly_fields = [
        "user",
        "name",
        "image",
        "preset",
        "cpu_millicores",
        "memory_mib",
        "applied_cpu_millicores",
        "applied_memory_mib",
        "state",
        "reason_shown",
        "created_at",
        "started_at",
        "stopped_at",
    ]
    # The reason's message id and parameters are read through reason_shown.
    exclude = ["reason", "reason_id", "reason_params"]
    reason_shown = reason_column
    actions = ["stop_workshops"]

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Stop selected workshops"), permissions=["change"])
    def stop_workshops(self, request, queryset):
        return reason_action(
            self,
            request,
            queryset.filter(state__in=[WorkshopState.CREATING, WorkshopState.RUNNING]),
            title=_("Stop workshops"),
            warning=_(
                "Each selected workshop stops; its files under /root stay. The user sees why."
            ),
            apply=lambda workshop, reason: backoffice_services.workshop_stop_by_staff(
                workshop=workshop, actor=request.user, reason=reason
            ),
            done=lambda n: _("%(n)d workshop(s) stopping.") % {"n": n},
            errors=(ValidationError, services.WorkshopError),
        )


@admin.register(WorkshopEvent)
class WorkshopEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "name", "kind", "message", "workshop"]
    list_filter = ["kind"]
    search_fields = ["name", "message"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SSHKey)
class SSHKeyAdmin(admin.ModelAdmin):
    """Staff see keys and revoke them; they never add one for a user (no private keys pass here)."""

    list_display = [
        "fingerprint",
        "user",
        "name",
        "algorithm",
        "bits",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["algorithm", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["fingerprint", "name", "user__phone"]
    list_select_related = ["user"]
    readonly_fields = [
        "user",
        "name",
        "algorithm",
        "bits",
        "public_key",
        "fingerprint",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke_keys"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row is the record of who had the key

    @admin.action(description=_("Revoke selected SSH keys"), permissions=["change"])
    def revoke_keys(self, request, queryset):
        return reason_action(
            self,
            request,
            queryset.filter(revoked_at__isnull=True),
            title=_("Revoke SSH keys"),
            warning=_("Each selected key stops working at once; the row stays as the record."),
            apply=lambda key, reason: backoffice_services.ssh_key_revoke_by_staff(
                key=key, actor=request.user, reason=reason
            ),
            done=lambda n: _("%(n)d SSH key(s) revoked.") % {"n": n},
        )
