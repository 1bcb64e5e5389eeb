"""Back office for GPU jobs: card presets (editable), jobs (read-mostly), configurations.

Staff never see ENV values: the encrypted column is excluded everywhere and
only ``env_keys`` (names) is shown.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from aladdin.lib.units import format_micro

from . import services
from .choices import ACTIVE_STATES
from .models import GpuType, Job, JobConfiguration, JobWorker


@admin.register(GpuType)
class GpuTypeAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "memory_gb",
        "price_micro_per_hour",
        "parallelism_weight",
        "cpu_millicores",
        "memory_mib",
        "multi_card_allowed",
    ]
    list_editable = ["price_micro_per_hour", "cpu_millicores", "memory_mib", "multi_card_allowed"]

    def has_delete_permission(self, request, obj=None):
        # Jobs and the ledger's reasons refer to presets (PROTECT): edit, don't delete.
        return False


class DeletedFilter(admin.SimpleListFilter):
    title = _("deleted by the user")
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


_JOB_FIELDS = [
    "user",
    "kind",
    "entry",
    "python_module",
    "args",
    "env_keys",
    "workdir",
    "image",
    "interpreter",
    "gpu_type",
    "cards_per_worker",
    "workers",
    "ports",
    "state",
    "exit_code",
    "reason",
    "gpu_devices",
    "created_at",
    "started_at",
    "ended_at",
    "last_seen_at",
    "stop_requested_at",
    "deleted_at",
    "charged_micro",
    "metering_closed",
    "logs_deleted",
    "idempotency_key",
]


class JobWorkerInline(admin.TabularInline):
    """Each worker's allocation window and what it was charged (the metering's rows)."""

    model = JobWorker
    fields = readonly_fields = [
        "index",
        "started_at",
        "ended_at",
        "charged_micro",
        "metering_closed",
    ]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "user",
        "kind",
        "state",
        "gpu_type",
        "cards",
        "started_at",
        "ended_at",
        "charged",
        "deleted_at",
    ]
    list_filter = ["state", "kind", "gpu_type", DeletedFilter]
    search_fields = ["user__phone", "entry"]
    list_select_related = ["user", "gpu_type"]
    date_hierarchy = "created_at"
    # Read-only: state changes go through services (stop) so that metering and
    # the cluster stay consistent; env_encrypted is never shown.
    fields = _JOB_FIELDS
    readonly_fields = _JOB_FIELDS
    actions = ["stop_jobs"]
    inlines = [JobWorkerInline]

    @admin.display(description=_("charged (DCU)"), ordering="charged_micro")
    def charged(self, obj: Job) -> str:
        return format_micro(obj.charged_micro)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # The ledger names jobs: rows stay.
        return False

    def has_change_permission(self, request, obj=None):
        # View only: a save of the whole row could write back a charged_micro
        # that the meter has moved on since the page was read. Staff act on
        # jobs through the stop action (a service).
        return False

    @admin.action(description=_("Stop selected jobs"), permissions=["view"])
    def stop_jobs(self, request, queryset):
        stopped = 0
        for job in queryset.filter(state__in=ACTIVE_STATES, deleted_at__isnull=True):
            services.job_stop(job=job, reason=str(_("Stopped by support staff.")))
            stopped += 1
        self.message_user(request, _("%(n)d job(s) stopping.") % {"n": stopped}, messages.SUCCESS)


_CONFIG_FIELDS = ["user", *JobConfiguration.SHOWN_FIELDS]


@admin.register(JobConfiguration)
class JobConfigurationAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "kind", "entry", "gpu_type", "cards_per_worker", "updated_at"]
    list_filter = ["kind", "gpu_type"]
    search_fields = ["name", "user__phone", "entry"]
    list_select_related = ["user", "gpu_type"]
    fields = _CONFIG_FIELDS
    readonly_fields = _CONFIG_FIELDS

    def has_add_permission(self, request):
        return False
