"""GPU job pages (SPEC §7): launch, list, detail with live logs, configurations.

Thin views (DESIGN rule 2): jobs and configurations are fetched through
``selectors.jobs_for`` / ``configurations_for``, so another user's id (and a
deleted job) is a 404 on every page. Forms work without JavaScript; the
detail page's logs and status refresh come from ``static/js/job-logs.js``.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from aladdin.cluster import debugger
from aladdin.lib import charts
from aladdin.lib.pagination import CountingPaginator
from aladdin.lib.streaming import attachment
from aladdin.lib.units import format_micro
from aladdin.workloads import idle as idle_policies
from aladdin.workloads.images import ImageUnavailable
from billing import selectors as billing_selectors
from billing import services as billing_services
from storage import files as storage_files

from . import costs as cost_reports
from . import logs, selectors, services
from .admission import JobRefused
from .choices import JobKind, JobState
from .forms import BudgetForm, IdlePolicyForm, JobFilterForm, JobLaunchForm
from .models import Job, JobConfiguration
from .validation import JobNotFound

LIST_REFRESH_SECONDS = 5
STATUS_POLL_SECONDS = 10
PAGE_SIZE = 50


def _own_job(request, pk: int) -> Job:
    job = selectors.jobs_for(request.user).filter(pk=pk).first()
    if job is None:
        raise Http404
    return job


def _own_configuration(request, pk) -> JobConfiguration:
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise Http404 from None
    config = selectors.configurations_for(request.user).filter(pk=pk).first()
    if config is None:
        raise Http404
    return config


def _add_errors(form, exc: ValidationError, *, rename: dict[str, str] | None = None) -> None:
    """Put a service's ValidationError on the form: on its field when the form has one."""
    rename = rename or {}
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            field = rename.get(field, field)
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, " ".join(exc.messages))


def _launch_values(form: JobLaunchForm, loaded: JobConfiguration | None) -> dict:
    data = form.cleaned_data
    env = loaded.get_env() if loaded is not None else {}
    env.update(data["env"])
    return {
        "kind": data["kind"],
        "entry": data["entry"],
        "python_module": data["python_module"],
        "args": data["args"],
        "env": env,
        "workdir": data["workdir"],
        "image": data["image"],
        "interpreter": data["interpreter"],
        "gpu_type": data["gpu_type"],
        "cards_per_worker": data["cards_per_worker"],
        # One worker unless it is a Run Task (the field may hold another number).
        "workers": (data.get("workers") or 1) if data["kind"] == JobKind.TASK else 1,
        "ports": data["ports"],
    }


@login_required
def job_launch(request):
    """The launch form; ``?configuration=<id>`` loads a saved configuration into it."""
    configurations = list(selectors.configurations_for(request.user))
    loaded = None
    if request.method == "POST":
        form = JobLaunchForm(request.POST)
        if request.POST.get("configuration"):
            loaded = _own_configuration(request, request.POST["configuration"])
        if form.is_valid():
            if "save" in request.POST:
                response = _save_configuration(request, form, loaded)
            else:
                response = _launch(request, form, loaded)
            if response is not None:
                return response
    else:
        initial = {}
        if request.GET.get("configuration"):
            loaded = _own_configuration(request, request.GET["configuration"])
            initial = JobLaunchForm.initial_from(loaded)
        form = JobLaunchForm(initial=initial)
    return render(
        request,
        "gpu_jobs/launch.html",
        {
            "form": form,
            "configurations": configurations,
            "loaded": loaded,
            "gpu_types": list(selectors.gpu_types()),
            "idle_policy": idle_policies.policies_for(request.user).jobs,
        },
    )


def _launch(request, form: JobLaunchForm, loaded: JobConfiguration | None):
    try:
        job = services.job_create(user=request.user, **_launch_values(form, loaded))
    except JobRefused as exc:
        form.add_error(None, " ".join(exc.messages))
        return None
    except ImageUnavailable as exc:
        form.add_error("image", str(exc))
        return None
    except ValidationError as exc:  # services.JobError
        _add_errors(form, exc)
        return None
    # Not the state: the status card follows it live; a "starting" banner
    # would stay above a job that has finished.
    messages.success(request, _("Job #%(id)s launched.") % {"id": job.pk})
    return redirect("gpu_jobs:detail", pk=job.pk)


