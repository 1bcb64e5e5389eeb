import copy

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from . import services
from .models import BannedPhone, SmsMessage, StaffAction, User


class StaffPasswordChangeForm(AdminPasswordChangeForm):
    """The back office's password form, saved through the service that also revokes keys and tokens."""

    actor: User | None = None

    def save(self, commit=True):
        usable = self.cleaned_data.get("set_usable_password", True)
        return services.user_password_set_by_staff(
            user=self.user,
            actor=self.actor,
            password=self.cleaned_data["password1"] if usable else None,
        )


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("-date_joined",)
    list_display = (
        "phone",
        "username",
        "education_status",
        "is_active",
        "is_staff",
        "banned_at",
        "date_joined",
        "last_activity_at",
        "user_360_link",
    )
    list_filter = ("education_status", "is_active", "is_staff")
    search_fields = ("phone", "username", "education_email")
    readonly_fields = (
        "banned_at",
        "ban_reason",
        "last_activity_at",
        "date_joined",
        "last_login",
        "user_360_link",
    )
    fieldsets = (
        (_("Back office"), {"fields": ("user_360_link",)}),
        (None, {"fields": ("phone", "phone_verified", "username", "password", "language")}),
        (
            _("Education"),
            {"fields": ("education_status", "education_email", "education_verified_at")},
        ),
        (_("Status"), {"fields": ("is_active", "banned_at", "ban_reason", "last_activity_at")}),
        (_("Permissions"), {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("phone", "password1", "password2")}),)
    actions = ["approve_education", "ban_for_mining"]
    change_password_form = StaffPasswordChangeForm

    def user_change_password(self, request, id, form_url=""):
        # The audit record names the member of staff. Django builds the form
        # as self.change_password_form(user, data); a ModelAdmin is shared by
        # every request, so the actor is bound on a copy for this one call.
        bound = copy.copy(self)
        bound.change_password_form = type(
            "BoundStaffPasswordChangeForm", (StaffPasswordChangeForm,), {"actor": request.user}
        )
        return BaseUserAdmin.user_change_password(bound, request, id, form_url)

    def get_search_results(self, request, queryset, search_term):
        # Staff type numbers as students do (13800138000); stored as +86….
        from .phone import normalize_phone

        try:
            search_term = normalize_phone(search_term)
        except Exception:  # noqa: BLE001 - not a phone: search as typed
            pass
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description=_("360° page"))
    def user_360_link(self, obj):
        # The back office's page of everything about the user, with the actions.
        if obj is None or obj.pk is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>', reverse("backoffice:user", args=[obj.pk]), _("360° view")
        )

    @admin.action(description=_("Approve education status"))
    def approve_education(self, request, queryset):
        for user in queryset:
            services.education_set_by_staff(
                user=user, actor=request.user, approved=True, reason="admin action"
            )
        self.message_user(request, _("Education status approved."), messages.SUCCESS)

    @admin.action(description=_("Ban for mining (permanent)"))
    def ban_for_mining(self, request, queryset):
        # Two steps: the first POST shows a confirmation page asking why; the
        # second carries the reason and bans.
        reason = (request.POST.get("ban_reason") or "").strip()
        if request.POST.get("confirm_ban") and reason:
            for user in queryset:
                services.user_ban(user=user, actor=request.user, reason=reason)
            self.message_user(
                request, _("%(n)d account(s) banned.") % {"n": queryset.count()}, messages.SUCCESS
            )
            return None
        return TemplateResponse(
            request,
            "admin/accounts/ban_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Ban for mining"),
                "users": queryset,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "reason_missing": bool(request.POST.get("confirm_ban")),
                "opts": self.model._meta,
            },
        )


@admin.register(BannedPhone)
class BannedPhoneAdmin(admin.ModelAdmin):
    list_display = ("phone", "banned_at", "reason")
    search_fields = ("phone",)


@admin.register(StaffAction)
class StaffActionAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor", "action", "target_user", "reason")
    list_filter = ("action",)
    search_fields = ("target_user__phone", "reason")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


@admin.register(SmsMessage)
class SmsMessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "phone", "purpose", "backend", "ok")
    list_filter = ("purpose", "backend", "ok")
    search_fields = ("phone",)
