"""Workshop pages (SPEC §6): list, create, detail with actions, open, terminal.

Thin views (DESIGN rule 2): every workshop is fetched with
``user=request.user``, so another user's id is a 404 on every page. Forms
work without JavaScript; the list refreshes itself while a state is changing.
"""

from __future__ import annotations

import base64

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from aladdin.cluster.base import DriverError
from aladdin.workloads.images import ImageUnavailable

from . import selectors, services
from .choices import WorkshopState
from .forms import EnvVarForm, ResourcesForm, SSHKeyAddForm, SSHKeyGenerateForm, WorkshopCreateForm
from .models import Workshop

REFRESH_SECONDS = 3


def _own(request, pk: int) -> Workshop:
    return get_object_or_404(
        Workshop.objects.select_related("image", "preset"), pk=pk, user=request.user
    )


@login_required
def workshop_list(request):
    workshops = list(selectors.workshops_for(request.user))
    caps = selectors.cluster_capabilities()
    return render(
        request,
        "workshops/list.html",
        {
            "workshops": workshops,
            "refresh": REFRESH_SECONDS if any(w.is_transitional for w in workshops) else None,
            "isolation": selectors.isolation_notice(caps),
            "limits": selectors.limits_notice(caps),
            "network": selectors.network_notice(caps),
        },
    )


@login_required
def workshop_create(request):
    form = WorkshopCreateForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            workshop = services.workshop_create(
                user=request.user,
                name=data["name"],
                image=data["image"],
                preset=data["preset"],
                env=data["env"],
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, exc)
        except ImageUnavailable as exc:
            form.add_error("image", str(exc))
        except DriverError as exc:  # QuotaExceeded included
            form.add_error(None, str(exc))
        else:
            # Not the state: that is the status card's (live), and a
            # "waiting" banner would stay above a workshop that is running.
            messages.success(request, _("Workshop %(name)s created.") % {"name": workshop.name})
            return redirect("workshops:detail", pk=workshop.pk)
    return render(request, "workshops/create.html", {"form": form})


@login_required
def workshop_detail(request, pk: int):
    workshop = _own(request, pk)
    return render(
        request,
        "workshops/detail.html",
        {
            "workshop": workshop,
            "resources_form": ResourcesForm(initial={"preset": workshop.preset_id}),
            "env_form": EnvVarForm(),
            "env_vars": workshop.env_vars.all(),
            "refresh": REFRESH_SECONDS if workshop.is_transitional else None,
            "states": WorkshopState,
            "ssh": _ssh_details(request.user, workshop),
        },
    )


@login_required
def workshop_status(request, pk: int):
    """The status card alone, for the live updates to swap in when the state changes."""
    workshop = _own(request, pk)
    return render(
        request, "workshops/_status.html", {"workshop": workshop, "states": WorkshopState}
    )


def _ssh_details(user, workshop: Workshop) -> dict:
    """How to reach the workshop over SSH: the command, the gateway's host keys, the user's keys."""
    from django.conf import settings

    from aladdin.lib.ssh_host_keys import public_keys

    host, port = settings.SSH_PUBLIC_HOST, settings.SSH_PUBLIC_PORT
    port_option = "" if port == 22 else f" -p {port}"
    return {
        "command": f"ssh{port_option} {workshop.name}@{host}",
        "host": host,
        "port": port,
        "host_keys": public_keys(settings.SSH_HOST_KEYS_DIR),
        "has_keys": selectors.ssh_keys_for(user).exists(),
        # The same block as GET /api/v1/workshops/<id>/ssh-config writes for the plugin.
        "config": selectors.workshop_ssh_config(
            workshop=workshop, key=selectors.ssh_default_key(user)
        ),
    }


_ACTIONS = {
    "start": services.workshop_start,
    "stop": services.workshop_stop,
    "delete": services.workshop_delete,
}


