"""Exactly-once settlement, cancel and receipts through the ledger API, on both backends."""

from __future__ import annotations

from dataclasses import replace

import pytest
from onestop.host.gateway.audit import audit
from onestop.host.gateway.ledger import (
    BillUnavailable,
    KeyRecord,
    LedgerError,
    RequestJob,
    TxnConflict,
    UnknownTxn,
    open_ledger,
)
from onestop.host.gateway.ledger.transactions import Tx
from onestop.host.keys import SigningKey


def test_settle_stores_the_settlement_marks_the_bill_and_adds_to_the_accumulations(
    demo_people, kit
):
    seen: list[dict[str, int]] = []
    digest = kit.digest("T-000001")
    build = kit.build("T-000001", digest, seen=seen)

    stored, created = demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1", build)

    assert created
    assert seen == [{}]  # the person's first settlement of the year starts from nothing
    assert stored.status == "settled" and stored.acc_year == kit.YEAR
    assert demo_people.get_settlement("T-000001") == stored
    assert [b.bill_id for b in demo_people.pending_bills("P1")] == ["B2", "B3"]
    assert demo_people.get_bill("B1").status == "settled"
    assert demo_people.accumulations("P1", kit.YEAR) == stored.delta


def test_the_next_settlement_is_built_on_the_accumulations_so_far(demo_people, kit):
    first = kit.settle(demo_people, "T-000001", "P1", "B1")
    seen: list[dict[str, int]] = []
    digest = kit.digest("T-000002")
    demo_people.settle(
        "T-000002", digest, kit.KIOSK, "P1", "B2", kit.build("T-000002", digest, seen=seen)
    )
    assert seen == [first.delta]
    assert demo_people.accumulations("P1", kit.YEAR) == {
        key: 2 * value for key, value in first.delta.items()
    }


def test_a_retry_returns_the_stored_settlement_byte_identical_without_building_again(
    demo_people, kit
):
    first = kit.settle(demo_people, "T-000001", "P1", "B1")
    digest = kit.digest("T-000001")

    def must_not_build(*_args):
        raise AssertionError("a retry must not settle again")

    again, created = demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1", must_not_build)

    assert not created
    assert again.signed == first.signed and again == first
    assert demo_people.accumulations("P1", kit.YEAR) == first.delta  # added once


def test_the_same_txn_id_with_another_request_is_a_conflict(demo_people, kit):
    kit.settle(demo_people, "T-000001", "P1", "B1")
    other = b"digest of a different request"
    with pytest.raises(TxnConflict, match="T-000001"):
        demo_people.settle("T-000001", other, kit.KIOSK, "P1", "B2", kit.build("T-000001", other))
    assert demo_people.get_bill("B2").status == "pending"


def test_a_retry_of_a_cancelled_settlement_is_answered_with_it_whatever_a_new_build_says(
    demo_people, kit
):
    # Its bill is pending again, so nothing but the txn_id tells the retry: a build that
    # refuses now (the amount changed since, a lapsed card read) must not be its answer.
    first = kit.settle(demo_people, "T-000001", "P1", "B1")
    demo_people.cancel("T-000001", kit.KIOSK, kit.SETTLE_DAY)
    assert demo_people.get_bill("B1").status == "pending"

    def refuse(*_args):
        raise ValueError("the amount to pay is now 1 fen, the resident confirmed another")

    again, created = demo_people.settle("T-000001", kit.digest("T-000001"), kit.KIOSK, "P1",
                                        "B1", refuse)
    assert not created
    assert again.status == "cancelled" and again.signed == first.signed
    assert demo_people.get_bill("B1").status == "pending"


@pytest.mark.parametrize(
    ("psn_no", "bill_id", "code"),
    [
        ("P1", "NO-SUCH-BILL", "unknown_bill"),
        ("P2", "B1", "unknown_bill"),  # someone else's bill
    ],
)
def test_a_bill_that_is_not_the_persons_is_refused(demo_people, kit, psn_no, bill_id, code):
    digest = kit.digest("T-000009")
    with pytest.raises(BillUnavailable) as caught:
        demo_people.settle(
            "T-000009", digest, kit.KIOSK, psn_no, bill_id, kit.build("T-000009", digest)
        )
    assert caught.value.code == code
    assert demo_people.get_settlement("T-000009") is None


def test_a_bill_already_settled_by_another_txn_is_refused(demo_people, kit):
    kit.settle(demo_people, "T-000001", "P1", "B1")
    digest = kit.digest("T-000002")
    with pytest.raises(BillUnavailable) as caught:
        demo_people.settle("T-000002", digest, kit.KIOSK, "P1", "B1", kit.build("T-000002", digest))
    assert caught.value.code == "bill_settled"
    assert demo_people.get_settlement("T-000002") is None


