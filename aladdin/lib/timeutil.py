"""Calendar helpers: days are Asia/Shanghai days (SPEC §2)."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def day_start(day: date) -> datetime:
    """00:00 of an Asia/Shanghai calendar day (SPEC §2), as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=SHANGHAI)