@login_required
@require_POST
def workshop_action(request, pk: int, action: str):
    workshop = _own(request, pk)
    service = _ACTIONS.get(action)
    if service is None:
        raise Http404
    try:
        service(workshop=workshop)
    except (services.WorkshopError, DriverError, ImageUnavailable) as exc:
        messages.error(request, str(exc))
    if action == "delete":
        return redirect("workshops:list")
    return redirect("workshops:detail", pk=pk)


@login_required
@require_POST
def workshop_resources(request, pk: int):
    workshop = _own(request, pk)
    form = ResourcesForm(request.POST)
    if form.is_valid():
        try:
            services.workshop_update_resources(
                workshop=workshop, preset=form.cleaned_data["preset"]
            )
        except services.WorkshopError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Saved. The new resources apply when the workshop starts."))
    return redirect("workshops:detail", pk=pk)


@login_required
@require_POST
def workshop_env(request, pk: int):
    workshop = _own(request, pk)
    if "delete" in request.POST:
        services.workshop_env_delete(workshop=workshop, key=request.POST["delete"])
        messages.success(request, _("Variable removed. It applies when the workshop starts."))
        return redirect("workshops:detail", pk=pk)
    form = EnvVarForm(request.POST)
    if form.is_valid():
        services.workshop_env_set(
            workshop=workshop, key=form.cleaned_data["key"], value=form.cleaned_data["value"]
        )
        messages.success(request, _("Variable saved. It applies when the workshop starts."))
    else:
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
    return redirect("workshops:detail", pk=pk)


@login_required
def workshop_terminal(request, pk: int):
    workshop = _own(request, pk)
    return render(
        request,
        "workshops/terminal.html",
        {
            "title": workshop.name,
            "back_url": reverse("workshops:detail", args=[workshop.pk]),
            "ws_path": f"/ws/workshops/{workshop.pk}/terminal/",
        },
    )


# --- SSH keys ---------------------------------------------------------------------


def _keys_page(request, *, add_form=None, generate_form=None, generated=None, status=200):
    response = render(
        request,
        "workshops/ssh_keys.html",
        {
            "keys": selectors.ssh_keys_for(request.user),
            "add_form": add_form or SSHKeyAddForm(),
            "generate_form": generate_form or SSHKeyGenerateForm(),
            "generated": generated,
            "limit": services.SSH_KEYS_PER_USER,
        },
        status=status,
    )
    # A page that carries a private key must not be kept by the browser or a proxy.
    response["Cache-Control"] = "no-store"
    return response


def _form_refusal(form, exc: ValidationError) -> None:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}
    for field, messages_ in errors.items():
        form.add_error(field if field in form.fields else None, messages_)


@login_required
def ssh_keys(request):
    """The user's keys; POST adds one (``add``) or generates a pair (``generate``)."""
    if request.method != "POST":
        return _keys_page(request)
    if "generate" in request.POST:
        form = SSHKeyGenerateForm(request.POST)
        if form.is_valid():
            try:
                key, private = services.ssh_key_generate(
                    user=request.user, name=form.cleaned_data["name"]
                )
            except ValidationError as exc:
                _form_refusal(form, exc)
            else:
                # Shown on this answer only (a POST's page: reloading asks
                # to resubmit, which makes a new pair) and never stored.
                generated = {
                    "key": key,
                    "private_key": private,
                    "data_url": "data:application/octet-stream;base64,"
                    + base64.b64encode(private.encode()).decode(),
                    "filename": "aladdin_ed25519",
                }
                return _keys_page(request, generated=generated, status=201)
        return _keys_page(request, generate_form=form, status=400)
    form = SSHKeyAddForm(request.POST)
    if form.is_valid():
        try:
            services.ssh_key_add(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _form_refusal(form, exc)
        else:
            messages.success(request, _("SSH key added."))
            return redirect("workshops:ssh-keys")
    return _keys_page(request, add_form=form, status=400)


@login_required
@require_POST
def ssh_key_revoke(request, pk: int):
    key = get_object_or_404(selectors.ssh_keys_for(request.user), pk=pk)
    services.ssh_key_revoke(key=key)
    messages.success(request, _("SSH key revoked: it can no longer log in."))
    return redirect("workshops:ssh-keys")
