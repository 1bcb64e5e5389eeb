"""Storage writes: sampling, nightly charge, expansion, retention, holds (SPEC §4.2).

Who is sampled: every user with a StorageAllowance row whose ``has_volume`` is
set. The row is created by :func:`volume_register` (the workload apps call it
when they create the user space) or by the user's first expansion; a reclaim
clears ``has_volume``, so a reclaimed volume is neither sampled nor charged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aladdin.accounts.services import notification_create
from aladdin.cluster import get_driver
from aladdin.cluster.base import ClusterDriver, DriverError
from aladdin.lib.said import Said
from aladdin.lib.timeutil import day_start
from aladdin.lib.units import format_micro
from billing import selectors as billing_selectors
from billing.services import ChargeRequest, charge_batch

from . import reasons as _reasons  # noqa: F401 - ledger.storage
from . import selectors
from .choices import ReclaimReason
from .models import DailyPeak, Reclamation, RetentionWarning, StorageAllowance, StorageCharge

if TYPE_CHECKING:
    from aladdin.accounts.models import User


logger = logging.getLogger(__name__)


class StorageError(ValidationError):
    """A storage rule refused the request; the message tells the user why, with numbers."""


def _chunks(items: list[int], size: int = 500) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def volume_register(*, user_id: int) -> StorageAllowance:
    """Note that the user's volume exists (call when the user space is created). Idempotent."""
    row, created = StorageAllowance.objects.get_or_create(user_id=user_id)
    if not created and not row.has_volume:
        StorageAllowance.objects.filter(pk=row.pk).update(has_volume=True)
        row.has_volume = True
    return row


# --- sampling -------------------------------------------------------------------


def usage_sample(*, as_of: datetime | None = None, driver: ClusterDriver | None = None) -> int:
    """Measure every volume once and keep each user's peak of the Asia/Shanghai day.

    One driver call per volume (locally one os.scandir walk). A volume the
    driver cannot measure now is skipped and measured next time. Returns how
    many volumes were measured.
    """
    at = as_of or timezone.now()
    driver = driver or get_driver()
    day = selectors.shanghai_day(at)
    measured: dict[int, int] = {}
    for user_id in StorageAllowance.objects.filter(has_volume=True).values_list(
        "user_id", flat=True
    ):
        try:
            measured[user_id] = int(driver.storage_usage_bytes(user_id=user_id))
        except DriverError as exc:
            logger.warning("storage usage of user %s failed: %s", user_id, exc)
    with transaction.atomic():
        rows = list(StorageAllowance.objects.filter(user_id__in=list(measured)))
        for row in rows:
            row.last_bytes = measured[row.user_id]
            row.last_sampled_at = at
        StorageAllowance.objects.bulk_update(rows, ["last_bytes", "last_sampled_at"], 500)
        ids = list(measured)
        existing: dict[int, DailyPeak] = {}
        for chunk in _chunks(ids):
            for locked in DailyPeak.objects.select_for_update().filter(user_id__in=chunk, day=day):
                existing[locked.user_id] = locked
        new: list[DailyPeak] = []
        raised: list[DailyPeak] = []
        for user_id, n_bytes in measured.items():
            peak = existing.get(user_id)
            if peak is None:
                new.append(DailyPeak(user_id=user_id, day=day, peak_bytes=n_bytes))
            elif n_bytes > peak.peak_bytes:
                peak.peak_bytes = n_bytes
                raised.append(peak)
        DailyPeak.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
        DailyPeak.objects.bulk_update(raised, ["peak_bytes"], 500)
    return len(measured)


# --- nightly charge ----------------------------------------------------------------


def _claim_day(day: date, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """Mark the day's unsettled peaks with pk in [lo, hi] settled; return (pk, user id, bytes).

    One ``UPDATE … RETURNING`` (SQLite ≥ 3.35, PostgreSQL): the claim and the
    read are one statement, so a concurrent run cannot take the same rows,
    and it costs one statement instead of one per chunk of ids. It runs in
    the charge's transaction, so a failed charge un-claims them.
    """
    table = DailyPeak._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET settled = %s "  # noqa: S608
            "WHERE day = %s AND settled = %s AND id >= %s AND id <= %s "
            "RETURNING id, user_id, peak_bytes",
            [True, connection.ops.adapt_datefield_value(day), False, lo, hi],
        )
        return [tuple(row) for row in cursor.fetchall()]


def _insert_charges(rows: list[tuple]) -> None:
    """Insert StorageCharge rows with one prepared statement (the ORM's per-value work
    doubled the night's cost); a (user, day) already there is left as it is."""
    if not rows:
        return
    table = StorageCharge._meta.db_table
    columns = (
        "user_id, day, peak_bytes, charged_gib, free_gib, amount_micro, ledger_key, created_at"
    )
    conflict = "ON CONFLICT (user_id, day) DO NOTHING"
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) {conflict}",  # noqa: S608
            rows,
        )


