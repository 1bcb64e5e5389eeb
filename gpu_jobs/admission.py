"""Admission of a GPU job (SPEC §4.1, §7): cards, parallelism, quota, balance, storage.

Each refusal is a :class:`JobRefused` whose message says what was asked, what
is used, what is allowed and what to do (SPEC §7, "Quota errors say …").
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin.cluster.base import Resources
from aladdin.lib.errors import DomainError
from aladdin.workloads import quota
from billing import selectors as billing_selectors
from storage import selectors as storage_selectors

from .choices import ACTIVE_STATES
from .models import GpuType, Job

MICRO = 1_000_000


class JobRefused(ValidationError, DomainError):
    """A job that may not start; the message carries the numbers and the advice.

    Its ``code`` names the rule (``parallelism``, ``quota_exceeded``…), the
    API's error code (409: the account's state refuses a well-formed request).
    """

    @property
    def error_code(self) -> str:
        return getattr(self, "code", None) or "refused"


def _dcu(micro: int) -> str:
    """µDCU as DCU text, exact (no float): 1_280_000 → "1.28"."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return sign + text


def job_resources(gpu_type: GpuType, cards_per_worker: int, workers: int) -> Resources:
    """CPU and memory follow the card preset (SPEC §7): per card × cards."""
    cards = cards_per_worker * workers
    return Resources(
        cpu_millicores=gpu_type.cpu_millicores * cards,
        memory_mib=gpu_type.memory_mib * cards,
        gpus={gpu_type.code: cards},
    )


