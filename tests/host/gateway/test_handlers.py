"""Request handlers on a real ledger (SQLite and PostgreSQL): what a kiosk is told, and what the
ledger holds afterwards. Every reply is sealed, so each one is also checked against frames.cddl.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from onestop.host.gateway.bills import demo_document
from onestop.host.gateway.bills import seed_demo as seed_demo_residents
from onestop.host.gateway.handlers import (
    BILLS_READ_AT_MOST,
    CARD_READ_VALID_S,
    Handled,
    Handlers,
)
from onestop.host.gateway.ledger import Bill, KeyRecord, Ledger, SignIn, open_ledger
from onestop.host.keys import SigningKey, VerifyingKey
from onestop.host.settlement import Claim, load_policy, settle
from onestop.protocol import cbor, framing, messages
from onestop.protocol.errors import ProtocolError

TZ = ZoneInfo("Asia/Shanghai")
NOW = int(datetime(2026, 11, 23, 10, 0, tzinfo=TZ).timestamp())
NEXT_DAY = NOW + 24 * 3600
GATEWAY_KID = "gateway-test"


def seed_demo(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """The demo residents and their bills (`kiosk gateway seed-demo`), by psn_no."""
    seed_demo_residents(ledger)
    return {resident["psn_no"]: resident for resident in demo_document()["residents"]}


def card_of(resident: dict[str, Any]) -> dict[str, str]:
    return {key: resident[key] for key in ("ssn", "card_no", "card_id", "name", "issue", "expiry")}


def demo_card(psn_no: str) -> dict[str, str]:
    """The card of demo resident psn_no (`kiosk gateway seed-demo`)."""
    (resident,) = [r for r in demo_document()["residents"] if r["psn_no"] == psn_no]
    return card_of(resident)


def card_of_person(ledger: Ledger, psn_no: str) -> dict[str, str]:
    """A valid card for a person in the ledger (demo or not), as a kiosk reads it."""
    person = ledger.get_person(psn_no)
    assert person is not None, psn_no
    return {"ssn": person.ssn, "card_no": person.card_no,
            "card_id": (person.card_no + "0" * 16)[:16], "name": person.name,
            "issue": "2020-01-01", "expiry": "2099-12-31"}


# The requests a kiosk makes about the resident whose card it has read (person_info).
ABOUT_THE_CARD_HOLDER = ("pending_bills", "pre_settle", "settle")


def enrol_signer(ledger: Ledger, kid: str, key: SigningKey) -> None:
    """The handlers' gateway key, active in the ledger, as `kiosk gateway init` records it: a
    settle signs only while it is."""
    ledger.add_key(KeyRecord(kid, "gateway", key.public_key, "active"))


class Rig:
    """Handlers with a gateway key, and requests as kiosks would send them."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.key = SigningKey.generate()
        self.handlers = Handlers(self.key, GATEWAY_KID, "reference", TZ)
        enrol_signer(ledger, GATEWAY_KID, self.key)
        self.residents = seed_demo(ledger)
        self._ctr = 0
        self.read: dict[str, str] = {}  # the psn_no of the card each kiosk read last

    def read_card(self, psn_no: str, kiosk: str = "K-01", now: int = NOW) -> Handled:
        """The resident puts their card in the kiosk: its person_info."""
        return self.ask("person_info", kiosk=kiosk, now=now,
                        card=card_of_person(self.ledger, psn_no))

    def ask(self, t: str, kiosk: str = "K-01", now: int = NOW, card_in: bool = True,
            **body: Any) -> Handled:
        """A request from `kiosk`. Unless card_in=False, one about a resident comes (as from a
        kiosk) after their card was read there: person_info first if it was not."""
        if card_in and t in ABOUT_THE_CARD_HOLDER and self.read.get(kiosk) != body["psn_no"]:
            self.read_card(body["psn_no"], kiosk, now)
        self._ctr += 1
        request = messages.validate(
            messages.request(t, kiosk, self._ctr, os.urandom(8), now, **body)
        )
        # as the server does: what can be done before the ledger's turn, then the turn
        handled = self.handlers.handle(self.ledger, request, now,
                                       self.handlers.ahead(request, now))
        messages.seal(handled.reply, GATEWAY_KID, self.key)  # raises unless frames.cddl-valid
        if t == "person_info":
            self.read[kiosk] = handled.reply["psn_no"]
        return handled

    def refused(self, t: str, **body: Any) -> str:
        with pytest.raises(ProtocolError) as caught:
            self.ask(t, **body)
        return caught.value.code

    def record(self, signed: bytes) -> dict[str, Any]:
        return messages.open_settlement(signed, VerifyingKey(self.key.public_key))

    def settle(
        self, psn_no: str, bill_id: str, txn_id: str, kiosk: str = "K-01", now: int = NOW
    ) -> Handled:
        pre = self.ask("pre_settle", kiosk=kiosk, now=now, psn_no=psn_no, bill_id=bill_id)
        cash = pre.reply["result"]["psn_cash_pay"]
        return self.ask(
            "settle",
            kiosk=kiosk,
            now=now,
            psn_no=psn_no,
            bill_id=bill_id,
            txn_id=txn_id,
            confirmed_cash=cash,
        )