# Users charged per transaction: a night of 100,000 users holds SQLite's
# write lock for a few seconds at a time, not for the whole run.
CHARGE_CHUNK = 5000


def _charge_day(day: date, *, at: datetime) -> int:
    """Charge every unsettled peak of ``day``, CHARGE_CHUNK users per transaction."""
    pks = list(
        DailyPeak.objects.filter(day=day, settled=False).order_by("pk").values_list("pk", flat=True)
    )
    return sum(
        _charge_chunk(day, lo=chunk[0], hi=chunk[-1], at=at) for chunk in _chunks(pks, CHARGE_CHUNK)
    )


def _charge_chunk(day: date, *, lo: int, hi: int, at: datetime) -> int:
    """Claim and charge one range of the day's peaks in one transaction (DESIGN rule 6)."""
    with transaction.atomic():
        peaks = _claim_day(day, lo, hi)
        if not peaks:
            return 0
        # The plan in force at the day's last instant decides the free storage.
        end = day_start(day + timedelta(days=1)) - timedelta(microseconds=1)
        free = selectors.plan_at(sorted({u for _pk, u, _b in peaks}), end)
        requests: list[ChargeRequest] = []
        rows: list[tuple] = []
        day_text = day.isoformat()
        created = connection.ops.adapt_datetimefield_value(at)
        day_value = connection.ops.adapt_datefield_value(day)
        for _pk, user_id, peak_bytes in peaks:
            gib, amount = selectors.fee_micro(peak_bytes=peak_bytes, free_gib=free[user_id])
            if amount <= 0:
                continue
            key = f"{user_id}:{day_text}"  # same key as billing.storage_fee_charge
            reason = Said("ledger.storage", {"day": day_text, "gib": gib, "free": free[user_id]})
            requests.append(ChargeRequest(user_id, "storage", key, amount, reason))
            rows.append(
                (
                    user_id,
                    day_value,
                    peak_bytes,
                    gib,
                    free[user_id],
                    amount,
                    f"storage:{key}",
                    created,
                )
            )
        if requests:
            # Debt and the 10 DCU arrears cap are handled by the billing core.
            charge_batch(requests=requests, at=at)
        _insert_charges(rows)
        return len(rows)


def nightly_charge(*, as_of: datetime | None = None) -> int:
    """Charge the storage fee of every unsettled day up to yesterday (Asia/Shanghai).

    Beat runs it at 00:30 Asia/Shanghai for the day before; after downtime it
    catches up each missed day once, oldest first, one transaction per day.
    Safe to run twice: settled peaks are skipped and ledger keys are unique.
    Returns how many (user, day) charges were made.
    """
    at = as_of or timezone.now()
    yesterday = selectors.shanghai_day(at) - timedelta(days=1)
    days = (
        DailyPeak.objects.filter(settled=False, day__lte=yesterday)
        .order_by("day")
        .values_list("day", flat=True)
        .distinct()
    )
    return sum(_charge_day(day, at=at) for day in list(days))


# --- expansion ----------------------------------------------------------------------


@transaction.atomic
def storage_expand(
    *, user: User, allowance_gib: int, at: datetime | None = None
) -> StorageAllowance:
    """Set the user's allowance, between the plan's free storage and its maximum.

    The free tier cannot expand; above the plan's maximum only staff can raise
    it; shrinking below the current use is refused. Expanding costs nothing by
    itself: the daily fee is for use over the free storage.
    """
    plan = billing_selectors.current_plan(user, at)
    used_gib = selectors.gib_ceil(selectors.used_bytes(user))
    if plan.max_storage_gib <= plan.free_storage_gib:
        raise StorageError(
            _(
                "The free tier cannot expand storage beyond %(free)s GiB. "
                "Subscribe to a plan to expand it."
            )
            % {"free": plan.free_storage_gib}
        )
    if allowance_gib > plan.max_storage_gib:
        raise StorageError(
            _(
                "%(plan)s allows at most %(max)s GiB of storage; you asked for %(asked)s GiB. "
                "Contact support for more."
            )
            % {"plan": plan.name, "max": plan.max_storage_gib, "asked": allowance_gib}
        )
    if allowance_gib < plan.free_storage_gib:
        raise StorageError(
            _("The allowance cannot be below the %(free)s GiB your plan includes.")
            % {"free": plan.free_storage_gib}
        )
    if allowance_gib < used_gib:
        raise StorageError(
            _(
                "You use %(used)s GiB; the allowance cannot shrink below that. "
                "Delete files first, then shrink."
            )
            % {"used": used_gib}
        )
    row, _created = StorageAllowance.objects.select_for_update().get_or_create(user=user)
    row.chosen_gib = allowance_gib
    row.save(update_fields=["chosen_gib"])
    return row


