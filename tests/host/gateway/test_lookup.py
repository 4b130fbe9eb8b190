"""`kiosk gateway lookup`: the counter finds a resident a kiosk sent there — by the ID number on
their ID card, or a settlement by the numbers on a receipt — and reads off what happened: settled
or cancelled, receipt printed or not, what each fund and the resident pay, the bills waiting.
Settled through the real request handlers, run through the real argument parser, on both ledger
backends.
"""

from __future__ import annotations

import getpass
import json
import os
import pwd
import socket
from datetime import date

import pytest
from onestop.host.cli import main
from onestop.host.gateway.bills import settlement_today
from test_receipt_check import BILL, NOW, RESIDENT, SSN, SSN_MASKED, Site, record_of, yuan

SETTLED_ON = date(2026, 11, 23)  # test_receipt_check's NOW
# --days reaching back to the day the tests settle on, whenever they run
DAYS = str((settlement_today() - SETTLED_ON).days + 1)
TXN = "K0001-000001-aaaa"
# who runs these tests, as a lookup records it: the uid's user, on this machine
ACCOUNT = f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"


@pytest.fixture
def site(ledger, kit) -> Site:
    return Site(ledger, kit)


def lookup(db: str, *argv: str, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["gateway", "lookup", "--db", db, *argv])
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_a_resident_whose_receipt_did_not_print_is_told_so_with_what_they_pay(
        site, ledger_url, capsys):
    record = record_of(site.settle(TXN))
    status, out, err = lookup(ledger_url, "--id-number", SSN, "--days", DAYS, capsys=capsys)
    assert status == 0, err
    assert f"张秀兰  ID {SSN_MASKED}" in out and SSN not in out
    assert "settlements since" in out and ": 1" in out.splitlines()[1]
    assert "2026-11-23 10:00 China time  settled, receipt not reported printed yet" in out
    assert f"settlement {record['setl_id']}  kiosk K0001  transaction {TXN}" in out
    assert BILL in out
    pays = next(line for line in out.splitlines() if line.endswith("个人支付"))
    assert "resident pays" in pays and yuan(record["result"]["psn_cash_pay"]) in pays
    assert out.rstrip().endswith("no bills waiting for settlement")  # P001's one bill

    site.ask("receipt_printed", txn_id=TXN, setl_id=record["setl_id"])  # the kiosk printed it
    _, out, _ = lookup(ledger_url, "--id-number", SSN, "--days", DAYS, capsys=capsys)
    assert "settled, receipt printed" in out and "not reported" not in out


def test_a_cancelled_settlement_says_so_and_its_bill_is_waiting_again(site, ledger_url, capsys):
    record = record_of(site.settle(TXN))
    site.ask("cancel", txn_id=TXN, setl_id=record["setl_id"])
    status, out, _ = lookup(ledger_url, "--id-number", SSN, "--days", DAYS, capsys=capsys)
    assert status == 0
    assert "CANCELLED (reversed" in out
    assert "bills waiting for settlement: 1" in out and f"  {BILL}  " in out


def test_only_the_last_days_asked_for_are_shown(site, ledger_url, capsys):
    site.settle(TXN)
    fewer = str(int(DAYS) - 1)  # the window ends the day after the settlement
    status, out, _ = lookup(ledger_url, "--id-number", SSN, "--days", fewer, capsys=capsys)
    assert status == 0 and "no settlements since" in out and TXN not in out


@pytest.mark.parametrize("by", ["--txn-id", "--setl-id"])
def test_one_settlement_by_the_numbers_on_its_receipt(site, ledger_url, capsys, by):
    record = record_of(site.settle(TXN))
    number = TXN if by == "--txn-id" else record["setl_id"]
    status, out, _ = lookup(ledger_url, by, number, capsys=capsys)
    assert status == 0
    assert f"transaction {TXN}" in out and f"ID {SSN_MASKED}" in out
    assert "settlements since" not in out  # one settlement, not a period
    status, out, err = lookup(ledger_url, by, number + "0", capsys=capsys)
    assert status == 1 and out == ""
    assert err.startswith("kiosk gateway lookup: no ") and "in this ledger" in err


