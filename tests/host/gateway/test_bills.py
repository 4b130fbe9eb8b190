"""Importing the clinics' bills and seeding the demo residents."""

from __future__ import annotations

import copy
import json
import re

import pytest
from onestop.host.gateway.bills import (
    BillFileError,
    demo_document,
    import_bills_file,
    parse_document,
    seed_demo,
    ssn_check_digit_ok,
)
from onestop.host.settlement import load_policy

PERSON = {
    "psn_no": "P101",
    "name": "张三",
    "ssn": "130630195603120048",
    "card_no": "HB0000101",
    "insu_admdvs": "130630",
    "assistance": "none",
}
BILL = {
    "bill_id": "B-130630-0101",
    "psn_no": "P101",
    "fixmedins_name": "涞源县医院",
    "mdtrtarea_admvs": "130630",
    "med_type": "inpatient",
    "hosp_lv": 2,
    "referral": False,
    "date": "2026-11-20",
    "items": [{"name": "床位费", "class": "A", "amount": 300000}],
}


def document(**changes) -> dict:
    """{persons, bills} with changes: bill__field / person__field set, or dropped with None."""
    doc = {"persons": [copy.deepcopy(PERSON)], "bills": [copy.deepcopy(BILL)]}
    for key, value in changes.items():
        kind, name = key.split("__")
        entry = doc["persons" if kind == "person" else "bills"][0]
        if value is None:
            del entry[name]
        else:
            entry[name] = value
    return doc


def write(tmp_path, content) -> object:
    path = tmp_path / "bills.json"
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_bills_file_is_imported_once(ledger, tmp_path):
    path = write(tmp_path, document())
    first = import_bills_file(ledger, path)
    again = import_bills_file(ledger, path)

    assert (first.persons["added"], first.bills["added"]) == (1, 1)
    assert (again.persons["unchanged"], again.bills["unchanged"]) == (1, 1)
    [bill] = ledger.pending_bills("P101")
    assert bill.medfee_sumamt == 300000 and bill.items[0]["name"] == "床位费"
    assert len(ledger.audit_events()) == 2  # nothing new the second time


def test_a_plain_array_of_bills_for_known_people_is_accepted(ledger, tmp_path):
    import_bills_file(ledger, write(tmp_path, {"persons": [PERSON]}))
    summary = import_bills_file(ledger, write(tmp_path, [BILL]))
    assert summary.bills["added"] == 1


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"bill__items": [{"name": "x", "class": "A", "amount": 1.5}]}, "bills[0].items[0].amount"),
        ({"bill__items": [{"name": "x", "class": "D", "amount": 1}]}, "bills[0].items[0].class"),
        ({"bill__items": []}, "bills[0].items"),
        ({"bill__hosp_lv": 4}, "bills[0].hosp_lv"),
        ({"bill__med_type": "dental"}, "bills[0].med_type"),
        ({"bill__date": "2026-02-30"}, "bills[0].date"),
        ({"bill__date": "2099-01-01"}, "bills[0].date: is after "),
        # born 1956-03-12 (the ID number): a year typed wrong, listed first at the kiosk
        ({"bill__date": "1900-01-01"}, "bills[0] (B-130630-0101): is dated 1900-01-01, before "
         "P101 was born (1956-03-12"),
        ({"bill__referral": "no"}, "bills[0].referral"),
        ({"bill__mdtrtarea_admvs": "1306"}, "bills[0].mdtrtarea_admvs"),
        ({"bill__date": None}, "bills[0].date: missing"),
        ({"bill__status": "settled"}, "bills[0].status: unknown field"),
        ({"person__ssn": "130630195603120049"}, "persons[0].ssn: check digit"),
        ({"person__card_no": "hb1"}, "persons[0].card_no"),
        ({"person__assistance": "rich"}, "persons[0].assistance"),
        # employees' insurance has rules no policy here describes: never settled as a resident's
        ({"person__insutype": 310}, "persons[0].insutype: must be 390"),
        ({"person__name": "张\x00三"}, "persons[0].name: must not contain control characters"),
        ({"bill__fixmedins_name": "卫生院\n"}, "bills[0].fixmedins_name: must not contain"),
        ({"bill__items": [{"name": "x\x1b[2J", "class": "A", "amount": 1}]},
         "bills[0].items[0].name: must not contain control characters"),
        # amounts a frame, a receipt and the ledgers' 64-bit sums can carry
        ({"bill__items": [{"name": "x", "class": "A", "amount": 10**30}]},
         "bills[0].items[0].amount: is over 10000000000 fen"),
        ({"bill__items": [{"name": "x", "class": "A", "amount": 6_000_000_000},
                          {"name": "y", "class": "B", "amount": 6_000_000_000}]},
         "bills[0].items: total over 10000000000 fen"),
        ({"person__name": "张" * 51}, "persons[0].name: is 51 characters; at most 50"),
        ({"bill__fixmedins_name": "院" * 201}, "bills[0].fixmedins_name: is 201 characters"),
    ],
)  # fmt: skip
def test_a_bad_file_names_the_entry_and_field_and_writes_nothing(ledger, tmp_path, changes, where):
    with pytest.raises(BillFileError, match=re.escape(where)):
        import_bills_file(ledger, write(tmp_path, document(**changes)))
    assert ledger.get_person("P101") is None
    assert ledger.audit_events() == []