@pytest.fixture
def rig(ledger: Ledger) -> Rig:
    return Rig(ledger)


def test_sign_in_tells_the_board_the_time_and_the_policy(rig: Rig) -> None:
    reply = rig.ask("sign_in", fw="1.0.0", board="esp32s3").reply
    # recorded: the operator sees when each kiosk was last alive, and what it runs
    assert rig.ledger.sign_ins() == {"K-01": SignIn(NOW, "1.0.0", "esp32s3")}
    assert reply["now"] == NOW
    assert reply["policy"] == "reference"
    assert reply["gateway"] == GATEWAY_KID
    assert reply["sign_no"].startswith("20261123100000")


def test_person_info_finds_the_card_holder_and_masks_the_ssn(rig: Rig) -> None:
    reply = rig.ask("person_info", card=card_of(rig.residents["P001"])).reply
    assert reply["psn_no"] == "P001"
    assert reply["name"] == "张秀兰"
    assert reply["ssn_masked"] == "130630********0048"
    assert (reply["insutype"], reply["insu_admdvs"], reply["assistance"]) == (390, "130630", "none")


def test_person_info_refuses_an_unknown_card_and_an_expired_one(rig: Rig) -> None:
    stranger = dict(card_of(rig.residents["P001"]), card_no="HB9999999")
    assert rig.refused("person_info", card=stranger) == "unknown_person"
    assert rig.refused("person_info", card=card_of(rig.residents["P007"])) == "card_expired"


def test_a_card_expiry_no_calendar_has_is_refused(rig: Rig) -> None:
    # the frame's pattern takes any digits: 9999-99-99 sorted after every real day, so passed
    for expiry in ("9999-99-99", "2030-02-30"):
        card = dict(card_of(rig.residents["P001"]), expiry=expiry)
        assert rig.refused("person_info", card=card) == "invalid"


def test_pending_bills_lists_the_residents_open_bills(rig: Rig) -> None:
    reply = rig.ask("pending_bills", psn_no="P001").reply
    assert [(b["bill_id"], b["medfee_sumamt"]) for b in reply["bills"]] == [
        ("B-130630-0001", 2_420_000)
    ]
    assert rig.refused("pending_bills", psn_no="P999", card_in=False) == "unknown_person"


def test_a_kiosk_asks_only_about_the_resident_whose_card_it_read_last(rig: Rig) -> None:
    # A kiosk's key alone (a stolen board's) must not open anyone's bills by psn_no, let alone
    # settle them: the person named must be the one whose card the kiosk read last.
    bill = rig.residents["P002"]["bills"][0]["bill_id"]
    rig.read_card("P001", kiosk="K-01")
    for t, body in (("pending_bills", {}), ("pre_settle", {"bill_id": bill}),
                    ("settle", {"bill_id": bill, "txn_id": "TXN-NOTREAD1", "confirmed_cash": 0})):
        # another resident at this kiosk; this resident at a kiosk that never read the card
        assert rig.refused(t, psn_no="P002", card_in=False, **body) == "unknown_person"
        assert rig.refused(t, psn_no="P002", kiosk="K-02", card_in=False,
                           **body) == "unknown_person"
    assert rig.ledger.get_settlement("TXN-NOTREAD1") is None
    assert rig.ledger.get_bill(bill).status == "pending"
    # said exactly as for no one at all: the refusal tells a kiosk nothing of who is insured
    with pytest.raises(ProtocolError) as not_read:
        rig.ask("pending_bills", psn_no="P002", card_in=False)
    with pytest.raises(ProtocolError) as no_one:
        rig.ask("pending_bills", psn_no="P999", card_in=False)
    assert not_read.value.msg.replace("P002", "P999") == no_one.value.msg
    # the next card replaces the last: P001 is no longer this kiosk's to ask about
    rig.read_card("P002", kiosk="K-01")
    assert rig.ask("pending_bills", psn_no="P002", card_in=False).reply["bills"]
    assert rig.refused("pending_bills", psn_no="P001", card_in=False) == "unknown_person"
    # a card refused (expired) opens nothing, and ends the last resident's turn: another
    # card is in
    assert rig.refused("person_info", card=card_of(rig.residents["P007"])) == "card_expired"
    assert rig.refused("pending_bills", psn_no="P007", card_in=False) == "unknown_person"
    assert rig.refused("pending_bills", psn_no="P002", card_in=False) == "unknown_person"
    # and a card read answers for half an hour, not for ever
    rig.read_card("P002", kiosk="K-01")
    later = NOW + CARD_READ_VALID_S
    assert rig.ask("pending_bills", psn_no="P002", card_in=False, now=later).reply["bills"]
    assert rig.refused("pending_bills", psn_no="P002", card_in=False,
                       now=later + 1) == "unknown_person"


