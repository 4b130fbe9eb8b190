"""Load a policy from its TOML file and validate every number before anything is paid with it.

`load_policy("reference")` reads a policy shipped in ``policies/``; anything that looks like a
path (has a slash or ends in ``.toml``) is read from disk. Any problem raises `PolicyError` naming
the file and the key, e.g. ``hebei.toml: serious_illness.segments[2].from_fen: ...``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from .policy import (
    AssistanceRule,
    BasicRule,
    LevelRule,
    OffsiteRule,
    Policy,
    Segment,
    SeriousIllnessRule,
    Tilt,
)
from .vocabulary import ASSISTED_CATEGORIES, HOSPITAL_LEVELS, MED_TYPES

_SHIPPED_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_REGION_PREFIX = re.compile(r"[0-9]{2}(?:[0-9]{2}){0,2}\Z")  # province, city or county
# China's province-level division codes (GB/T 2260): a prefix starting otherwise matches nobody.
_PROVINCE_RANGES = ((11, 15), (21, 23), (31, 37), (41, 46), (50, 54), (61, 65), (71, 71),
                    (81, 82))
PROVINCE_CODES: frozenset[str] = frozenset(
    f"{code:02d}" for first, last in _PROVINCE_RANGES for code in range(first, last + 1))
_PROVINCES_LISTED = ", ".join(  # "11-15, ..., 71, 81, 82"
    f"{first}-{last}" if last > first + 1 else ", ".join(map(str, range(first, last + 1)))
    for first, last in _PROVINCE_RANGES)
_SHIPPED = resources.files("onestop.host.settlement") / "policies"


class PolicyError(Exception):
    """A policy is unknown, unreadable, or breaks the schema; the message says where."""


def shipped_policy_names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in _SHIPPED.iterdir()
        if entry.name.endswith(".toml")
    )


def load_policy(name_or_path: str | os.PathLike[str]) -> Policy:
    text = os.fspath(name_or_path)
    if "/" in text or os.sep in text or text.endswith(".toml"):
        return _load_file(Path(text))
    if not _SHIPPED_NAME.match(text) or text not in shipped_policy_names():
        shipped = ", ".join(shipped_policy_names())
        raise PolicyError(
            f"unknown policy {text!r}: shipped policies are {shipped}; or give a path to a .toml"
        )
    return parse_policy(
        (_SHIPPED / f"{text}.toml").read_text(encoding="utf-8"), source=f"{text}.toml"
    )


def _load_file(path: Path) -> Policy:
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc}") from exc
    return parse_policy(content, source=str(path))


def parse_policy(content: str, source: str = "<policy>") -> Policy:
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
    return _Schema(source).policy(data)


class _Schema:
    """Reads the policy document, failing with the file and the dotted key of the first fault."""

    def __init__(self, source: str) -> None:
        self.source = source

    def policy(self, data: dict[str, Any]) -> Policy:
        top = self.table(
            data, "", ("policy", "catalogue", "offsite", "basic", "serious_illness", "assistance")
        )
        about = self.table(top["policy"], "policy", ("name", "title"), optional=("regions",))
        catalogue = self.table(top["catalogue"], "catalogue", ("class_b_preselfpay_percent",))
        return Policy(
            name=self.text(about["name"], "policy.name"),
            title=self.text(about["title"], "policy.title"),
            class_b_preselfpay_percent=self.ratio(
                catalogue["class_b_preselfpay_percent"], "catalogue.class_b_preselfpay_percent"
            ),
            offsite=self.offsite(top["offsite"]),
            basic=self.basic(top["basic"]),
            serious_illness=self.serious_illness(top["serious_illness"]),
            assistance=self.assistance(top["assistance"]),
            regions=self.regions(about["regions"]) if "regions" in about else (),
        )

    def regions(self, value: Any) -> tuple[str, ...]:
        where = "policy.regions"
        codes: list[str] = []
        for i, code in enumerate(self.array(value, where)):
            # Text, not integers: a prefix is compared digit by digit with insu_admdvs.
            if not isinstance(code, str) or not _REGION_PREFIX.match(code):
                self.fail(
                    f"{where}[{i}]",
                    'must be a division-code prefix in quotes: 2 digits (a province), '
                    '4 (a city) or 6 (a county), e.g. "4101"',
                )
            problem = region_prefix_problem(code)
            if problem is not None:
                self.fail(f"{where}[{i}]", problem)
            if code in codes:
                self.fail(f"{where}[{i}]", f"region {code} is listed twice")
            codes.append(code)
        return tuple(codes)

    def offsite(self, value: Any) -> OffsiteRule:
        keys = ("region_digits", "cut_points_with_referral", "cut_points_without_referral")
        table = self.table(value, "offsite", keys)
        return OffsiteRule(
            region_digits=self.integer(table["region_digits"], "offsite.region_digits", 1, 6),
            cut_points_with_referral=self.ratio(
                table["cut_points_with_referral"], "offsite.cut_points_with_referral"
            ),
            cut_points_without_referral=self.ratio(
                table["cut_points_without_referral"], "offsite.cut_points_without_referral"
            ),
        )

    def basic(self, value: Any) -> dict[str, BasicRule]:
        table = self.table(value, "basic", MED_TYPES)
        rules: dict[str, BasicRule] = {}
        for med_type in MED_TYPES:
            where = f"basic.{med_type}"
            rule = self.table(table[med_type], where, ("annual_cap_fen", "levels"))
            rules[med_type] = BasicRule(
                annual_cap_fen=self.money(rule["annual_cap_fen"], f"{where}.annual_cap_fen"),
                levels=self.levels(rule["levels"], f"{where}.levels"),
            )
        return rules

    def levels(self, value: Any, where: str) -> dict[int, LevelRule]:
        levels: dict[int, LevelRule] = {}
        for i, entry in enumerate(self.array(value, where)):
            at = f"{where}[{i}]"
            row = self.table(entry, at, ("level", "deductible_fen", "ratio_percent"))
            level = self.integer(row["level"], f"{at}.level", 1, None)
            if level not in HOSPITAL_LEVELS:
                self.fail(f"{at}.level", f"hospital levels are {_listed(HOSPITAL_LEVELS)}")
            if level in levels:
                self.fail(f"{at}.level", f"level {level} is listed twice")
            levels[level] = LevelRule(
                deductible_fen=self.money(row["deductible_fen"], f"{at}.deductible_fen"),
                ratio_percent=self.ratio(row["ratio_percent"], f"{at}.ratio_percent"),
            )
        missing = [level for level in HOSPITAL_LEVELS if level not in levels]
        if missing:
            self.fail(where, f"no rule for hospital level {_listed(missing)}")
        return levels

    def serious_illness(self, value: Any) -> SeriousIllnessRule:
        where = "serious_illness"
        table = self.table(value, where, ("annual_cap_fen", "segments"), optional=("tilt",))
        segments: list[Segment] = []
        for i, entry in enumerate(self.array(table["segments"], f"{where}.segments")):
            at = f"{where}.segments[{i}]"
            row = self.table(entry, at, ("from_fen", "ratio_percent"))
            segment = Segment(
                from_fen=self.money(row["from_fen"], f"{at}.from_fen"),
                ratio_percent=self.ratio(row["ratio_percent"], f"{at}.ratio_percent"),
            )
            if segments and segment.from_fen <= segments[-1].from_fen:
                self.fail(f"{at}.from_fen", "segments must ascend (each starts above the last)")
            segments.append(segment)
        tilt = None
        if "tilt" in table:
            tilt = self.tilt(table["tilt"], f"{where}.tilt", segments)
        return SeriousIllnessRule(
            segments=tuple(segments),
            annual_cap_fen=self.money(table["annual_cap_fen"], f"{where}.annual_cap_fen"),
            tilt=tilt,
        )

    def tilt(self, value: Any, where: str, segments: list[Segment]) -> Tilt:
        keys = ("categories", "threshold_fen", "ratio_bonus_points", "cap_lifted")
        table = self.table(value, where, keys)
        categories = self.array(table["categories"], f"{where}.categories")
        for i, category in enumerate(categories):
            if category not in ASSISTED_CATEGORIES:
                self.fail(
                    f"{where}.categories[{i}]",
                    f"unknown category {category!r}; known: {_listed(ASSISTED_CATEGORIES)}",
                )
        threshold = self.money(table["threshold_fen"], f"{where}.threshold_fen")
        if len(segments) > 1 and threshold >= segments[1].from_fen:
            self.fail(f"{where}.threshold_fen", "must stay below the second segment's from_fen")
        bonus = self.ratio(table["ratio_bonus_points"], f"{where}.ratio_bonus_points")
        if any(segment.ratio_percent + bonus > 100 for segment in segments):
            self.fail(f"{where}.ratio_bonus_points", "would raise a segment's ratio above 100")
        return Tilt(
            categories=frozenset(categories),
            threshold_fen=threshold,
            ratio_bonus_points=bonus,
            cap_lifted=self.boolean(table["cap_lifted"], f"{where}.cap_lifted"),
        )

    def assistance(self, value: Any) -> dict[str, AssistanceRule]:
        table = self.table(value, "assistance", ASSISTED_CATEGORIES)
        rules: dict[str, AssistanceRule] = {}
        for category in ASSISTED_CATEGORIES:
            where = f"assistance.{category}"
            row = self.table(
                table[category], where, ("ratio_percent", "start_fen", "annual_limit_fen")
            )
            rules[category] = AssistanceRule(
                ratio_percent=self.ratio(row["ratio_percent"], f"{where}.ratio_percent"),
                start_fen=self.money(row["start_fen"], f"{where}.start_fen"),
                annual_limit_fen=self.money(row["annual_limit_fen"], f"{where}.annual_limit_fen"),
            )
        return rules

    # ---- value checks

    def table(
        self, value: Any, where: str, required: Iterable[str], optional: Iterable[str] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, "must be a table")
        required, optional = tuple(required), tuple(optional)
        for key in value:
            if key not in required and key not in optional:
                known = _listed(required + optional)
                self.fail(_join(where, key), f"unknown key (expected {known})")
        for key in required:
            if key not in value:
                self.fail(_join(where, key), "missing")
        return value

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            self.fail(where, "must be a non-empty array")
        return value

    def integer(self, value: Any, where: str, minimum: int, maximum: int | None) -> int:
        if type(value) is not int:  # bool is an int subclass; a float is never money
            self.fail(where, "must be an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            self.fail(where, f"must be {bounds}, got {value}")
        return value

    def money(self, value: Any, where: str) -> int:
        return self.integer(value, where, 0, None)

    def ratio(self, value: Any, where: str) -> int:
        return self.integer(value, where, 0, 100)

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "must be a non-empty string")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, "must be true or false")
        return value

    def fail(self, where: str, message: str) -> NoReturn:
        raise PolicyError(f"{self.source}: {where or 'top level'}: {message}")


def region_prefix_problem(code: str) -> str | None:
    """Why a 2-, 4- or 6-digit prefix can be no resident's insu_admdvs prefix, or None. A typo
    there would silently send the region's residents to the default policy."""
    province, city, county = code[:2], code[2:4], code[4:6]
    if province not in PROVINCE_CODES:
        which = "is" if code == province else f"starts with {province}, which is"
        return f"region {code} {which} no province's code (China's are {_PROVINCES_LISTED})"
    if city == "00":
        return (f'region {code} is the province {province} itself: write "{province}"'
                if county in ("", "00") else
                f"region {code}: digits 3-4 are 00, which is no city's code")
    if county == "00":
        return f'region {code} is the city {province}{city} itself: write "{province}{city}"'
    return None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _listed(values: Iterable[object]) -> str:
    return ", ".join(str(value) for value in values)
