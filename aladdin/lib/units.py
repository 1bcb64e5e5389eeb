"""Exact conversions between DCU, µDCU and fen (SPEC §2: integers only, never floats)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICRO_PER_DCU = 1_000_000
FEN_PER_YUAN = 100


def dcu_to_micro(dcu: Decimal | str | int) -> int:
    """Convert a DCU amount to µDCU exactly.

    Raises ValueError when the amount has precision below one µDCU: rounding
    silently here would create or destroy compute, so the caller must choose
    the rounding explicitly (DESIGN rule 5).
    """
    if isinstance(dcu, float):
        raise TypeError("DCU amounts must be Decimal, str or int, never float")
    try:
        value = Decimal(dcu)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not a DCU amount: {dcu!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite DCU amount: {dcu!r}")
    micro = value * MICRO_PER_DCU
    if micro != micro.to_integral_value():
        raise ValueError(f"{dcu} DCU is finer than one µDCU")
    return int(micro)


def format_micro(micro: int) -> str:
    """Format µDCU as DCU without trailing zeros: 56_600_000 -> "56.6", 30_000 -> "0.03"."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(int(micro)), MICRO_PER_DCU)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}".rstrip("0")


def fen_to_yuan_str(fen: int) -> str:
    """Format fen as yuan with two decimals: 13500 -> "135.00"."""
    sign = "-" if fen < 0 else ""
    yuan, rest = divmod(abs(int(fen)), FEN_PER_YUAN)
    return f"{sign}{yuan}.{rest:02d}"


# What pages show (SPEC: "DCU with two decimals in pages"; the exact value stays in the
# API and in the page's hover text). The rounding rule, chosen so that a number people
# act on never lies about being empty:
# - round to 0.01 DCU (10,000 µDCU), halves away from zero (0.005 -> 0.01, -0.005 -> -0.01);
# - a non-zero amount that would round to 0.00 shows as "<0.01" (or "-<0.01"): a balance
#   of 0.004 DCU is not "0.00", a one-second charge is not a free run; only 0 is "0.00".
ROUNDED_STEP_MICRO = MICRO_PER_DCU // 100
BELOW_ONE_STEP = "<0.01"


def format_micro_2dp(micro: int) -> str:
    """Format µDCU as DCU with two decimals, for pages: 56_600_000 -> "56.60",
    4_999 -> "<0.01", -356 -> "-<0.01", 0 -> "0.00" (the rule above)."""
    micro = int(micro)
    sign = "-" if micro < 0 else ""
    hundredths, rest = divmod(abs(micro), ROUNDED_STEP_MICRO)
    if rest * 2 >= ROUNDED_STEP_MICRO:
        hundredths += 1
    if hundredths == 0 and micro != 0:
        return f"{sign}{BELOW_ONE_STEP}"
    whole, cents = divmod(hundredths, 100)
    return f"{sign}{whole}.{cents:02d}"


def dcu_html(micro: int) -> str:
    """The page form of an amount: two decimals, the exact DCU on hover (escaped HTML).

    56_600_000 -> '<span class="dcu" title="56.6 DCU">56.60</span>'. The
    ``dcu_page`` template filter and the live updates (aladdin/live.py) both
    use it, so a pushed amount looks exactly like the rendered one.
    """
    from django.utils.html import format_html

    micro = int(micro)
    return format_html(
        '<span class="dcu" title="{} DCU">{}</span>', format_micro(micro), format_micro_2dp(micro)
    )
