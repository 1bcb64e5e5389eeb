"""Celery tasks of the accounts app: thin, safe to run twice (DESIGN rule 4)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="accounts.notification_sms", acks_late=True, ignore_result=True)
def notification_sms(notification_id: int) -> None:
    """Text a queued notice (claimed first: a second run texts nothing)."""
    services.notification_sms_send(notification_id=notification_id)
