import copy

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserChangeForm
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from . import services
from .choices import STAFF_ACTION_LABELS, audit_field_label, audit_value, staff_action_label
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


class StaffUserChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"
        # Django's form makes "username" a UsernameField, which fails on an
        # empty value of a nullable column (a 500 on saving any student who
        # never chose a username). The login is the phone; username is optional.
        field_classes: dict = {}


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = StaffUserChangeForm
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
    # Who is staff and what they may do is the superusers' to decide: support
    # staff (change_user) see these read-only. Activation too: a ban is undone
    # by a superuser, never by ticking "active" again.
    ESCALATION_FIELDS = ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return fields
        return fields + tuple(f for f in self.ESCALATION_FIELDS if f not in fields)

    def has_change_permission(self, request, obj=None):
        # A staff account (its phone, its password) is changed by superusers
        # only: support changing a superuser's password could log in as them.
        if obj is not None and obj.is_staff and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

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

    @admin.action(description=_("Approve education status"), permissions=["change"])
    def approve_education(self, request, queryset):
        from aladdin.backoffice.admin_audit import reason_action

        return reason_action(
            self,
            request,
            queryset,
            title=_("Approve education status"),
            warning=_("The selected users get education prices."),
            apply=lambda user, reason: services.education_set_by_staff(
                user=user, actor=request.user, approved=True, reason=reason
            ),
            done=lambda n: _("Education status approved."),
        )

    @admin.action(description=_("Ban for mining (permanent)"), permissions=["change"])
    def ban_for_mining(self, request, queryset):
        # Two steps: the first POST shows a confirmation page asking why; the
        # second carries the reason and bans.
        reason = (request.POST.get("ban_reason") or "").strip()
        if request.POST.get("confirm_ban") and reason:
            # The whole ban (workloads stopped, compute forfeited, one audit
            # record) is the back office's; accounts alone could only disable.
            from django.core.exceptions import ValidationError

            from aladdin.backoffice.services import user_ban_for_mining

            banned = 0
            for user in queryset:
                try:
                    user_ban_for_mining(user=user, actor=request.user, reason=reason)
                    banned += 1
                except ValidationError as exc:
                    self.message_user(request, f"{user}: {' '.join(exc.messages)}", messages.ERROR)
            self.message_user(
                request, _("%(n)d account(s) banned.") % {"n": banned}, messages.SUCCESS
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


class StaffActionKindFilter(admin.SimpleListFilter):
    """Filter by action, with the actions' translated names (only those in the log)."""

    title = _("action")
    parameter_name = "action"

    def lookups(self, request, model_admin):
        codes = StaffAction.objects.order_by("action").values_list("action", flat=True).distinct()
        return sorted(((c, staff_action_label(c)) for c in codes), key=lambda x: str(x[1]))

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(StaffAction)
class StaffActionAdmin(admin.ModelAdmin):
    """The audit log (SPEC §8): who, when, what, why, before → after. Read-only for everyone.

    Append-only by construction (the model refuses changes and deletes); here
    nobody, superusers included, may add, change or delete a record.
    """

    list_display = (
        "created_at",
        "actor",
        "action_name",
        "target_user",
        "subject",
        "reason",
        "changes",
    )
    list_filter = (StaffActionKindFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = (
        "target_user__phone",
        "target_user__username",
        "actor__phone",
        "actor__username",
        "action",
        "reason",
        "subject_repr",
        "subject_id",
        "subject_type",
    )
    list_select_related = ("actor", "target_user")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "actor",
        "action_name",
        "target_user",
        "subject",
        "reason",
        "changes",
        "detail_list",
    )
    readonly_fields = fields

    @admin.display(description=_("action"), ordering="action")
    def action_name(self, obj: StaffAction) -> str:
        return staff_action_label(obj.action)

    @admin.display(description=_("object"), ordering="subject_repr")
    def subject(self, obj: StaffAction) -> str:
        if not obj.subject_type:
            return "–"
        return f"{obj.subject_repr} ({obj.subject_type} #{obj.subject_id})"

    @admin.display(description=_("before → after"))
    def changes(self, obj: StaffAction):
        keys = list(dict.fromkeys([*(obj.before or {}), *(obj.after or {})]))
        if not keys:
            return "–"
        return format_html(
            '<ul class="audit-changes">{}</ul>',
            format_html_join(
                "",
                "<li><b>{}</b>: {} → {}</li>",
                (
                    (
                        audit_field_label(k, obj.subject_type),
                        audit_value(k, (obj.before or {}).get(k)),
                        audit_value(k, (obj.after or {}).get(k)),
                    )
                    for k in keys
                ),
            ),
        )

    @admin.display(description=_("details"))
    def detail_list(self, obj: StaffAction):
        if not obj.details:
            return "–"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li><b>{}</b>: {}</li>",
                (
                    (audit_field_label(k, obj.subject_type), audit_value(k, v))
                    for k, v in obj.details.items()
                ),
            ),
        )

    def get_search_results(self, request, queryset, search_term):
        # Phones as people type them (13800138000, stored +86…), and action
        # names as staff read them ("封禁", "Voucher"), not only their codes.
        from .phone import normalize_phone

        term = search_term
        try:
            term = normalize_phone(search_term)
        except Exception:  # noqa: BLE001 - not a phone: search as typed
            pass
        results, may_have_duplicates = super().get_search_results(request, queryset, term)
        wanted = search_term.strip().casefold()
        if wanted:
            codes = [
                code
                for code in STAFF_ACTION_LABELS
                if wanted in str(staff_action_label(code)).casefold()
            ]
            if codes:
                results = queryset.filter(Q(pk__in=results.values("pk")) | Q(action__in=codes))
        return results, may_have_duplicates

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SmsMessage)
class SmsMessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "phone", "purpose", "backend", "ok")
    list_filter = ("purpose", "backend", "ok")
    search_fields = ("phone",)
