"""The policy model: one region's rules for a year, as loaded (and validated) from its TOML file.

Plain immutable values; `loader.py` builds them, `engine.py` reads them. Money in fen, ratios in
integer percent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .schedule import NOTHING, Band, Schedule
from .vocabulary import ASSISTANCE_CATEGORIES


@dataclass(frozen=True, slots=True)
class LevelRule:
    """Basic insurance at one hospital level: deductible (起付线) per claim and ratio."""

    deductible_fen: int
    ratio_percent: int


@dataclass(frozen=True, slots=True)
class BasicRule:
    """Basic insurance (统筹基金) for one med_type; its annual cap (封顶线) is its own."""

    annual_cap_fen: int
    levels: Mapping[int, LevelRule]


@dataclass(frozen=True, slots=True)
class OffsiteRule:
    """异地就医: treatment outside the insured region lowers the basic ratio."""

    region_digits: int  # regions compared on this many leading digits of the admdvs codes
    cut_points_with_referral: int
    cut_points_without_referral: int

    def cut_points(self, insu_admdvs: str, mdtrtarea_admvs: str, referral: bool) -> int:
        digits = self.region_digits
        if insu_admdvs[:digits] == mdtrtarea_admvs[:digits]:
            return 0
        return self.cut_points_with_referral if referral else self.cut_points_without_referral


@dataclass(frozen=True, slots=True)
class Segment:
    """Serious illness pays `ratio_percent` of the year's burden from `from_fen` to the next."""

    from_fen: int
    ratio_percent: int


@dataclass(frozen=True, slots=True)
class Tilt:
    """倾斜 for the poorest: lower threshold, every ratio raised, the cap optionally lifted."""

    categories: frozenset[str]
    threshold_fen: int
    ratio_bonus_points: int
    cap_lifted: bool


@dataclass(frozen=True, slots=True)
class SeriousIllnessRule:
    segments: tuple[Segment, ...]  # ascending; the first one's from_fen is the threshold
    annual_cap_fen: int
    tilt: Tilt | None

    def schedule(self, tilted: bool) -> Schedule:
        segments = self.segments
        bonus = 0
        cap: int | None = self.annual_cap_fen
        if tilted and self.tilt is not None:
            segments = (Segment(self.tilt.threshold_fen, segments[0].ratio_percent),) + segments[1:]
            bonus = self.tilt.ratio_bonus_points
            cap = None if self.tilt.cap_lifted else cap
        ends: list[int | None] = [segment.from_fen for segment in segments[1:]]
        ends.append(None)
        bands = tuple(
            Band(segment.from_fen, end, segment.ratio_percent + bonus)
            for segment, end in zip(segments, ends, strict=True)
        )
        return Schedule(bands, cap)


@dataclass(frozen=True, slots=True)
class AssistanceRule:
    """医疗救助 for one category: ratio of the year's remaining burden above a start line."""

    ratio_percent: int
    start_fen: int
    annual_limit_fen: int

    def schedule(self) -> Schedule:
        return Schedule((Band(self.start_fen, None, self.ratio_percent),), self.annual_limit_fen)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    title: str
    class_b_preselfpay_percent: int
    offsite: OffsiteRule
    basic: Mapping[str, BasicRule]  # by med_type
    serious_illness: SeriousIllnessRule
    assistance: Mapping[str, AssistanceRule]  # by assisted category
    # Enrolment regions it governs, as division-code prefixes (2, 4 or 6 digits); empty: the
    # default for residents no regional policy covers (see regions.PolicySet).
    regions: tuple[str, ...] = ()
    # Built once here so settling a claim only looks them up (by assistance category).
    _serious_illness_schedules: dict[str, Schedule] = field(init=False, repr=False, compare=False)
    _assistance_schedules: dict[str, Schedule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tilt = self.serious_illness.tilt
        serious = {
            category: self.serious_illness.schedule(
                tilt is not None and category in tilt.categories
            )
            for category in ASSISTANCE_CATEGORIES
        }
        assistance = {category: NOTHING for category in ASSISTANCE_CATEGORIES}
        for category, rule in self.assistance.items():
            assistance[category] = rule.schedule()
        object.__setattr__(self, "_serious_illness_schedules", serious)
        object.__setattr__(self, "_assistance_schedules", assistance)

    def with_catalogue_of(self, treatment: Policy) -> Policy:
        """This policy (the place of enrolment's) with the [catalogue] of `treatment` (the place
        of treatment's): 异地就医. Itself when the catalogues agree."""
        if treatment.class_b_preselfpay_percent == self.class_b_preselfpay_percent:
            return self
        return replace(self, class_b_preselfpay_percent=treatment.class_b_preselfpay_percent)

    def serious_illness_schedule(self, category: str) -> Schedule:
        return self._serious_illness_schedules[category]

    def assistance_schedule(self, category: str) -> Schedule:
        return self._assistance_schedules[category]
