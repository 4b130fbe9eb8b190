"""`kiosk gateway verify-receipt`: a clerk scans a receipt's QR code and is told whether it is
genuine — signed by this site's gateway, in the ledger as signed, not cancelled — with the
settlement as the resident's receipt shows it. Settled through the real request handlers, run
in-process through the real argument parser, on both ledger backends.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from onestop.host.cli import main
from onestop.host.fwtools import FIRMWARE_DIR
from onestop.host.gateway.bills import seed_demo
from onestop.host.gateway.handlers import Handlers
from onestop.host.gateway.ledger import KeyRecord, Ledger
from onestop.host.gateway.receipt_check import china_time, find_settlement
from onestop.host.keys import SigningKey
from onestop.host.settlement import load_policy, policy_digest
from onestop.protocol import cbor, cose, messages
from test_handlers import card_of_person

TZ = ZoneInfo("Asia/Shanghai")
NOW = int(datetime(2026, 11, 23, 10, 0, tzinfo=TZ).timestamp())  # 02:00 UTC
KIOSK = "K0001"
# The demo's 张秀兰 and her inpatient bill (host/sim/demo_residents.json).
RESIDENT, BILL, TOTAL_YUAN = "P001", "B-130630-0001", "24,200.00"
SSN, SSN_MASKED = "130630195603120048", "130630********0048"


def firmware_base64url() -> type:
    """firmware/app/receipt.py's Base64url, the very code that makes the QR text. Its module
    imports the board's drivers (`micropython`), so the class alone is taken from the source
    and run under CPython; it needs only binascii."""
    path = FIRMWARE_DIR / "app" / "receipt.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Base64url"]
    namespace: dict = {"binascii": binascii}
    exec(compile(ast.Module(body=[cls], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["Base64url"]


Base64url = firmware_base64url()


def qr_text(signed: bytes) -> str:
    """What the receipt's QR code holds, made as the firmware makes it."""
    return b"".join(Base64url(signed)).decode("ascii")


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


class Site:
    """A ledger with the demo residents, the kit's gateway key, and that gateway's handlers
    answering requests from kiosk K0001."""

    def __init__(self, ledger: Ledger, kit) -> None:
        self.ledger = ledger
        self.kit = kit
        kit.enrol_gateway(ledger)
        seed_demo(ledger)
        self.key = SigningKey(kit.GATEWAY_SEED)
        # fixed settlement numbers: the same request signs the same bytes every run
        serials = iter(range(1, 1000))
        self.handlers = Handlers(self.key, kit.GATEWAY_KID, "reference", TZ,
                                 new_id=lambda: f"{next(serials):010d}")
        self._ctr = 0

    def ask(self, t: str, now: int = NOW, **body) -> dict:
        self._ctr += 1
        request = messages.validate(messages.request(t, KIOSK, self._ctr, os.urandom(8), now,
                                                     **body))
        return self.handlers.handle(self.ledger, request, now).reply

    def settle(self, txn_id: str, now: int = NOW) -> bytes:
        """The signed settlement the kiosk receives and prints as the QR code."""
        self.ask("person_info", now=now, card=card_of_person(self.ledger, RESIDENT))
        pre = self.ask("pre_settle", now=now, psn_no=RESIDENT, bill_id=BILL)
        reply = self.ask("settle", now=now, psn_no=RESIDENT, bill_id=BILL, txn_id=txn_id,
                         confirmed_cash=pre["result"]["psn_cash_pay"])
        return reply["settlement"]


@pytest.fixture
def site(ledger: Ledger, kit) -> Site:
    return Site(ledger, kit)


def verify(db: str, *argv: str, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["gateway", "verify-receipt", "--db", db, *argv])
    out, err = capsys.readouterr()
    return done.value.code, out, err


def record_of(signed: bytes) -> dict:
    return cbor.loads(cose.decode1(signed).payload)