def test_a_wrong_id_number_is_never_echoed_in_the_error(ledger, tmp_path):
    wrong = "130630195603120049"
    with pytest.raises(BillFileError) as caught:
        import_bills_file(ledger, write(tmp_path, document(person__ssn=wrong)))
    assert wrong not in str(caught.value)


def test_a_repeated_bill_id_is_refused(ledger, tmp_path):
    doc = document()
    doc["bills"].append(copy.deepcopy(BILL))
    with pytest.raises(BillFileError, match=r"bills\[1\].bill_id"):
        import_bills_file(ledger, write(tmp_path, doc))


def test_a_bill_of_nobody_known_is_refused_before_anything_is_written(ledger, tmp_path):
    doc = document()
    doc["bills"].append({**copy.deepcopy(BILL), "bill_id": "B-2", "psn_no": "P999"})
    with pytest.raises(BillFileError, match=r"bills\[1\] \(B-2\).*P999"):
        import_bills_file(ledger, write(tmp_path, doc))
    assert ledger.get_person("P101") is None


def test_a_file_that_would_change_a_settled_bill_is_refused_whole(ledger, tmp_path, kit):
    import_bills_file(ledger, write(tmp_path, document()))
    kit.settle(ledger, "T-000001", "P101", "B-130630-0101")
    doc = document(bill__items=[{"name": "床位费", "class": "A", "amount": 1}])
    doc["bills"].append({**copy.deepcopy(BILL), "bill_id": "B-NEW"})
    with pytest.raises(BillFileError, match="already settled"):
        import_bills_file(ledger, write(tmp_path, doc))
    assert ledger.get_bill("B-NEW") is None
    assert ledger.get_bill("B-130630-0101").status == "settled"
    # and re-importing the original never re-opens it
    import_bills_file(ledger, write(tmp_path, document()))
    assert ledger.get_bill("B-130630-0101").status == "settled"


@pytest.mark.parametrize("content", ["not json", '{"bills": 3}', '"text"'])
def test_a_file_that_is_not_a_bills_document_is_refused(ledger, tmp_path, content):
    path = tmp_path / "bills.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BillFileError):
        import_bills_file(ledger, path)


def test_a_missing_file_is_a_clear_error(ledger, tmp_path):
    with pytest.raises(BillFileError, match="cannot read"):
        import_bills_file(ledger, tmp_path / "absent.json")


def test_every_demo_resident_has_a_valid_id_number():
    for resident in demo_document()["residents"]:
        assert ssn_check_digit_ok(resident["ssn"]), resident["psn_no"]


def test_seed_demo_loads_everyone_a_demo_needs(ledger):
    summary = seed_demo(ledger)
    again = seed_demo(ledger)

    residents = demo_document()["residents"]
    assert summary.persons["added"] == len(residents)
    assert again.persons["unchanged"] == len(residents) and not again.seeded
    people = [ledger.get_person(r["psn_no"]) for r in residents]
    categories = {p.assistance for p in people}
    assert {"tekun", "dibao", "low_income", "illness_poor", "none"} <= categories
    assert any(p.insu_admdvs != "130630" for p in people)  # insured elsewhere
    for resident in residents:
        assert [b.bill_id for b in ledger.pending_bills(resident["psn_no"])] == [
            b["bill_id"] for b in resident["bills"]
        ]
    # P005's year is already heavy: the burdens under the settlement engine's keys, with what
    # the funds paid on them as the reference policy would have (a burden of 60,000 yuan with
    # nothing paid on it left the serious-illness cap 31,000 yuan more room than it has)
    assert ledger.accumulations("P005", 2026) == {
        "serious_burden": 6_000_000,
        "hifmi_paid": 3_100_000,
        "assistance_burden": 2_900_000,
        "maf_paid": 1_200_000,
    }
    policy = load_policy("reference")
    assert policy.serious_illness_schedule("illness_poor").payout_fen(0, 6_000_000, 0) \
        == 3_100_000
    assert policy.assistance_schedule("illness_poor").payout_fen(0, 2_900_000, 0) == 1_200_000


