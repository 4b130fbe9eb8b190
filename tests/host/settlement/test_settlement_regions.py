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


PRESELFPAY_LINE = "class_b_preselfpay_percent = 10"


def regional_text(name: str, regions: str | None, ratio_percent: int = 70,
                  preselfpay_percent: int = 10) -> str:
    """The reference policy renamed, with `regions = <regions>` (TOML) unless None, and its
    level-2 inpatient ratio and its catalogue's class-B share paid first set."""
    about = f'name = "{name}"' + (f"\nregions = {regions}" if regions is not None else "")
    level_2 = "{ level = 2, deductible_fen = 60_000, ratio_percent = 70 }"
    assert NAME_LINE in REFERENCE_TEXT and level_2 in REFERENCE_TEXT
    assert PRESELFPAY_LINE in REFERENCE_TEXT
    return REFERENCE_TEXT.replace(NAME_LINE, about, 1).replace(
        level_2, f"{{ level = 2, deductible_fen = 60_000, ratio_percent = {ratio_percent} }}", 1
    ).replace(PRESELFPAY_LINE, f"class_b_preselfpay_percent = {preselfpay_percent}", 1)


def write_policy(folder: Path, name: str, regions: str | None, ratio_percent: int = 70,
                 preselfpay_percent: int = 10) -> str:
    path = folder / f"{name}.toml"
    path.write_text(regional_text(name, regions, ratio_percent, preselfpay_percent),
                    encoding="utf-8")
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


PROVINCES_SAY = "(China's are 11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82)"


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("00", f"region 00 is no province's code {PROVINCES_SAY}"),
        ("99", f"region 99 is no province's code {PROVINCES_SAY}"),
        ("10", f"region 10 is no province's code {PROVINCES_SAY}"),
        ("16", f"region 16 is no province's code {PROVINCES_SAY}"),
        ("72", f"region 72 is no province's code {PROVINCES_SAY}"),
        ("9901", f"region 9901 starts with 99, which is no province's code {PROVINCES_SAY}"),
        ("000102", f"region 000102 starts with 00, which is no province's code {PROVINCES_SAY}"),
        ("4100", 'region 4100 is the province 41 itself: write "41"'),
        ("410000", 'region 410000 is the province 41 itself: write "41"'),
        ("410012", "region 410012: digits 3-4 are 00, which is no city's code"),
        ("410100", 'region 410100 is the city 4101 itself: write "4101"'),
    ],
)
def test_region_prefixes_no_resident_can_have_are_refused(code, says):
    # each one matched nobody: its residents were settled under the default without a word
    with pytest.raises(PolicyError) as caught:
        parse(regional_text("test-bad", f'["4101", "{code}"]'), source="bad.toml")
    assert str(caught.value) == f"bad.toml: policy.regions[1]: {says}"


def test_every_province_and_real_city_and_county_prefixes_are_accepted():
    provinces = ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35",
                 "36", "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54",
                 "61", "62", "63", "64", "65", "71", "81", "82"]
    # 4190/419001: Henan's directly administered county-level cities (济源)
    others = ["1101", "110102", "1306", "130630", "4101", "410102", "4190", "419001", "5001"]
    regions = provinces + others
    policy = parse(regional_text("test-all", json.dumps(regions)))
    assert policy.regions == tuple(regions)


def test_the_demo_residents_regions_are_accepted_as_prefixes():
    # the demo's persons' and bills' codes (130630, 110102, 410102, ...), and their city's and
    # province's prefixes, are all regions a policy may govern
    from onestop.host.gateway.bills import demo_document

    codes = set()
    for resident in demo_document()["residents"]:
        codes.add(resident["insu_admdvs"])
        codes.update(bill["mdtrtarea_admvs"] for bill in resident.get("bills", []))
    assert {"130630", "110102", "410102"} <= codes
    regions = sorted({code[:digits] for code in codes for digits in (2, 4, 6)})
    policy = parse(regional_text("test-demo", json.dumps(regions)))
    assert policy.regions == tuple(regions)


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