def test_once_the_gateways_key_is_revoked_a_settle_signs_nothing_and_a_retry_is_answered(
        rig: Rig) -> None:
    """A leaked key revoked by the operator: the next settle is refused (`unavailable`), in
    its own transaction, leaving the bill pending and the year's totals as they were; a retry
    of a settlement signed before the revocation still gets its stored bytes."""
    before = rig.settle("P002", "B-110102-0002", "TXN-BEFORE")
    rig.ledger.set_key_status(GATEWAY_KID, "revoked")
    totals = rig.ledger.accumulations("P001", 2026)
    pre = rig.ask("pre_settle", psn_no="P001", bill_id="B-130630-0001").reply
    with pytest.raises(ProtocolError) as refused:
        rig.ask("settle", psn_no="P001", bill_id="B-130630-0001", txn_id="TXN-AFTER",
                confirmed_cash=pre["result"]["psn_cash_pay"])
    assert refused.value.code == "unavailable"
    assert f"key {GATEWAY_KID} is revoked" in (refused.value.msg or "")
    assert rig.ledger.get_settlement("TXN-AFTER") is None
    assert rig.ledger.get_bill("B-130630-0001").status == "pending"
    assert rig.ledger.accumulations("P001", 2026) == totals
    cash = rig.record(before.reply["settlement"])["result"]["psn_cash_pay"]
    again = rig.ask("settle", psn_no="P002", bill_id="B-110102-0002", txn_id="TXN-BEFORE",
                    confirmed_cash=cash)
    assert again.settlement == "retry"
    assert again.reply["settlement"] == before.reply["settlement"]


def test_settle_stores_the_signed_record_the_resident_was_shown(rig: Rig) -> None:
    pre = rig.ask("pre_settle", psn_no="P001", bill_id="B-130630-0001").reply
    handled = rig.ask(
        "settle",
        psn_no="P001",
        bill_id="B-130630-0001",
        txn_id="TXN-0000001",
        confirmed_cash=pre["result"]["psn_cash_pay"],
    )
    assert handled.settlement == "new"
    record = rig.record(handled.reply["settlement"])
    assert record["result"] == pre["result"]
    assert (record["txn_id"], record["kiosk"], record["psn_no"], record["bill_id"]) == (
        "TXN-0000001",
        "K-01",
        "P001",
        "B-130630-0001",
    )
    assert record["setl_id"].startswith("S20261123")
    assert record["setl_time"] == NOW
    # what the engine says for this person on an empty year is what the ledger now holds
    person = rig.ledger.get_person("P001")
    bill = rig.ledger.get_bill("B-130630-0001")
    assert person is not None and bill is not None
    expected = settle(
        load_policy("reference"),
        Claim.from_bill(person, bill, "2026-11-23"),
        rig.ledger.accumulations("P999", 2026),
    )
    assert record["result"] == dict(expected.breakdown)
    assert _nonzero(rig.ledger.accumulations("P001", 2026)) == _nonzero(dict(expected.after))
    assert rig.ledger.pending_bills("P001") == []


def test_a_retry_gets_the_same_bytes_and_a_changed_request_is_a_conflict(rig: Rig) -> None:
    first = rig.settle("P001", "B-130630-0001", "TXN-0000001")
    accumulations = rig.ledger.accumulations("P001", 2026)
    cash = rig.record(first.reply["settlement"])["result"]["psn_cash_pay"]
    retry = rig.ask(
        "settle", psn_no="P001", bill_id="B-130630-0001", txn_id="TXN-0000001", confirmed_cash=cash
    )
    assert retry.settlement == "retry"
    assert retry.reply["settlement"] == first.reply["settlement"]
    assert rig.ledger.accumulations("P001", 2026) == accumulations
    assert (
        rig.refused(
            "settle",
            psn_no="P001",
            bill_id="B-130630-0001",
            txn_id="TXN-0000001",
            confirmed_cash=cash + 1,
        )
        == "txn_conflict"
    )
    assert (
        rig.refused(
            "settle",
            kiosk="K-02",
            psn_no="P001",
            bill_id="B-130630-0001",
            txn_id="TXN-0000001",
            confirmed_cash=cash,
        )
        == "txn_conflict"
    )


def test_a_retry_is_answered_after_the_card_read_has_lapsed(rig: Rig) -> None:
    """The settle was stored and its reply lost; the kiosk's next attempt comes after the card
    read stopped answering for the resident (half an hour since it, or, by a stolen key of the
    kiosk, another card read meanwhile). Refused unknown_person, the kiosk journaled a settlement
    the ledger holds as aborted: never printed, never asked about again. A retry is answered
    with the stored settlement whatever the kiosk read since; a new settle still is not."""
    rig.read_card("P001")
    first = rig.settle("P001", "B-130630-0001", "TXN-LAPSED1")
    cash = rig.record(first.reply["settlement"])["result"]["psn_cash_pay"]
    body = {"psn_no": "P001", "bill_id": "B-130630-0001", "txn_id": "TXN-LAPSED1",
            "confirmed_cash": cash}
    later = NOW + CARD_READ_VALID_S + 1
    retry = rig.ask("settle", card_in=False, now=later, **body)
    assert (retry.settlement, retry.reply["settlement"]) == ("retry", first.reply["settlement"])
    rig.read_card("P002")
    retry = rig.ask("settle", card_in=False, **body)
    assert (retry.settlement, retry.reply["settlement"]) == ("retry", first.reply["settlement"])
    # not a retry (another amount, another kiosk): the card read is asked for, as before
    assert rig.refused("settle", card_in=False, **dict(body, confirmed_cash=cash + 1)) \
        == "unknown_person"
    assert rig.refused("settle", card_in=False, kiosk="K-02", **body) == "unknown_person"
    assert rig.refused("settle", card_in=False, now=later, **dict(
        body, txn_id="TXN-LAPSED2")) == "unknown_person"


