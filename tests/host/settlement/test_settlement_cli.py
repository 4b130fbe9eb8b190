"""`kiosk policy calc`, `kiosk policy show` and `kiosk bench settlement`, through the console
script's entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from onestop.host.cli import main
from onestop.host.settlement import BREAKDOWN_FIELDS

P001 = {
    "psn_no": "P001",
    "insu_admdvs": "130630",
    "assistance": "none",
    "med_type": "inpatient",
    "hosp_lv": 2,
    "mdtrtarea_admvs": "130630",
    "referral": False,
    "setl_date": "2026-11-20",
    "items": [
        {"amount": 300_000, "class": "A", "name": "床位费及护理费"},
        {"amount": 1_200_000, "class": "A"},
        {"amount": 800_000, "class": "B"},
        {"amount": 120_000, "class": "C"},
    ],
}
P002 = {
    "psn_no": "P002",
    "insu_admdvs": "130630",
    "assistance": "dibao",
    "med_type": "inpatient",
    "hosp_lv": 3,
    "mdtrtarea_admvs": "110102",
    "referral": True,
    "setl_date": "2026-11-18",
    "items": [
        {"amount": 9_000_000, "class": "A"},
        {"amount": 4_000_000, "class": "B"},
        {"amount": 650_000, "class": "C"},
    ],
}
P001_RESULT = {
    "psn_no": "P001",
    "medfee_sumamt": 2_420_000,
    "fulamt_ownpay_amt": 120_000,
    "preselfpay_amt": 80_000,
    "inscp_scp_amt": 2_220_000,
    "act_pay_dedc": 60_000,
    "hifp_pay": 1_512_000,
    "hifmi_pay": 0,
    "maf_pay": 0,
    "fund_pay_sumamt": 1_512_000,
    "psn_cash_pay": 908_000,
}
P002_RESULT = {
    "psn_no": "P002",
    "medfee_sumamt": 13_650_000,
    "fulamt_ownpay_amt": 650_000,
    "preselfpay_amt": 400_000,
    "inscp_scp_amt": 12_600_000,
    "act_pay_dedc": 200_000,
    "hifp_pay": 6_200_000,
    "hifmi_pay": 3_975_000,
    "maf_pay": 1_818_750,
    "fund_pay_sumamt": 11_993_750,
    "psn_cash_pay": 1_656_250,
}


def kiosk(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def write_claims(tmp_path: Path, claims: Any, name: str = "claims.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(claims, ensure_ascii=False), encoding="utf-8")
    return str(path)


def calc(capsys, tmp_path: Path, claims: Any, policy: str = "reference") -> tuple[int, str, str]:
    return kiosk(capsys, "policy", "calc", "--policy", policy, write_claims(tmp_path, claims))


def test_calc_prints_the_worked_examples(capsys, tmp_path):
    status, out, err = calc(capsys, tmp_path, [P001, P002])
    assert (status, err) == (0, "")
    results = json.loads(out)
    assert results == [P001_RESULT, P002_RESULT]
    assert list(results[0]) == ["psn_no", *BREAKDOWN_FIELDS]


def test_calc_accumulates_per_person_within_a_year(capsys, tmp_path):
    # P001's second large admission pushes the year's burden S past 10,000 yuan.
    big = {**P001, "items": [{"amount": 2_000_000, "class": "A"}]}
    status, out, _ = calc(capsys, tmp_path, [P001, P002, big])
    assert status == 0
    third = json.loads(out)[2]
    # S: 708,000 + (2,000,000 - 1,358,000) = 1,350,000; 60 % of the 350,000 above the threshold.
    assert third["hifp_pay"] == 1_358_000
    assert third["hifmi_pay"] == 210_000


def test_calc_starts_afresh_each_calendar_year(capsys, tmp_path):
    new_year_eve = {
        **P001,
        "setl_date": "2026-12-31",
        "items": [{"amount": 20_000_000, "class": "A"}],
    }
    new_year = {**new_year_eve, "setl_date": "2027-01-01"}
    status, out, _ = calc(capsys, tmp_path, [new_year_eve, new_year, new_year])
    assert status == 0
    first, second, third = json.loads(out)
    assert first == second  # 2027 does not see 2026's caps or burdens
    assert third["hifp_pay"] < second["hifp_pay"]  # but 2027's own cap binds its second claim
    assert first["hifp_pay"] == 12_000_000  # the 120,000-yuan cap, reached in one admission
    assert third["hifp_pay"] == 0


def test_calc_with_a_regional_policy_file(capsys, tmp_path):
    from importlib import resources

    text = (resources.files("onestop.host.settlement") / "policies" / "reference.toml").read_text(
        encoding="utf-8"
    )
    region = tmp_path / "region.toml"
    region.write_text(text.replace("ratio_percent = 70 }", "ratio_percent = 75 }"), "utf-8")
    status, out, _ = calc(capsys, tmp_path, [P001], policy=str(region))
    assert status == 0
    assert json.loads(out)[0]["hifp_pay"] == 1_620_000  # 75 % of 2,160,000


def test_calc_reads_stdin(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps([P002])))
    status, out, _ = kiosk(capsys, "policy", "calc", "--policy", "reference", "-")
    assert status == 0
    assert json.loads(out) == [P002_RESULT]


def test_calc_of_no_claims_prints_an_empty_array(capsys, tmp_path):
    status, out, _ = calc(capsys, tmp_path, [])
    assert (status, json.loads(out)) == (0, [])


def without(claim: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in claim.items() if k != key}


def with_item(claim: dict[str, Any], **item: Any) -> dict[str, Any]:
    return {**claim, "items": [*claim["items"], item]}


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ([P001, without(P002, "referral")], "claim 1: referral: missing"),
        ([P001, P002, with_item(P001, amount=5, **{"class": "D"})], "claim 2: items[4].class"),
        ([{**P002, "assistance": "wubao"}], "claim 0: assistance: must be one of"),
        ([{**P002, "med_type": "outpatient"}], "claim 0: med_type"),
        ([with_item(P002, amount=-1, **{"class": "A"})], "claim 0: items[3].amount"),
        ([with_item(P002, amount=1.5, **{"class": "A"})], "claim 0: items[3].amount"),
        ([with_item(P002, amount="100", **{"class": "A"})], "claim 0: items[3].amount"),
        # a 10^23-fen item was settled; a bill is at most 100 million yuan, as import-bills says
        ([with_item(P002, amount=10**23, **{"class": "A"})],
         "claim 0: items: total over 10000000000 fen"),
        ([P001, {**P001, "setl_date": "2026-02-29"}], "claim 1: setl_date"),
        ([P001, {**P001, "setl_date": "29/11/2026"}], "claim 1: setl_date"),
        ([P001, "P002"], "claim 1: claim: must be an object"),
        ({"claims": [P001]}, "must be a JSON array of claims"),
    ],
)
def test_bad_claims_exit_2_with_one_line_and_no_output(capsys, tmp_path, claims, says):
    status, out, err = calc(capsys, tmp_path, claims)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and says in err


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[{"psn_no": "P001",]', "malformed JSON at line 1 column"),
        ("", "malformed JSON"),
        ('[{"psn_no": "P001", "psn_no": "P002"}]', "duplicate key 'psn_no'"),
        ('[{"amount": NaN}]', "NaN is not a number"),
    ],
)
def test_malformed_json_exits_2_with_one_line(capsys, tmp_path, text, says):
    path = tmp_path / "claims.json"
    path.write_text(text, encoding="utf-8")
    status, out, err = kiosk(capsys, "policy", "calc", "--policy", "reference", str(path))
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and says in err


def test_a_lone_surrogate_in_a_claims_text_exits_2_with_one_line(capsys, tmp_path):
    # valid JSON (an escaped lone surrogate) that no text output can carry
    path = tmp_path / "claims.json"
    path.write_text(json.dumps([{**P001, "psn_no": "\ud800"}]), encoding="ascii")
    status, out, err = kiosk(capsys, "policy", "calc", "--policy", "reference", str(path))
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and "claim 0: psn_no: must be text" in err


def test_unknown_policy_exits_2(capsys, tmp_path):
    status, out, err = calc(capsys, tmp_path, [P001], policy="atlantis")
    assert (status, out) == (2, "")
    assert err == (
        "kiosk policy calc: unknown policy 'atlantis': shipped policies are reference; "
        "or give a path to a .toml\n"
    )


def test_broken_policy_file_exits_2_naming_the_key(capsys, tmp_path):
    region = tmp_path / "region.toml"
    region.write_text('[policy]\nname = "x"\n', encoding="utf-8")
    status, out, err = calc(capsys, tmp_path, [P001], policy=str(region))
    assert (status, out) == (2, "")
    assert err.endswith("region.toml: catalogue: missing\n")


def test_missing_claims_file_exits_2(capsys, tmp_path):
    status, out, err = kiosk(
        capsys, "policy", "calc", "--policy", "reference", str(tmp_path / "none.json")
    )
    assert (status, out) == (2, "")
    assert "cannot read" in err


def test_show_prints_the_policy_as_tables(capsys):
    status, out, _ = kiosk(capsys, "policy", "show", "reference")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("Policy reference:")
    row = next(line.split() for line in lines if line.strip().startswith("inpatient"))
    assert row == ["inpatient", "1", "200.00", "80", "%", "120,000.00"]
    assert "  annual cap: 300,000.00" in lines
    assert any(line.split() == ["100,000.00", "and", "above", "80", "%"] for line in lines)
    assert "  for tekun, dibao: threshold 5,000.00, every ratio +5 points, no cap" in lines
    assert any(
        line.split() == ["illness_poor", "50", "%", "5,000.00", "30,000.00"] for line in lines
    )


def test_show_unknown_policy_exits_2(capsys):
    status, out, err = kiosk(capsys, "policy", "show", "atlantis")
    assert (status, out) == (2, "")
    assert "unknown policy 'atlantis'" in err


def test_bench_prints_claims_per_second(capsys):
    status, out, _ = kiosk(capsys, "bench", "settlement", "--claims", "300", "--repeat", "1")
    assert status == 0
    assert "engine (settle)" in out and "validate + settle" in out
    assert out.count("claims/s") >= 2


def test_show_prints_the_digest_settlements_record_same_figures_same_digest(capsys, tmp_path):
    from importlib import resources

    def digest_line(name_or_path: str) -> str:
        status, out, _ = kiosk(capsys, "policy", "show", name_or_path)
        assert status == 0
        (line,) = [line for line in out.splitlines() if line.startswith("Digest ")]
        return line.split()[1]

    text = (resources.files("onestop.host.settlement") / "policies" / "reference.toml"
            ).read_text(encoding="utf-8")
    relaid = tmp_path / "relaid.toml"  # the same figures, other comments and spacing
    relaid.write_text("# copied for the county office\n\n" + text.replace(" = ", "   =   "),
                      encoding="utf-8")
    changed = tmp_path / "changed.toml"  # one figure differs
    changed.write_text(text.replace("class_b_preselfpay_percent = 10",
                                    "class_b_preselfpay_percent = 11", 1), encoding="utf-8")
    assert changed.read_text(encoding="utf-8") != text
    reference = digest_line("reference")
    assert len(reference) == 16 and int(reference, 16) >= 0
    assert digest_line(str(relaid)) == reference
    assert digest_line(str(changed)) != reference
