"""Storage dashboard: use against allowance, 30 days of peaks and fees, expansion, warnings."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from aladdin.lib import charts
from aladdin.lib.errors import DomainError
from aladdin.lib.streaming import attachment
from aladdin.lib.units import format_micro

from . import files, services
from .api import storage_summary


class ExpandForm(forms.Form):
    allowance_gib = forms.IntegerField(label=gettext_lazy("New allowance (GiB)"), min_value=1)


@login_required
def dashboard(request):
    summary = storage_summary(request.user)
    days = summary["days"]
    chart = charts.daily_chart(
        [d["day"].isoformat() for d in days],
        [
            charts.Series(_("Peak use (GiB)"), [d["peak_gib"] for d in days], axis="gib"),
            charts.Series(
                _("Fee (DCU)"),
                [format_micro(d["fee_micro"]) for d in days],
                color=charts.AMBER,
                type="line",
                axis="dcu",
            ),
        ],
        axes={"gib": ("GiB", "left"), "dcu": ("DCU", "right")},
    )
    percent = 0
    if summary["allowance_gib"]:
        percent = min(100, round(100 * summary["used_gib"] / summary["allowance_gib"]))
    return render(
        request,
        "storage/dashboard.html",
        {
            "s": summary,
            "percent": percent,
            "chart": chart,
            "form": ExpandForm(initial={"allowance_gib": summary["allowance_gib"]}),
        },
    )


@login_required
@require_POST
def expand(request):
    form = ExpandForm(request.POST)
    if form.is_valid():
        try:
            services.storage_expand(
                user=request.user, allowance_gib=form.cleaned_data["allowance_gib"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("Storage allowance updated."))
    else:
        messages.error(request, _("Enter a whole number of GiB."))
    return redirect("storage:dashboard")


# --- files (issue 13): the user's volume, through the driver (storage/files.py) ----------
FILES_CHUNK_MAX = 16 * 1024 * 1024  # the browser sends 8 MiB; a request never holds more
BODY_READ = 1024 * 1024


def _files_redirect(folder: str):
    url = reverse("storage:files")
    return redirect(f"{url}?{urlencode({'path': folder})}" if folder else url)


@login_required
def files_page(request):
    path = request.GET.get("path", "")
    try:
        rel = files.clean_path(path)
        rows = files.files_list(user=request.user, path=rel)
    except files.FileNotFound as exc:
        raise Http404(str(exc)) from None
    except DomainError as exc:
        messages.error(request, exc.error_detail())
        return redirect("storage:dashboard")
    crumbs, acc = [], []
    for part in rel.split("/") if rel else []:
        acc.append(part)
        crumbs.append({"name": part, "path": "/".join(acc)})
    return render(
        request,
        "storage/files.html",
        {
            "folder": rel,
            "rows": rows,
            "crumbs": crumbs,
            "chunk_bytes": 8 * 1024 * 1024,
        },
    )


@login_required
@require_POST
def files_action(request, action: str):
    """The page's forms: new folder, rename, delete; each then shows the folder again."""
    folder = request.POST.get("folder", "")
    try:
        if action == "mkdir":
            files.folder_create(user=request.user, folder=folder, name=request.POST.get("name", ""))
            messages.success(request, _("Folder created."))
        elif action == "rename":
            files.file_rename(
                user=request.user,
                path=request.POST.get("path", ""),
                new_name=request.POST.get("name", ""),
            )
            messages.success(request, _("Renamed."))
        elif action == "delete":
            files.file_delete(user=request.user, path=request.POST.get("path", ""))
            messages.success(request, _("Deleted."))
        else:
            raise Http404
    except DomainError as exc:
        messages.error(request, exc.error_detail())
    try:
        folder = files.clean_path(folder)
    except DomainError:
        folder = ""
    return _files_redirect(folder)


@login_required
def files_download(request):
    try:
        download = files.file_download(user=request.user, path=request.GET.get("path", ""))
    except files.FileNotFound as exc:
        raise Http404(str(exc)) from None
    except DomainError as exc:
        messages.error(request, exc.error_detail())
        return _files_redirect("")
    return attachment(
        request,
        download.chunks,
        name=download.name,
        content_type="application/octet-stream",
        size=download.size,
    )


def _json_error(exc: DomainError) -> JsonResponse:
    return JsonResponse(
        {"code": exc.error_code, "detail": exc.error_detail()}, status=exc.http_status
    )


@login_required
@require_POST
def files_check(request):
    """Before an upload starts: would ``bytes`` more fit the allowance? 200, or 413 with the numbers."""
    try:
        size = int(request.POST.get("bytes", ""))
        files.upload_check(user=request.user, size=size)
    except ValueError:
        return JsonResponse({"code": "invalid", "detail": _("Bad size.")}, status=400)
    except DomainError as exc:
        return _json_error(exc)
    return JsonResponse({"ok": True})


@login_required
@require_POST
def files_upload(request):
    """One chunk of an upload, the raw request body, at ``offset`` of ``total`` bytes."""
    try:
        offset = int(request.GET.get("offset", ""))
        total = int(request.GET.get("total", ""))
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return JsonResponse({"code": "invalid", "detail": _("Bad offsets.")}, status=400)
    if length > FILES_CHUNK_MAX:
        return JsonResponse({"code": "invalid", "detail": _("Chunk too large.")}, status=400)

    def body() -> Iterator[bytes]:
        while chunk := request.read(BODY_READ):
            yield chunk

    try:
        end = files.file_upload_chunk(
            user=request.user,
            folder=request.GET.get("folder", ""),
            name=request.GET.get("name", ""),
            offset=offset,
            total=total,
            chunks=body(),
        )
    except DomainError as exc:
        return _json_error(exc)
    return JsonResponse({"ok": True, "offset": end})