def test_a_changed_amount_is_refused_and_nothing_is_written(rig: Rig) -> None:
    pre = rig.ask("pre_settle", psn_no="P001", bill_id="B-130630-0001").reply
    with pytest.raises(ProtocolError) as caught:
        rig.ask(
            "settle",
            psn_no="P001",
            bill_id="B-130630-0001",
            txn_id="TXN-0000001",
            confirmed_cash=pre["result"]["psn_cash_pay"] - 100,
        )
    assert caught.value.code == "amount_changed"
    assert str(pre["result"]["psn_cash_pay"]) in caught.value.msg
    assert rig.ledger.get_settlement("TXN-0000001") is None
    assert [b.bill_id for b in rig.ledger.pending_bills("P001")] == ["B-130630-0001"]
    assert _nonzero(rig.ledger.accumulations("P001", 2026)) == {}


def test_a_settle_is_priced_again_when_the_accumulations_changed_since_its_pre_settle(
        rig: Rig) -> None:
    """The gateway settles a kiosk's bill with the outcome of its pre_settle, signed before
    the ledger's turn, only if the ledger still holds what it was computed from. Here another
    kiosk settled the resident's other stay in between, which used most of the year's cap: the
    settlement is computed on the accumulations as they are now (the kiosk, told the amount
    changed, confirmed the new one)."""
    stays = [Bill(bill_id=f"B-STAY-{n}", psn_no="P005", fixmedins_name="涞源县医院",
                  mdtrtarea_admvs="130630", med_type="inpatient", hosp_lv=2, referral=False,
                  date="2026-11-22", items=({"name": "治疗", "class": "A", "amount": 15_000_000},))
             for n in (1, 2)]
    for stay in stays:
        rig.ledger.upsert_bill(stay)
    shown = rig.ask("pre_settle", psn_no="P005", bill_id="B-STAY-1").reply["result"]
    rig.settle("P005", "B-STAY-2", "TXN-STAY-2", kiosk="K-02")
    person = rig.ledger.get_person("P005")
    assert person is not None
    now_owed = settle(load_policy("reference"), Claim.from_bill(person, stays[0], "2026-11-23"),
                      rig.ledger.accumulations("P005", 2026))
    # the basic insurance's annual cap is mostly used: the resident now pays more
    assert now_owed.breakdown["hifp_pay"] < shown["hifp_pay"]
    assert now_owed.breakdown["psn_cash_pay"] > shown["psn_cash_pay"]

    handled = rig.ask("settle", psn_no="P005", bill_id="B-STAY-1", txn_id="TXN-STAY-1",
                      confirmed_cash=now_owed.breakdown["psn_cash_pay"])

    assert rig.record(handled.reply["settlement"])["result"] == dict(now_owed.breakdown)
    stored = rig.ledger.get_settlement("TXN-STAY-1")
    assert stored is not None and stored.delta == dict(now_owed.delta)


def test_a_settle_of_what_its_pre_settle_priced_is_stored_as_shown(rig: Rig) -> None:
    """The usual visit: the pre_settle's outcome is the settlement, its record signed with the
    settle's own time and numbers."""
    shown = rig.ask("pre_settle", psn_no="P001", bill_id="B-130630-0001").reply["result"]
    handled = rig.ask("settle", psn_no="P001", bill_id="B-130630-0001", txn_id="TXN-0000001",
                      now=NOW + 90, confirmed_cash=shown["psn_cash_pay"])
    record = rig.record(handled.reply["settlement"])
    assert record["result"] == shown
    assert (record["txn_id"], record["kiosk"], record["setl_time"]) == ("TXN-0000001", "K-01",
                                                                         NOW + 90)
    stored = rig.ledger.get_settlement("TXN-0000001")
    assert stored is not None and stored.signed == handled.reply["settlement"]
    assert stored.setl_id == record["setl_id"] and stored.setl_time == NOW + 90


