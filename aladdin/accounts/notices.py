"""What each notice says: message id -> translatable title, body, SMS text and link.

A notice is stored as its message id and parameters (``Notification.message``,
``Notification.params``), never as text, and rendered here in the reader's
language when it is shown (a page, the API, an SMS in the account's
language). Rows written before (``message`` is null) keep the text they were
written with.

Parameters are JSON and stay what they measure: amounts in µDCU or fen,
sizes in bytes, times as ISO 8601 strings. Each message names how its
parameters are formatted for people (``formats``), so "¥135.00" or
"2026-05-16 09:00" (in the reader's time zone) is decided when read.

A message id, once written to the database, must stay in this table (rename
its text freely; the id is the key). An id that is missing renders as the id
itself rather than failing the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from aladdin.lib import said
from aladdin.lib.said import BYTES, DATETIME, DCU, YUAN

# --- links ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """Where a notice leads: URL ``name`` with the notice's parameters ``args`` as its arguments."""

    name: str
    label: Promise
    args: tuple[str, ...] = ()

    def url(self, params: dict) -> str | None:
        try:
            return reverse(self.name, args=[params[a] for a in self.args])
        except (KeyError, NoReverseMatch):
            return None


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One kind of notice; title/body/sms are lazy translations with named %(x)s parameters."""

    kind: str
    title: Promise
    body: Promise | Callable[[dict], str] | None = None
    # Set for what must not be missed: texted unless the user turned the kind off.
    sms: Promise | None = None
    formats: dict[str, Callable[[Any], str]] = field(default_factory=dict)
    link: Link | None = None


def _job_ended_body(params: dict) -> str:
    parts = []
    if params.get("exit_code") is not None:
        parts.append(_("Exit code %(code)s.") % {"code": params["exit_code"]})
    if params.get("reason"):
        # The job's own reason: a message rendered now (or, in notices written
        # before reasons had ids, the text the job row had then).
        parts.append(said.REASON(params["reason"]))
    return " ".join(parts)


_JOB_LINK = Link("gpu_jobs:detail", gettext_lazy("See the job"), ("id",))
_STORAGE_LINK = Link("storage:dashboard", gettext_lazy("See your storage"))
_COSTS_LINK = Link("gpu_jobs:costs", gettext_lazy("See your costs"))

MESSAGES: dict[str, Message] = {
    "job_succeeded": Message(
        kind="job-succeeded",
        title=gettext_lazy("Job %(name)s (#%(id)s) finished"),
        body=_job_ended_body,
        link=_JOB_LINK,
    ),
    "job_failed": Message(
        kind="job-failed",
        title=gettext_lazy("Job %(name)s (#%(id)s) failed"),
        body=_job_ended_body,
        link=_JOB_LINK,
    ),
    "job_stopped": Message(
        kind="job-stopped",
        title=gettext_lazy("Job %(name)s (#%(id)s) was stopped"),
        body=_job_ended_body,
        link=_JOB_LINK,
    ),
    "job_idle_warning": Message(
        kind="job-idle",
        title=gettext_lazy("Job %(name)s (#%(id)s): its GPUs are idle"),
        body=lambda params: (
            (
                _(
                    "Its cards have stayed below %(threshold)s%% use for %(minutes)s minutes while it "
                    "bills %(hourly)s an hour. It will be stopped after %(stop_minutes)s idle minutes "
                    "unless they work again; stop it yourself if you are done."
                )
                if params.get("stop_minutes")
                else _(
                    "Its cards have stayed below %(threshold)s%% use for %(minutes)s minutes while it "
                    "bills %(hourly)s an hour. Stop it if you are done."
                )
            )
            % params
        ),
        sms=gettext_lazy(
            "Aladdin: the GPUs of job #%(id)s have been idle for %(minutes)s minutes; it bills "
            "%(hourly)s an hour. Stop it if you are done."
        ),
        formats={"hourly": DCU},
        link=_JOB_LINK,
    ),
    "workshop_idle_warning": Message(
        kind="workshop-idle",
        title=gettext_lazy("Workshop %(name)s is idle"),
        body=lambda params: (
            (
                _(
                    "Its CPU has stayed below %(threshold)s%% of one core for %(minutes)s minutes. "
                    "It will be stopped after %(stop_minutes)s idle minutes, as your idle policy "
                    "asks; your files under /root are kept."
                )
                if params.get("stop_minutes")
                else _(
                    "Its CPU has stayed below %(threshold)s%% of one core for %(minutes)s minutes. "
                    "Stop it if you are done."
                )
            )
            % params
        ),
        link=Link("workshops:detail", gettext_lazy("See the workshop"), ("id",)),
    ),
    "jobs_stopped_balance": Message(
        kind="job-balance",
        title=gettext_lazy("Your GPU jobs were stopped: your compute balance is used up"),
        body=gettext_lazy(
            "%(n)s job(s) were stopped. Buy a plan or an extension pack to run jobs again."
        ),
        sms=gettext_lazy(
            "Aladdin: your compute balance is used up and %(n)s GPU job(s) were stopped. "
            "Buy a plan or an extension pack to run jobs again."
        ),
        link=Link("gpu_jobs:list", gettext_lazy("See your jobs")),
    ),
    "storage_retention_warning": Message(
        kind="storage_retention",
        title=gettext_lazy("Storage will be reclaimed"),
        body=gettext_lazy(
            "Aladdin: your storage will be reclaimed at %(when)s because you have no plan "
            "and have not logged in. Log in or subscribe to keep it."
        ),
        sms=gettext_lazy(
            "Aladdin: your storage will be reclaimed at %(when)s because you have no plan "
            "and have not logged in. Log in or subscribe to keep it."
        ),
        formats={"when": DATETIME},
        link=_STORAGE_LINK,
    ),
    "storage_reclaimed": Message(
        kind="storage_reclaimed",
        title=gettext_lazy("Storage reclaimed"),
        body=gettext_lazy("Your storage (%(size)s used) was reclaimed."),
        formats={"size": BYTES},
        link=_STORAGE_LINK,
    ),
    "storage_disk_full": Message(
        kind="storage_disk_full",
        title=gettext_lazy("Your workloads were stopped: the server's disk is almost full"),
        # The same text as the stopped workloads' reason (aladdin.workloads.disk).
        body=gettext_lazy(
            "Stopped: the server's disk is almost full (%(free)s free, reserve %(reserve)s) and "
            "your storage is %(excess)s over your allowance of %(allowed)s. Delete files or "
            "expand your storage, then start it again."
        ),
        formats={"free": BYTES, "reserve": BYTES, "excess": BYTES, "allowed": BYTES},
        link=_STORAGE_LINK,
    ),
    "budget_warning": Message(
        kind="budget",
        title=gettext_lazy("You have used %(percent)s%% of your monthly budget"),
        body=gettext_lazy(
            "This month's charges are %(spent)s of your %(budget)s budget. See where they "
            "went on the Costs page."
        ),
        formats={"spent": DCU, "budget": DCU},
        link=_COSTS_LINK,
    ),
    "budget_reached": Message(
        kind="budget",
        title=gettext_lazy("Your monthly budget is used up"),
        body=lambda params: (
            (
                _(
                    "This month's charges are %(spent)s of your %(budget)s budget. New launches "
                    "are refused until next month, or until you raise the budget or turn its "
                    "hard stop off; what runs keeps running."
                )
                if params.get("hard_stop")
                else _(
                    "This month's charges are %(spent)s of your %(budget)s budget. Launches are "
                    "not stopped (the budget has no hard stop)."
                )
            )
            % params
        ),
        formats={"spent": DCU, "budget": DCU},
        link=_COSTS_LINK,
    ),
    "order_paid": Message(
        kind="order_paid",
        title=gettext_lazy("Payment received for order %(order)s"),
        body=gettext_lazy("You paid %(amount)s for %(plan)s. It is on your account now."),
        sms=gettext_lazy("Aladdin: we received %(amount)s for order %(order)s (%(plan)s)."),
        formats={"amount": YUAN},
        link=Link("billing:orders", gettext_lazy("See your orders")),
    ),
}

# The kinds that can be texted, with the label of their switch on the account
# page; each is on until the user turns it off.
SMS_KINDS: dict[str, Promise] = {
    "job-idle": gettext_lazy("A GPU job's cards sit idle"),
    "job-balance": gettext_lazy("Compute balance used up and GPU jobs stopped"),
    "storage_retention": gettext_lazy("Storage about to be reclaimed"),
    "order_paid": gettext_lazy("Order paid"),
}
assert {m.kind for m in MESSAGES.values() if m.sms} == set(SMS_KINDS), "SMS kinds out of step"


# --- rendering ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A notice in the active language."""

    title: str
    body: str
    url: str | None
    link_label: str = ""


