"""Back office for workshops: catalog (images, presets, platform env) and workshops."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from aladdin.workloads.models import Image, PlatformEnvVar

from . import services
from .choices import WorkshopState
from .models import ResourcePreset, SSHKey, Workshop, WorkshopEvent

BUILD_FIELDS = Image.BUILD_FIELDS


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    """The catalog: each image's recipe (staff edit it) and where its build stands (read-only).

    Editing a recipe gives it a new key: the backend builds a new
    environment beside the old one, so running workloads keep theirs.
    """

    list_display = ["name", "tag", "is_active", "build_state", "build_progress", "cpu_only", "sort"]
    list_editable = ["is_active", "sort"]
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

    @admin.action(description=_("Build now (or retry a failed build)"))
    def build_now(self, request, queryset):
        from . import tasks

        for image in queryset:
            tasks.build_image.delay(image.pk)
            self.log_change(request, image, "build requested")
        self.message_user(
            request,
            _("Build requested for %(count)s image(s); the list shows their progress.")
            % {"count": queryset.count()},
        )


@admin.register(ResourcePreset)
class ResourcePresetAdmin(admin.ModelAdmin):
    list_display = ["name", "label", "cpu_millicores", "memory_mib", "recommended", "is_active"]
    list_editable = ["recommended", "is_active"]


@admin.register(PlatformEnvVar)
class PlatformEnvVarAdmin(admin.ModelAdmin):
    list_display = ["key", "value", "description", "is_active", "sort"]
    list_editable = ["is_active"]


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
        "reason",
        "created_at",
        "started_at",
        "stopped_at",
    ]
    actions = ["stop_workshops"]

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Stop selected workshops"))
    def stop_workshops(self, request, queryset):
        stopped = 0
        for workshop in queryset.filter(state__in=[WorkshopState.CREATING, WorkshopState.RUNNING]):
            services.workshop_stop(workshop=workshop)
            stopped += 1
        self.message_user(
            request, _("%(n)d workshop(s) stopping.") % {"n": stopped}, messages.SUCCESS
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

    @admin.action(description=_("Revoke selected SSH keys"))
    def revoke_keys(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            services.ssh_key_revoke(key=key)
        self.message_user(
            request, _("%(n)d SSH key(s) revoked.") % {"n": len(keys)}, messages.SUCCESS
        )