def test_an_id_number_no_resident_holds_is_said_masked(site, ledger_url, capsys):
    unknown = "110101199003070011"  # a valid check digit, nobody in the demo
    status, out, err = lookup(ledger_url, "--id-number", unknown, capsys=capsys)
    assert status == 1 and out == ""
    assert "no resident with ID number 110101********0011 in this ledger" in err
    assert unknown not in err


@pytest.mark.parametrize("typed, says", [
    ("130630195603120049", "check digit is wrong"),  # one digit mistyped
    ("13063019560312004", "18 characters"),
])
def test_a_mistyped_id_number_is_refused_before_the_ledger(typed, says, tmp_path, capsys):
    missing = f"sqlite:///{tmp_path}/none.sqlite"  # never opened
    with pytest.raises(SystemExit) as done:
        main(["gateway", "lookup", "--db", missing, "--id-number", typed])
    assert done.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()


def test_json_gives_fen_and_the_masked_id_only(site, ledger_url, capsys):
    record = record_of(site.settle(TXN))
    status, out, _ = lookup(ledger_url, "--json", "--id-number", SSN, "--days", DAYS,
                            capsys=capsys)
    found = json.loads(out)
    assert status == 0 and SSN not in out
    assert found["resident"]["ssn_masked"] == SSN_MASKED
    assert found["resident"]["psn_no"] == RESIDENT
    (settlement,) = found["settlements"]
    assert settlement["result"] == record["result"]
    assert (settlement["status"], settlement["receipt_printed"]) == ("settled", False)
    assert settlement["setl_time_china"] == "2026-11-23 10:00"
    assert found["waiting"] == []


def test_a_residents_settlements_are_found_by_index_not_by_reading_them_all(
        ledger, statements, query_plan):
    # a year's ledger holds hundreds of thousands: the clerk's answer must not wait on them
    statements.clear()
    assert ledger.settlements_of("P001", "2026-11-01") == []
    ((sql, params, _),) = [ran for ran in statements if "FROM settlements" in ran[0]]
    plan = query_plan(ledger, sql, params)
    assert "settlements_by_person" in plan, plan


def test_a_kiosks_day_lists_each_settlement_with_its_resident_newest_first(
        site, ledger_url, capsys):
    """When reconcile says a kiosk's account of a day differs from the ledger's, the operator
    sets the ledger's settlements of it, one by one, beside the kiosk's."""
    first = record_of(site.settle(TXN))
    site.ask("cancel", txn_id=TXN, setl_id=first["setl_id"])
    second = record_of(site.settle("K0001-000002-bbbb", now=NOW + 60))
    status, out, _ = lookup(ledger_url, "--kiosk", "K0001", "--date", "2026-11-23",
                            capsys=capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == ("kiosk K0001 on 2026-11-23: 2 settlements (1 settled, 1 cancelled), "
                        "newest first")
    assert out.index(second["setl_id"]) < out.index(first["setl_id"])
    assert out.count(f"张秀兰  ID {SSN_MASKED}") == 2 and SSN not in out
    assert "CANCELLED" in out
    from onestop.host.gateway.ledger import KeyRecord
    from onestop.host.keys import SigningKey

    # (Site answers as the handlers do, behind the server's key check: the kiosk is enrolled
    # now only for its empty day to be told from a mistyped kiosk id)
    site.ledger.add_key(KeyRecord(kid="K0001", role="kiosk", status="active",
                                  public_key=SigningKey.generate().public_key))
    _, out, _ = lookup(ledger_url, "--kiosk", "K0001", "--date", "2026-11-24", capsys=capsys)
    assert out.splitlines() == ["kiosk K0001 on 2026-11-24: 0 settlements (0 settled, "
                                "0 cancelled)"]
    status, out, _ = lookup(ledger_url, "--json", "--kiosk", "K0001", "--date", "2026-11-23",
                            capsys=capsys)
    listed = json.loads(out)
    assert [s["txn_id"] for s in listed["settlements"]] == ["K0001-000002-bbbb", TXN]
    assert listed["settlements"][0]["resident"]["ssn_masked"] == SSN_MASKED
    assert listed["settlements"][1]["status"] == "cancelled"


def test_a_kiosk_never_enrolled_is_said_so(site, ledger_url, capsys):
    status, out, err = lookup(ledger_url, "--kiosk", "K0099", capsys=capsys)
    assert status == 1 and out == "" and "no kiosk K0099 was ever enrolled" in err


@pytest.mark.parametrize("argv", [["--txn-id", TXN, "--date", "2026-11-23"],
                                  ["--kiosk", "K0001", "--days", "3"]])
def test_an_option_of_another_lookup_is_refused(site, ledger_url, capsys, argv):
    status, out, err = lookup(ledger_url, *argv, capsys=capsys)
    assert status == 2 and out == ""
    assert "--date goes with --kiosk, --days with --id-number" in err


# ---------------------------------------------------------------- who looked (access.py)
def lookups(db: str, *argv: str, capsys) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["gateway", "lookups", "--db", db, *argv])
    return done.value.code, capsys.readouterr().out


