from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Plans, subscriptions, grants, ledger, orders, Alipay, invoices."""

    name = "billing"