def test_a_kiosks_pre_settle_is_kept_only_until_its_settle_or_the_next_card(rig: Rig) -> None:
    """What the gateway keeps of a pre_settle (the resident's data, the bill) lasts only the
    visit: gone once its settle is done or refused, or another card is read; a bill of
    thousands of items is not kept at all (megabytes a kiosk)."""
    kept = rig.handlers._priced
    rig.ask("pre_settle", psn_no="P001", bill_id="B-130630-0001")
    assert set(kept) == {"K-01"}
    rig.read_card("P003")  # the resident left; another card
    assert kept == {}
    rig.settle("P003", "B-130630-0003", "TXN-0000003")
    assert kept == {}
    rig.ask("pre_settle", psn_no="P001", bill_id="B-130630-0001")
    assert rig.refused("settle", psn_no="P001", bill_id="B-130630-0001", txn_id="TXN-0000001",
                       confirmed_cash=1) == "amount_changed"
    assert kept == {}
    rig.ledger.upsert_bill(Bill(
        bill_id="B-LONG-1", psn_no="P001", fixmedins_name="涞源县医院", mdtrtarea_admvs="130630",
        med_type="outpatient_chronic", hosp_lv=1, referral=False, date="2026-11-22",
        items=tuple({"name": f"药品{n:04d}", "class": "A", "amount": 100} for n in range(3000))))
    long_one = rig.ask("pre_settle", psn_no="P001", bill_id="B-LONG-1").reply["result"]
    assert kept == {}
    handled = rig.ask("settle", psn_no="P001", bill_id="B-LONG-1", txn_id="TXN-LONG-1",
                      confirmed_cash=long_one["psn_cash_pay"])
    assert rig.record(handled.reply["settlement"])["result"] == long_one


def test_a_settled_bill_is_refused_to_another_txn_and_unknown_bills_are_named(rig: Rig) -> None:
    rig.settle("P001", "B-130630-0001", "TXN-0000001")
    assert rig.refused("pre_settle", psn_no="P001", bill_id="B-130630-0001") == "bill_settled"
    assert (
        rig.refused(
            "settle", psn_no="P001", bill_id="B-130630-0001", txn_id="TXN-0000002", confirmed_cash=0
        )
        == "bill_settled"
    )
    assert rig.refused("pre_settle", psn_no="P002", bill_id="B-130630-0003") == "unknown_bill"
    assert (
        rig.refused(
            "settle", psn_no="P001", bill_id="B-NOPE", txn_id="TXN-0000003", confirmed_cash=0
        )
        == "unknown_bill"
    )


def test_settlement_query_answers_settled_not_found_and_cancelled(rig: Rig) -> None:
    query = rig.ask("settlement_query", txn_id="TXN-0000001").reply
    assert query["status"] == "not_found" and "settlement" not in query
    settled = rig.settle("P001", "B-130630-0001", "TXN-0000001")
    query = rig.ask("settlement_query", txn_id="TXN-0000001").reply
    assert query["status"] == "settled"
    assert query["settlement"] == settled.reply["settlement"]
    # another kiosk is not told about this kiosk's settlements
    assert (
        rig.ask("settlement_query", kiosk="K-02", txn_id="TXN-0000001").reply["status"]
        == "not_found"
    )
    setl_id = rig.record(settled.reply["settlement"])["setl_id"]
    rig.ask("cancel", txn_id="TXN-0000001", setl_id=setl_id)
    query = rig.ask("settlement_query", txn_id="TXN-0000001").reply
    assert query["status"] == "cancelled"
    assert query["settlement"] == settled.reply["settlement"]


def test_cancel_gives_back_the_accumulations_and_reopens_the_bill(rig: Rig) -> None:
    before = rig.ledger.accumulations("P005", 2026)
    settled = rig.settle("P005", "B-130602-0005", "TXN-0000005")
    assert rig.ledger.accumulations("P005", 2026) != before
    setl_id = rig.record(settled.reply["settlement"])["setl_id"]
    reply = rig.ask("cancel", txn_id="TXN-0000005", setl_id=setl_id).reply
    assert (reply["txn_id"], reply["setl_id"]) == ("TXN-0000005", setl_id)
    assert _nonzero(rig.ledger.accumulations("P005", 2026)) == _nonzero(before)
    assert [b.bill_id for b in rig.ledger.pending_bills("P005")] == ["B-130602-0005"]
    # a late retry of the cancelled txn is not answered as if it still stood
    cash = rig.record(settled.reply["settlement"])["result"]["psn_cash_pay"]
    assert rig.refused("settle", psn_no="P005", bill_id="B-130602-0005", txn_id="TXN-0000005",
                       confirmed_cash=cash) == "txn_conflict"
    # and the bill can be settled again, as new
    again = rig.settle("P005", "B-130602-0005", "TXN-0000006")
    assert again.settlement == "new"


def test_cancel_is_refused_to_another_kiosk_another_day_and_a_wrong_setl_id(rig: Rig) -> None:
    settled = rig.settle("P001", "B-130630-0001", "TXN-0000001")
    setl_id = rig.record(settled.reply["settlement"])["setl_id"]
    # another kiosk learns nothing of it: not its setl_id, not which kiosk made it
    for tried in (setl_id, "S-WRONG"):
        with pytest.raises(ProtocolError) as caught:
            rig.ask("cancel", kiosk="K-02", txn_id="TXN-0000001", setl_id=tried)
        assert caught.value.code == "not_found"
        assert setl_id not in caught.value.msg and "K-01" not in caught.value.msg
    assert (
        rig.refused("cancel", now=NEXT_DAY, txn_id="TXN-0000001", setl_id=setl_id)
        == "cancel_refused"
    )
    assert rig.refused("cancel", txn_id="TXN-0000001", setl_id="S-WRONG") == "invalid"
    assert rig.refused("cancel", txn_id="TXN-0000404", setl_id=setl_id) == "not_found"
    assert rig.ledger.get_settlement("TXN-0000001").status == "settled"