def _save_configuration(request, form: JobLaunchForm, loaded: JobConfiguration | None):
    name = form.cleaned_data["save_name"].strip()
    if not name:
        form.add_error("save_name", _("Give the configuration a name."))
        return None
    existing = selectors.configurations_for(request.user).filter(name=name).first()
    values = _launch_values(form, loaded)
    try:
        config = services.configuration_save(
            user=request.user, name=name, configuration=existing, **values
        )
    except ValidationError as exc:
        _add_errors(form, exc, rename={"name": "save_name"})
        return None
    messages.success(request, _("Configuration %(name)s saved.") % {"name": config.name})
    return redirect(f"{reverse('gpu_jobs:launch')}?configuration={config.pk}")


@login_required
def job_list(request):
    filters = JobFilterForm(request.GET or None)
    state = kind = None
    if filters.is_valid():
        state = filters.cleaned_data["state"] or None
        kind = filters.cleaned_data["kind"] or None
    rows = selectors.job_list(request.user, state=state, kind=kind)
    page = CountingPaginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    jobs = list(page.object_list)
    now = timezone.now()
    for job in jobs:
        # What the live updates (aladdin/live.py) then keep current.
        job.billed_so_far_micro = selectors.job_billing(job, now).billed_so_far_micro
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "gpu_jobs/list.html",
        {
            "jobs": jobs,
            "page": page,
            "query": query.urlencode(),
            "filters": filters,
            # Refresh while a job waits for its cards.
            "refresh": LIST_REFRESH_SECONDS
            if any(j.state == JobState.STARTING for j in jobs)
            else None,
        },
    )


def _status_context(job: Job) -> dict:
    return {
        "job": job,
        "billing": selectors.job_billing(job),
        "active": selectors.is_active(job),
        "dev": selectors.is_dev(job),
    }


@login_required
def job_detail(request, pk: int):
    job = _own_job(request, pk)
    context = _status_context(job)
    context["poll_seconds"] = STATUS_POLL_SECONDS
    context["log_retention_days"] = settings.JOB_LOG_RETENTION_DAYS
    context["ports"] = [(row, selectors.port_url(row)) for row in selectors.open_ports(job)]
    context["task_logs_dir"] = logs.task_logs_dir(job)
    context["worker_indexes"] = range(job.workers)
    if job.kind == JobKind.DEBUG:
        # What the IDE plugin attaches to (the API's debug_url), shown for other clients.
        scheme = "wss" if request.is_secure() else "ws"
        context["debug_url"] = f"{scheme}://{request.get_host()}/ws/jobs/{job.pk}/debug/"
        context["debug_port"] = debugger.PORT
    return render(request, "gpu_jobs/detail.html", context)


