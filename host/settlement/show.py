"""`kiosk policy show`: a policy's parameters as tables a regional officer can check by eye."""

from __future__ import annotations

from collections.abc import Sequence

from .digest import policy_digest
from .money import format_yuan
from .policy import Policy
from .vocabulary import ASSISTANCE_CATEGORIES, MED_TYPES


def render_policy(policy: Policy) -> str:
    offsite = policy.offsite
    serious = policy.serious_illness
    lines = [
        f"Policy {policy.name}: {policy.title}",
        _regions_line(policy.regions),
        # what the gateway records with each settlement it makes under this policy
        f"Digest {policy_digest(policy)} (recorded with each settlement made under it)",
        "Money in yuan; ratios in percent.",
        "",
        "Catalogue",
        f"  class B (乙类), share the resident pays first: {policy.class_b_preselfpay_percent} %",
        "",
        f"Off-site treatment (regions differ in the first {offsite.region_digits} digits)",
        f"  basic ratio cut with a referral:    {offsite.cut_points_with_referral} points",
        f"  basic ratio cut without a referral: {offsite.cut_points_without_referral} points",
        "",
        "Basic insurance (hifp_pay)",
    ]
    basic_rows: list[Sequence[str]] = []
    for med_type in MED_TYPES:
        rule = policy.basic[med_type]
        for index, (level, level_rule) in enumerate(sorted(rule.levels.items())):
            basic_rows.append(
                (
                    med_type if index == 0 else "",
                    str(level),
                    format_yuan(level_rule.deductible_fen),
                    f"{level_rule.ratio_percent} %",
                    format_yuan(rule.annual_cap_fen) if index == 0 else "",
                )
            )
    lines += _table(("med type", "level", "deductible", "ratio", "annual cap"), basic_rows, "<>>>>")
    lines += ["", "Serious-illness insurance (hifmi_pay), on the year's compliant burden S"]
    ends = [format_yuan(segment.from_fen) for segment in serious.segments[1:]] + ["and above"]
    segment_rows = [
        (format_yuan(segment.from_fen), end, f"{segment.ratio_percent} %")
        for segment, end in zip(serious.segments, ends, strict=True)
    ]
    lines += _table(("S from", "to", "ratio"), segment_rows, ">>>")
    lines.append(f"  annual cap: {format_yuan(serious.annual_cap_fen)}")
    if serious.tilt is not None:
        tilt = serious.tilt
        who = ", ".join(c for c in ASSISTANCE_CATEGORIES if c in tilt.categories)
        cap = "no cap" if tilt.cap_lifted else "same cap"
        lines.append(
            f"  for {who}: threshold {format_yuan(tilt.threshold_fen)}, "
            f"every ratio +{tilt.ratio_bonus_points} points, {cap}"
        )
    lines += ["", "Medical assistance (maf_pay), on the year's remaining burden M"]
    assistance_rows = [
        (
            category,
            f"{rule.ratio_percent} %",
            format_yuan(rule.start_fen),
            format_yuan(rule.annual_limit_fen),
        )
        for category, rule in policy.assistance.items()
    ]
    lines += _table(("category", "ratio", "M from", "annual limit"), assistance_rows, "<>>>")
    lines.append("  none: no assistance")
    return "\n".join(lines) + "\n"


def _regions_line(regions: tuple[str, ...]) -> str:
    if not regions:
        return "Settles residents insured in any region no regional policy claims (the default)."
    return (f"Settles residents insured in regions {', '.join(regions)} "
            "(division-code prefixes; the longest match wins).")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Indented columns; `align` has one '<' or '>' per column."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    out = []
    for row in (header, *rows):
        cells = [
            cell.ljust(width) if side == "<" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        out.append(("  " + "   ".join(cells)).rstrip())
    return out
