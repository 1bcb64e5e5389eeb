"""The user's CPU/memory quota, shared by workshops and GPU jobs (SPEC §4.1).

The portal checks it itself before it asks the cluster (DESIGN rule 7); the
backend's own quota is only the backstop. Each workload app adds its usage
through :func:`register_usage` (from its AppConfig.ready), so this module
never imports them (dependency direction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

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

UsageProvider = Callable[..., Resources]
_usage_providers: list[UsageProvider] = []


def register_usage(provider: UsageProvider) -> UsageProvider:
    """Add ``provider(user, exclude_workshop_id=None) -> Resources`` to the quota's usage.

    Workshops register their active workshops, GPU jobs their active jobs
    (each from its AppConfig.ready). ``exclude_workshop_id`` is the workshop
    being restarted, whose own old usage must not count; other providers
    ignore it. Usable as a decorator; registering the same function twice
    counts it once.
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


def used_by(user: User, exclude_workshop_id: int | None = None) -> Resources:
    total = Resources()
    for provider in _usage_providers:
        total = total + provider(user, exclude_workshop_id=exclude_workshop_id)
    return total


def check(user: User, requested: Resources, *, exclude_workshop_id: int | None = None) -> None:
    """Raise QuotaExceeded with the manual's message when ``requested`` does not fit."""
    limit = limit_for(user)
    used = used_by(user, exclude_workshop_id=exclude_workshop_id)
    if not (used + requested).fits_within(limit):
        raise QuotaExceeded(
            requested,
            used,
            limit,
            advice=_("Stop other workshops, or shrink this one to 2 CPU / 4 GiB."),
        )
