"""Policies of enrolment regions (异地就医: the policy of the place of enrolment): `regions` in a
policy's [policy] table, checked on loading; the most specific region's policy chosen for a
resident; `kiosk policy show` and `kiosk policy calc` with them. The regional policies here are
test-only copies of the reference policy with other numbers."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from onestop.host.cli import main
from onestop.host.settlement import PolicyError, PolicySet, load_policy, load_policy_set
from onestop.host.settlement import parse_policy as parse

REFERENCE_TEXT = (
    resources.files("onestop.host.settlement") / "policies" / "reference.toml"
).read_text(encoding="utf-8")
NAME_LINE = 'name = "reference"'


def regional_text(name: str, regions: str | None, ratio_percent: int = 70) -> str:
    """The reference policy renamed, with `regions = <regions>` (TOML) unless None, and its
    level-2 inpatient ratio set."""
    about = f'name = "{name}"' + (f"\nregions = {regions}" if regions is not None else "")
    level_2 = "{ level = 2, deductible_fen = 60_000, ratio_percent = 70 }"
    assert NAME_LINE in REFERENCE_TEXT and level_2 in REFERENCE_TEXT
    return REFERENCE_TEXT.replace(NAME_LINE, about, 1).replace(
        level_2, f"{{ level = 2, deductible_fen = 60_000, ratio_percent = {ratio_percent} }}", 1)


def write_policy(folder: Path, name: str, regions: str | None, ratio_percent: int = 70) -> str:
    path = folder / f"{name}.toml"
    path.write_text(regional_text(name, regions, ratio_percent), encoding="utf-8")
    return str(path)


def kiosk(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


# ---------------------------------------------------------------- loading


def test_a_policy_lists_the_regions_it_governs_and_the_reference_governs_none():
    policy = parse(regional_text("test-41", '["41", "4102", "410102"]'))
    assert policy.regions == ("41", "4102", "410102")
    assert load_policy("reference").regions == ()


@pytest.mark.parametrize(
    ("regions", "where", "says"),
    [
        ("[4101]", "policy.regions[0]", "division-code prefix in quotes"),
        ('["4101", "410"]', "policy.regions[1]", "2 digits (a province), 4 (a city) or 6"),
        ('["41a1"]', "policy.regions[0]", "division-code prefix"),
        ('["４１"]', "policy.regions[0]", "division-code prefix"),  # full-width digits
        ('["4101021"]', "policy.regions[0]", "division-code prefix"),
        ('["4101", "4101"]', "policy.regions[1]", "region 4101 is listed twice"),
        ("[]", "policy.regions", "must be a non-empty array"),
        ('"4101"', "policy.regions", "must be a non-empty array"),
    ],
)
def test_bad_regions_are_refused_naming_the_file_and_the_key(regions, where, says):
    with pytest.raises(PolicyError) as caught:
        parse(regional_text("test-bad", regions), source="bad.toml")
    assert str(caught.value).startswith(f"bad.toml: {where}: ")
    assert says in str(caught.value)


# ---------------------------------------------------------------- choosing


def test_the_most_specific_region_wins_then_the_default():
    province = parse(regional_text("test-41", '["41"]'))
    city = parse(regional_text("test-4101", '["4101"]'))
    county = parse(regional_text("test-410102", '["410102", "4103"]'))
    default = load_policy("reference")
    policies = PolicySet([("c", county), ("d", default), ("p", province), ("m", city)])
    chosen = {code: policies.for_region(code).name
              for code in ("410102", "410105", "410301", "411302", "130630")}
    assert chosen == {"410102": "test-410102", "410105": "test-4101", "410301": "test-410102",
                      "411302": "test-41", "130630": "reference"}


def test_without_a_default_an_uncovered_region_has_no_policy():
    policies = PolicySet([("m", parse(regional_text("test-4101", '["4101"]')))])
    assert policies.for_region("410102").name == "test-4101"
    assert policies.for_region("130630") is None
    assert PolicySet([("r", load_policy("reference"))]).for_region("410102").name == "reference"


def test_two_policies_claiming_a_region_are_refused(tmp_path: Path):
    first = write_policy(tmp_path, "test-a", '["41", "4101"]')
    second = write_policy(tmp_path, "test-b", '["4102", "4101"]')
    with pytest.raises(PolicyError) as caught:
        load_policy_set(["reference", first, second])
    assert str(caught.value).startswith(
        f"policies {first} and {second} both claim region 4101: ")


def test_two_defaults_are_refused(tmp_path: Path):
    other = write_policy(tmp_path, "test-other", None)
    with pytest.raises(PolicyError) as caught:
        load_policy_set(["reference", other])
    assert str(caught.value).startswith(f"policies reference and {other} are both defaults")


def test_two_policies_of_one_name_are_refused(tmp_path: Path):
    # the gateway logs the name of the policy it settled with
    first = write_policy(tmp_path, "test-same", '["4101"]')
    (tmp_path / "copy").mkdir()
    second = write_policy(tmp_path / "copy", "test-same", '["4102"]')
    with pytest.raises(PolicyError, match="both named 'test-same'"):
        load_policy_set([first, second])


# ---------------------------------------------------------------- kiosk policy show | calc


def test_show_prints_the_regions_a_policy_governs(capsys, tmp_path: Path):
    status, out, _ = kiosk(capsys, "policy", "show",
                           write_policy(tmp_path, "test-41", '["41", "4101"]'))
    assert status == 0
    assert out.splitlines()[1].startswith("Settles residents insured in regions 41, 4101 ")
    status, out, _ = kiosk(capsys, "policy", "show", "reference")
    assert "(the default)" in out.splitlines()[1]


CLAIM = {
    "psn_no": "P001", "insu_admdvs": "130630", "assistance": "none", "med_type": "inpatient",
    "hosp_lv": 2, "mdtrtarea_admvs": "130630", "referral": False, "setl_date": "2026-11-20",
    "items": [{"amount": 2_160_000, "class": "A"}],
}
OFFSITE_CLAIM = {**CLAIM, "psn_no": "P006", "insu_admdvs": "410102"}


def test_calc_settles_each_claim_under_its_insured_regions_policy(capsys, tmp_path: Path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps([CLAIM, OFFSITE_CLAIM]), encoding="utf-8")
    henan = write_policy(tmp_path, "test-4101", '["4101"]', ratio_percent=80)
    status, out, err = kiosk(capsys, "policy", "calc", "--policy", "reference",
                             "--policy", henan, str(claims))
    assert (status, err) == (0, "")
    local, offsite = json.loads(out)
    assert local["hifp_pay"] == 1_470_000  # reference: 70 % of 2,100,000
    # its own 80 % less the 15-point cut without a referral: 65 % of 2,100,000
    assert offsite["hifp_pay"] == 1_365_000


def test_calc_refuses_a_claim_of_a_region_no_policy_covers(capsys, tmp_path: Path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps([OFFSITE_CLAIM, CLAIM]), encoding="utf-8")
    henan = write_policy(tmp_path, "test-4101", '["4101"]')
    status, out, err = kiosk(capsys, "policy", "calc", "--policy", henan, str(claims))
    assert (status, out) == (2, "")
    assert err == (f"kiosk policy calc: {claims}: claim 1: insu_admdvs: no policy given covers "
                   "region 130630\n")
