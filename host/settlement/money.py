"""Integer-fen arithmetic: exact percentages, round half up, and yuan for people to read.

Money is never a float. A ratio is an integer percent, so ``amount × ratio`` is an exact integer
in "fen-percent" (hundredths of a fen); it becomes fen only through `round_percent_fen`.
"""

from __future__ import annotations


def round_percent_fen(fen_percent: int) -> int:
    """R(x): a non-negative amount in hundredths of a fen, rounded half up to a whole fen."""
    if fen_percent < 0:
        raise ValueError("round_percent_fen takes non-negative amounts only")
    return (fen_percent + 50) // 100


def percent_of(amount_fen: int, ratio_percent: int) -> int:
    """R(amount × ratio %), exact: 10 % of 5 fen is 0.5 fen, which rounds up to 1 fen."""
    return round_percent_fen(amount_fen * ratio_percent)


def format_yuan(fen: int) -> str:
    """12000000 -> '120,000.00' (thousands separators, always two decimals; no float)."""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan:,}.{cents:02d}"
