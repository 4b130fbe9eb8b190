"""`kiosk gateway import-bills` on files a clinic's tools really write, or a careless or hostile
one could: each is refused in one line naming the problem, with nothing imported, or accepted."""

from __future__ import annotations

import json

import pytest
from onestop.host.cli import main
from test_bills import BILL
from test_bills import document as sample_document

AMOUNT = 12345  # a bill's one item, in fen: easy to find in the file's text


def document() -> dict:
    """test_bills' sample person and bill, its item's amount AMOUNT."""
    return sample_document(bill__items=[{"name": "床位费", "class": "A", "amount": AMOUNT}])


def import_bills(ledger_url: str, path, capsys) -> tuple[int, str]:
    """The exit status and what stderr said."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["gateway", "import-bills", "--db", ledger_url, str(path)])
    return done.value.code, capsys.readouterr().err


def refused(ledger, ledger_url, path, capsys, complaint: str) -> None:
    """Exit 1, one line naming the problem, and the ledger as it was."""
    status, err = import_bills(ledger_url, path, capsys)
    assert status == 1
    assert err.startswith("kiosk gateway import-bills: ") and err.count("\n") == 1, err
    assert complaint in err, err
    assert ledger.get_person("P101") is None and ledger.get_bill(BILL["bill_id"]) is None
    assert ledger.audit_events() == []


def write(tmp_path, text: str, encoding: str = "utf-8"):
    path = tmp_path / "bills.json"
    path.write_text(text, encoding=encoding)
    return path


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('"amount": 12345', '"amount": 12345, "amount": 99999', "'amount'"),
        ('"name": "张三"', '"name": "张三", "name": "李四"', "'name'"),
        ('"bills": [', '"bills": [], "bills": [', "'bills'"),
    ],
)
def test_a_repeated_key_anywhere_refuses_the_file(ledger, ledger_url, tmp_path, capsys,
                                                  old, new, key):  # fmt: skip
    text = json.dumps(document(), ensure_ascii=False)
    assert old in text
    path = write(tmp_path, text.replace(old, new, 1))
    refused(ledger, ledger_url, path, capsys, f"bills.json: the key {key} appears twice")


def test_a_number_of_thousands_of_digits_is_a_clear_refusal(ledger, ledger_url, tmp_path, capsys):
    path = write(tmp_path, json.dumps(document()).replace("12345", "1" * 5000))
    refused(ledger, ledger_url, path, capsys,
            "bills.json: not a JSON file the gateway can read: a number too long")  # fmt: skip


@pytest.mark.parametrize(
    ("name", "length", "complaint"),
    [
        ("bill_id", 65, "bills[0].bill_id: must be 1-64 letters"),
        ("bill_id", 201, "bills[0].bill_id: must be 1-64 letters"),
        ("bill_id", 100_000, "bills[0].bill_id: must be 1-64 letters"),
        ("psn_no", 201, "bills[0].psn_no: must be 1-30 letters or digits"),
    ],
)
def test_an_over_long_id_is_refused_with_its_real_limit(ledger, ledger_url, tmp_path, capsys,
                                                        name, length, complaint):  # fmt: skip
    doc = document()
    doc["bills"][0][name] = "B" * length
    refused(ledger, ledger_url, write(tmp_path, json.dumps(doc)), capsys, complaint)


def test_a_file_starting_with_a_utf8_bom_is_imported(ledger, ledger_url, tmp_path, capsys):
    path = write(tmp_path, json.dumps(document(), ensure_ascii=False), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert import_bills(ledger_url, path, capsys) == (0, "")
    assert ledger.get_person("P101").name == "张三"
    assert ledger.get_bill(BILL["bill_id"]).medfee_sumamt == AMOUNT


def _set(doc: dict, field: str, value: str) -> None:
    if field == "name":
        doc["persons"][0]["name"] = value
    elif field == "fixmedins_name":
        doc["bills"][0]["fixmedins_name"] = value
    else:
        doc["bills"][0]["items"][0]["name"] = value


FIELDS = {"name": "persons[0].name", "fixmedins_name": "bills[0].fixmedins_name",
          "item": "bills[0].items[0].name"}  # fmt: skip


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "char",
    [
        "\u0085",  # next line (Cc)
        "\u202e",  # right-to-left override (Cf)
        "\u200b",  # zero-width space (Cf)
        "\ufeff",  # a BOM inside the text (Cf)
        "\u2028",  # line separator (Zl)
        "\u2029",  # paragraph separator (Zp)
        "\ue000",  # private use (Co)
        "\ud800",  # a lone surrogate (Cs), reachable through a JSON escape
        "\u0378",  # unassigned (Cn)
    ],
)
def test_text_with_an_invisible_or_reordering_character_is_refused(
    ledger, ledger_url, tmp_path, capsys, field, char
):
    doc = document()
    _set(doc, field, f"张{char}三")
    path = write(tmp_path, json.dumps(doc))  # ASCII with \\u escapes: a lone surrogate too
    complaint = f"{FIELDS[field]}: must not contain control characters (has U+{ord(char):04X})"
    refused(ledger, ledger_url, path, capsys, complaint)


@pytest.mark.parametrize("text", ["阿卜杜拉·艾力", "张　三", "Zhang San", "Ülkü Öz"])
def test_names_real_people_and_clinics_have_are_accepted(ledger, ledger_url, tmp_path, capsys,
                                                         text):  # fmt: skip
    doc = document()
    for field in FIELDS:
        _set(doc, field, text)
    path = write(tmp_path, json.dumps(doc, ensure_ascii=False))
    assert import_bills(ledger_url, path, capsys) == (0, "")
    assert ledger.get_person("P101").name == text
    assert ledger.get_bill(BILL["bill_id"]).fixmedins_name == text
