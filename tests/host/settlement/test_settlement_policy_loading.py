"""Policies are data: the reference file loads as the issue states it; broken files are refused
with the file and the key named."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from onestop.host.settlement import PolicyError, load_policy, parse_policy, shipped_policy_names

REFERENCE_TEXT = (
    resources.files("onestop.host.settlement") / "policies" / "reference.toml"
).read_text(encoding="utf-8")


def test_reference_policy_holds_the_issues_numbers(reference):
    assert reference.name == "reference"
    assert reference.class_b_preselfpay_percent == 10
    assert (
        reference.offsite.region_digits,
        reference.offsite.cut_points_with_referral,
        reference.offsite.cut_points_without_referral,
    ) == (4, 10, 15)
    inpatient = reference.basic["inpatient"]
    assert inpatient.annual_cap_fen == 12_000_000
    assert [
        (lv.deductible_fen, lv.ratio_percent) for _, lv in sorted(inpatient.levels.items())
    ] == [(20_000, 80), (60_000, 70), (200_000, 60)]
    chronic = reference.basic["outpatient_chronic"]
    assert chronic.annual_cap_fen == 500_000
    assert {(lv.deductible_fen, lv.ratio_percent) for lv in chronic.levels.values()} == {(0, 60)}
    serious = reference.serious_illness
    assert [(s.from_fen, s.ratio_percent) for s in serious.segments] == [
        (1_000_000, 60),
        (5_000_000, 70),
        (10_000_000, 80),
    ]
    assert serious.annual_cap_fen == 30_000_000
    assert serious.tilt is not None
    assert serious.tilt.categories == {"tekun", "dibao"}
    assert (serious.tilt.threshold_fen, serious.tilt.ratio_bonus_points) == (500_000, 5)
    assert serious.tilt.cap_lifted
    assert {
        c: (r.ratio_percent, r.start_fen, r.annual_limit_fen)
        for c, r in reference.assistance.items()
    } == {
        "tekun": (90, 0, 6_000_000),
        "dibao": (75, 0, 6_000_000),
        "low_income": (60, 0, 4_000_000),
        "illness_poor": (50, 500_000, 3_000_000),
    }


def test_reference_is_shipped():
    assert "reference" in shipped_policy_names()


def test_a_region_loads_its_own_file_by_path(tmp_path: Path):
    region = tmp_path / "hebei-2026.toml"
    region.write_text(
        REFERENCE_TEXT.replace('name = "reference"', 'name = "hebei-2026"').replace(
            "annual_cap_fen = 12_000_000", "annual_cap_fen = 15_000_000"
        ),
        encoding="utf-8",
    )
    policy = load_policy(region)
    assert policy.name == "hebei-2026"
    assert policy.basic["inpatient"].annual_cap_fen == 15_000_000
    assert load_policy(str(region)) == policy


def test_without_a_tilt_the_poorest_follow_the_common_schedule():
    start = REFERENCE_TEXT.index("[serious_illness.tilt]")
    end = REFERENCE_TEXT.index("cap_lifted = true") + len("cap_lifted = true")
    policy = parse_policy(REFERENCE_TEXT[:start] + REFERENCE_TEXT[end:])
    assert policy.serious_illness.tilt is None
    assert policy.serious_illness_schedule("dibao") == policy.serious_illness_schedule("none")


def test_unknown_policy_name_lists_what_is_shipped():
    with pytest.raises(PolicyError, match="unknown policy 'atlantis'.*reference"):
        load_policy("atlantis")


def test_missing_policy_file_is_a_policy_error(tmp_path: Path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.toml")


def edited(old: str, new: str) -> str:
    assert old in REFERENCE_TEXT, old
    return REFERENCE_TEXT.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (
            edited("ratio_percent = 80", "ratio_percent = 101"),
            "basic.inpatient.levels[0].ratio_percent",
            "0 to 100",
        ),
        (
            edited("ratio_percent = 80", "ratio_percent = -1"),
            "basic.inpatient.levels[0].ratio_percent",
            "0 to 100",
        ),
        (
            edited("ratio_percent = 80", "ratio_percent = 80.5"),
            "basic.inpatient.levels[0].ratio_percent",
            "integer",
        ),
        (
            edited("ratio_percent = 80", "ratio_percent = true"),
            "basic.inpatient.levels[0].ratio_percent",
            "integer",
        ),
        (
            edited("deductible_fen = 20_000", "deductible_fen = -20_000"),
            "basic.inpatient.levels[0].deductible_fen",
            "at least 0",
        ),
        (
            edited("annual_cap_fen = 12_000_000", 'annual_cap_fen = "120000 yuan"'),
            "basic.inpatient.annual_cap_fen",
            "integer",
        ),
        (
            edited(
                "{ level = 3, deductible_fen = 200_000", "{ level = 2, deductible_fen = 200_000"
            ),
            "basic.inpatient.levels[2].level",
            "twice",
        ),
        (
            edited(
                "{ level = 3, deductible_fen = 200_000", "{ level = 4, deductible_fen = 200_000"
            ),
            "basic.inpatient.levels[2].level",
            "hospital levels",
        ),
        (
            edited(
                "{ level = 3, deductible_fen = 200_000, ratio_percent = 60 },",
                "",
            ),
            "basic.inpatient.levels",
            "level 3",
        ),
        (
            edited("from_fen = 5_000_000", "from_fen = 1_000_000"),
            "serious_illness.segments[1].from_fen",
            "ascend",
        ),
        (
            edited("from_fen = 10_000_000", "from_fen = 4_000_000"),
            "serious_illness.segments[2].from_fen",
            "ascend",
        ),
        (
            edited("segments = [", "segments = []\nold_segments = ["),
            "serious_illness.old_segments",
            "unknown key",
        ),
        (
            edited('categories = ["tekun", "dibao"]', 'categories = ["tekun", "poor"]'),
            "serious_illness.tilt.categories[1]",
            "unknown category 'poor'",
        ),
        (
            edited('categories = ["tekun", "dibao"]', 'categories = ["none"]'),
            "serious_illness.tilt.categories[0]",
            "unknown category",
        ),
        (
            edited("threshold_fen = 500_000", "threshold_fen = 5_000_000"),
            "serious_illness.tilt.threshold_fen",
            "below the second",
        ),
        (
            edited("ratio_bonus_points = 5", "ratio_bonus_points = 25"),
            "serious_illness.tilt.ratio_bonus_points",
            "above 100",
        ),
        (
            edited("cap_lifted = true", "cap_lifted = 1"),
            "serious_illness.tilt.cap_lifted",
            "true or false",
        ),
        (edited("[assistance.low_income]", "[assistance.poor]"), "assistance.poor", "unknown key"),
        (edited("[assistance.tekun]", "[assistance.none]"), "assistance.none", "unknown key"),
        (
            edited("ratio_percent = 50", "ratio_percent = 500"),
            "assistance.illness_poor.ratio_percent",
            "0 to 100",
        ),
        (
            edited("annual_limit_fen = 4_000_000", "annual_limit = 4_000_000"),
            "assistance.low_income.annual_limit",
            "unknown key",
        ),
        (edited("region_digits = 4", "region_digits = 7"), "offsite.region_digits", "1 to 6"),
        (
            edited("cut_points_without_referral = 15", ""),
            "offsite.cut_points_without_referral",
            "missing",
        ),
        (
            edited("[basic.outpatient_chronic]", "[basic.outpatient]"),
            "basic.outpatient",
            "unknown key",
        ),
        (
            edited("class_b_preselfpay_percent = 10", "class_b_preselfpay_percent = 110"),
            "catalogue.class_b_preselfpay_percent",
            "0 to 100",
        ),
        (edited('name = "reference"', 'name = ""'), "policy.name", "non-empty"),
        (edited("[catalogue]", "[catalog]"), "catalog: unknown key", "expected policy"),
    ],
    ids=lambda value: value if len(value) < 60 else "edited",
)
def test_broken_policies_are_refused_naming_the_key(text, where, says):
    with pytest.raises(PolicyError) as refused:
        parse_policy(text, source="region.toml")
    message = str(refused.value)
    assert message.startswith("region.toml: ")
    assert where in message
    assert says in message


def test_malformed_toml_is_a_policy_error():
    with pytest.raises(PolicyError, match=re.escape("region.toml: not valid TOML")):
        parse_policy("[policy\nname = 1", source="region.toml")