def _values(message: Message, params: dict) -> dict[str, Any]:
    values = dict(params)
    for name, fmt in message.formats.items():
        if name in values and values[name] is not None:
            try:
                values[name] = fmt(values[name])
            except (TypeError, ValueError):
                pass  # shown as stored rather than failing the page
    return values


def _fill(template: Promise | Callable[[dict], str] | None, values: dict) -> str:
    if template is None:
        return ""
    if callable(template) and not isinstance(template, Promise):
        return template(values)
    try:
        return str(template) % values
    except (KeyError, TypeError, ValueError):
        return str(template)


def render(notification) -> Rendered:
    """Title, body and link of ``notification`` in the active language and time zone."""
    if not notification.message:
        return Rendered(title=notification.title, body=notification.body, url=None)
    message = MESSAGES.get(notification.message)
    if message is None:
        return Rendered(title=notification.title or notification.message, body="", url=None)
    params = notification.params or {}
    values = _values(message, params)
    url = message.link.url(params) if message.link else None
    return Rendered(
        title=_fill(message.title, values),
        body=_fill(message.body, values),
        url=url,
        link_label=str(message.link.label) if url else "",
    )


def render_sms(notification) -> str | None:
    """The SMS text of ``notification`` in the active language, or None if it is never texted."""
    message = MESSAGES.get(notification.message or "")
    if message is None or message.sms is None:
        return None
    return _fill(message.sms, _values(message, notification.params or {}))


def sms_kind_of(message_id: str) -> str | None:
    """The kind whose SMS switch governs ``message_id``, or None if it is never texted."""
    message = MESSAGES[message_id]
    return message.kind if message.sms is not None else None
