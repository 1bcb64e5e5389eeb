"""Admin building blocks that make every staff action ask why and leave an audit record.

- :class:`AuditedModelAdmin`: a ModelAdmin whose add/change form has a
  required "reason" field and whose saves and deletes are recorded with
  the changed fields' values before and after (JSON-safe), through
  :func:`aladdin.backoffice.audit.record`, in the same transaction as the
  write (the admin's change and delete views run in one transaction).
- :func:`reason_action`: an admin action that first shows a confirmation
  page asking why, then applies a service to each selected object with
  that reason.

The apps' admin modules import this (they register on the back office's
site anyway); their models, services and selectors never do.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import HttpRequest, QueryDict
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from . import audit

REASON_FIELD = "audit_reason"


def json_safe(value: Any) -> Any:
    """A form or model value as JSON: rows by primary key, times and decimals as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, models.QuerySet):
        return sorted(json_safe(v) for v in value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [json_safe(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | datetime.timedelta):
        return str(value)
    if hasattr(value, "name") and hasattr(value, "url"):  # a FieldFile
        return value.name or ""
    return str(value)


def _reason_field() -> forms.CharField:
    return forms.CharField(
        label=_("Reason for this change"),
        help_text=_("Required. Recorded in the audit log with your name and the values changed."),
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        required=True,
        strip=True,
        error_messages={"required": _("Say why: a reason is required for every staff action.")},
    )


class AuditedModelAdmin(admin.ModelAdmin):
    """A ModelAdmin whose every add, change and delete asks why and is recorded.

    ``audit_action``: the action's stem in the log (``"plan"`` gives
    ``plan_add``, ``plan_change``, ``plan_delete``); by default the model's
    name. Fields in ``audit_secret_fields`` are recorded as changed, never
    with their values. ``list_editable`` is refused (a changelist edit has
    no reason field): edit each row through its form.
    """

    audit_action: str = ""
    audit_secret_fields: tuple[str, ...] = ()
    delete_confirmation_template = "admin/backoffice/audited_delete_confirmation.html"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "list_editable", ()):
            raise TypeError(
                f"{cls.__name__}: list_editable bypasses the reason an audited edit needs"
            )

    # --- the reason field ---------------------------------------------------------
    def get_form(self, request, obj=None, change=False, **kwargs):
        base = kwargs.get("form") or self.form
        kwargs["form"] = type(f"Audited{base.__name__}", (base,), {REASON_FIELD: _reason_field()})
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        # Placed by get_fieldsets, last and only for who may save.
        return [f for f in super().get_fields(request, obj) if f != REASON_FIELD]

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        named = {f for _name, opts in fieldsets for f in admin.utils.flatten(opts["fields"])}
        may_save = (
            self.has_add_permission(request)
            if obj is None
            else self.has_change_permission(request, obj)
        )
        if REASON_FIELD not in named and may_save:
            fieldsets.append((_("Why"), {"fields": [REASON_FIELD]}))
        return fieldsets

    # --- records --------------------------------------------------------------------
    def _action(self, verb: str) -> str:
        return f"{self.audit_action or self.model._meta.model_name}_{verb}"

    def _value(self, name: str, value: Any) -> Any:
        return "••••••" if name in self.audit_secret_fields else json_safe(value)

    def _target_user(self, obj) -> int | None:
        return getattr(obj, "user_id", None)

    def save_model(self, request, obj, form, change):
        reason = form.cleaned_data.get(REASON_FIELD, "")
        fields = [f for f in form.changed_data if f != REASON_FIELD]
        before = {f: self._value(f, form.initial.get(f)) for f in fields} if change else {}
        super().save_model(request, obj, form, change)
        after = {f: self._value(f, form.cleaned_data.get(f)) for f in fields}
        audit.record(
            actor=request.user,
            action=self._action("change" if change else "add"),
            reason=reason,
            target_user=self._target_user(obj),
            subject=obj,
            before=before,
            after=after,
        )

    # --- deletes: the confirmation page asks why ------------------------------------
    def _delete_reason(self, request: HttpRequest) -> str:
        return (request.POST.get(REASON_FIELD) or "").strip()

    def _snapshot(self, obj) -> dict[str, Any]:
        return {
            f.name: self._value(f.name, getattr(obj, f.attname)) for f in obj._meta.concrete_fields
        }

    def delete_view(self, request, object_id, extra_context=None):
        if request.method == "POST" and not self._delete_reason(request):
            # Without a reason the page is shown again with the error, and nothing
            # is deleted: Django deletes on any non-empty POST, so it gets a GET.
            # (The CSRF check already ran on the real request, in admin_view.)
            request = copy.copy(request)
            request.method, request.POST = "GET", QueryDict()
            extra_context = {**(extra_context or {}), "reason_missing": True}
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        before = self._snapshot(obj)
        target, subject = self._target_user(obj), obj
        audit.record(
            actor=request.user,
            action=self._action("delete"),
            reason=self._delete_reason(request),
            target_user=target,
            subject=subject,
            before=before,
            after={},
        )
        super().delete_model(request, obj)

    def get_actions(self, request):
        # The bulk "delete selected" page has no reason field: delete one at a time.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


def reason_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: Iterable[Any],
    *,
    title: str,
    warning: str,
    apply: Callable[[Any, str], bool],
    done: Callable[[int], str],
    errors: tuple[type[Exception], ...] = (ValidationError,),
) -> TemplateResponse | None:
    """An admin action in two steps: a page that asks why, then ``apply(obj, reason)`` per row.

    ``apply`` returns whether it acted (a row in the wrong state is skipped);
    an exception in ``errors`` is shown with the row and the others go on.
    ``done(n)`` is the success message. Each ``apply`` is one transaction.
    """
    reason = (request.POST.get(REASON_FIELD) or "").strip()
    if request.POST.get("confirm_reason") and reason:
        acted = 0
        for obj in queryset:
            try:
                with transaction.atomic():
                    acted += bool(apply(obj, reason))
            except errors as exc:
                text = " ".join(getattr(exc, "messages", None) or [str(exc)])
                modeladmin.message_user(request, f"{obj}: {text}", messages.ERROR)
        modeladmin.message_user(request, done(acted), messages.SUCCESS)
        return None
    return TemplateResponse(
        request,
        "admin/backoffice/reason_confirm.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "warning": warning,
            "objects": list(queryset),
            "action": request.POST.get("action", ""),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "reason_field": REASON_FIELD,
            "reason_missing": bool(request.POST.get("confirm_reason")),
            "opts": modeladmin.model._meta,
        },
    )