def _large_inpatient_bill(bill_id: str) -> Bill:
    """A stay large enough that serious-illness insurance pays, at a band that depends on what
    the resident has already borne this year."""
    return Bill(bill_id=bill_id, psn_no="P001", fixmedins_name="县人民医院",
                mdtrtarea_admvs="130630", med_type="inpatient", hosp_lv=2, referral=False,
                date="2026-11-20", items=({"name": "住院", "class": "A", "amount": 8_000_000},))


def test_a_residents_settlements_are_cancelled_latest_first(rig: Rig) -> None:
    """The second stay's serious-illness share is computed on the year's burden including the
    first: cancelling the first alone would leave the second paying on a burden that is gone."""
    for bill_id in ("BIG-1", "BIG-2"):
        rig.ledger.upsert_bill(_large_inpatient_bill(bill_id))
    start = _nonzero(rig.ledger.accumulations("P001", 2026))
    first = rig.record(rig.settle("P001", "BIG-1", "TXN-0000011").reply["settlement"])
    second = rig.record(rig.settle("P001", "BIG-2", "TXN-0000012").reply["settlement"])
    assert second["result"]["hifmi_pay"] > first["result"]["hifmi_pay"]  # a higher band

    with pytest.raises(ProtocolError) as caught:
        rig.ask("cancel", txn_id="TXN-0000011", setl_id=first["setl_id"])
    assert caught.value.code == "cancel_refused"
    assert second["setl_id"] in caught.value.msg and "first" in caught.value.msg
    assert rig.ledger.get_settlement("TXN-0000011").status == "settled"

    rig.ask("cancel", txn_id="TXN-0000012", setl_id=second["setl_id"])
    rig.ask("cancel", txn_id="TXN-0000011", setl_id=first["setl_id"])
    assert _nonzero(rig.ledger.accumulations("P001", 2026)) == start
    # settled again the other way round, each stay gets what its place in the year gives it
    again = rig.record(rig.settle("P001", "BIG-2", "TXN-0000013").reply["settlement"])
    assert again["result"] == first["result"]


def test_a_long_list_of_bills_is_cut_to_the_oldest_that_fit_one_frame(rig: Rig) -> None:
    for n in range(60):
        rig.ledger.upsert_bill(Bill(
            bill_id=f"BB-{n:04d}-" + "x" * 56, psn_no="P001", fixmedins_name="涞源县中医医院" * 4,
            mdtrtarea_admvs="130630", med_type="outpatient_chronic", hosp_lv=1, referral=False,
            date=f"2026-{1 + n // 28:02d}-{1 + n % 28:02d}",
            items=({"name": "药", "class": "A", "amount": 1_000 + n},)))
    pending = rig.ledger.pending_bills("P001")

    handled = rig.ask("pending_bills", psn_no="P001")

    sealed = messages.seal(handled.reply, GATEWAY_KID, rig.key)
    framing.encode(sealed)  # sendable: within the frame limit
    listed = handled.reply["bills"]
    assert 4 <= len(listed) < len(pending)  # more than the kiosk's page shows
    assert [b["bill_id"] for b in listed] == [b.bill_id for b in pending[:len(listed)]]
    assert framing.MAX_FRAME - len(sealed) < len(cbor.dumps(listed[-1]))  # no room for one more
    assert handled.event == "bills_not_all_listed" and handled.warn
    assert handled.fields == {"psn_no": "P001", "listed": len(listed), "pending": len(pending)}
    # a short list is listed whole, with nothing to report
    short = rig.ask("pending_bills", psn_no="P003")
    assert len(short.reply["bills"]) == len(rig.ledger.pending_bills("P003")) and not short.event


