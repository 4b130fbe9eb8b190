"""`audit`: a ledger used normally verifies; any change made behind the ledger's back — in the
database file or tables directly — is found and named.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import replace

import psycopg
import pytest
from onestop.host.gateway.audit import audit
from onestop.host.gateway.config import parse_ledger_url
from onestop.host.gateway.ledger import KeyRecord, open_ledger
from onestop.host.gateway.ledger.chain import canonical_json, digest_hex, event_hash
from onestop.host.keys import SigningKey
from onestop.protocol import cose, messages


class RawDatabase:
    """The ledger's database opened directly, as someone with file or table access would."""

    def __init__(self, url: str) -> None:
        self.location = parse_ledger_url(url)

    def run(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.location.backend == "sqlite":
            with closing(sqlite3.connect(self.location.path)) as conn, conn:
                return conn.execute(sql, params).fetchall()
        options = f"-c search_path={self.location.schema}"
        with psycopg.connect(self.location.dsn, options=options, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def rewrite_event(self, seq: int, change) -> None:
        """Change event `seq`'s body and re-hash it and every later event, and the head: a
        consistent forgery of the whole chain."""
        events = self.run("SELECT seq, body FROM audit_log WHERE seq >= ? ORDER BY seq", (seq,))
        (prev,) = self.run("SELECT prev_hash FROM audit_log WHERE seq = ?", (seq,))[0]
        for number, body in events:
            if number == seq:
                body = canonical_json(change(json.loads(body)))
            digest = event_hash(prev, body)
            self.run(
                "UPDATE audit_log SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (body, prev, digest, number),
            )
            prev = digest
        self.run("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))


@pytest.fixture
def busy(demo_people, kit):
    """A ledger that has seen a bit of everything."""
    demo_people.add_key(KeyRecord("kiosk-01", "kiosk", bytes(32), "active"))
    demo_people.add_key(KeyRecord("kiosk-02", "kiosk", bytes(range(32)), "active"))
    demo_people.set_key_status("kiosk-02", "revoked")
    demo_people.seed_accumulations("P2", kit.YEAR, {"serious_burden": 6_000_000})
    kit.settle(demo_people, "T-000001", "P1", "B1")
    kit.settle(demo_people, "T-000002", "P1", "B2")
    kit.settle(demo_people, "T-000003", "P2", "B4")
    demo_people.mark_receipt_printed("T-000001")
    demo_people.cancel("T-000002", kit.KIOSK, kit.SETTLE_DAY)
    demo_people.upsert_bill(kit.bill("B3", "P1", amounts=(77_000,)))  # a clinic's correction
    return demo_people


def problems_after(ledger, ledger_url, tamper) -> list[str]:
    assert audit(ledger).ok  # clean before
    tamper(RawDatabase(ledger_url))
    return audit(ledger).problems


def test_a_ledger_used_normally_verifies(busy):
    report = audit(busy)
    assert report.ok, report.problems
    assert (report.settlements, report.cancelled) == (3, 1)
    assert report.events == len(busy.audit_events())
    assert report.head_hash == busy.audit_events()[-1]["hash"]


def test_an_empty_ledger_verifies(ledger):
    assert audit(ledger).ok


def one(problems: list[str], *words: str) -> None:
    assert problems, "the tampering went unnoticed"
    assert any(all(word in p for word in words) for p in problems), problems


def test_a_changed_settlement_amount_is_found(busy, ledger_url):
    def shift_money(db):
        (result,) = db.run("SELECT result FROM settlements WHERE txn_id = 'T-000001'")[0]
        result = json.loads(result)
        result["hifp_pay"] += 100  # still adds up: only the audit log can tell
        result["fund_pay_sumamt"] += 100
        result["psn_cash_pay"] -= 100
        db.run(
            "UPDATE settlements SET result = ? WHERE txn_id = 'T-000001'",
            (canonical_json(result),),
        )

    one(problems_after(busy, ledger_url, shift_money), "settlement T-000001: result changed")


def test_changed_accumulations_are_found(busy, ledger_url, kit):
    def lower_burden(db):
        db.run("UPDATE accumulations SET amounts = '{}' WHERE psn_no = 'P2'")

    one(problems_after(busy, ledger_url, lower_burden), "accumulations of P2", "serious_burden")


def test_an_edited_audit_event_is_found(busy, ledger_url):
    def edit(db):
        seq, body = db.run("SELECT seq, body FROM audit_log WHERE kind = 'settled' LIMIT 1")[0]
        body = json.loads(body)
        body["result"]["hifp_pay"] += 1
        db.run("UPDATE audit_log SET body = ? WHERE seq = ?", (canonical_json(body), seq))

    one(problems_after(busy, ledger_url, edit), "hash does not match")


def test_the_policy_a_settlement_was_settled_by_cannot_be_changed_unseen(busy, ledger_url):
    # It lives in the settled event only (no column to compare with): the chain guards it.
    def claim_another_policy(db):
        seq, body = db.run("SELECT seq, body FROM audit_log WHERE kind = 'settled' LIMIT 1")[0]
        body = json.loads(body)
        body["policy"] = {"name": "reference", "digest": "0" * 16}
        db.run("UPDATE audit_log SET body = ? WHERE seq = ?", (canonical_json(body), seq))

    one(problems_after(busy, ledger_url, claim_another_policy), "hash does not match")


def test_an_event_rehashed_alone_breaks_the_link_to_the_next(busy, ledger_url):
    def rehash_one(db):
        seq, prev, body = db.run(
            "SELECT seq, prev_hash, body FROM audit_log WHERE kind = 'key_revoked'"
        )[0]
        body = body.replace('"revoked"', '"active"')
        db.run(
            "UPDATE audit_log SET body = ?, hash = ? WHERE seq = ?",
            (body, event_hash(prev, body), seq),
        )

    one(problems_after(busy, ledger_url, rehash_one), "does not link")


def test_a_removed_last_event_is_found(busy, ledger_url):
    def drop_tail(db):
        db.run("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")

    one(problems_after(busy, ledger_url, drop_tail), "head")


def test_a_deleted_settlement_is_found(busy, ledger_url):
    def delete(db):
        db.run("DELETE FROM settlements WHERE txn_id = 'T-000003'")

    problems = problems_after(busy, ledger_url, delete)
    one(problems, "settlement T-000003", "missing from the ledger")


def test_a_settlement_cancelled_behind_the_ledger_is_found(busy, ledger_url):
    def cancel_quietly(db):
        db.run("UPDATE settlements SET status = 'cancelled' WHERE txn_id = 'T-000001'")

    one(problems_after(busy, ledger_url, cancel_quietly), "T-000001 is cancelled")


def test_a_bill_reopened_behind_the_ledger_is_found(busy, ledger_url):
    def reopen(db):
        db.run("UPDATE bills SET status = 'pending' WHERE bill_id = 'B1'")

    one(problems_after(busy, ledger_url, reopen), "bill B1 is pending")


def test_a_swapped_kiosk_key_is_found(busy, ledger_url):
    def swap(db):
        db.run("UPDATE keys SET public_key = ? WHERE kid = 'kiosk-01'", (b"\xee" * 32,))

    one(problems_after(busy, ledger_url, swap), "key kiosk-01", "public_key")


def test_an_id_numbers_hidden_digits_changed_behind_the_ledger_are_found(busy, ledger_url):
    """The masked digits of an ID number (the birth date) are not in the events as text, yet a
    change to them is seen: a keyed digest of the whole number is."""
    (ssn,) = RawDatabase(ledger_url).run("SELECT ssn FROM persons WHERE psn_no = 'P1'")[0]

    def other_birthday(db):
        forged = ssn[:6] + "19610203" + ssn[14:]  # the same when masked
        db.run("UPDATE persons SET ssn = ? WHERE psn_no = 'P1'", (forged,))

    one(problems_after(busy, ledger_url, other_birthday), "person P1", "ssn_digest")
    bodies = [e["body"] for e in busy.audit_events() if e["kind"] == "person_added"]
    assert bodies and not any(ssn[6:14] in body for body in bodies)  # shown masked only


def test_a_removed_ssn_key_is_found(busy, ledger_url):
    def remove(db):
        db.run("DELETE FROM ledger_meta WHERE name = 'ssn_key'")

    one(problems_after(busy, ledger_url, remove), "person P1", "ssn_digest")


def test_a_resident_recorded_before_the_ssn_key_is_checked_from_their_next_update(
        ledger, ledger_url, monkeypatch):
    """A ledger upgraded from schema 4 has person events without a digest: they still verify,
    and the resident's next update brings the check."""
    from onestop.host.gateway.ledger import Person, sqlcore

    monkeypatch.setattr(sqlcore.SqlLedger, "_person_key", lambda self, tx: None)  # as before
    ledger.upsert_person(Person(psn_no="P1", name="测试居民1", ssn="13063019500100001X",
                                card_no="HB0000001", insu_admdvs="130630", assistance="none"))
    monkeypatch.undo()
    assert audit(ledger).ok
    person = ledger.get_person("P1")
    ledger.upsert_person(replace(person, name="测试居民一"))  # the next import corrects it

    def other_birthday(db):
        db.run("UPDATE persons SET ssn = ? WHERE psn_no = 'P1'",
               (person.ssn[:6] + "19610203" + person.ssn[14:],))

    one(problems_after(ledger, ledger_url, other_birthday), "person P1", "ssn_digest")


def test_a_consistently_forged_chain_still_fails_the_money_rules(busy, ledger_url):
    """Row and event forged together and the chain re-hashed: the breakdown no longer adds up
    (cash lowered, funds not raised), and the audit says so."""

    def forge(db):
        (result,) = db.run("SELECT result FROM settlements WHERE txn_id = 'T-000001'")[0]
        result = json.loads(result)
        result["psn_cash_pay"] -= 1_000
        db.run(
            "UPDATE settlements SET result = ? WHERE txn_id = 'T-000001'",
            (canonical_json(result),),
        )
        (seq,) = db.run("SELECT seq FROM audit_log WHERE kind = 'settled' ORDER BY seq")[0]
        db.rewrite_event(seq, lambda body: {**body, "result": result})

    problems = problems_after(busy, ledger_url, forge)
    one(problems, "settlement T-000001", "psn_cash_pay")
    assert not any("audit chain" in p for p in problems)  # the forgery itself is consistent


def forge_settlement(db, txn_id: str, **changes) -> None:
    """Change a settlement's row and its `settled` event alike and re-hash the chain: a forgery
    by someone with write access to the database who does not hold the gateway's key."""
    columns = ", ".join(changes)
    db.run(f"UPDATE settlements SET {', '.join(f'{c} = ?' for c in changes)} "
           "WHERE txn_id = ?", (*changes.values(), txn_id))
    (seq,) = db.run("SELECT seq FROM audit_log WHERE kind = 'settled' AND txn_id = ?",
                    (txn_id,))[0]

    def as_logged(body):
        for column, value in changes.items():
            if column == "signed":
                body["signed_sha256"] = digest_hex(value)
            elif column in ("result", "delta"):
                body[column] = json.loads(value)
            else:
                body[column] = value
        return body

    assert columns  # at least one change
    db.rewrite_event(seq, as_logged)


def test_money_moved_consistently_row_and_chain_is_found_by_the_gateways_signature(
    busy, ledger_url
):
    """Cash lowered and the basic fund raised alike, in the row and its event, the chain
    re-hashed: every sum adds up and the chain verifies, but the gateway never signed it."""

    def forge(db):
        (result,) = db.run("SELECT result FROM settlements WHERE txn_id = 'T-000001'")[0]
        result = json.loads(result)
        result["hifp_pay"] += 1_000
        result["fund_pay_sumamt"] += 1_000
        result["psn_cash_pay"] -= 1_000
        forge_settlement(db, "T-000001", result=canonical_json(result))

    problems = problems_after(busy, ledger_url, forge)
    assert problems == ["settlement T-000001: result differs from what the gateway signed "
                        "(changed behind the ledger)"]


def test_a_settlement_moved_to_another_kiosk_is_found(busy, ledger_url):
    problems = problems_after(busy, ledger_url,
                              lambda db: forge_settlement(db, "T-000003", kiosk_id="kiosk-02"))
    one(problems, "settlement T-000003", "kiosk", "what the gateway signed")


def test_a_settlement_moved_to_another_day_is_found(busy, ledger_url):
    """setl_date is what reconciliation counts a settlement on, and it is not signed: moved
    (row and event alike, chain re-hashed), it must still be the day of the signed setl_time."""
    problems = problems_after(busy, ledger_url,
                              lambda db: forge_settlement(db, "T-000003", setl_date="2020-01-01"))
    one(problems, "settlement T-000003", "setl_date 2020-01-01 is not the day of its signed")


def test_a_record_re_signed_with_a_key_that_is_not_the_gateways_is_found(busy, ledger_url, kit):
    """The forger signs his own record under the gateway's kid: it does not verify."""

    def re_sign(db):
        record = busy.get_settlement("T-000001").record()
        forged = messages.seal_settlement(record, kit.GATEWAY_KID, SigningKey(b"\x07" * 32))
        forge_settlement(db, "T-000001", signed=forged)

    one(problems_after(busy, ledger_url, re_sign), "settlement T-000001",
        f"does not verify under gateway key {kit.GATEWAY_KID}")


def test_a_record_signed_by_a_kiosk_key_is_found(busy, ledger_url):
    """kiosk-01 is in the ledger, but a kiosk's key does not vouch for a settlement."""

    def kiosk_signed(db):
        settlement = busy.get_settlement("T-000001")
        sign1 = cose.decode1(settlement.signed)
        forged = cose.sign1(sign1.payload, "kiosk-01", SigningKey(bytes(32)))
        forge_settlement(db, "T-000001", signed=forged)

    one(problems_after(busy, ledger_url, kiosk_signed), "settlement T-000001",
        "'kiosk-01', which is not a gateway key")


@pytest.mark.parametrize("signed", [b"", b"\xd2\x84garbage", b"signed:T-000001"])
def test_signed_bytes_that_are_no_cose_sign1_are_found(busy, ledger_url, signed):
    problems = problems_after(busy, ledger_url,
                              lambda db: forge_settlement(db, "T-000001", signed=signed))
    one(problems, "settlement T-000001", "not a gateway's COSE_Sign1")


def test_a_ledger_whose_gateway_key_was_removed_fails(busy, ledger_url, kit):
    """Keys are in the chain too; a gateway key deleted with its event re-hashed away leaves
    every settlement it signed unvouched for."""

    def drop_key(db):
        db.run("DELETE FROM keys WHERE kid = ?", (kit.GATEWAY_KID,))

    one(problems_after(busy, ledger_url, drop_key), "settlement T-000001",
        "not a gateway key the ledger holds")


def test_accumulations_stored_as_floats_are_found(busy, ledger_url):
    """6000000.0 equals 6000000, but the engine refuses it: that resident could settle no more
    (`internal` at pre_settle), and the audit said OK."""

    def floats(db):
        db.run("UPDATE accumulations SET amounts = ? WHERE psn_no = 'P2'",
               ('{"serious_burden":6000000.0}',))

    one(problems_after(busy, ledger_url, floats), "accumulations of P2", "serious_burden",
        "not a non-negative integer of fen")


def test_a_settlement_amount_stored_as_a_float_is_named_not_a_crash(busy, ledger_url):
    def float_amount(db):
        (result,) = db.run("SELECT result FROM settlements WHERE txn_id = 'T-000001'")[0]
        text = json.dumps({k: float(v) if k == "psn_cash_pay" else v
                           for k, v in json.loads(result).items()})
        db.run("UPDATE settlements SET result = ? WHERE txn_id = 'T-000001'", (text,))

    problems = problems_after(busy, ledger_url, float_amount)
    one(problems, "settlement T-000001", "psn_cash_pay")
    one(problems, "settlement T-000001: result changed")


@pytest.mark.parametrize("tamper", [
    "UPDATE settlements SET result = 'null' WHERE txn_id = 'T-000001'",
    "UPDATE settlements SET delta = '[1]' WHERE txn_id = 'T-000001'",
    "UPDATE accumulations SET amounts = 'null' WHERE psn_no = 'P2'",
    "UPDATE accumulations SET amounts = '{\"serious_burden\": \"6000000\"}' WHERE psn_no = 'P2'",
    "DELETE FROM audit_head",
])
def test_records_that_are_not_records_are_problems_not_tracebacks(busy, ledger_url, tamper):
    problems = problems_after(busy, ledger_url, lambda db: db.run(tamper))
    assert problems
    subject = {"settlements": "settlement T-000001", "accumulations": "accumulations of P2",
               "audit_head": "audit chain"}
    one(problems, next(v for k, v in subject.items() if k in tamper))


@pytest.mark.parametrize("tamper, found", [
    ("UPDATE settlements SET signed = 'abc' WHERE txn_id = 'T-000001'",
     "settlement T-000001: its signed record is not a gateway's COSE_Sign1"),
    ("UPDATE settlements SET setl_time = 'noon' WHERE txn_id = 'T-000001'",
     "the ledger's tables cannot be read as the ledger writes them"),
])
def test_sqlite_columns_holding_text_the_ledger_never_writes_are_problems(tmp_path, kit, capsys,
                                                                          tamper, found):
    """SQLite keeps whatever is written into a column: text where bytes or a time belong is
    named, with exit 1, not a traceback."""
    from onestop.host.cli import main

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger = open_ledger(url)
    ledger.init()
    kit.enrol_gateway(ledger)
    ledger.upsert_person(kit.person("P1", 1))
    ledger.upsert_bill(kit.bill("B1", "P1"))
    kit.settle(ledger, "T-000001", "P1", "B1")
    ledger.close()
    RawDatabase(url).run(tamper)
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["gateway", "audit", "--db", url])
    assert done.value.code == 1
    out = capsys.readouterr().out
    assert f"PROBLEM: {found}" in out and "audit FAILED" in out


def test_an_accumulation_change_that_does_not_follow_from_the_signed_amounts_is_found(
        busy, ledger_url):
    """A settlement's delta (what it added to the year's accumulations) is not signed. Lowered
    in the row, its event and the person's accumulations alike, the chain re-hashed, every sum
    and the signature still held: the serious-illness fund's cap would let later claims past
    it by the amount hidden. The delta must be what the signed breakdown adds."""

    def hide_serious_illness(db):
        (delta,) = db.run("SELECT delta FROM settlements WHERE txn_id = 'T-000003'")[0]
        delta = json.loads(delta)
        hidden = {key: delta[key] for key in ("hifmi_paid", "serious_burden")}
        assert all(hidden.values())  # something to hide
        forge_settlement(db, "T-000003", delta=canonical_json({**delta, **dict.fromkeys(
            hidden, 0)}))
        (amounts,) = db.run("SELECT amounts FROM accumulations WHERE psn_no = 'P2'")[0]
        amounts = json.loads(amounts)
        for key, value in hidden.items():
            amounts[key] -= value
        db.run("UPDATE accumulations SET amounts = ? WHERE psn_no = 'P2'",
               (canonical_json(amounts),))

    problems = problems_after(busy, ledger_url, hide_serious_illness)
    one(problems, "settlement T-000003", "accumulation change does not follow from its signed",
        "hifmi_paid is 0, should be")


def test_a_settlement_counted_in_another_years_accumulations_is_found(busy, ledger_url, kit):
    """Its delta moved to last year's accumulations (row, event and both years alike): this
    year's room under the caps grows by it."""

    def move_to_last_year(db):
        last = kit.YEAR - 1
        forge_settlement(db, "T-000003", acc_year=last)
        db.run("UPDATE accumulations SET year = ? WHERE psn_no = 'P2'", (last,))

    problems = problems_after(busy, ledger_url, move_to_last_year)
    one(problems, "settlement T-000003", f"counts in the accumulations of {kit.YEAR - 1}")


def test_a_bill_corrected_after_its_settlement_was_cancelled_is_no_problem(
        demo_people, kit):
    """Cancelled, a bill is pending again and its clinic may correct it, med_type included;
    settled again, both settlements are right: each by its bill as it stood then."""
    from dataclasses import replace

    kit.settle(demo_people, "T-000001", "P1", "B1")
    demo_people.cancel("T-000001", kit.KIOSK, kit.SETTLE_DAY)
    corrected = replace(kit.bill("B1", "P1"), med_type="outpatient_chronic")
    demo_people.upsert_bill(corrected)
    kit.settle(demo_people, "T-000002", "P1", "B1")
    report = audit(demo_people)
    assert report.ok, report.problems


def test_a_settlement_counted_in_its_bills_year_by_the_ledgers_default_is_no_problem(
        demo_people, kit):
    """Ledger.settle without a year counts a settlement in its bill's year (a bill treated on
    30 December, settled in the new year): not a problem, though the gateway passes the day's."""
    from dataclasses import replace

    demo_people.upsert_bill(replace(kit.bill("B9", "P1"), date=f"{kit.YEAR - 1}-12-30"))
    stored = kit.settle(demo_people, "T-000001", "P1", "B9")
    assert stored.acc_year == kit.YEAR - 1 and stored.setl_date.startswith(str(kit.YEAR))
    report = audit(demo_people)
    assert report.ok, report.problems


@pytest.mark.parametrize("tamper, found", [
    ("UPDATE audit_head SET hash = '00' WHERE id = 1",
     "the ledger's head names event {n} with a hash that is not that event's"),
    ("UPDATE audit_head SET seq = seq - 1 WHERE id = 1",
     "the ledger's head is event {m} but the log ends at event {n}"),
])
def test_a_changed_head_is_named_for_what_changed(busy, ledger_url, tamper, found):
    """The head's number or its hash: each said as it is (a changed hash was reported as
    "head is event 39 but the log ends at event 39")."""
    (last,) = RawDatabase(ledger_url).run("SELECT seq FROM audit_head WHERE id = 1")[0]
    problems = problems_after(busy, ledger_url, lambda db: db.run(tamper))
    one(problems, "audit chain: " + found.format(n=last, m=last - 1))


def test_a_ledger_that_lost_tables_is_damaged_and_init_does_not_remake_them(
        busy, ledger_url, capsys):
    """Someone dropped the audit tables: `init` would have made them again, empty, and the
    ledger would have served and audited as new. It is named damaged; nothing is written."""
    from onestop.host.cli import main
    from onestop.host.gateway.ledger import open_ledger

    busy.close()
    RawDatabase(ledger_url).run("DROP TABLE audit_head")
    RawDatabase(ledger_url).run("DROP TABLE audit_log")
    with pytest.raises(SystemExit) as done:
        main(["gateway", "init", "--db", ledger_url, "--key", "/nonexistent/never-made.key"])
    assert done.value.code != 0
    err = capsys.readouterr().err
    assert "is damaged" in err and "audit_log, audit_head" in err and "restore it" in err
    tables = {name for (name,) in RawDatabase(ledger_url).run(
        "SELECT name FROM sqlite_master WHERE type = 'table'")} if ledger_url.startswith(
        "sqlite") else {name for (name,) in RawDatabase(ledger_url).run(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()")}
    assert "audit_log" not in tables and "audit_head" not in tables  # not made again
    with open_ledger(ledger_url) as ledger, pytest.raises(Exception) as refused:
        ledger.init()
    assert "is damaged" in str(refused.value)
