"""A payout schedule on a year's accumulated burden: piecewise-linear bands under an annual cap.

Serious-illness insurance and medical assistance are both this shape. A claim is paid the
difference of the rounded schedule before and after its burden is added (cumulative rounding, so
a year's total never drifts by a fen), clipped to what is left of the cap given what the fund has
actually paid this year (so no order of settlements and cancellations can pay out past the cap).
"""

from __future__ import annotations

from dataclasses import dataclass

from .money import round_percent_fen


@dataclass(frozen=True, slots=True)
class Band:
    """Pays `ratio_percent` of the burden between `start_fen` and `end_fen` (None: no end)."""

    start_fen: int
    end_fen: int | None
    ratio_percent: int


@dataclass(frozen=True, slots=True)
class Schedule:
    bands: tuple[Band, ...]
    cap_fen: int | None  # None: no annual cap

    def value_fen(self, burden_fen: int) -> int:
        """R(f(burden)): the year's entitlement, in whole fen, for this accumulated burden."""
        fen_percent = 0
        for band in self.bands:
            if burden_fen <= band.start_fen:
                break
            top = burden_fen if band.end_fen is None else min(burden_fen, band.end_fen)
            fen_percent += (top - band.start_fen) * band.ratio_percent
        if self.cap_fen is not None:
            fen_percent = min(fen_percent, self.cap_fen * 100)
        return round_percent_fen(fen_percent)

    def payout_fen(self, burden_before: int, burden_after: int, paid_this_year: int) -> int:
        """What this claim is paid as the burden goes from `burden_before` to `burden_after`."""
        owed = self.value_fen(burden_after) - self.value_fen(burden_before)
        if self.cap_fen is not None:
            owed = min(owed, self.cap_fen - paid_this_year)
        return max(0, owed)


NOTHING = Schedule(bands=(), cap_fen=0)  # for residents a fund does not cover
