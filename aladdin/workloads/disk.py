"""The free-space reserve of the volumes' filesystem (SPEC §4.2, §9; issue 14).

Students share one disk on the local backend. SPEC §4.2 lets a volume grow
past its allowance where nothing enforces it (new workloads are then
refused; nothing running is killed for it), so one student can still fill
the host. The operator sets a reserve (``ALADDIN_LOCAL_DISK_RESERVE_MIB``);
:func:`disk_guard` runs every ``ALADDIN_LOCAL_DISK_CHECK_SECONDS`` and,
while free space is below it:

1. measures every volume now (``storage.services.usage_sample``: the same
   numbers then appear in the refusal of the user's next workload);
2. ranks the users over their allowance by how far over they are;
3. stops the running workloads of the first of them, one user after the
   other, until the excess of those stopped covers the shortfall (were
   they back within their allowance, the reserve would hold again) or no
   user over the allowance is left. Each workload shows the reason, with
   the numbers, and the user gets an in-app notice.

Stopping frees no space (files stay): it stops the growth, and the users
stopped stay refused until they are back under their allowance. A user
within the allowance is never stopped: when nobody is over it, the disk
filled within the allowances the operator handed out, and the guard only
logs an error for the operator (``disk_guard`` result ``alert``).

Invariant the tests check: only users over their allowance are stopped,
the furthest over first, and a second pass (or two at once) stops nothing
more and sends no second notice: each stop is a conditional update under
the user's storage row lock, and a notice goes out only for workloads this
pass itself stopped.

Which workloads a user has is each app's business: workshops and GPU jobs
register a stopper from their AppConfig.ready (:func:`register_stopper`),
so this module never imports them (dependency direction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from aladdin import cluster
from aladdin.accounts.services import notification_create
from aladdin.cluster.base import ClusterDriver, DiskSpace
from aladdin.lib.said import Said
from aladdin.workloads import reasons as _reasons  # noqa: F401 - workload.stopped_disk_full
from storage import selectors as storage_selectors
from storage import services as storage_services
from storage.choices import GIB
from storage.models import StorageAllowance

log = logging.getLogger(__name__)

MIB = 2**20

# stopper(user_id=..., reason=...) -> how many workloads this call stopped.
Stopper = Callable[..., int]
_stoppers: list[Stopper] = []


def register_stopper(stopper: Stopper) -> Stopper:
    """Add ``stopper(user_id=, reason=) -> int`` (each workload app's "stop all of a user's")."""
    if stopper not in _stoppers:
        _stoppers.append(stopper)
    return stopper


def reserve_bytes() -> int:
    """The operator's reserve in bytes (0: the guard is off)."""
    return int(settings.LOCAL_DISK_RESERVE_MIB) * MIB


@dataclass(frozen=True)
class Overuse:
    """A user over the storage allowance: bytes used, bytes allowed."""

    user_id: int
    used: int
    allowed: int

    @property
    def excess(self) -> int:
        return self.used - self.allowed


@dataclass
class GuardResult:
    """What one pass saw and did (the task's return value, and what the tests read)."""

    free: int = 0
    reserve: int = 0
    over: list[Overuse] = field(default_factory=list)  # ranked, furthest over first
    chosen: list[int] = field(default_factory=list)  # users whose workloads must stop
    stopped: dict[int, int] = field(default_factory=dict)  # user -> stopped by this pass
    alert: str = ""  # for the operator: below the reserve and nobody to stop

    @property
    def below(self) -> bool:
        return self.free < self.reserve

    def as_dict(self) -> dict:
        return {
            "free": self.free,
            "reserve": self.reserve,
            "below": self.below,
            "over": [o.user_id for o in self.over],
            "chosen": self.chosen,
            "stopped": sum(self.stopped.values()),
            "alert": self.alert,
        }


def ranked_overuse() -> list[Overuse]:
    """Users whose last measured use exceeds their allowance, furthest over first."""
    over = []
    rows = StorageAllowance.objects.filter(has_volume=True).select_related("user")
    for row in rows:
        found = storage_selectors.over_allowance(row.user)
        if found is not None:
            over.append(Overuse(row.user_id, found.used_bytes, found.allowance_gib * GIB))
    # Ties (same excess) in user order, so every pass picks the same users.
    return sorted(over, key=lambda o: (-o.excess, o.user_id))


def choose(over: list[Overuse], shortfall: int) -> list[Overuse]:
    """The shortest prefix of ``over`` whose excess covers ``shortfall`` (all of it if none does)."""
    chosen: list[Overuse] = []
    covered = 0
    for overuse in over:
        if covered >= shortfall:
            break
        chosen.append(overuse)
        covered += overuse.excess
    return chosen


def stop_params(space: DiskSpace, reserve: int, overuse: Overuse) -> dict[str, int]:
    """The numbers of the stop, in bytes (the notice formats them when read)."""
    return {
        "free": space.free,
        "reserve": reserve,
        "excess": overuse.excess,
        "allowed": overuse.allowed,
    }


def stop_reason(space: DiskSpace, reserve: int, overuse: Overuse) -> Said:
    # The same text as the "storage_disk_full" notice (aladdin.accounts.notices).
    return Said("workload.stopped_disk_full", stop_params(space, reserve, overuse))


def _stop_user(overuse: Overuse, reason: Said, params: dict[str, int], at: datetime) -> int:
    """Stop the user's workloads under their storage row's lock; notify if this pass stopped any."""
    with transaction.atomic():
        row = StorageAllowance.objects.select_for_update().select_related("user")
        allowance = row.get(user_id=overuse.user_id)
        stopped = sum(stopper(user_id=overuse.user_id, reason=reason) for stopper in _stoppers)
        if stopped:
            notification_create(
                user=allowance.user, message="storage_disk_full", params=params, at=at
            )
    return stopped


def disk_guard(
    *,
    as_of: datetime | None = None,
    driver: ClusterDriver | None = None,
    reserve: int | None = None,
) -> GuardResult:
    """One pass of the reserve check (module docstring). Raises DriverError (the next pass retries)."""
    at = as_of or timezone.now()
    reserve = reserve_bytes() if reserve is None else reserve
    result = GuardResult(reserve=reserve)
    if reserve <= 0:
        return result
    driver = driver or cluster.get_driver()
    space = driver.disk_free()
    result.free = space.free
    if not result.below:
        return result
    # Fresh numbers, kept as the last sample: the refusal of the user's next
    # workload (storage.selectors.workloads_allowed) then quotes these.
    storage_services.usage_sample(as_of=at, driver=driver)
    result.over = ranked_overuse()
    if not result.over:
        result.alert = (
            f"the volumes' disk has {space.free} bytes free, below the reserve of {reserve}, "
            "and no user is over the storage allowance: nothing is stopped (SPEC §4.2); "
            "free space on the host or lower the allowances"
        )
        log.error("disk guard: %s", result.alert)
        return result
    chosen = choose(result.over, reserve - space.free)
    result.chosen = [o.user_id for o in chosen]
    for overuse in chosen:
        reason = stop_reason(space, reserve, overuse)
        params = stop_params(space, reserve, overuse)
        result.stopped[overuse.user_id] = _stop_user(overuse, reason, params, at)
    log.warning(
        "disk guard: %s bytes free, reserve %s: stopped %s workload(s) of users %s",
        space.free,
        reserve,
        sum(result.stopped.values()),
        result.chosen,
    )
    return result
