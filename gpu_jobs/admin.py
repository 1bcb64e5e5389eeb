"""Back office for GPU jobs: card presets (editable), jobs (read-mostly), configurations.

Staff never see ENV values: the encrypted column is excluded everywhere and
only ``env_keys`` (names) is shown.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from aladdin.backoffice import services as backoffice_services
from aladdin.backoffice.admin_audit import AuditedModelAdmin, reason_action
from aladdin.backoffice.columns import reason_column
from aladdin.lib.units import dcu_to_micro, format_micro

from . import services
from .choices import ACTIVE_STATES
from .models import GpuType, Job, JobConfiguration, JobWorker


class GpuTypeForm(forms.ModelForm):
    """A card preset with its price in DCU per hour (the model keeps µDCU per hour)."""

    price_dcu_per_hour = forms.DecimalField(
        label=_("Price (DCU per hour)"),
        min_value=Decimal(0),
        max_digits=15,
        decimal_places=6,
        help_text=_("E.g. 1.28 for a 40G card, 2.56 for an 80G card."),
    )

    class Meta:
        model = GpuType
        fields = (
            "code",
            "name",
            "memory_gb",
            "parallelism_weight",
            "cpu_millicores",
            "memory_mib",
            "multi_card_allowed",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A Decimal, as cleaned: a string initial always counts as changed.
        self.initial.setdefault(
            "price_dcu_per_hour", Decimal(format_micro(self.instance.price_micro_per_hour or 0))
        )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("price_dcu_per_hour") is not None:
            self.instance.price_micro_per_hour = dcu_to_micro(cleaned["price_dcu_per_hour"])
        return cleaned


@admin.register(GpuType)
class GpuTypeAdmin(AuditedModelAdmin):
    """Cards and their prices (DCU per card-hour): edits ask why and are in the audit log."""

    form = GpuTypeForm
    list_display = [
        "code",
        "name",
        "memory_gb",
        "price_dcu",
        "parallelism_weight",
        "cpu_millicores",
        "memory_mib",
        "multi_card_allowed",
    ]
    # No list_editable: every change goes through the form, which asks why
    # (audit log); the price is edited there in DCU per hour, not raw µDCU.
    audit_action = "gpu_type"
    fields = [
        "code",
        "name",
        "memory_gb",
        "price_dcu_per_hour",
        "parallelism_weight",
        "cpu_millicores",
        "memory_mib",
        "multi_card_allowed",
    ]

    @admin.display(description=_("Price (DCU per hour)"), ordering="price_micro_per_hour")
    def price_dcu(self, obj: GpuType) -> str:
        return format_micro(obj.price_micro_per_hour)

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
    "reason_shown",
    "gpu_devices",
    "created_at",
    "started_at",
    "ended_at",
    "last_seen_at",
    "stop_requested_at",
    "deleted_at",
    "charged",
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
        "charged",
        "metering_closed",
    ]
    extra = 0
    can_delete = False

    @admin.display(description=_("charged (DCU)"))
    def charged(self, obj: JobWorker) -> str:
        return format_micro(obj.charged_micro)

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
    reason_shown = reason_column
    inlines = [JobWorkerInline]

    @admin.display(description=_("cards"))
    def cards(self, obj: Job) -> int:
        return obj.cards

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

    def has_stop_permission(self, request):
        # The form is read-only (above); stopping is what change_job grants,
        # as on the user 360° page (aladdin.backoffice.actions.PERMISSIONS).
        return request.user.has_perm("gpu_jobs.change_job")

    @admin.action(description=_("Stop selected jobs"), permissions=["stop"])
    def stop_jobs(self, request, queryset):
        return reason_action(
            self,
            request,
            queryset.filter(state__in=ACTIVE_STATES, deleted_at__isnull=True),
            title=_("Stop jobs"),
            warning=_(
                "Each selected job stops; billing ends when its cards are released. "
                "The user sees why."
            ),
            apply=lambda job, reason: backoffice_services.job_stop_by_staff(
                job=job, actor=request.user, reason=reason
            ),
            done=lambda n: _("%(n)d job(s) stopping.") % {"n": n},
            errors=(ValidationError, services.JobError),
        )


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