def test_a_person_found_by_card_data_from_the_demo_deck(ledger):
    seed_demo(ledger)
    p001 = demo_document()["residents"][0]
    found = ledger.find_person(p001["ssn"], p001["card_no"])
    assert found is not None and found.psn_no == "P001"


def test_parse_document_rejects_unknown_top_level_fields():
    with pytest.raises(BillFileError, match="clinics"):
        parse_document({"bills": [], "clinics": []})


def _with_check_digit(first17: str) -> str:
    return next(first17 + c for c in "0123456789X" if ssn_check_digit_ok(first17 + c))


def _person(psn_no: str, ssn: str, card_no: str) -> dict:
    return {**PERSON, "psn_no": psn_no, "ssn": ssn, "card_no": card_no}


def test_one_id_number_is_one_person_and_a_refused_file_writes_nothing(ledger, tmp_path):
    import_bills_file(ledger, write(tmp_path, document()))  # P101
    events = ledger.audit_events()
    newcomer = _person("Q1", _with_check_digit("13063019700101002"), "HB0000201")
    # Q2 is P101 again under another psn_no: it would split P101's accumulations and caps
    twin = _person("Q2", PERSON["ssn"], "HB0000202")
    doc = {"persons": [newcomer, twin], "bills": [{**BILL, "bill_id": "B-Q1", "psn_no": "Q1"}]}

    with pytest.raises(BillFileError, match=r"persons\[1\] \(Q2\).*already person P101") as caught:
        import_bills_file(ledger, write(tmp_path, doc))

    assert PERSON["ssn"] not in str(caught.value)  # masked
    assert ledger.get_person("Q1") is None and ledger.get_bill("B-Q1") is None
    assert ledger.audit_events() == events
    # the same within one file
    doc = {"persons": [newcomer, {**newcomer, "psn_no": "Q3", "card_no": "HB0000203"}]}
    with pytest.raises(BillFileError, match=r"persons\[1\] \(Q3\).*already person Q1"):
        import_bills_file(ledger, write(tmp_path, doc))
    # a new card for the same person (same psn_no) is an update, not a second person
    summary = import_bills_file(ledger, write(tmp_path, {"persons": [
        {**PERSON, "card_no": "HB0000999"}]}))
    assert summary.persons["updated"] == 1


def test_a_file_is_imported_whole_or_not_at_all(ledger, tmp_path, monkeypatch):
    from onestop.host.gateway.ledger import BillUnavailable

    doc = document()
    doc["bills"].append({**copy.deepcopy(BILL), "bill_id": "B-SETTLED-MEANWHILE"})
    real = ledger.upsert_bill

    def settled_at_a_kiosk_meanwhile(bill):
        if bill.bill_id == "B-SETTLED-MEANWHILE":
            raise BillUnavailable("bill_settled", f"bill {bill.bill_id} is already settled")
        return real(bill)

    monkeypatch.setattr(ledger, "upsert_bill", settled_at_a_kiosk_meanwhile)
    with pytest.raises(BillUnavailable):
        import_bills_file(ledger, write(tmp_path, doc))
    assert ledger.get_person("P101") is None and ledger.get_bill(BILL["bill_id"]) is None
    assert ledger.audit_events() == []


def test_a_file_nested_too_deeply_is_a_clear_error(ledger, tmp_path):
    path = tmp_path / "bills.json"
    path.write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(BillFileError, match="nested too deeply"):
        import_bills_file(ledger, path)


def test_seed_demo_again_after_settlements_changes_nothing(ledger, kit):
    seed_demo(ledger)
    kit.settle(ledger, "T-000001", "P005", "B-130602-0005")
    heavy = ledger.accumulations("P005", 2026)

    again = seed_demo(ledger)

    assert not again.seeded and again.bills["unchanged"] >= 1
    assert ledger.accumulations("P005", 2026) == heavy
