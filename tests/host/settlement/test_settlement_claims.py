"""Claims: what is accepted, what is refused and which field the refusal names."""

from __future__ import annotations

import pytest
from onestop.host.gateway.ledger.base import Bill, Person
from onestop.host.settlement import Claim, ClaimError, Item


def test_a_valid_claim_reads_every_field(claim_data):
    claim = Claim.from_dict(claim_data(items=[("A", 10), ("B", 20), ("C", 30)]))
    assert claim.psn_no == "P001"
    assert claim.hosp_lv == 2
    assert claim.items == (Item("A", 10), Item("B", 20), Item("C", 30))
    assert claim.year == 2026


def test_to_dict_round_trips(claim_data):
    data = claim_data(items=[("B", 5)], referral=True, mdtrtarea_admvs="110102")
    assert Claim.from_dict(data).to_dict() == data


def test_item_names_are_accepted_and_ignored(claim_data):
    data = claim_data()
    data["items"][0]["name"] = "床位费"
    assert Claim.from_dict(data).items == (Item("A", 1_000_000),)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"psn_no": ""}, "psn_no"),
        ({"psn_no": 7}, "psn_no"),
        ({"insu_admdvs": "1306"}, "insu_admdvs"),
        ({"insu_admdvs": 130630}, "insu_admdvs"),
        ({"assistance": "poor"}, "assistance"),
        ({"assistance": None}, "assistance"),
        ({"med_type": "outpatient"}, "med_type"),
        ({"hosp_lv": 4}, "hosp_lv"),
        ({"hosp_lv": "2"}, "hosp_lv"),
        ({"hosp_lv": True}, "hosp_lv"),
        ({"hosp_lv": 2.0}, "hosp_lv"),
        ({"mdtrtarea_admvs": "13063a"}, "mdtrtarea_admvs"),
        ({"referral": "no"}, "referral"),
        ({"referral": 0}, "referral"),
        ({"setl_date": "2026-02-30"}, "setl_date"),
        ({"setl_date": "2026-13-01"}, "setl_date"),
        ({"setl_date": "20261120"}, "setl_date"),
        ({"setl_date": "2026-11-20T10:00"}, "setl_date"),
        ({"setl_date": "2026-1-20"}, "setl_date"),
        ({"items": []}, "items"),
        ({"items": {"amount": 1, "class": "A"}}, "items"),
        ({"items": [5]}, "items[0]"),
        ({"items": [{"amount": 1, "class": "A"}, {"amount": 1, "class": "D"}]}, "items[1].class"),
        ({"items": [{"amount": 1, "class": "a"}]}, "items[0].class"),
        ({"items": [{"amount": -1, "class": "A"}]}, "items[0].amount"),
        ({"items": [{"amount": 1.5, "class": "A"}]}, "items[0].amount"),
        ({"items": [{"amount": 100.0, "class": "A"}]}, "items[0].amount"),
        ({"items": [{"amount": "100", "class": "A"}]}, "items[0].amount"),
        ({"items": [{"amount": True, "class": "A"}]}, "items[0].amount"),
        ({"items": [{"class": "A"}]}, "items[0].amount"),
        ({"items": [{"amount": 1}]}, "items[0].class"),
        ({"items": [{"amount": 1, "class": "A", "price": 1}]}, "items[0].price"),
        ({"items": [{"amount": 1, "class": "A", "name": 3}]}, "items[0].name"),
        ({"bill_id": "B-1"}, "bill_id"),
    ],
)
def test_bad_fields_are_refused_by_name(claim_data, change, field):
    with pytest.raises(ClaimError) as refused:
        Claim.from_dict({**claim_data(), **change})
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


@pytest.mark.parametrize("missing", ["psn_no", "assistance", "referral", "setl_date", "items"])
def test_missing_fields_are_refused_by_name(claim_data, missing):
    data = claim_data()
    del data[missing]
    with pytest.raises(ClaimError) as refused:
        Claim.from_dict(data)
    assert (refused.value.field, refused.value.message) == (missing, "missing")


def test_a_claim_must_be_an_object():
    with pytest.raises(ClaimError) as refused:
        Claim.from_dict(["P001"])
    assert refused.value.field == "claim"


def test_constructing_a_claim_directly_validates_too(claim_data):
    values = Claim.from_dict(claim_data()).to_dict()
    values["items"] = (Item("A", -5),)
    with pytest.raises(ClaimError, match=r"items\[0\]\.amount"):
        Claim(**values)


def test_from_bill_builds_the_claim_the_gateway_settles():
    person = Person(
        psn_no="P002",
        name="王建国",
        ssn="130630194808050034",
        card_no="HB0000002",
        insu_admdvs="130630",
        assistance="dibao",
    )
    bill = Bill(
        bill_id="B-110102-0002",
        psn_no="P002",
        fixmedins_name="北京大学第一医院",
        mdtrtarea_admvs="110102",
        med_type="inpatient",
        hosp_lv=3,
        referral=True,
        date="2026-11-18",
        items=({"name": "手术及治疗", "class": "A", "amount": 9_000_000},),
    )
    claim = Claim.from_bill(person, bill, setl_date="2027-01-02")
    assert claim == Claim(
        psn_no="P002",
        insu_admdvs="130630",
        assistance="dibao",
        med_type="inpatient",
        hosp_lv=3,
        mdtrtarea_admvs="110102",
        referral=True,
        setl_date="2027-01-02",
        items=(Item("A", 9_000_000),),
    )
    assert claim.year == 2027  # the settlement date's year, not the bill's

    other = Person("P009", "某", "x", "y", "130630", "none")
    with pytest.raises(ClaimError, match="another person"):
        Claim.from_bill(other, bill, setl_date="2026-11-20")
