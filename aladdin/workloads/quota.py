"""The user's CPU/memory quota, shared by workshops and GPU jobs (SPEC §4.1).

The portal checks it itself before it asks the cluster (DESIGN rule 7); the
backend's own quota is only the backstop. Each workload app adds its usage
through :func:`register_usage` (from its AppConfig.ready), so this module
never imports them (dependency direction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from django.utils.translation import gettext as _

from aladdin.cluster.base import QuotaExceeded, Resources
from billing import selectors as billing_selectors

if TYPE_CHECKING:
    from aladdin.accounts.models import User


# The API's refusal code for a quota refusal, workshops and jobs alike
# (docs/api.md): one code per meaning, whichever app refuses.
REFUSAL_CODE = QuotaExceeded.error_code
# Each parallelism unit brings at most 10 CPU and 121 GiB (SPEC §4.1).
PER_UNIT = Resources(cpu_millicores=10_000, memory_mib=121 * 1024)
# The free tier's base quota: one small workshop.
FREE_BASE = Resources(cpu_millicores=2_000, memory_mib=4 * 1024)
SMALLEST = FREE_BASE


class Holding(NamedTuple):
    """One active workload's share of the quota, named as the student knows it."""

    label: str  # "workshop demo", "job #12"
    resources: Resources


UsageProvider = Callable[..., list[Holding]]
_usage_providers: list[UsageProvider] = []


def register_usage(provider: UsageProvider) -> UsageProvider:
    """Add ``provider(user, exclude_workshop_id=None, exclude_job_id=None) -> [Holding]``.

    Workshops register their active workshops, GPU jobs their active jobs
    (each from its AppConfig.ready). The excluded workshop or job is the one
    being restarted or re-admitted, whose own old usage must not count; a
    provider ignores the other kind's id. Usable as a decorator; registering
    the same function twice counts it once. The labels name what to stop
    in a refusal's advice.
    """
    if provider not in _usage_providers:
        _usage_providers.append(provider)
    return provider


def limit_for(user: User) -> Resources:
    """parallelism × (10 CPU, 121 GiB); the free tier's base quota when parallelism is 0."""
    units = billing_selectors.gpu_parallelism(user)
    if units <= 0:
        return FREE_BASE
    return Resources(
        cpu_millicores=PER_UNIT.cpu_millicores * units, memory_mib=PER_UNIT.memory_mib * units
    )


def holdings(
    user: User, *, exclude_workshop_id: int | None = None, exclude_job_id: int | None = None
) -> list[Holding]:
    """Every active workload of ``user`` and what it holds, as the providers report it."""
    found: list[Holding] = []
    for provider in _usage_providers:
        found += provider(
            user, exclude_workshop_id=exclude_workshop_id, exclude_job_id=exclude_job_id
        )
    return found


def total(rows: list[Holding]) -> Resources:
    summed = Resources()
    for row in rows:
        summed = summed + row.resources
    return summed


def used_by(
    user: User, exclude_workshop_id: int | None = None, exclude_job_id: int | None = None
) -> Resources:
    return total(
        holdings(user, exclude_workshop_id=exclude_workshop_id, exclude_job_id=exclude_job_id)
    )


def advice(user: User, requested: Resources, limit: Resources, held: list[Holding]) -> str:
    """The one thing that makes ``requested`` fit, for this user (SPEC §4.1 refusals).

    What alone exceeds the limit needs a smaller size or a bigger plan (a free
    user is told the free size and that a plan lifts it); what fits alone
    needs room, and the message names the workloads holding it.
    """
    if requested.fits_within(limit):
        running = ", ".join(f"{h.label} ({h.resources.human()})" for h in held)
        return _("Stop %(running)s to make room, or choose a smaller size.") % {"running": running}
    if billing_selectors.gpu_parallelism(user) <= 0:
        return _(
            "Without a plan you can use %(free)s at a time: choose %(free)s, or buy a plan "
            "(each unit of GPU parallelism allows %(unit)s)."
        ) % {"free": FREE_BASE.human(), "unit": PER_UNIT.human()}
    return _(
        "Your plan allows %(limit)s in all: choose a smaller size, or a plan with more "
        "GPU parallelism."
    ) % {"limit": limit.human()}


def check(user: User, requested: Resources, *, exclude_workshop_id: int | None = None) -> None:
    """Raise QuotaExceeded with the manual's message and the way out when ``requested`` does not fit."""
    limit = limit_for(user)
    held = holdings(user, exclude_workshop_id=exclude_workshop_id)
    used = total(held)
    if not (used + requested).fits_within(limit):
        raise QuotaExceeded(requested, used, limit, advice=advice(user, requested, limit, held))


def fits(user: User, requested: Resources) -> bool:
    """Whether ``requested`` fits next to what ``user`` runs now (pickers' defaults)."""
    return (used_by(user) + requested).fits_within(limit_for(user))