@transaction.atomic
def storage_set_by_staff(
    *, user: User, actor: User, allowance_gib: int | None, reason: str
) -> None:
    """Staff override of the allowance (None: back to the plan's rules); audited."""
    from aladdin.accounts.models import StaffAction

    row, _created = StorageAllowance.objects.select_for_update().get_or_create(user=user)
    before = {"staff_gib": row.staff_gib, "allowance_gib": selectors.allowance_gib(user)}
    row.staff_gib = allowance_gib
    row.save(update_fields=["staff_gib"])
    StaffAction.objects.create(
        actor=actor,
        target_user=user,
        action="storage_allowance",
        reason=reason,
        before=before,
        after={"staff_gib": allowance_gib, "allowance_gib": selectors.allowance_gib(user)},
        details={"allowance_gib": allowance_gib},
    )


@transaction.atomic
def storage_hold_set(
    *, user: User, actor: User, hold: bool, reason: str, at: datetime | None = None
) -> None:
    """Put (or lift) a staff hold: a held volume is never reclaimed; audited."""
    from aladdin.accounts.models import StaffAction

    at = at or timezone.now()
    row, _created = StorageAllowance.objects.select_for_update().get_or_create(user=user)
    row.hold = hold
    row.hold_reason = reason if hold else ""
    row.hold_by = actor if hold else None
    row.hold_at = at if hold else None
    row.save(update_fields=["hold", "hold_reason", "hold_by", "hold_at"])
    StaffAction.objects.create(
        actor=actor,
        target_user=user,
        action="storage_hold" if hold else "storage_unhold",
        reason=reason,
    )


# --- retention ------------------------------------------------------------------------


def _warn(user: User, *, reclaim_at: datetime, at: datetime) -> bool:
    """Warn once per (user, reclaim time), in-app and by SMS; True when sent now."""
    with transaction.atomic():
        _w, created = RetentionWarning.objects.get_or_create(
            user=user, reclaim_at=reclaim_at, defaults={"sent_at": at}
        )
        if not created:
            return False
        # Texted too (after commit, in the account's language, unless turned off).
        notification_create(
            user=user,
            message="storage_retention_warning",
            params={"when": reclaim_at.isoformat()},
            at=at,
        )
    return True


def _reclaim(
    user: User,
    row: StorageAllowance,
    *,
    basis_at: datetime | None,
    at: datetime,
    driver: ClusterDriver,
    reason: str,
) -> Reclamation | None:
    try:
        n_bytes = int(driver.storage_usage_bytes(user_id=user.pk))
    except DriverError:
        n_bytes = row.last_bytes
    try:
        driver.delete_user_space(user_id=user.pk)
    except DriverError as exc:
        logger.warning("reclaiming storage of user %s failed: %s", user.pk, exc)
        return None
    with transaction.atomic():
        StorageAllowance.objects.filter(pk=row.pk).update(has_volume=False, last_bytes=0)
        record = Reclamation.objects.create(
            user=user, at=at, bytes=n_bytes, reason=reason, basis_at=basis_at
        )
        notification_create(user=user, message="storage_reclaimed", params={"size": n_bytes}, at=at)
    return record


def retention_run(*, as_of: datetime | None = None, driver: ClusterDriver | None = None) -> dict:
    """Warn 3 days before and reclaim at reclaim_at, exactly as SPEC §4.2 decides.

    reclaim_at = max(end of the last plan or sign-up, last activity) + 15 days,
    only while the account has no active plan; activity restarts it, a staff
    hold prevents it. Safe to run twice (the warning is unique per reclaim
    time; a reclaimed volume has ``has_volume`` cleared).
    """
    at = as_of or timezone.now()
    driver = driver or get_driver()
    counts = {"warned": 0, "reclaimed": 0}
    rows = StorageAllowance.objects.filter(has_volume=True, hold=False).select_related("user")
    for row in rows:
        state = selectors.retention_for(row.user, at)
        # reclaim_at and warn_at are None together (a plan holds the volume).
        if state.has_plan or state.reclaim_at is None or state.warn_at is None:
            continue
        if at >= state.reclaim_at:
            if _reclaim(
                row.user,
                row,
                basis_at=state.basis_at,
                at=at,
                driver=driver,
                reason=ReclaimReason.RETENTION,
            ):
                counts["reclaimed"] += 1
        elif at >= state.warn_at and _warn(row.user, reclaim_at=state.reclaim_at, at=at):
            counts["warned"] += 1
    return counts


def storage_reclaim_by_staff(
    *, user: User, actor: User, reason: str, driver: ClusterDriver | None = None
) -> Reclamation | None:
    """Staff reclaim a volume now (from the reclaim queue); audited."""
    from aladdin.accounts.models import StaffAction

    row = StorageAllowance.objects.get(user=user)
    record = _reclaim(
        user,
        row,
        basis_at=None,
        at=timezone.now(),
        driver=driver or get_driver(),
        reason=ReclaimReason.STAFF,
    )
    StaffAction.objects.create(
        actor=actor, target_user=user, action="storage_reclaim", reason=reason
    )
    return record


def fee_text(amount_micro: int) -> str:
    return format_micro(amount_micro)
