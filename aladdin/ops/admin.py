"""Back office: when each periodic task last ran (read-only; the tasks write it)."""

from django.contrib import admin

from .models import TaskHeartbeat


@admin.register(TaskHeartbeat)
class TaskHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("task", "last_success_at", "last_failure_at")
    readonly_fields = ("task", "last_success_at", "last_failure_at", "last_error")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
