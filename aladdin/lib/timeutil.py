"""Calendar helpers: days are Asia/Shanghai days (SPEC §2).

The one definition of the portal's calendar time zone; apps import SHANGHAI
from here instead of building their own ZoneInfo.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

SHANGHAI = ZoneInfo("Asia/Shanghai")


def day_start(day: date) -> datetime:
    """00:00 of an Asia/Shanghai calendar day (SPEC §2), as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=SHANGHAI)


def parse_as_of(value: str) -> datetime:
    """An ISO 8601 time as an aware datetime; a naive one is Asia/Shanghai time (SPEC §2).

    Every periodic task takes its ``as_of`` through this (DESIGN rule 4).
    Raises ValueError with the offending text when it is not ISO 8601.
    """
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-05-01T03:00:00+08:00)"
        ) from exc
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=SHANGHAI)
    return parsed


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    """The Asia/Shanghai calendar month holding ``at``: its first instant and the next month's."""
    local = at.astimezone(SHANGHAI)
    first = local.date().replace(day=1)
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day_start(first), day_start(following)