def test_a_bill_cancelled_while_the_settle_takes_it_is_settled(demo_people, kit, monkeypatch):
    # PostgreSQL: the statement taking the bill saw it settled; the cancel committed before the
    # next one. Played inside the settle's own transaction (the two writes around the take).
    first = kit.settle(demo_people, "T-000001", "P1", "B1")
    original = Tx.one

    def one(tx, sql, params=()):
        if not sql.startswith("UPDATE bills SET status = 'settled' WHERE bill_id = ? AND"):
            return original(tx, sql, params)
        tx.run("UPDATE bills SET status = 'settled' WHERE bill_id = ?", ("B2",))
        taken = original(tx, sql, params)
        tx.run("UPDATE bills SET status = 'pending' WHERE bill_id = ?", ("B2",))
        return taken

    monkeypatch.setattr(Tx, "one", one)
    second = kit.settle(demo_people, "T-000002", "P1", "B2")
    monkeypatch.undo()

    assert second.status == "settled"
    assert demo_people.get_bill("B2").status == "settled"
    assert demo_people.accumulations("P1", kit.YEAR) == {
        key: first.delta[key] + second.delta[key] for key in first.delta}
    assert audit(demo_people).ok


def test_a_build_that_raises_leaves_nothing_behind(demo_people, kit):
    events_before = demo_people.audit_events()

    class AmountChanged(Exception):
        pass

    def refuse(_acc, _bill):
        raise AmountChanged("the resident confirmed another amount")

    with pytest.raises(AmountChanged):
        demo_people.settle("T-000001", b"d", kit.KIOSK, "P1", "B1", refuse)

    assert demo_people.get_settlement("T-000001") is None
    assert demo_people.get_bill("B1").status == "pending"
    assert demo_people.accumulations("P1", kit.YEAR) == {}
    assert demo_people.audit_events() == events_before
    kit.settle(demo_people, "T-000001", "P1", "B1")  # and the txn can still be settled


def numbered(kit, build, *setl_ids: str):
    """`build`, its settlements numbered setl_ids in turn (the last one ever after), signed
    under each number: as the gateway's build draws a new random number at each call."""
    calls: list[str] = []

    def renumbered(accumulations, bill):
        setl_id = setl_ids[min(len(calls), len(setl_ids) - 1)]
        calls.append(setl_id)
        settlement = replace(build(accumulations, bill), setl_id=setl_id)
        return replace(settlement, signed=kit.sign_record(settlement))

    renumbered.calls = calls
    return renumbered


def test_a_settlement_number_already_taken_is_drawn_again_in_the_same_request(demo_people, kit):
    # setl_id is random (40 bits a day): on a busy day two settlements draw the same one now
    # and then. The second must be settled all the same, under a new number, not refused as
    # "unavailable ... nothing was stored" (and then "not_found" to the kiosk's query).
    first = kit.settle(demo_people, "T-000001", "P1", "B1")
    events_before = len(demo_people.audit_events())
    digest = kit.digest("T-000002")
    build = numbered(kit, kit.build("T-000002", digest), first.setl_id, "S-FRESH-NUMBER")

    stored, created = demo_people.settle("T-000002", digest, kit.KIOSK, "P1", "B2", build)

    assert created and build.calls == [first.setl_id, "S-FRESH-NUMBER"]
    assert stored.setl_id == "S-FRESH-NUMBER"
    assert demo_people.get_settlement("T-000002") == stored
    assert demo_people.get_settlement("T-000001") == first  # untouched
    assert demo_people.get_bill("B2").status == "settled"
    # its delta added once, not once per number drawn
    assert demo_people.accumulations("P1", kit.YEAR) == {
        key: 2 * value for key, value in first.delta.items()}
    events = demo_people.audit_events()[events_before:]
    assert [(e["kind"], e["txn_id"]) for e in events] == [("settled", "T-000002")]
    assert '"setl_id":"S-FRESH-NUMBER"' in events[0]["body"]
    assert audit(demo_people).ok


def test_a_settlement_number_taken_again_and_again_stores_nothing(demo_people, kit):
    first = kit.settle(demo_people, "T-000001", "P1", "B1")
    events_before = demo_people.audit_events()
    digest = kit.digest("T-000002")
    build = numbered(kit, kit.build("T-000002", digest), first.setl_id)  # a broken generator

    with pytest.raises(LedgerError, match="were all taken already"):
        demo_people.settle("T-000002", digest, kit.KIOSK, "P1", "B2", build)

    assert len(build.calls) == 3
    assert demo_people.get_settlement("T-000002") is None
    assert demo_people.get_bill("B2").status == "pending"
    assert demo_people.accumulations("P1", kit.YEAR) == first.delta
    assert demo_people.audit_events() == events_before