def test_a_backlog_of_small_bills_is_counted_whole_though_only_a_frames_worth_is_read(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    # A clinic's system sent a resident hundreds of bills: the reply lists the oldest that fit
    # one frame (read with a LIMIT, not all of them), and the operator hears the whole count.
    backlog = 3 * BILLS_READ_AT_MOST
    for n in range(backlog):
        rig.ledger.upsert_bill(Bill(
            bill_id=f"S{n:03d}", psn_no="P001", fixmedins_name="所", mdtrtarea_admvs="130630",
            med_type="outpatient_chronic", hosp_lv=1, referral=False,
            date=f"2026-{1 + n // 28 % 12:02d}-{1 + n % 28:02d}",
            items=({"name": "药", "class": "A", "amount": 100},)))
    pending = rig.ledger.pending_bills("P001")
    assert len(pending) == backlog + 1  # and the demo's own bill
    assert rig.ledger.pending_bills("P001", limit=5) == pending[:5]
    assert rig.ledger.count_pending_bills("P001") == len(pending)
    read = []  # how many bills the handler had the ledger read
    ledger_pending_bills = rig.ledger.pending_bills

    def counted(psn_no, limit=None):
        bills = ledger_pending_bills(psn_no, limit)
        read.append(len(bills))
        return bills

    monkeypatch.setattr(rig.ledger, "pending_bills", counted)
    handled = rig.ask("pending_bills", psn_no="P001")
    assert read == [BILLS_READ_AT_MOST]
    listed = handled.reply["bills"]
    assert [b["bill_id"] for b in listed] == [b.bill_id for b in pending[:len(listed)]]
    assert len(listed) < BILLS_READ_AT_MOST  # a frame holds fewer than are read
    framing.encode(messages.seal(handled.reply, GATEWAY_KID, rig.key))
    assert handled.fields == {"psn_no": "P001", "listed": len(listed), "pending": len(pending)}


def test_a_person_of_another_insurance_type_is_not_settled_as_a_resident(rig: Rig) -> None:
    # a record stored before import-bills checked the type (or by another tool)
    employee = replace(rig.ledger.get_person("P001"), insutype=310)
    rig.ledger.upsert_person(employee)
    with pytest.raises(ProtocolError) as caught:
        rig.ask("pre_settle", psn_no="P001", bill_id="B-130630-0001")
    assert caught.value.code == "invalid" and "insurance type 310" in caught.value.msg
    assert rig.refused("settle", psn_no="P001", bill_id="B-130630-0001", txn_id="TXN-0000310",
                       confirmed_cash=0) == "invalid"
    assert rig.ledger.get_settlement("TXN-0000310") is None


def test_receipt_printed_is_recorded_for_the_kiosks_own_settlement(rig: Rig) -> None:
    settled = rig.settle("P001", "B-130630-0001", "TXN-0000001")
    setl_id = rig.record(settled.reply["settlement"])["setl_id"]
    assert rig.refused("receipt_printed", txn_id="TXN-0000001", setl_id="S-WRONG") == "invalid"
    assert (
        rig.refused("receipt_printed", kiosk="K-02", txn_id="TXN-0000001", setl_id=setl_id)
        == "not_found"
    )
    assert rig.ledger.get_settlement("TXN-0000001").receipt_printed is False
    reply = rig.ask("receipt_printed", txn_id="TXN-0000001", setl_id=setl_id).reply
    assert reply["txn_id"] == "TXN-0000001"
    assert rig.ledger.get_settlement("TXN-0000001").receipt_printed is True


def test_a_settlement_number_drawn_twice_in_a_day_is_drawn_again(rig: Rig) -> None:
    # The number is "S" + day + 40 random bits: a busy day's settlements meet now and then
    # (about 6 % a year at 20,000 a day). The resident is settled all the same, under a new
    # number of the same form, and the kiosk's query finds it.
    drawn = iter(["0123456789", "0123456789", "ABCDEF0123"])  # the first drawn again once
    rig.handlers._new_id = lambda: next(drawn)
    first = rig.settle("P001", "B-130630-0001", "TXN-0000001")
    assert rig.record(first.reply["settlement"])["setl_id"] == "S202611230123456789"

    second = rig.settle("P003", "B-130630-0003", "TXN-0000003", kiosk="K-02")

    assert second.settlement == "new"
    record = rig.record(second.reply["settlement"])
    assert record["setl_id"] == "S20261123ABCDEF0123"  # same form: printed and in the QR code
    assert second.fields["setl_id"] == record["setl_id"]
    assert rig.ledger.get_settlement("TXN-0000003").setl_id == record["setl_id"]
    query = rig.ask("settlement_query", kiosk="K-02", txn_id="TXN-0000003").reply
    assert query["status"] == "settled" and query["settlement"] == second.reply["settlement"]
    assert rig.ledger.get_settlement("TXN-0000001").setl_id == "S202611230123456789"


def test_reconcile_balances_the_kiosks_day_or_reports_the_gateways_totals(rig: Rig) -> None:
    settled = rig.settle("P001", "B-130630-0001", "TXN-0000001")
    rig.settle("P003", "B-130630-0003", "TXN-0000003", kiosk="K-02")  # not K-01's
    result = rig.record(settled.reply["settlement"])["result"]
    ours = {
        "count": 1,
        **{
            k: result[k]
            for k in (
                "medfee_sumamt",
                "hifp_pay",
                "hifmi_pay",
                "maf_pay",
                "fund_pay_sumamt",
                "psn_cash_pay",
            )
        },
    }
    balanced = rig.ask("reconcile", date="2026-11-23", totals=ours)
    assert balanced.reply["stmt_rslt"] == 0
    assert balanced.reply["totals"] == ours
    off = dict(ours, psn_cash_pay=ours["psn_cash_pay"] + 1)
    mismatch = rig.ask("reconcile", date="2026-11-23", totals=off)
    assert mismatch.reply["stmt_rslt"] == 1
    assert mismatch.reply["totals"] == ours
    assert mismatch.event == "reconcile_mismatch"
    assert mismatch.fields["mismatched"] == ["psn_cash_pay"]
    # a day no calendar has is refused, not "balanced" with nothing on either side
    zero = dict.fromkeys(ours, 0)
    assert rig.refused("reconcile", date="2026-02-30", totals=zero) == "invalid"
    # nor is a day still to come (today is 2026-11-23 here): nothing settled on it yet
    assert rig.refused("reconcile", date="2026-11-24", totals=zero) == "invalid"
    assert rig.ask("reconcile", date="2026-11-22", totals=zero).reply["stmt_rslt"] == 0


def test_a_bill_dated_after_the_gateways_today_is_not_priced_or_settled(rig: Rig) -> None:
    # A gateway host whose clock is behind (booted without its time: 1970) settled a bill of
    # 2026 into 1970's accumulations, fresh caps and all, and the audit found nothing wrong.
    long_ago = int(datetime(1970, 1, 11, 10, 0, tzinfo=TZ).timestamp())
    bill = "B-130630-0001"  # dated 2026-11-22
    for t, body in (("pre_settle", {}),
                    ("settle", {"txn_id": "TXN-CLOCK-01", "confirmed_cash": 0})):
        with pytest.raises(ProtocolError) as refused:
            rig.ask(t, now=long_ago, psn_no="P001", bill_id=bill, **body)
        assert refused.value.code == "invalid"
        assert "after today (1970-01-11) by the gateway's clock" in refused.value.msg
    assert rig.ledger.get_settlement("TXN-CLOCK-01") is None
    assert rig.ledger.get_bill(bill).status == "pending"
    # nor offered: the bills page lists what can be settled
    listed = rig.ask("pending_bills", now=long_ago, psn_no="P001").reply["bills"]
    assert bill not in [b["bill_id"] for b in listed]
    rig.read_card("P001")  # the clock right (the card read in 1970 answers no more)
    assert rig.settle("P001", bill, "TXN-CLOCK-02").settlement == "new"


def test_simultaneous_settlements_for_one_person_stay_exact(rig: Rig, ledger_url: str) -> None:
    """Kiosks settling the same resident at once: each settlement is computed on the
    accumulations the previous one left, whatever the order."""
    person = rig.ledger.get_person("P005")
    assert person is not None
    bills = [
        Bill(
            bill_id=f"B-RACE-{n}",
            psn_no="P005",
            fixmedins_name="涞源县医院",
            mdtrtarea_admvs="130630",
            med_type="inpatient",
            hosp_lv=2,
            referral=False,
            date="2026-11-22",
            items=({"name": "治疗", "class": "A", "amount": 900_000 + 10_000 * n},),
        )
        for n in range(6)
    ]
    for bill in bills:
        rig.ledger.upsert_bill(bill)
    start = rig.ledger.accumulations("P005", 2026)
    # pre_settle each on the same starting point: the kiosk confirms what it was shown; the
    # gateway recomputes under the person's lock, so some will be refused as amount_changed
    shown = {
        b.bill_id: rig.ask("pre_settle", psn_no="P005", bill_id=b.bill_id).reply["result"][
            "psn_cash_pay"
        ]
        for b in bills
    }
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(len(bills))
    ledgers = [open_ledger(ledger_url) for _ in bills]

    def kiosk(index: int, bill: Bill) -> None:
        request = messages.request(
            "settle",
            f"K-{index:02d}",
            1,
            os.urandom(8),
            NOW,
            psn_no="P005",
            bill_id=bill.bill_id,
            txn_id=f"TXN-RACE-{index:04d}",
            confirmed_cash=shown[bill.bill_id],
        )
        barrier.wait()
        try:
            rig.handlers.handle(ledgers[index], request, NOW)
            outcomes[bill.bill_id] = "settled"
        except ProtocolError as exc:
            outcomes[bill.bill_id] = exc.code

    for index in range(len(bills)):  # the resident's card at each kiosk
        rig.read_card("P005", f"K-{index:02d}")
    threads = [threading.Thread(target=kiosk, args=(n, b)) for n, b in enumerate(bills)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in ledgers:
        opened.close()
    assert set(outcomes.values()) <= {"settled", "amount_changed"}
    assert "settled" in outcomes.values()
    # replay the stored settlements in commit order through the engine: same figures, and the
    # accumulations are exactly the last one's `after`
    stored = [s for b in bills if (s := _settlement_of(rig.ledger, b.bill_id))]
    policy = load_policy("reference")
    accumulations = start
    for settlement in _commit_order(rig.ledger, stored):
        bill = rig.ledger.get_bill(settlement.bill_id)
        assert bill is not None
        outcome = settle(policy, Claim.from_bill(person, bill, "2026-11-23"), accumulations)
        assert dict(outcome.breakdown) == settlement.result
        accumulations = dict(outcome.after)
    assert _nonzero(rig.ledger.accumulations("P005", 2026)) == _nonzero(accumulations)


def _nonzero(accumulations: dict[str, int]) -> dict[str, int]:
    """Accumulations compared by value: an absent key and a zero mean the same."""
    return {key: value for key, value in accumulations.items() if value}


def _settlement_of(ledger: Ledger, bill_id: str) -> Any:
    for settlement in ledger.settlements_on("2026-11-23"):
        if settlement.bill_id == bill_id and settlement.status == "settled":
            return settlement
    return None


def _commit_order(ledger: Ledger, stored: list[Any]) -> list[Any]:
    """The audit log records the order settlements committed in."""
    order = [e["txn_id"] for e in ledger.audit_events() if e["kind"] == "settled"]
    by_txn = {s.txn_id: s for s in stored}
    return [by_txn[txn_id] for txn_id in order if txn_id in by_txn]