# ---------------------------------------------------------------------------- genuine
def test_a_genuine_receipt_verifies_with_its_amounts_and_the_masked_id(site, ledger_url,
                                                                        capsys):
    signed = site.settle("K0001-000001-aaaa")
    record = record_of(signed)
    text = qr_text(signed)  # the firmware's text: unpadded base64url of the signed bytes
    assert text == base64.urlsafe_b64encode(signed).rstrip(b"=").decode("ascii")
    status, out, err = verify(ledger_url, text, capsys=capsys)
    assert status == 0, out + err
    lines = out.splitlines()
    assert lines[-1].startswith("GENUINE")
    assert f"settlement  {record['setl_id']}" in out
    assert "kiosk       K0001" in out
    assert "2026-11-23 10:00 China time" in out  # as the receipt shows it, not UTC 02:00
    assert f"张秀兰  ID {SSN_MASKED}" in out and SSN not in out
    assert BILL in out
    money = {line.split()[-1]: line for line in lines if line.startswith("  ")}
    assert TOTAL_YUAN in money["费用总额"]
    for key, zh in (("hifp_pay", "医保统筹"), ("hifmi_pay", "大病保险"), ("maf_pay", "医疗救助"),
                    ("fund_pay_sumamt", "基金支付"), ("psn_cash_pay", "个人支付")):
        assert yuan(record["result"][key]) in money[zh], (key, money[zh])
    assert "resident pays" in money["个人支付"]
    # the rules it was settled by, as `kiosk policy show reference` names and digests them
    digest = policy_digest(load_policy("reference"))
    assert f"policy      reference (digest {digest})" in lines


def test_json_gives_fen_and_the_masked_id_only(site, ledger_url, capsys):
    signed = site.settle("K0001-000001-aaaa")
    status, out, _ = verify(ledger_url, "--json", qr_text(signed), capsys=capsys)
    report = json.loads(out)
    assert status == 0 and report["genuine"] and report["ledger"] == "matches"
    assert report["result"] == record_of(signed)["result"]
    assert report["ssn_masked"] == SSN_MASKED and SSN not in out
    assert report["setl_time_china"] == "2026-11-23 10:00"
    assert report["policy"] == {"name": "reference",
                                "digest": policy_digest(load_policy("reference"))}


# ---------------------------------------------------------------------------- not valid
class ReusedSignature:
    """Signs anything with a signature made over other bytes: a forger's re-encoding."""

    def __init__(self, signature: bytes) -> None:
        self.signature = signature

    def sign(self, _msg: bytes) -> bytes:
        return self.signature


def test_an_amount_changed_and_re_encoded_is_not_valid(site, ledger_url, capsys):
    signed = site.settle("K0001-000001-aaaa")
    sign1 = cose.decode1(signed)
    record = record_of(signed)
    result = record["result"]  # still adds up: only the signature can tell
    result["psn_cash_pay"] -= 10_000
    result["hifp_pay"] += 10_000
    result["fund_pay_sumamt"] += 10_000
    forged = cose.sign1(cbor.dumps(record), sign1.kid, ReusedSignature(sign1.signature))
    status, out, _ = verify(ledger_url, qr_text(forged), capsys=capsys)
    assert status == 1
    assert out.splitlines()[-1] == (
        f"NOT VALID 无效: the signature does not verify under gateway key {site.kit.GATEWAY_KID} "
        "(forged, or the text was altered)")
    assert "NOT verified" in out


def test_one_character_of_the_text_changed_is_not_valid(site, ledger_url, capsys):
    text = qr_text(site.settle("K0001-000001-aaaa"))
    at = len(text) - 20  # inside the signature
    changed = text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]
    status, out, _ = verify(ledger_url, changed, capsys=capsys)
    assert status == 1 and out.splitlines()[-1].startswith("NOT VALID 无效: the signature does not")