def test_each_lookup_is_recorded_with_who_asked_and_whose_settlements_were_shown(
        site, ledger_url, capsys):
    """A resident may ask who looked at their settlements, and the operator must be able to
    tell: every lookup is in the audit chain, a miss too, before anything is shown."""
    record = record_of(site.settle(TXN))
    assert lookup(ledger_url, "--id-number", SSN, "--days", DAYS, "--operator", "王芳",
                  capsys=capsys)[0] == 0
    assert lookup(ledger_url, "--txn-id", TXN, capsys=capsys)[0] == 0  # the login name
    assert lookup(ledger_url, "--setl-id", record["setl_id"] + "0", "--operator", "李明",
                  capsys=capsys)[0] == 1
    assert lookup(ledger_url, "--kiosk", "K0001", "--date", "2026-11-23", "--operator", "李明",
                  capsys=capsys)[0] == 0

    status, out = lookups(ledger_url, "--json", capsys=capsys)
    shown = json.loads(out)
    assert status == 0 and SSN not in out
    assert {e["account"] for e in shown} == {ACCOUNT}
    assert [(e["operator"], e["asked"], e["persons"], e["shown"]) for e in shown] == [
        ("李明", "kiosk K0001 on 2026-11-23", [RESIDENT], 1),
        ("李明", f"settlement {record['setl_id']}0", [], 0),
        (getpass.getuser(), f"transaction {TXN}", [RESIDENT], 1),
        ("王芳", f"ID number {SSN_MASKED}", [RESIDENT], 1),
    ]  # newest first
    _, out = lookups(ledger_url, "--psn-no", RESIDENT, capsys=capsys)
    lines = out.splitlines()
    assert lines[0] == "lookups in the last 30 days, newest first: 3"
    assert lines[-1].endswith(f"王芳 ({ACCOUNT})  asked ID number {SSN_MASKED}  showed "
                              f"{RESIDENT}: 1 settlement")
    assert f"李明 ({ACCOUNT})  asked settlement" not in out  # showed nobody's
    _, out = lookups(ledger_url, capsys=capsys)
    assert f"李明 ({ACCOUNT})  asked settlement {record['setl_id']}0  found nobody" in out
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:  # the chain holds them: the audit checks them too
        main(["gateway", "audit", "--db", ledger_url])
    assert done.value.code == 0


