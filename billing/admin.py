from django.contrib import admin

from .models import Account, Grant, LedgerEntry, Plan, Subscription


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    """Plans and prices are data that staff edit (SPEC §3.1)."""

    list_display = (
        "code",
        "name",
        "kind",
        "tier",
        "dcu_micro",
        "gpu_parallelism",
        "price_fen",
        "education_price_fen",
        "is_active",
        "sort_order",
    )
    list_filter = ("kind", "is_active")
    search_fields = ("code", "name")
    ordering = ("sort_order", "pk")


class _ViewOnlyAdmin(admin.ModelAdmin):
    # Balances change only through services, with a ledger entry under the
    # account lock (DESIGN rule 5); editing them here would bypass both.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(_ViewOnlyAdmin):
    list_display = ("user", "debt_micro")
    search_fields = ("user__phone",)


@admin.register(Subscription)
class SubscriptionAdmin(_ViewOnlyAdmin):
    list_display = ("user", "plan", "state", "starts_at", "ends_at", "source")
    list_filter = ("state", "plan")
    search_fields = ("user__phone", "source")


@admin.register(Grant)
class GrantAdmin(_ViewOnlyAdmin):
    list_display = (
        "user",
        "grant_class",
        "tier",
        "granted_micro",
        "remaining_micro",
        "state",
        "active_until",
        "carry_until",
        "may_carry",
    )
    list_filter = ("grant_class", "state")
    search_fields = ("user__phone",)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(_ViewOnlyAdmin):
    """The ledger is append-only: read-only here too."""

    list_display = ("created_at", "user", "kind", "delta_micro", "grant", "idempotency_key")
    list_filter = ("kind",)
    search_fields = ("user__phone", "idempotency_key", "reason")
    date_hierarchy = "created_at"
