from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.choices import GrantClass, LedgerKind
from billing.models import Account, Grant, LedgerEntry


def _entry(user, key="k-1", delta=1_000_000):
    return LedgerEntry.objects.create(
        user=user, delta_micro=delta, kind=LedgerKind.GRANT, reason="test", idempotency_key=key
    )


def _grant(user, granted=10_000_000, remaining=10_000_000):
    return Grant.objects.create(
        user=user,
        grant_class=GrantClass.EXTENSION,
        granted_micro=granted,
        remaining_micro=remaining,
        active_until=timezone.now() + timedelta(days=30),
    )


def test_a_ledger_entry_cannot_be_updated(user):
    entry = _entry(user)
    entry.delta_micro = 5
    with pytest.raises(TypeError):
        entry.save()
    entry.refresh_from_db()
    assert entry.delta_micro == 1_000_000


def test_ledger_entries_cannot_be_updated_in_bulk(user):
    _entry(user)
    with pytest.raises(TypeError):
        LedgerEntry.objects.filter(user=user).update(delta_micro=5)


def test_a_duplicate_idempotency_key_is_refused(user, other_user):
    _entry(user, key="alipay:T1:TRADE_SUCCESS")
    with pytest.raises(IntegrityError), transaction.atomic():
        _entry(other_user, key="alipay:T1:TRADE_SUCCESS")
    assert LedgerEntry.objects.count() == 1


def test_remaining_compute_cannot_go_negative(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        _grant(user, remaining=-1)


def test_remaining_compute_cannot_exceed_what_was_granted(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        _grant(user, granted=10, remaining=11)


def test_an_existing_grant_cannot_be_overdrawn(user):
    grant = _grant(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Grant.objects.filter(pk=grant.pk).update(remaining_micro=-5)


def test_debt_cannot_be_negative(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.create(user=user, debt_micro=-1)
