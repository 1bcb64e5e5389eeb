"""Monthly compute budgets (issue 20): set one, get alerts at 80 % and 100 %, optionally stop launches.

The spend is the ledger's (``selectors.spend_micro``): what was charged this
calendar month, GPU time and storage alike. Alerts are rows (``BudgetAlert``,
unique per user, month and threshold), so a threshold crossed is announced
once however often the check runs; the notice is written in the same
transaction as its row.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from aladdin.accounts.services import notification_create
from aladdin.lib.timeutil import month_bounds

from .. import selectors
from ..models import Budget, BudgetAlert

THRESHOLDS = (80, 100)
MESSAGES = {80: "budget_warning", 100: "budget_reached"}


def budget_set(*, user, monthly_micro: int | None, hard_stop: bool = False) -> Budget | None:
    """Set (or, with None, remove) the user's monthly budget."""
    if monthly_micro is None:
        Budget.objects.filter(user=user).delete()
        return None
    if monthly_micro < 1:
        raise ValueError("a budget is at least 1 µDCU")
    budget, _created = Budget.objects.update_or_create(
        user=user, defaults={"monthly_micro": monthly_micro, "hard_stop": hard_stop}
    )
    return budget


def budget_alerts_for(budget: Budget, *, at: datetime) -> list[int]:
    """Send the alerts ``budget``'s user is due this month; the thresholds sent now."""
    start, end = month_bounds(at)
    spent = selectors.spend_micro(budget.user, start, end)
    sent = []
    for threshold in THRESHOLDS:
        if spent * 100 < threshold * budget.monthly_micro:
            break
        try:
            with transaction.atomic():
                BudgetAlert.objects.create(
                    user=budget.user,
                    month=start.date(),
                    threshold=threshold,
                    spent_micro=spent,
                    budget_micro=budget.monthly_micro,
                )
                notification_create(
                    user=budget.user,
                    message=MESSAGES[threshold],
                    params={
                        "percent": threshold,
                        "spent": spent,
                        "budget": budget.monthly_micro,
                        "hard_stop": budget.hard_stop,
                    },
                    at=at,
                )
        except IntegrityError:
            continue  # sent before (or by a concurrent check)
        sent.append(threshold)
    return sent


def budgets_check(*, at: datetime | None = None) -> int:
    """Send every due budget alert; how many were sent. Safe to run twice and late."""
    at = at or timezone.now()
    return sum(
        len(budget_alerts_for(budget, at=at))
        for budget in Budget.objects.select_related("user").order_by("pk")
    )
