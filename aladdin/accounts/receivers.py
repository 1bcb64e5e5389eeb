"""Hooks into allauth's signals: each one only calls a service."""

from allauth.account.signals import password_changed, password_reset, password_set, user_logged_in
from django.dispatch import receiver

from . import services


@receiver(password_changed)
@receiver(password_set)
@receiver(password_reset)
def _revoke_ide_tokens_on_password_change(sender, request, user, **kwargs):
    services.oauth_revoke_all(user=user)


@receiver(user_logged_in)
def _on_login(sender, request, user, **kwargs):
    services.user_record_activity(user=user)