@login_required
@require_POST
def job_port_add(request, pk: int):
    job = _own_job(request, pk)
    try:
        row = services.port_add(job=job, port=request.POST.get("port", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            _("Port %(port)s opens at %(url)s")
            % {"port": row.port, "url": selectors.port_url(row)},
        )
    return redirect("gpu_jobs:detail", pk=pk)


@login_required
@require_POST
def job_port_remove(request, pk: int, port: int):
    job = _own_job(request, pk)
    try:
        services.port_remove(job=job, port=port)
    except JobNotFound as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Port %(port)s is closed.") % {"port": port})
    return redirect("gpu_jobs:detail", pk=pk)


@login_required
def job_terminal(request, pk: int):
    """A shell in the running job (SPEC §7 "Terminal"); the websocket refuses if it is not."""
    job = _own_job(request, pk)
    return render(
        request,
        "workshops/terminal.html",
        {
            "title": _("Job #%(id)s · %(name)s") % {"id": job.pk, "name": job.display_name},
            "back_url": reverse("gpu_jobs:detail", args=[job.pk]),
            "ws_path": f"/ws/jobs/{job.pk}/terminal/",
        },
    )


@login_required
def job_status(request, pk: int):
    """The status card alone, for the detail page's script to swap in."""
    job = _own_job(request, pk)
    return render(request, "gpu_jobs/_status.html", _status_context(job))


@login_required
@require_POST
def job_stop(request, pk: int):
    job = _own_job(request, pk)
    try:
        services.job_stop(job=job)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Stopping. Billing ends when the cards are released."))
    return redirect("gpu_jobs:detail", pk=pk)


@login_required
@require_POST
def job_delete(request, pk: int):
    job = _own_job(request, pk)
    services.job_delete(job=job)
    messages.success(request, _("Job #%(id)s deleted.") % {"id": job.pk})
    return redirect("gpu_jobs:list")


def _log_download(request, job: Job, read) -> HttpResponseBase:
    try:
        log_file = read()
    except storage_files.FileNotFound:
        raise Http404 from None
    except logs.LogsUnavailable as exc:
        messages.error(request, exc.error_detail())
        return redirect("gpu_jobs:detail", pk=job.pk)
    return attachment(
        request,
        log_file.chunks,
        name=log_file.name,
        content_type=log_file.content_type,
        size=log_file.size,
    )


@login_required
def job_log_download(request, pk: int):
    """Log Download: a dev job's output, or one worker's log of a task (``?worker=N``)."""
    job = _own_job(request, pk)
    if job.kind != JobKind.TASK:
        return _log_download(request, job, lambda: logs.output_file(job))
    try:
        worker = int(request.GET.get("worker", "0"))
    except ValueError:
        raise Http404 from None
    return _log_download(request, job, lambda: logs.worker_file(job, worker))


@login_required
def job_log_archive(request, pk: int):
    """Log Download of a whole task: every worker's log in one .tar.gz."""
    job = _own_job(request, pk)
    if job.kind != JobKind.TASK:
        raise Http404
    return _log_download(request, job, lambda: logs.archive_file(job))


@login_required
def costs(request):
    """Where this month's (or ``?month=YYYY-MM``'s) compute went, and the monthly budget."""
    month = cost_reports.parse_month(request.GET.get("month"))
    report = cost_reports.cost_report(request.user, month)
    budget = billing_selectors.budget_for(request.user)
    form = BudgetForm(
        initial={
            "monthly_dcu": format_micro(budget.monthly_micro) if budget else None,
            "hard_stop": budget.hard_stop if budget else False,
        }
    )
    idle_form = IdlePolicyForm.for_policies(idle_policies.policies_for(request.user))
    previous = (month - timedelta(days=1)).replace(day=1)
    following = (month + timedelta(days=32)).replace(day=1)
    return render(
        request,
        "gpu_jobs/costs.html",
        {
            "report": report,
            "budget": budget,
            "form": form,
            "idle_form": idle_form,
            "previous": previous,
            "following": following if following <= timezone.localdate() else None,
            "gpu_total": sum(job.micro for job in report.jobs),
            "chart": charts.daily_chart(
                [d.day.isoformat() for d in report.days],
                [
                    charts.Series(_("GPU jobs"), [format_micro(d.gpu_micro) for d in report.days]),
                    charts.Series(
                        _("Storage"),
                        [format_micro(d.storage_micro) for d in report.days],
                        color=charts.TEAL,
                    ),
                ],
                stacked=True,
            ),
        },
    )


@login_required
def costs_csv(request):
    month = cost_reports.parse_month(request.GET.get("month"))
    report = cost_reports.cost_report(request.user, month)
    response = HttpResponse(cost_reports.report_csv(report), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(
        True, f"aladdin-costs-{month:%Y-%m}.csv"
    )
    return response


@login_required
@require_POST
def idle_policy_update(request):
    form = IdlePolicyForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect(reverse("gpu_jobs:costs") + "#idle")
    policies = form.policies()
    idle_policies.policies_set(user=request.user, jobs=policies.jobs, workshops=policies.workshops)
    messages.success(request, _("Idle GPU policy saved."))
    return redirect(reverse("gpu_jobs:costs") + "#idle")


@login_required
@require_POST
def budget_update(request):
    form = BudgetForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect("gpu_jobs:costs")
    monthly = form.monthly_micro()
    billing_services.budget_set(
        user=request.user, monthly_micro=monthly, hard_stop=form.cleaned_data["hard_stop"]
    )
    if monthly is None:
        messages.success(request, _("Budget removed."))
    else:
        messages.success(
            request, _("Budget set to %(dcu)s DCU a month.") % {"dcu": format_micro(monthly)}
        )
    return redirect("gpu_jobs:costs")


@login_required
def configuration_list(request):
    return render(
        request,
        "gpu_jobs/configurations.html",
        {"configurations": list(selectors.configurations_for(request.user))},
    )


@login_required
@require_POST
def configuration_delete(request, pk: int):
    config = _own_configuration(request, pk)
    services.configuration_delete(configuration=config)
    messages.success(request, _("Configuration %(name)s deleted.") % {"name": config.name})
    return redirect("gpu_jobs:configurations")
