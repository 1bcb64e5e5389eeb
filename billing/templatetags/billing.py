"""Template helpers of the billing pages: DCU and yuan formatting, the balance widget.

Formatting goes through aladdin.lib.units so that pages, API and ledger reasons
print the same numbers (integers of µDCU and fen, never floats).
"""

from __future__ import annotations

from django import template

from aladdin.lib.units import fen_to_yuan_str, format_micro
from billing import selectors

register = template.Library()


@register.filter
def dcu(micro) -> str:
    """µDCU as DCU without trailing zeros: 56600000 -> "56.6"."""
    if micro is None or micro == "":
        return ""
    return format_micro(int(micro))


@register.filter
def signed_dcu(micro) -> str:
    """µDCU as a signed DCU amount for the ledger: "+20", "-0.03", "0"."""
    if micro is None or micro == "":
        return ""
    micro = int(micro)
    return f"+{format_micro(micro)}" if micro > 0 else format_micro(micro)


@register.filter
def yuan(fen) -> str:
    """Fen as yuan with two decimals: 13500 -> "135.00"."""
    if fen is None or fen == "":
        return ""
    return fen_to_yuan_str(int(fen))


@register.inclusion_tag("billing/_balance.html")
def balance_widget(user):
    """The balance card (SPEC §3.5): active and carried compute, arrears, plan, queue.

    Used on the overview and the billing page; reads only through selectors.
    """
    return {
        "balance": selectors.balance_for(user),
        "queued": list(selectors.queued_subscriptions(user)),
    }