def minute_price_micro(gpu_type: GpuType, cards_per_worker: int, workers: int) -> int:
    """One minute of the job's price in µDCU, rounded up (integer arithmetic)."""
    per_hour = gpu_type.price_micro_per_hour * cards_per_worker * workers
    return -(-per_hour // 60)


def active_jobs(user):
    return Job.objects.filter(user=user, state__in=ACTIVE_STATES).select_related("gpu_type")


def refuse_without_plan(user, at: datetime | None = None) -> int:
    """The user's GPU parallelism; JobRefused ("plan_needed") when there is none.

    Asked first at launch: whatever else is wrong with the request, a user
    without a plan needs a plan before anything else helps.
    """
    allowed = billing_selectors.gpu_parallelism(user, at or timezone.now())
    if allowed <= 0:
        raise JobRefused(
            _(
                "GPU jobs need a plan: without one your account has no GPU parallelism "
                "(workshops still run on the free tier). Buy a plan on the Billing page, "
                "then launch again."
            ),
            code="plan_needed",
        )
    return allowed


def jobs_usage(
    user, exclude_workshop_id: int | None = None, exclude_job_id: int | None = None
) -> list[quota.Holding]:
    """CPU/memory of the user's starting and running jobs, for the shared quota.

    Registered with ``aladdin.workloads.quota.register_usage`` in GpuJobsConfig.ready;
    ``exclude_workshop_id`` is the hook's signature and does not concern jobs.
    """
    rows = active_jobs(user).order_by("pk")
    if exclude_job_id is not None:
        rows = rows.exclude(pk=exclude_job_id)
    return [
        quota.Holding(
            _("job #%(id)s") % {"id": job.pk},
            job_resources(job.gpu_type, job.cards_per_worker, job.workers),
        )
        for job in rows
    ]


def admit(
    *,
    user,
    gpu_type: GpuType,
    cards_per_worker: int,
    workers: int,
    at: datetime | None = None,
    exclude_job_id: int | None = None,
) -> None:
    """Raise JobRefused unless the job may start now; return None when it may.

    ``exclude_job_id``: a job already counted as starting (re-admitting it
    must not count it twice).
    """
    at = at or timezone.now()
    if cards_per_worker < 1 or workers < 1:
        raise JobRefused(
            _("A job needs at least one card per worker and one worker (asked: %(c)s × %(w)s).")
            % {"c": cards_per_worker, "w": workers},
            code="shape",
        )

    # 1. Card rule: 40G cards do not support multi-card jobs.
    if cards_per_worker > 1 and not gpu_type.multi_card_allowed:
        raise JobRefused(
            _(
                "%(card)s cards do not support multi-card jobs: you asked for %(asked)s cards "
                "per worker, allowed is 1. Use 1 card per worker (add workers instead), "
                "or choose a card that supports several cards per worker."
            )
            % {"card": gpu_type.name, "asked": cards_per_worker},
            code="multi_card",
        )

    # 2. Parallelism: the running jobs' sum plus this one ≤ the plan's. A
    #    user without a plan has none: GPU use needs a plan, whatever runs.
    asked = cards_per_worker * workers * gpu_type.parallelism_weight
    allowed = refuse_without_plan(user, at)
    running = active_jobs(user).order_by("pk")
    if exclude_job_id is not None:
        running = running.exclude(pk=exclude_job_id)
    used = sum(job.parallelism for job in running)
    if used + asked > allowed:
        if asked <= allowed:
            way_out = _("Stop %(jobs)s to make room.") % {
                "jobs": ", ".join(
                    _("job #%(id)s (%(n)s)") % {"id": job.pk, "n": job.parallelism}
                    for job in running
                )
            }
        else:
            way_out = _("Use fewer or smaller cards, or a plan with more GPU parallelism.")
        raise JobRefused(
            _(
                "Not enough GPU parallelism: this job needs %(asked)s (%(cards)s × %(card)s, "
                "%(weight)s per card), your running jobs use %(used)s, your plan allows "
                "%(allowed)s."
            )
            % {
                "asked": asked,
                "cards": cards_per_worker * workers,
                "card": gpu_type.name,
                "weight": gpu_type.parallelism_weight,
                "used": used,
                "allowed": allowed,
            }
            + " "
            + way_out,
            code="parallelism",
        )

    # 3. CPU/memory quota shared with workshops (jobs' own usage comes in
    #    through the hook registered in apps.py).
    requested = job_resources(gpu_type, cards_per_worker, workers)
    limit = quota.limit_for(user)
    held = quota.holdings(user, exclude_job_id=exclude_job_id)
    in_use = quota.total(held)
    if not (in_use + requested).fits_within(limit):
        raise JobRefused(
            _("exceeded quota: requested: %(requested)s, used: %(used)s, limited: %(limit)s.")
            % {
                "requested": requested.describe(),
                "used": in_use.describe(),
                "limit": limit.describe(),
            }
            + " "
            + quota.advice(user, requested, limit, held),
            code=quota.REFUSAL_CODE,
        )

    # 4. Balance: at least one minute of the job's price.
    minute = minute_price_micro(gpu_type, cards_per_worker, workers)
    balance = billing_selectors.active_balance_micro(user, at)
    if balance < minute:
        raise JobRefused(
            _(
                "Not enough balance: one minute of this job costs %(minute)s DCU "
                "(%(price)s DCU/h × %(cards)s cards), your active balance is %(balance)s DCU. "
                "Top up or buy an extension pack, or use fewer cards."
            )
            % {
                "minute": _dcu(minute),
                "price": _dcu(gpu_type.price_micro_per_hour),
                "cards": cards_per_worker * workers,
                "balance": _dcu(balance),
            },
            code="balance",
        )

    # 5. The user's own monthly budget, when they asked for a hard stop (issue 20).
    exhausted = billing_selectors.budget_exhausted(user, at)
    if exhausted is not None:
        raise JobRefused(
            _(
                "Your monthly budget is used up: %(spent)s DCU charged since %(start)s, your "
                "budget is %(budget)s DCU with a hard stop. Raise the budget or turn its hard "
                "stop off on the Costs page, or wait for next month."
            )
            % {
                "spent": _dcu(exhausted.spent_micro),
                "budget": _dcu(exhausted.budget_micro),
                "start": exhausted.month_start.date().isoformat(),
            },
            code="budget",
        )

    # 6. Storage under its allowance.
    ok, why = storage_selectors.workloads_allowed(user)
    if not ok:
        raise JobRefused(why, code="storage")