def test_a_taken_settlement_number_in_a_batch_spares_the_batch(demo_people, kit):
    # The gateway runs many kiosks' requests in one transaction (run_requests), on PostgreSQL
    # without savepoints at first: the number drawn again must not fail the transaction.
    key = SigningKey.generate().public_key
    demo_people.add_key(KeyRecord(kid=kit.KIOSK, role="kiosk", public_key=key, status="active"))
    digests = {txn: kit.digest(txn) for txn in ("T-000001", "T-000002")}

    def settle(txn, psn_no, bill_id, *numbers):
        def work(ledger):
            build = numbered(kit, kit.build(txn, digests[txn]), *numbers)
            return ledger.settle(txn, digests[txn], kit.KIOSK, psn_no, bill_id, build)[0]
        return work

    outcomes = demo_people.run_requests([
        RequestJob(kit.KIOSK, 1, key, settle("T-000001", "P1", "B1", "S-SAME"), durable=True),
        RequestJob(kit.KIOSK, 2, key, settle("T-000002", "P2", "B4", "S-SAME", "S-OTHER"),
                   durable=True),
    ])

    assert [(o.status, o.value.setl_id) for o in outcomes] == [("done", "S-SAME"),
                                                                ("done", "S-OTHER")]
    assert demo_people.get_settlement("T-000002").setl_id == "S-OTHER"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda s: replace(s, txn_id="T-OTHER01"), "txn_id"),
        (lambda s: replace(s, kiosk_id="kiosk-99"), "kiosk_id"),
        (lambda s: replace(s, request_digest=b"x"), "request_digest"),
        (lambda s: replace(s, result={**s.result, "hifp_pay": s.result["hifp_pay"] + 1}),
         "fund_pay_sumamt"),
        (lambda s: replace(s, result={**s.result, "psn_cash_pay": s.result["psn_cash_pay"] - 1}),
         "psn_cash_pay"),
        (lambda s: replace(s, result={**s.result, "maf_pay": -1}), "non-negative"),
        (lambda s: replace(s, result={**s.result, "medfee_sumamt": 1,
                                      "psn_cash_pay": 1 - s.result["fund_pay_sumamt"]}),
         "psn_cash_pay"),
        (lambda s: replace(s, delta={"serious_burden": -5}), "delta"),
        (lambda s: replace(s, signed=b""), "signed"),
    ],
)  # fmt: skip
def test_a_settlement_that_does_not_add_up_or_answer_the_request_is_refused(
    demo_people, kit, change, complaint
):
    digest = kit.digest("T-000001")
    good = kit.build("T-000001", digest)

    with pytest.raises(ValueError, match=complaint):
        demo_people.settle(
            "T-000001", digest, kit.KIOSK, "P1", "B1", lambda acc, bill: change(good(acc, bill))
        )
    assert demo_people.get_settlement("T-000001") is None
    assert demo_people.accumulations("P1", kit.YEAR) == {}


def test_a_breakdown_for_another_total_than_the_bill_is_refused(demo_people, kit):
    digest = kit.digest("T-000001")
    good = kit.build("T-000001", digest)

    def wrong_total(acc, bill):
        settlement = good(acc, bill)
        return replace(settlement, result=kit.breakdown(bill.medfee_sumamt + 100))

    with pytest.raises(ValueError, match="bill's total"):
        demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1", wrong_total)


def test_the_accumulation_year_can_be_the_settlement_dates(demo_people, kit):
    digest = kit.digest("T-000001")
    build = kit.build("T-000001", digest, setl_date="2027-01-02")
    stored, _ = demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1", build, year=2027)
    assert stored.acc_year == 2027
    assert demo_people.accumulations("P1", 2027) == stored.delta
    assert demo_people.accumulations("P1", kit.YEAR) == {}
    demo_people.cancel("T-000001", kit.KIOSK, "2027-01-02")
    assert not any(demo_people.accumulations("P1", 2027).values())


