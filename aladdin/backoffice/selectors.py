"""Back-office reads: what the staff search and the user 360° page show.

Reads only: every write goes through a service (``actions.py``,
``services.py`` and the apps' own). The 360° page reads everything through
:func:`user_360`, so the view stays a few lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.paginator import Page
from django.db.models import Q, QuerySet
from django.utils import timezone

from aladdin.accounts import selectors as account_selectors
from aladdin.accounts.choices import audit_field_label, audit_value, staff_action_label
from aladdin.accounts.models import Notification, SmsMessage, StaffAction, User
from aladdin.accounts.phone import normalize_phone
from aladdin.lib.pagination import CountingPaginator
from billing import selectors as billing_selectors
from billing.choices import GrantState
from billing.models import Grant, Invoice, Order, Refund
from gpu_jobs.choices import ACTIVE_STATES as JOB_ACTIVE_STATES
from gpu_jobs.models import Job
from storage import selectors as storage_selectors
from workshops.choices import ACTIVE_STATES as WORKSHOP_ACTIVE_STATES
from workshops.models import SSHKey, Workshop

LEDGER_PAGE_SIZE = 25
# Each list on the page shows the newest rows; the full lists are in the
# app's own admin pages, linked from the section.
LIST_LIMIT = 50


_JOB_ID = re.compile(r"^(?:job[-_ ]?)?#?(\d{1,12})$", re.IGNORECASE)


# --- search ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    """One user found, and why: the field that matched (for the staff's eye)."""

    user: User
    matched: str


def staff_search(query: str, *, limit: int = LIST_LIMIT) -> list[SearchHit]:
    """Users matching ``query``: phone (any format), username, order number, job id, workshop name.

    One user appears once, with the first kind of match found (phone,
    username, order, job, workshop). A job id may be typed ``123``,
    ``job-123`` or ``#123``; a phone as people type it.
    """
    query = (query or "").strip()
    if not query:
        return []
    hits: dict[int, SearchHit] = {}

    def add(users: QuerySet[User] | list[User], matched: str) -> None:
        for user in users:
            if user.pk not in hits:
                hits[user.pk] = SearchHit(user=user, matched=matched)

    try:
        phone = normalize_phone(query)
    except ValidationError:
        phone = None
    if phone is not None:
        add(User.objects.filter(phone=phone), "phone")
    elif query.startswith("+") or query.isdigit() and len(query) >= 4:
        # A part of a number ("8000", "+86138"): staff often read out the end.
        add(User.objects.filter(phone__contains=query).order_by("pk")[:limit], "phone")
    add(User.objects.filter(username__iexact=query), "username")
    order_users = User.objects.filter(
        Q(orders__out_trade_no__iexact=query) | Q(orders__trade_no=query)
    ).distinct()
    add(order_users, "order")
    match = _JOB_ID.match(query)
    if match:
        add(User.objects.filter(jobs__pk=int(match.group(1))).distinct(), "job")
    add(User.objects.filter(workshops__name__iexact=query).distinct().order_by("pk"), "workshop")
    if len(hits) < limit and len(query) >= 3 and phone is None:
        # Usernames by part, last: an exact match above wins its place first.
        add(User.objects.filter(username__icontains=query).order_by("pk")[:limit], "username")
    return list(hits.values())[:limit]


# --- the user 360° page -----------------------------------------------------------------


@dataclass
class StorageView:
    used_bytes: int
    allowance_gib: int
    staff_gib: int | None
    hold: bool
    hold_reason: str
    reclaim_at: datetime | None
    has_volume: bool


@dataclass
class User360:
    """Everything the 360° page shows about one user, read at ``at``."""

    user: User
    at: datetime
    balance: billing_selectors.Balance
    grants: list[Grant]
    ledger: Page
    orders: list[Order]
    refunds: list[Refund]
    invoices: list[Invoice]
    workshops: list[Workshop]
    jobs: list[Job]
    storage: StorageView
    ssh_keys: list[SSHKey]
    ides: list[Any]
    notifications: list[Notification]
    sms: list[SmsMessage]
    staff_actions: list[StaffAction]
    logins: dict[str, Any] = field(default_factory=dict)
    active_workshop_ids: set[int] = field(default_factory=set)
    active_job_ids: set[int] = field(default_factory=set)


def _refundable_fen(order: Order) -> int:
    """What is left to refund: paid, less refunded and less refunds still in progress."""
    pending = sum(r.amount_fen for r in order.refunds.all() if r.state == Refund.State.REQUESTED)
    if order.state not in (Order.State.PAID, Order.State.PARTLY_REFUNDED):
        return 0
    return max(order.price_fen - order.refunded_fen - pending, 0)


def refundable_fen(order: Order) -> int:
    """Public: the most a refund of ``order`` may be now, in fen."""
    return _refundable_fen(order)


def _with_changes(actions: list[StaffAction]) -> list[StaffAction]:
    """Give each record a ``label``, its ``changes`` [(field, before, after)] and ``facts``."""
    for action in actions:
        action.label = staff_action_label(action.action)  # type: ignore[attr-defined]
        before, after = action.before or {}, action.after or {}
        kind = action.subject_type
        action.changes = [  # type: ignore[attr-defined]
            (
                audit_field_label(key, kind),
                audit_value(key, before.get(key)),
                audit_value(key, after.get(key)),
            )
            for key in dict.fromkeys([*before, *after])
        ]
        details = action.details if isinstance(action.details, dict) else {}
        action.facts = [  # type: ignore[attr-defined]
            (audit_field_label(key, kind), audit_value(key, value))
            for key, value in details.items()
        ]
    return actions


def user_360(user: User, *, ledger_page: int | str = 1, at: datetime | None = None) -> User360:
    """Read the user's plan, compute, money, workloads, storage, access, messages and audit."""
    at = at or timezone.now()
    ledger = CountingPaginator(billing_selectors.ledger_entries(user), LEDGER_PAGE_SIZE).get_page(
        ledger_page
    )
    orders = list(
        Order.objects.filter(user=user)
        .select_related("plan")
        .prefetch_related("refunds")
        .order_by("-created_at", "-pk")[:LIST_LIMIT]
    )
    for order in orders:
        order.refundable_fen = _refundable_fen(order)  # type: ignore[attr-defined]
    row = storage_selectors.allowance_row(user)
    retention = storage_selectors.retention_for(user, at)
    workshops = list(
        Workshop.objects.filter(user=user)
        .select_related("preset")
        .order_by("-created_at")[:LIST_LIMIT]
    )
    jobs = list(
        Job.objects.filter(user=user, deleted_at__isnull=True)
        .select_related("gpu_type")
        .order_by("-created_at", "-pk")[:LIST_LIMIT]
    )
    keys = list(SSHKey.objects.filter(user=user).order_by("-created_at", "-pk"))
    return User360(
        user=user,
        at=at,
        balance=billing_selectors.balance_for(user, at),
        grants=list(
            Grant.objects.filter(user=user)
            .filter(Q(state__in=[GrantState.ACTIVE, GrantState.CARRIED]) | Q(remaining_micro__gt=0))
            .order_by("state", "active_until", "pk")[:LIST_LIMIT]
        ),
        ledger=ledger,
        orders=orders,
        refunds=list(
            Refund.objects.filter(order__user=user)
            .select_related("order", "created_by")
            .order_by("-created_at")[:LIST_LIMIT]
        ),
        invoices=list(
            Invoice.objects.filter(order__user=user)
            .select_related("order")
            .order_by("-requested_at")[:LIST_LIMIT]
        ),
        workshops=workshops,
        jobs=jobs,
        storage=StorageView(
            used_bytes=storage_selectors.used_bytes(user),
            allowance_gib=storage_selectors.allowance_gib(user, at),
            staff_gib=row.staff_gib if row else None,
            hold=bool(row and row.hold),
            hold_reason=row.hold_reason if row else "",
            reclaim_at=retention.reclaim_at,
            has_volume=bool(row and row.has_volume),
        ),
        ssh_keys=keys,
        ides=list(account_selectors.connected_ides(user=user)),
        notifications=list(Notification.objects.filter(user=user)[:LIST_LIMIT]),
        sms=list(SmsMessage.objects.filter(phone=user.phone)[:LIST_LIMIT]),
        staff_actions=_with_changes(
            list(
                StaffAction.objects.filter(target_user=user)
                .select_related("actor")
                .order_by("-created_at", "-pk")[:LIST_LIMIT]
            )
        ),
        logins={
            # What the platform records: Django's last web login, the last
            # activity of any kind (web, IDE token, SSH), and each key's last
            # SSH login (shown with the keys). allauth keeps no login history
            # here (allauth.usersessions is not installed).
            "last_login": user.last_login,
            "last_activity_at": user.last_activity_at,
            "last_ssh_at": max((k.last_used_at for k in keys if k.last_used_at), default=None),
        },
        active_workshop_ids={w.pk for w in workshops if w.state in WORKSHOP_ACTIVE_STATES},
        active_job_ids={j.pk for j in jobs if j.state in JOB_ACTIVE_STATES},
    )