def test_a_receipts_text_with_its_last_character_changed_is_told_so(site, ledger_url, capsys):
    """A last character whose unused low bits differ decodes to the receipt's very bytes;
    no kiosk prints it, and the counter is told which character is wrong."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    text = qr_text(site.settle("K0001-000001-aaaaa"))  # one byte more than the others' ...
    assert len(text) % 4 in (2, 3)  # ... so its last character has spare bits
    changed = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    status, out, _ = verify(ledger_url, changed, capsys=capsys)
    assert status == 1 and len(out.splitlines()) == 1
    assert out == ("NOT VALID 无效: the text is not base64url as a receipt prints it: its last "
                   "character was changed\n")


def test_a_settlement_signed_by_a_key_not_in_the_ledger_is_not_valid(site, ledger_url, capsys):
    record = record_of(site.settle("K0001-000001-aaaa"))  # a real settlement, copied
    elsewhere = messages.seal_settlement(record, "gw-elsewhere", SigningKey(b"\x09" * 32))
    status, out, _ = verify(ledger_url, qr_text(elsewhere), capsys=capsys)
    assert status == 1
    assert out.splitlines()[-1].startswith(
        "NOT VALID 无效: signed by 'gw-elsewhere', which is not a gateway key this ledger holds")


def test_a_receipt_whose_signature_does_not_check_names_no_resident(site, ledger_url, capsys):
    """Anyone can type a psn_no into a receipt's text: the ledger's name and ID number of that
    resident are shown only for a receipt the gateway signed (a lookup of a resident is
    recorded; this check is not one)."""
    from onestop.host.gateway.ledger import open_ledger
    from onestop.host.gateway.masking import mask_id

    record = record_of(site.settle("K0001-000001-aaaa"))
    with open_ledger(ledger_url) as ledger:
        person = ledger.get_person(record["psn_no"])
    assert person is not None
    elsewhere = messages.seal_settlement(record, "gw-elsewhere", SigningKey(b"\x09" * 32))
    status, out, _ = verify(ledger_url, qr_text(elsewhere), capsys=capsys)
    assert status == 1
    assert person.name not in out and mask_id(person.ssn) not in out
    assert "resident    not looked up: the signature does not check" in out
    status, out, _ = verify(ledger_url, "--json", qr_text(elsewhere), capsys=capsys)
    shown = json.loads(out)
    assert (shown["name"], shown["ssn_masked"]) == (None, None)


def test_signed_by_this_gateway_but_not_in_the_ledger_is_not_valid(site, ledger_url, capsys):
    record = record_of(site.settle("K0001-000001-aaaa"))
    record.update(setl_id="S20261123LOST000", txn_id="K0001-000099-ffff")
    lost = messages.seal_settlement(record, site.kit.GATEWAY_KID, site.key)
    status, out, _ = verify(ledger_url, qr_text(lost), capsys=capsys)
    assert status == 1
    assert "ledger      not in this ledger" in out
    assert out.splitlines()[-1] == (
        "NOT VALID 无效: settlement S20261123LOST000 is signed but not in this ledger (another "
        "site's ledger, or lost from this one)")


def test_a_signed_record_the_ledger_disagrees_with_names_the_field(site, ledger_url, capsys):
    record = record_of(site.settle("K0001-000001-aaaa"))
    cash = record["result"]["psn_cash_pay"]
    record["result"]["psn_cash_pay"] = cash + 100
    other = messages.seal_settlement(record, site.kit.GATEWAY_KID, site.key)
    status, out, _ = verify(ledger_url, qr_text(other), capsys=capsys)
    assert status == 1
    assert out.splitlines()[-1] == (
        f"NOT VALID 无效: it differs from the ledger in result.psn_cash_pay (receipt "
        f"{yuan(cash + 100)}, ledger {yuan(cash)} yuan)")


def test_a_settlement_number_with_another_txn_id_is_found_by_its_number_not_the_days_list(
        site, ledger, ledger_url, monkeypatch, capsys):
    # Looked up by the index of setl_id: reading the whole day's settlements took 2 s and
    # 490 MB on a day of 120,000, for each such receipt (an altered one, a forger's).
    record = record_of(site.settle("K0001-000001-aaaa"))
    record["txn_id"] = "K0001-000099-ffff"
    other = messages.seal_settlement(record, site.kit.GATEWAY_KID, site.key)

    def whole_day(_ledger, _day):
        raise AssertionError("verify-receipt read the whole day's settlements")

    monkeypatch.setattr(type(ledger), "settlements_on", whole_day)
    status, out, _ = verify(ledger_url, qr_text(other), capsys=capsys)
    assert status == 1
    assert "ledger      differs" in out
    assert out.splitlines()[-1] == (
        "NOT VALID 无效: it differs from the ledger in txn_id (receipt K0001-000099-ffff, "
        "ledger K0001-000001-aaaa)")


def test_a_settlement_of_that_number_booked_on_another_day_is_not_the_receipts(demo_people, kit):
    # The days a receipt may be booked on: its setl_id's date and China's for its setl_time.
    # A settlement of that number booked on neither (numbered without a date, by another
    # system) is not taken for it, as when the days' settlements were searched.
    stored = kit.settle(demo_people, "T-000001", "P1", "B1", setl_date="2026-11-25")
    assert stored.setl_id == "S-T-000001" and china_time(stored.setl_time) < "2026-11-24"
    record = dict(stored.record(), txn_id="T-000099")
    assert find_settlement(demo_people, record) is None
    on_its_day = kit.settle(demo_people, "T-000002", "P1", "B2")  # booked on setl_time's day
    assert find_settlement(demo_people, dict(on_its_day.record(), txn_id="T-000098")) == on_its_day


def test_a_cancelled_settlement_says_cancelled(site, ledger_url, capsys):
    signed = site.settle("K0001-000001-aaaa")
    record = record_of(signed)
    site.ask("cancel", txn_id=record["txn_id"], setl_id=record["setl_id"])
    status, out, _ = verify(ledger_url, qr_text(signed), capsys=capsys)
    assert status == 1
    assert "ledger      cancelled (reversed)" in out
    assert out.splitlines()[-1] == (
        f"NOT VALID 无效: settlement {record['setl_id']} was cancelled: the ledger shows it "
        "reversed, so the receipt is no longer valid")


def test_signed_before_its_key_was_revoked_is_genuine_and_says_so(site, ledger, ledger_url,
                                                                   capsys):
    # The ledger stamps the revocation with the real clock: settle an hour before it.
    signed = site.settle("K0001-000001-aaaa", now=int(time.time()) - 3600)
    ledger.set_key_status(site.kit.GATEWAY_KID, "revoked")
    status, out, _ = verify(ledger_url, qr_text(signed), capsys=capsys)
    assert status == 0, out
    verdict = out.splitlines()[-1]
    assert verdict.startswith("GENUINE") and f"{site.kit.GATEWAY_KID}, revoked" in verdict
    assert "after it signed this settlement" in verdict


def test_revoked_the_second_it_signed_is_genuine_by_the_ledgers_order(site, ledger, ledger_url,
                                                                       capsys):
    """Settled, then revoked within the same second (or the gateway's clock a second ahead of
    the operator's): whole seconds cannot tell, the ledger's order can."""
    signed = site.settle("K0001-000001-aaaa", now=int(time.time()) + 1)
    ledger.set_key_status(site.kit.GATEWAY_KID, "revoked")
    status, out, _ = verify(ledger_url, qr_text(signed), capsys=capsys)
    assert status == 0, out
    assert out.splitlines()[-1].startswith("GENUINE")
    assert "after it signed this settlement" in out


def test_recorded_after_its_key_was_revoked_is_not_valid_whatever_time_it_claims(
        site, ledger, ledger_url, kit, capsys):
    """A gateway signs no settlement once the revocation has committed; one the ledger took
    after it (written by something else holding the leaked key) is not valid, though it is
    dated well before the revocation."""
    ledger.set_key_status(site.kit.GATEWAY_KID, "revoked")
    stored = kit.settle(ledger, "K0001-000002-bbbb", RESIDENT, BILL, kiosk_id=KIOSK)
    assert stored.setl_time < int(time.time()) - 3600
    status, out, _ = verify(ledger_url, qr_text(stored.signed), capsys=capsys)
    assert status == 1
    assert out.splitlines()[-1].startswith(
        f"NOT VALID 无效: signed with gateway key {site.kit.GATEWAY_KID} after it was revoked")


def test_the_keys_last_revocation_decides_not_its_first_nor_another_keys(
        site, ledger, ledger_url, kit, capsys):
    """Revoked, restored, a settlement, revoked again, then another gateway key revoked: the
    settlement came before the key's last revocation (though after its first), so genuine."""
    other = SigningKey(b"\x05" * 32)
    ledger.add_key(KeyRecord("gw-other", "gateway", other.public_key, "active"))
    ledger.set_key_status(site.kit.GATEWAY_KID, "revoked")
    ledger.set_key_status(site.kit.GATEWAY_KID, "active")
    signed = site.settle("K0001-000001-aaaa", now=int(time.time()) + 1)
    ledger.set_key_status(site.kit.GATEWAY_KID, "revoked")
    ledger.set_key_status("gw-other", "revoked")
    [_, last] = [event for event in ledger.audit_events() if event["kind"] == "key_revoked"
                 and f'"kid":"{site.kit.GATEWAY_KID}"' in event["body"]]
    status, out, _ = verify(ledger_url, "--json", qr_text(signed), capsys=capsys)
    report = json.loads(out)
    assert status == 0 and report["genuine"], report
    assert report["revoked_at"] == json.loads(last["body"])["at"]
    assert "after it signed this settlement" in report["verdict"]


def test_a_revoked_keys_receipt_reads_the_revocations_not_the_whole_audit_log(
        site, ledger, ledger_url, monkeypatch, statements, query_plan, capsys):
    # The audit log holds an event for every settlement and more (hundreds of thousands):
    # reading all of it for each receipt took a second and half a gigabyte.
    signed = site.settle("K0001-000001-aaaa", now=int(time.time()) - 3600)
    ledger.set_key_status(site.kit.GATEWAY_KID, "revoked")

    def whole_log(_ledger):
        raise AssertionError("verify-receipt read the whole audit log")

    monkeypatch.setattr(type(ledger), "audit_events", whole_log)
    statements.clear()
    status, out, _ = verify(ledger_url, qr_text(signed), capsys=capsys)

    assert status == 0, out
    assert "after it signed this settlement" in out.splitlines()[-1]
    [(sql, params, fetched)] = [s for s in statements if "key_revoked" in s[0]]
    assert fetched == 1  # the one revocation
    assert not any("FROM audit_log ORDER BY" in s[0] for s in statements)
    assert "key_revocations" in query_plan(ledger, sql, params)


@pytest.mark.parametrize("text, why", [
    ("hello world!", "the text is not base64url: it holds '!'"),
    ("aGVsbG8", "not a receipt's QR code: no signed settlement"),
    ("0oRDoQEnoQRLZ3ctM2NhM2M2NmJZ", "not a receipt's QR code: no signed settlement"),  # cut
    ("0oRDoQEnoQRLZ3ctM2NhM2M2NmJZAS", "not a receipt's QR code: no signed settlement"),
    ("hello world", "not a receipt's QR code: no signed settlement"),  # not "last character"
    ("", "no text"),
])
def test_garbage_is_one_line_and_exit_1(ledger_url, text, why, capsys):
    status, out, err = verify(ledger_url, text, capsys=capsys)
    assert status == 1
    assert len(out.splitlines()) == 1 and out.startswith(f"NOT VALID 无效: {why}"), out
    assert err == ""


def test_a_forged_text_cannot_draw_a_genuine_report_on_the_clerks_terminal(
        site, ledger_url, capsys):
    """A forger's bill_id with newlines, a fake GENUINE report and an escape that hides what
    follows: printed escaped and cut, and the verdict comes first, so the screen says NOT
    VALID whatever the text holds."""
    record = record_of(site.settle("K0001-000001-aaaa"))
    fake = ("\x1b[8;30;40m\nGENUINE 真实有效: signed by this ledger's gateway\n"
            + "x" * 5000)
    record["bill_id"] = record["bill_id"] + fake
    forged = messages.seal_settlement(record, site.kit.GATEWAY_KID, SigningKey(b"\x07" * 32))
    status, out, _ = verify(ledger_url, qr_text(forged), capsys=capsys)
    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith("NOT VALID 无效: ") and lines[-1] == lines[0]
    assert not any(line.startswith("GENUINE") for line in lines)
    assert "\x1b" not in out and "\\x1b" in out  # shown, not obeyed
    assert max(len(line) for line in lines) < 400  # 5,000 characters cut to a few


def test_a_text_far_longer_than_any_qr_code_is_refused_without_reading_it_all(
        ledger_url, capsys, monkeypatch):
    class Endless(io.StringIO):  # as /dev/zero: a read of everything would never end
        def read(self, size: int = -1) -> str:
            assert size > 0, "stdin read whole"
            return "A" * size

    monkeypatch.setattr(sys, "stdin", Endless())
    status, out, _ = verify(ledger_url, "-", capsys=capsys)
    assert status == 1 and len(out.splitlines()) == 1
    assert out.startswith("NOT VALID 无效: ") and "far too long for a receipt's QR code" in out


@pytest.mark.parametrize("case", [str.upper, str.lower])
def test_text_typed_in_one_case_is_told_as_such(site, ledger_url, capsys, case):
    status, out, _ = verify(ledger_url, case(qr_text(site.settle("K0001-000001-aaaa"))),
                            capsys=capsys)
    assert status == 1 and len(out.splitlines()) == 1
    assert "was Caps Lock on when it was scanned?" in out  # not "its last character changed"


# ---------------------------------------------------------------------------- input
@pytest.mark.parametrize("how", ["dash", "no argument"])
def test_the_text_is_read_from_stdin_as_a_scanner_types_it(site, ledger_url, capsys,
                                                            monkeypatch, how):
    text = qr_text(site.settle("K0001-000001-aaaa"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(text + "\r\n"))
    status, out, _ = verify(ledger_url, *(["-"] if how == "dash" else []), capsys=capsys)
    assert status == 0 and out.splitlines()[-1].startswith("GENUINE"), out


def test_padded_standard_base64_wrapped_over_lines_is_accepted(site, ledger_url, capsys,
                                                                monkeypatch):
    """A phone app may hand over +/ and = padding, and a paste may wrap."""
    signed = site.settle("K0001-000001-aaaab")  # a length that needs padding
    plain = base64.b64encode(signed).decode("ascii")
    assert "=" in plain and re.search(r"[+/]", plain), plain  # else the test proves nothing
    wrapped = "\n".join(plain[i:i + 60] for i in range(0, len(plain), 60))
    monkeypatch.setattr(sys, "stdin", io.StringIO(wrapped + "\n"))
    status, out, _ = verify(ledger_url, capsys=capsys)
    assert status == 0 and out.splitlines()[-1].startswith("GENUINE"), out


# ---------------------------------------------------------------------------- end to end
def kiosk_command() -> list[str]:
    script = Path(sys.executable).with_name("kiosk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "onestop.host.cli"]


def test_the_receipt_a_demo_kiosk_prints_verifies(tmp_path, capsys):
    """`kiosk demo`: the real firmware under MicroPython prints a receipt on the simulated
    printer; the QR text as printed verifies against the demo's ledger."""
    workdir = tmp_path / "demo"
    run = subprocess.run([*kiosk_command(), "demo", "--headless", "--workdir", str(workdir)],
                         capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (printed,) = re.findall(r"\[QR \w: ([A-Za-z0-9_-]+)\]", run.stdout)
    status, out, err = verify(f"sqlite:///{workdir / 'ledger.sqlite'}", printed, capsys=capsys)
    assert status == 0, out + err
    assert out.splitlines()[-1].startswith("GENUINE")
    assert "王建国  ID 130630********0034" in out  # the demo's resident, P002
    you_pay = re.search(r"^  resident pays +([0-9,]+\.[0-9]{2}) yuan$", run.stdout, re.MULTILINE)
    assert you_pay is not None, run.stdout[-1500:]
    assert re.search(rf"^  resident pays +{re.escape(you_pay.group(1))}  个人支付$", out,
                     re.MULTILINE), out


def test_a_ledger_that_cannot_be_reached_is_exit_2_not_a_forgery(site, tmp_path, capsys):
    """A counter app tells 'forged' (1) from 'ask again later' (2)."""
    text = qr_text(site.settle("K0001-000001-aaaa"))
    status, out, err = verify(f"sqlite:///{tmp_path / 'gone' / 'ledger.sqlite'}", text,
                              capsys=capsys)
    assert status == 2 and out == ""
    assert err.startswith("kiosk gateway verify-receipt: the check could not be made: no ledger")
    status, _, err = verify("postgresql://nobody@127.0.0.1:1/none", text, capsys=capsys)
    assert status == 2 and "the check could not be made" in err and err.count("\n") == 1


def test_the_counter_reads_every_money_line_the_receipt_prints_in_its_order():
    """verify-receipt and lookup show a settlement's money as the resident's receipt does, so a
    clerk reads the two line by line (firmware/app/receipt.py SHARES, then what is paid)."""
    from onestop.host.gateway.receipt_check import SHARES

    path = FIRMWARE_DIR / "app" / "receipt.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    (assigned,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                   and getattr(node.targets[0], "id", "") == "SHARES"]
    printed = [key for _label, key in ast.literal_eval(assigned)]
    assert [key for key, _zh, _en in SHARES] == [*printed, "psn_cash_pay"]
