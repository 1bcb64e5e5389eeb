"""Plans, subscriptions, grants, ledger, orders, Alipay, invoices."""
