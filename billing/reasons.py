"""The ledger's reasons (message ids of ``LedgerEntry.reason_id``), read in the reader's language.

Amounts are µDCU, dates ISO dates (Asia/Shanghai, as the period they end).
"""

from django.utils.translation import gettext_lazy as _

from aladdin.lib.said import DCU_NUMBER, define

define("ledger.plan_grant", _("%(plan)s: %(amount)s DCU until %(date)s"), amount=DCU_NUMBER)
define(
    "ledger.carry",
    _("%(amount)s DCU unused at the end of the period, carried over until %(date)s"),
    amount=DCU_NUMBER,
)
define("ledger.expired", _("%(amount)s DCU expired"), amount=DCU_NUMBER)
define(
    "ledger.carry_expired",
    _("%(amount)s DCU of carried-over compute expired after 30 days"),
    amount=DCU_NUMBER,
)
define(
    "ledger.reactivated",
    _("%(amount)s DCU of carried-over compute active again until %(date)s"),
    amount=DCU_NUMBER,
)
define("ledger.arrears_paid", _("%(amount)s DCU of arrears paid"), amount=DCU_NUMBER)
define(
    "ledger.arrears_voucher",
    _("Platform voucher: %(amount)s DCU of arrears beyond 10 DCU covered"),
    amount=DCU_NUMBER,
)
define("ledger.arrears_banned", _("Arrears written off: the account is banned"))
# ``reason``: what the member of staff typed, in their own words.
define("ledger.arrears_written_off", _("Arrears written off: %(reason)s"))
define(
    "ledger.refund",
    _("Refund of order %(order)s: %(amount)s DCU taken back"),
    amount=DCU_NUMBER,
)
