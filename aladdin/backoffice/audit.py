"""The one way a staff action is recorded: who, when, what, why, before and after (SPEC §8).

Every back-office write calls :func:`record` in the same transaction as the
change, so an action and its record land together or not at all. The
records are append-only (:class:`aladdin.accounts.models.StaffAction`).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from aladdin.accounts.models import StaffAction, User


def record(
    *,
    actor: User | None,
    action: str,
    reason: str,
    target_user: User | int | None = None,
    subject: models.Model | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> StaffAction:
    """Append one audit record.

    ``subject`` is the row acted on (a job, a plan, an image): its type, id
    and name are kept as text, so the record outlives the row. ``before``
    and ``after`` hold the changed fields' values, JSON-safe.
    """
    fields: dict[str, Any] = {
        "actor": actor,
        "action": action,
        "reason": reason,
        "before": before or {},
        "after": after or {},
        "details": details or {},
    }
    if isinstance(target_user, User):
        fields["target_user"] = target_user
    elif target_user is not None:
        fields["target_user_id"] = target_user
    if subject is not None:
        fields["subject_type"] = subject._meta.label_lower
        fields["subject_id"] = str(subject.pk)
        fields["subject_repr"] = str(subject)[:200]
    return StaffAction.objects.create(**fields)