def test_a_resident_asking_who_looked_is_found_by_the_id_number_on_their_card(
        site, ledger_url, capsys):
    """At the counter the resident shows an ID card, not their personal number."""
    record = record_of(site.settle(TXN))
    assert lookup(ledger_url, "--txn-id", TXN, "--operator", "王芳", capsys=capsys)[0] == 0
    assert lookup(ledger_url, "--setl-id", record["setl_id"] + "0", capsys=capsys)[0] == 1
    status, out = lookups(ledger_url, "--id-number", f" {SSN} ", capsys=capsys)  # as pasted
    assert status == 0 and SSN not in out
    assert out.splitlines()[0] == "lookups in the last 30 days, newest first: 1"
    assert f"王芳 ({ACCOUNT})  asked transaction {TXN}  showed {RESIDENT}: 1 settlement" in out
    assert lookups(ledger_url, "--psn-no", RESIDENT, capsys=capsys)[1] == out

    other = "110101199003070011"  # a valid number nobody in this ledger holds
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["gateway", "lookups", "--db", ledger_url, "--id-number", other])
    out, err = capsys.readouterr()
    assert done.value.code == 1 and out == "" and other not in err
    assert "no resident with ID number 110101********0011 in this ledger" in err
    with pytest.raises(SystemExit) as done:  # one resident, asked one way
        main(["gateway", "lookups", "--db", ledger_url, "--id-number", SSN,
              "--psn-no", RESIDENT])
    assert done.value.code == 2


def test_the_account_a_lookup_ran_under_is_recorded_whatever_name_is_given(
        site, ledger_url, capsys, monkeypatch):
    """--operator and $USER are whatever the clerk types; the process's account is not."""
    site.settle(TXN)
    monkeypatch.setenv("USER", "someone-else")
    monkeypatch.setenv("LOGNAME", "someone-else")
    assert lookup(ledger_url, "--txn-id", TXN, "--operator", "李明", capsys=capsys)[0] == 0
    (recorded,) = json.loads(lookups(ledger_url, "--json", capsys=capsys)[1])
    assert (recorded["operator"], recorded["account"]) == ("李明", ACCOUNT)
    assert "someone-else" not in ACCOUNT


@pytest.mark.parametrize("argv", [["--txn-id", SSN], ["--setl-id", SSN[:17] + "x"],
                                  ["--txn-id", "ab\x1b[2Jcdefgh"], ["--setl-id", "S" * 41]])
def test_an_id_number_or_garbage_for_a_receipt_number_is_refused_unrecorded(
        site, ledger_url, capsys, argv):
    """The chain keeps what was asked for good, and ID numbers appear only masked: a clerk
    holding the resident's ID card who types its number where the receipt's goes is told so,
    and nothing is looked up or recorded."""
    status, out, err = lookup(ledger_url, *argv, capsys=capsys)
    assert status == 2 and out == ""
    if argv[1][:17] == SSN[:17]:
        assert "that is an ID number: find a resident by it with --id-number" in err
    else:
        assert "letters, digits, '_' or '-', as printed on the receipt" in err
    assert lookups(ledger_url, "--json", capsys=capsys)[1].strip() == "[]"


def test_an_id_number_given_as_a_kiosk_is_recorded_masked(site, ledger_url, capsys):
    assert lookup(ledger_url, "--kiosk", SSN, capsys=capsys)[0] == 1  # no such kiosk
    (recorded,) = json.loads(lookups(ledger_url, "--json", capsys=capsys)[1])
    assert recorded["asked"].startswith(f"kiosk {SSN_MASKED} on ")


def test_a_lookup_that_cannot_be_recorded_shows_nothing(site, ledger_url, capsys,
                                                        monkeypatch):
    from onestop.host.gateway.ledger.base import LedgerError
    from onestop.host.gateway.ledger.sqlcore import SqlLedger

    site.settle(TXN)

    def refuse(self, data):
        raise LedgerError("the disk is full")

    monkeypatch.setattr(SqlLedger, "record_lookup", refuse)
    status, out, err = lookup(ledger_url, "--id-number", SSN, "--days", DAYS, capsys=capsys)
    assert status == 1 and out == ""
    assert "the lookup could not be recorded (the disk is full); nothing is shown" in err


def test_an_operator_name_with_control_characters_is_refused(site, ledger_url, capsys):
    status, out, err = lookup(ledger_url, "--txn-id", TXN, "--operator", "x\x1b[2J",
                              capsys=capsys)
    assert status == 1 and out == "" and "--operator: a name of 1 to 64 characters" in err
    assert lookups(ledger_url, "--json", capsys=capsys)[1].strip() == "[]"