def test_a_claim_takes_the_catalogue_of_the_region_treated_in_and_the_rest_of_the_insured():
    # 异地就医: the catalogue of the place of treatment, the policy of the place of enrolment
    reference = load_policy("reference")  # class B: 10 % paid first
    henan = parse(regional_text("test-4101", '["4101"]', 80, preselfpay_percent=30))
    beijing = parse(regional_text("test-11", '["11"]', 90, preselfpay_percent=25))
    policies = PolicySet([("r", reference), ("h", henan), ("b", beijing)])

    offsite = policies.for_claim("410102", "130630")  # a Zhengzhou resident treated in Laiyuan
    assert (offsite.name, offsite.class_b_preselfpay_percent) == ("test-4101", 10)
    assert offsite.basic == henan.basic and offsite.offsite == henan.offsite
    assert offsite.serious_illness == henan.serious_illness
    assert offsite.assistance == henan.assistance and offsite.regions == henan.regions
    assert offsite.basic["inpatient"].levels[2].ratio_percent == 80

    to_beijing = policies.for_claim("130630", "110102")  # a Laiyuan resident treated in Beijing
    assert (to_beijing.name, to_beijing.class_b_preselfpay_percent) == ("reference", 25)
    assert to_beijing.basic == reference.basic
    between = policies.for_claim("410102", "110102")  # Zhengzhou resident, Beijing hospital
    assert (between.name, between.class_b_preselfpay_percent) == ("test-4101", 25)
    # treated where they are insured, or under the same policy: that policy itself
    assert policies.for_claim("410102", "410105") is henan
    assert policies.for_claim("130630", "120101") is reference
    assert policies.for_claim("110102", "110105") is beijing


def test_each_pair_of_policies_is_combined_once():
    henan = parse(regional_text("test-4101", '["4101"]', preselfpay_percent=30))
    policies = PolicySet([("r", load_policy("reference")), ("h", henan)])
    first = policies.for_claim("410102", "130630")
    assert first is not henan
    # another resident of the same region treated under the same policy: the same object, so
    # settling a claim allocates no policy
    assert policies.for_claim("410105", "130602") is first
    assert policies.for_claim("410102", "120101") is first


def test_one_policy_settles_every_claim_as_itself():
    reference = load_policy("reference")
    policies = PolicySet([("r", reference)])
    for insured, treated in (("130630", "130630"), ("130630", "110102"), ("410102", "130630")):
        assert policies.for_claim(insured, treated) is reference
    # catalogues that agree combine to the enrolment policy itself
    same = parse(regional_text("test-4101", '["4101"]', 80))
    assert PolicySet([("r", reference), ("s", same)]).for_claim("410102", "130630") is same


def test_a_treatment_region_no_policy_covers_keeps_the_enrolment_catalogue():
    henan = parse(regional_text("test-4101", '["4101"]', preselfpay_percent=30))
    policies = PolicySet([("h", henan)])  # no default
    assert policies.for_claim("410102", "130630") is henan
    assert policies.for_claim("130630", "410102") is None  # insured where none covers


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


def test_calc_takes_the_catalogue_of_the_region_treated_in(capsys, tmp_path: Path):
    items = [{"amount": 1_200_000, "class": "A"}, {"amount": 1_000_000, "class": "B"}]
    treated_in_zhengzhou = {**CLAIM, "mdtrtarea_admvs": "410102", "referral": True,
                            "items": items}
    treated_here = {**OFFSITE_CLAIM, "items": items}
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps([treated_in_zhengzhou, treated_here]), encoding="utf-8")
    henan = write_policy(tmp_path, "test-4101", '["4101"]', ratio_percent=80,
                         preselfpay_percent=30)
    status, out, err = kiosk(capsys, "policy", "calc", "--policy", "reference",
                             "--policy", henan, str(claims))
    assert (status, err) == (0, "")
    local, offsite = json.loads(out)
    # Zhengzhou's catalogue (30 % of class B first); the reference's deductible, its 70 % less
    # its 10-point cut with a referral
    assert (local["preselfpay_amt"], local["act_pay_dedc"]) == (300_000, 60_000)
    assert local["hifp_pay"] == percent(1_900_000 - 60_000, 60)
    # the reference's catalogue (10 %); Zhengzhou's 80 % less its 15-point cut
    assert (offsite["preselfpay_amt"], offsite["act_pay_dedc"]) == (100_000, 60_000)
    assert offsite["hifp_pay"] == percent(2_100_000 - 60_000, 65)


def percent(amount: int, ratio: int) -> int:
    return (amount * ratio + 50) // 100


def test_calc_refuses_a_claim_of_a_region_no_policy_covers(capsys, tmp_path: Path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps([OFFSITE_CLAIM, CLAIM]), encoding="utf-8")
    henan = write_policy(tmp_path, "test-4101", '["4101"]')
    status, out, err = kiosk(capsys, "policy", "calc", "--policy", henan, str(claims))
    assert (status, out) == (2, "")
    assert err == (f"kiosk policy calc: {claims}: claim 1: insu_admdvs: no policy given covers "
                   "region 130630\n")