def test_cancel_reverses_the_accumulations_and_reopens_the_bill(demo_people, kit):
    first = kit.settle(demo_people, "T-000001", "P1", "B1")
    kit.settle(demo_people, "T-000002", "P1", "B2")
    # not the earlier one while the later stands (it was computed on totals including it)
    with pytest.raises(PermissionError, match="later settlement"):
        demo_people.cancel("T-000001", kit.KIOSK, kit.SETTLE_DAY)

    cancelled = demo_people.cancel("T-000002", kit.KIOSK, kit.SETTLE_DAY)

    assert cancelled.status == "cancelled"
    assert demo_people.get_settlement("T-000002").status == "cancelled"
    assert demo_people.get_bill("B2").status == "pending"
    assert demo_people.accumulations("P1", kit.YEAR) == first.delta  # only B1's remain
    # idempotent: a second cancel changes nothing
    assert demo_people.cancel("T-000002", kit.KIOSK, kit.SETTLE_DAY).status == "cancelled"
    assert demo_people.accumulations("P1", kit.YEAR) == first.delta
    # and now the earlier one may go too
    demo_people.cancel("T-000001", kit.KIOSK, kit.SETTLE_DAY)
    assert not any(demo_people.accumulations("P1", kit.YEAR).values())


def test_a_cancelled_bill_can_be_settled_again_under_a_new_txn(demo_people, kit):
    kit.settle(demo_people, "T-000001", "P1", "B1")
    demo_people.cancel("T-000001", kit.KIOSK, kit.SETTLE_DAY)
    again = kit.settle(demo_people, "T-000002", "P1", "B1")
    assert again.status == "settled"
    assert demo_people.accumulations("P1", kit.YEAR) == again.delta


def test_cancel_only_at_the_same_kiosk_on_the_same_day(demo_people, kit):
    kit.settle(demo_people, "T-000001", "P1", "B1")
    with pytest.raises(PermissionError, match="only that kiosk"):
        demo_people.cancel("T-000001", "kiosk-02", kit.SETTLE_DAY)
    with pytest.raises(PermissionError, match="that day"):
        demo_people.cancel("T-000001", kit.KIOSK, "2026-11-24")
    assert demo_people.get_settlement("T-000001").status == "settled"
    with pytest.raises(UnknownTxn):
        demo_people.cancel("T-NEVER-01", kit.KIOSK, kit.SETTLE_DAY)


def test_receipt_printed_is_recorded_once(demo_people, kit):
    kit.settle(demo_people, "T-000001", "P1", "B1")
    assert demo_people.mark_receipt_printed("T-000001")
    assert demo_people.mark_receipt_printed("T-000001")
    assert demo_people.get_settlement("T-000001").receipt_printed
    kinds = [event["kind"] for event in demo_people.audit_events()]
    assert kinds.count("receipt_printed") == 1
    assert not demo_people.mark_receipt_printed("T-NEVER-01")


def test_receipt_printed_for_another_kiosk_or_setl_id_marks_nothing(demo_people, kit):
    stored = kit.settle(demo_people, "T-000001", "P1", "B1")
    assert not demo_people.mark_receipt_printed("T-000001", kiosk_id="kiosk-02",
                                                setl_id=stored.setl_id)
    assert not demo_people.mark_receipt_printed("T-000001", kiosk_id=kit.KIOSK,
                                                setl_id="S-SOMEONE-ELSES")
    assert not demo_people.get_settlement("T-000001").receipt_printed
    assert demo_people.mark_receipt_printed("T-000001", kiosk_id=kit.KIOSK,
                                            setl_id=stored.setl_id)
    assert demo_people.mark_receipt_printed("T-000001", kiosk_id=kit.KIOSK,
                                            setl_id=stored.setl_id)  # again: still printed
    assert demo_people.get_settlement("T-000001").receipt_printed
    kinds = [event["kind"] for event in demo_people.audit_events()]
    assert kinds.count("receipt_printed") == 1


def test_settlements_on_a_day_include_cancelled_ones_with_their_status(demo_people, kit):
    kit.settle(demo_people, "T-000001", "P1", "B1")
    kit.settle(demo_people, "T-000002", "P2", "B4")
    kit.settle(demo_people, "T-000003", "P1", "B2", setl_date="2026-11-24")
    demo_people.cancel("T-000002", kit.KIOSK, kit.SETTLE_DAY)
    day = demo_people.settlements_on(kit.SETTLE_DAY)
    assert {(s.txn_id, s.status) for s in day} == {
        ("T-000001", "settled"),
        ("T-000002", "cancelled"),
    }


def test_a_settlement_is_durable_across_reopening(ledger_url, demo_people, kit):
    first = kit.settle(demo_people, "T-000001", "P1", "B1")
    demo_people.close()
    reopened = open_ledger(ledger_url)
    try:
        assert reopened.get_settlement("T-000001") == first
        assert reopened.accumulations("P1", kit.YEAR) == first.delta
    finally:
        reopened.close()


def test_a_closed_ledger_says_so(demo_people):
    demo_people.close()
    with pytest.raises(LedgerError, match="closed"):
        demo_people.get_bill("B1")
