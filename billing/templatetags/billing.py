"""Template helpers of the billing pages: DCU and yuan formatting, the balance widget.

Formatting goes through aladdin.lib.units so that pages, API and ledger reasons
print the same numbers (integers of µDCU and fen, never floats).

Two forms of DCU:
- ``dcu`` / ``signed_dcu``: the exact amount ("56.6", "-0.000356"), for the back office
  and admin, where staff reconcile to the µDCU;
- ``dcu_page`` / ``signed_dcu_page``: what students read, two decimals with the exact
  amount on hover (``<span title="56.6 DCU">56.60</span>``); the rounding rule (a
  non-zero amount never reads 0.00) is ``aladdin.lib.units.format_micro_2dp``.
Yuan: ``yuan`` is the bare number ("135.00"), ``cny`` the price as students read it
("¥135.00").
"""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from aladdin.lib.units import dcu_html, fen_to_yuan_str, format_micro, format_micro_2dp
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


def _empty(value) -> bool:
    return value is None or value == ""


@register.filter
def dcu_page(micro) -> str:
    """µDCU as students read it: two decimals, the exact DCU on hover.

    56600000 -> <span class="dcu" title="56.6 DCU">56.60</span>; 4999 -> "<0.01".
    """
    if _empty(micro):
        return ""
    return dcu_html(int(micro))


@register.filter
def signed_dcu_page(micro) -> str:
    """A ledger amount as students read it: "+20.00", "-<0.01", "0.00", the exact on hover."""
    if _empty(micro):
        return ""
    micro = int(micro)
    plus = "+" if micro > 0 else ""
    return format_html(
        '<span class="dcu" title="{}{} DCU">{}{}</span>',
        plus,
        format_micro(micro),
        plus,
        format_micro_2dp(micro),
    )


@register.filter
def cny(fen) -> str:
    """Fen as a price students read: 13500 -> "¥135.00", -500 -> "-¥5.00"."""
    if _empty(fen):
        return ""
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{fen_to_yuan_str(abs(fen))}"


@register.inclusion_tag("billing/_balance.html")
def balance_widget(user, balance):
    """The balance card (SPEC §3.5): active and carried compute, arrears, plan, queue.

    Used on the overview and the billing page; reads only through selectors.
    ``balance``: the page's own ``balance_for`` (its view reads it once, for
    the card and whatever else on the page needs the plan).
    """
    return {
        "balance": balance,
        "queued": list(selectors.queued_subscriptions(user)),
    }
