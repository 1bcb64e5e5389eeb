from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    """Plans, subscriptions, grants, ledger, orders, Alipay, invoices."""

    name = "billing"
    verbose_name = _("Billing")

    def ready(self) -> None:
        # Its ledger reasons are rendered wherever an entry is shown (aladdin.lib.said).
        from . import reasons  # noqa: F401
