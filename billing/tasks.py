"""Celery tasks of the billing app: thin wrappers around services (DESIGN rule 4)."""

from __future__ import annotations

from celery import shared_task

from aladdin.lib.timeutil import parse_as_of

from . import payments, services


@shared_task(
    name="billing.process_periods",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def process_periods(as_of: str | None = None) -> int:
    """Start, end and carry over every period due by ``as_of`` (default now).

    Safe to run twice and to run late: the service reads each event's own time
    from the rows and locks each account, so a second run (or a run after
    downtime) finds nothing left to do, or catches up exactly what was missed.
    Beat runs it every minute without ``as_of``. Returns how many users it
    processed.
    """
    when = parse_as_of(as_of) if as_of else None
    return services.billing_process_due(as_of=when)


@shared_task(
    name="billing.reconcile_orders",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def reconcile_orders(as_of: str | None = None) -> dict[str, int]:
    """Ask Alipay about pending orders: fulfil the paid, close the expired (SPEC §5).

    A notification can be lost; querying every pending order older than two
    minutes fulfils it anyway. Safe to run twice or concurrently: fulfilment
    locks the order and records the payment once. Beat runs it every minute.
    Returns how many orders ended up in each outcome.
    """
    when = parse_as_of(as_of) if as_of else None
    return payments.orders_reconcile_due(at=when)


@shared_task(
    name="billing.budgets_check",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def budgets_check(as_of: str | None = None) -> int:
    """Send the budget alerts due (80 % and 100 % of a monthly budget), each once."""
    return services.budgets_check(at=parse_as_of(as_of) if as_of else None)
