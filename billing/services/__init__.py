"""Billing writes: subscriptions, grants, charges, debt, period processing (SPEC §3).

Every function here that changes a balance:

- locks the user's Account row first (``select_for_update``, evaluated), so two
  writers for one user serialise and none loses an update;
- changes a grant's ``remaining_micro`` only together with a LedgerEntry, and
  only through ``ledger.write`` (the one write path);
- gives every ledger entry a unique idempotency key, so an event applied twice
  inserts nothing the second time (DESIGN rules 5 and 6).

Invariant (checked by the property tests): the sum of a user's ledger equals
the sum of their grants' remaining compute minus their debt.

Modules, each using only those above it:

- ``ledger``: locks, the SPEC §3.4 spending order, the one write, debits and
  credits, debt and the arrears cap;
- ``periods``: periods ending and starting, carry-over, expiry;
- ``charges``: charge, charge_batch (a metering tick), storage fees;
- ``subscriptions``: subscribing, upgrading, renewing, extension packs;
- ``staff``: vouchers, forfeits, arrears decisions;
- ``budgets``: monthly budgets and their alerts (issue 20);
- ``payments``: what a refund does to compute (the Alipay side is
  ``billing/payments.py``).

Callers use the names re-exported here (``from billing import services``).
"""

from .budgets import budget_set, budgets_check
from .charges import (
    CHARGE_KINDS,
    ChargeRequest,
    ChargeResult,
    charge,
    charge_batch,
    storage_fee_charge,
)
from .ledger import ARREARS_CAP_MICRO, DCU, BillingError, account_lock
from .payments import refund_apply
from .periods import CARRY_DAYS, billing_process_due, billing_process_user
from .staff import arrears_review_decide, billing_forfeit_all, voucher_grant
from .subscriptions import extension_pack_buy, subscription_create

__all__ = [
    "budget_set",
    "budgets_check",
    "ARREARS_CAP_MICRO",
    "CARRY_DAYS",
    "CHARGE_KINDS",
    "DCU",
    "BillingError",
    "ChargeRequest",
    "ChargeResult",
    "account_lock",
    "arrears_review_decide",
    "billing_forfeit_all",
    "billing_process_due",
    "billing_process_user",
    "charge",
    "charge_batch",
    "extension_pack_buy",
    "refund_apply",
    "storage_fee_charge",
    "subscription_create",
    "voucher_grant",
]
