"""The support queues on the back office's home page: what waits for a member of staff.

Read functions only (DESIGN: selectors). Each queue is a queryset of exactly
the rows that need someone, a count, and the admin changelist filtered to
exactly those rows (the ``?`` parameters below are list filters on the
ModelAdmins: billing/admin.py and storage/admin.py).

What each queue means:

- **Arrears cleanup** (SPEC §3.5): ArrearsReview rows still ``pending``; staff
  decide clean, hold or contact.
- **Invoice requests** (SPEC §5): Invoice rows still ``requested`` (no PDF
  issued yet).
- **Payments flagged for support**: there is no separate "flag" model; what
  billing/payments.py marks as needing a human is
    * an order with ``needs_support`` (money arrived for an order already
      closed, or a paid order whose plan or pack could not be granted), until
      it is fully refunded; and
    * a refund Alipay refused or did not answer: still ``requested`` with an
      ``error`` recorded (the "Retry at Alipay" action on refunds).
- **Retention warnings** (SPEC §4.2): users warned that their volume will be
  reclaimed, whose reclaim is still ahead, whose volume still exists, is not
  on hold, and who have not been active since the warning (activity moves
  the reclaim date and makes the warning moot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Model, QuerySet
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from billing import selectors as billing_selectors
from billing.models import ArrearsReview, Invoice, Order, Refund
from storage import selectors as storage_selectors
from storage.models import RetentionWarning

# The list filter every queue's link uses on its ModelAdmin (billing/admin.py,
# storage/admin.py: SupportQueueFilter).
QUEUE_PARAM = "queue"
QUEUE_VALUE = "open"


def arrears_pending() -> QuerySet[ArrearsReview]:
    return ArrearsReview.objects.filter(decision=ArrearsReview.Decision.PENDING)


def invoices_requested() -> QuerySet[Invoice]:
    return Invoice.objects.filter(state=Invoice.State.REQUESTED)


def orders_flagged() -> QuerySet[Order]:
    return billing_selectors.orders_flagged()


def refunds_failed() -> QuerySet[Refund]:
    return billing_selectors.refunds_failed()


def retention_warnings_open(at: datetime | None = None) -> QuerySet[RetentionWarning]:
    return storage_selectors.retention_warnings_open(at=at)


@dataclass(frozen=True)
class QueueDef:
    key: str
    title: str | Promise
    help: str | Promise
    model: type[Model]
    rows: Callable[[datetime | None], QuerySet]
    # The changelist's query string that shows exactly these rows.
    query: str

    @property
    def perm(self) -> str:
        # Seeing the queue needs the right to open its list.
        return f"{self.model._meta.app_label}.view_{self.model._meta.model_name}"

    @property
    def url(self) -> str:
        opts = self.model._meta
        return f"{reverse(f'admin:{opts.app_label}_{opts.model_name}_changelist')}?{self.query}"


@dataclass(frozen=True)
class Queue:
    key: str
    title: str | Promise
    help: str | Promise
    count: int
    url: str


_OPEN = f"{QUEUE_PARAM}={QUEUE_VALUE}"

QUEUES: tuple[QueueDef, ...] = (
    QueueDef(
        key="arrears",
        title=_("Arrears cleanup"),
        help=_("Accounts whose arrears reached 10 DCU: decide clean, hold or contact."),
        model=ArrearsReview,
        rows=lambda at: arrears_pending(),
        query=_OPEN,
    ),
    QueueDef(
        key="invoices",
        title=_("Invoice requests"),
        help=_("Invoices requested by users and not issued yet."),
        model=Invoice,
        rows=lambda at: invoices_requested(),
        query=_OPEN,
    ),
    QueueDef(
        key="payments",
        title=_("Payments flagged for support"),
        help=_(
            "Money that arrived for a closed order, or a paid order that could not be "
            "fulfilled: refund it or fulfil it by hand."
        ),
        model=Order,
        rows=lambda at: orders_flagged(),
        query=_OPEN,
    ),
    QueueDef(
        key="refunds",
        title=_("Refunds failed at Alipay"),
        help=_("Refunds Alipay refused or did not answer: retry them."),
        model=Refund,
        rows=lambda at: refunds_failed(),
        query=_OPEN,
    ),
    QueueDef(
        key="retention",
        title=_("Retention warnings"),
        help=_(
            "Users warned that their storage will be reclaimed: hold it if they asked to keep it."
        ),
        model=RetentionWarning,
        rows=retention_warnings_open,
        query=_OPEN,
    ),
)


def queues_for(user, at: datetime | None = None) -> list[Queue]:
    """The queues this member of staff may open, each with its count and filtered list."""
    return [
        Queue(key=q.key, title=q.title, help=q.help, count=q.rows(at).count(), url=q.url)
        for q in QUEUES
        if user.has_perm(q.perm)
    ]
