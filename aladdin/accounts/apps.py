from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "aladdin.accounts"
    label = "accounts"
    verbose_name = _("Accounts")

    def ready(self):
        from . import receivers  # noqa: F401  (connects allauth's password signals)
