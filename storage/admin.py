"""Back office for storage: usage list, reclaim queue (with holds), charges and records.

Staff change volumes only through services (audited as StaffAction): the
hold/lift actions and "reclaim now" on the reclaim queue.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from aladdin.backoffice.admin_audit import reason_action
from aladdin.lib.units import format_micro
from billing.choices import SubscriptionState
from billing.models import Subscription

from . import selectors, services
from .choices import GIB
from .models import DailyPeak, Reclamation, RetentionWarning, StorageAllowance, StorageCharge


class ReclaimQueueFilter(admin.SimpleListFilter):
    """Volumes of users without an active plan: the ones retention may reclaim."""

    title = gettext_lazy("reclaim queue")
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [("yes", gettext_lazy("No active plan (in the reclaim queue)"))]

    def queryset(self, request, queryset):
        if self.value() != "yes":
            return queryset
        now = timezone.now()
        active = Subscription.objects.filter(
            user=OuterRef("user"),
            state=SubscriptionState.ACTIVE,
            starts_at__lte=now,
            ends_at__gt=now,
        )
        return queryset.filter(has_volume=True).exclude(Exists(active))


@admin.register(StorageAllowance)
class StorageAllowanceAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "used_gib",
        "allowance",
        "chosen_gib",
        "staff_gib",
        "has_volume",
        "hold",
        "reclaim_at",
        "last_sampled_at",
    )
    list_filter = (ReclaimQueueFilter, "has_volume", "hold")
    search_fields = ("user__phone", "user__username")
    readonly_fields = ("used_gib", "last_sampled_at", "hold_by", "hold_at", "has_volume")
    fields = (
        "user",
        "chosen_gib",
        "staff_gib",
        "has_volume",
        "used_gib",
        "last_sampled_at",
        "hold",
        "hold_reason",
        "hold_by",
        "hold_at",
    )
    raw_id_fields = ("user",)
    actions = ("hold_storage", "lift_hold", "reclaim_now")
    ordering = ("-last_bytes",)

    def has_change_permission(self, request, obj=None):
        # Changes go through the actions (audited services), not the form.
        return False

    @admin.display(description=gettext_lazy("used (GiB)"), ordering="last_bytes")
    def used_gib(self, obj):
        return f"{obj.last_bytes / GIB:.2f}"

    @admin.display(description=gettext_lazy("allowance (GiB)"))
    def allowance(self, obj):
        return selectors.allowance_gib(obj.user)

    @admin.display(description=gettext_lazy("reclaim at"))
    def reclaim_at(self, obj):
        if not obj.has_volume or obj.hold:
            return "—"
        return selectors.retention_for(obj.user).reclaim_at or "—"

    def has_act_permission(self, request):
        # The form is read-only (above); the actions need what the 360° page's
        # storage actions need (aladdin.backoffice.actions.PERMISSIONS).
        return request.user.has_perm("storage.change_storageallowance")

    @admin.action(
        description=gettext_lazy("Hold: never reclaim these volumes"), permissions=["act"]
    )
    def hold_storage(self, request, queryset):
        return reason_action(
            self,
            request,
            queryset.select_related("user"),
            title=_("Hold storage"),
            warning=_("The selected volumes are never reclaimed while the hold lasts."),
            apply=lambda row, reason: (
                services.storage_hold_set(
                    user=row.user, actor=request.user, hold=True, reason=reason
                )
                or True
            ),
            done=lambda n: _("Storage held."),
        )

    @admin.action(description=gettext_lazy("Lift the hold"), permissions=["act"])
    def lift_hold(self, request, queryset):
        return reason_action(
            self,
            request,
            queryset.select_related("user"),
            title=_("Lift the hold"),
            warning=_("The selected volumes follow the retention rules again."),
            apply=lambda row, reason: (
                services.storage_hold_set(
                    user=row.user, actor=request.user, hold=False, reason=reason
                )
                or True
            ),
            done=lambda n: _("Hold lifted."),
        )

    @admin.action(description=gettext_lazy("Reclaim now (deletes the volume)"), permissions=["act"])
    def reclaim_now(self, request, queryset):
        return reason_action(
            self,
            request,
            queryset.filter(has_volume=True, hold=False).select_related("user"),
            title=_("Reclaim storage now"),
            warning=_(
                "The selected volumes and every file in them are deleted. This cannot be undone."
            ),
            apply=lambda row, reason: services.storage_reclaim_by_staff(
                user=row.user, actor=request.user, reason=reason
            ),
            done=lambda n: _("%(n)s volume(s) reclaimed.") % {"n": n},
        )


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.2f}"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DailyPeak)
class DailyPeakAdmin(ReadOnlyAdmin):
    list_display = ("user", "day", "peak_gib", "settled")
    fields = readonly_fields = ("user", "day", "peak_gib", "settled")
    list_filter = ("settled",)
    date_hierarchy = "day"
    search_fields = ("user__phone",)
    list_select_related = ("user",)

    @admin.display(description=gettext_lazy("peak use (GiB)"), ordering="peak_bytes")
    def peak_gib(self, obj):
        return _gib(obj.peak_bytes)


@admin.register(StorageCharge)
class StorageChargeAdmin(ReadOnlyAdmin):
    list_display = ("user", "day", "peak_gib", "free_gib", "charged_gib", "fee_dcu")
    fields = readonly_fields = (
        "user",
        "day",
        "peak_gib",
        "free_gib",
        "charged_gib",
        "fee_dcu",
        "ledger_key",
        "created_at",
    )
    date_hierarchy = "day"
    search_fields = ("user__phone",)
    list_select_related = ("user",)

    @admin.display(description=gettext_lazy("peak use (GiB)"), ordering="peak_bytes")
    def peak_gib(self, obj):
        return _gib(obj.peak_bytes)

    @admin.display(description=gettext_lazy("fee (DCU)"), ordering="amount_micro")
    def fee_dcu(self, obj):
        return format_micro(obj.amount_micro)


class OpenWarningFilter(admin.SimpleListFilter):
    """``?queue=open``: the back office's "retention warnings" queue (warnings still in force)."""

    title = gettext_lazy("support queue")
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [("open", gettext_lazy("Reclaim still ahead"))]

    def queryset(self, request, queryset):
        if self.value() != "open":
            return queryset
        return selectors.retention_warnings_open(queryset)


@admin.register(RetentionWarning)
class RetentionWarningAdmin(ReadOnlyAdmin):
    list_display = ("user", "sent_at", "reclaim_at")
    list_filter = (OpenWarningFilter,)
    search_fields = ("user__phone",)


@admin.register(Reclamation)
class ReclamationAdmin(ReadOnlyAdmin):
    list_display = ("user", "at", "used_gib", "reason", "basis_at")
    fields = readonly_fields = ("user", "at", "used_gib", "reason", "basis_at")
    list_filter = ("reason",)
    search_fields = ("user__phone",)
    list_select_related = ("user",)

    @admin.display(description=gettext_lazy("use (GiB)"), ordering="bytes")
    def used_gib(self, obj):
        return _gib(obj.bytes)
