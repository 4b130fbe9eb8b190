"""Many settlements at once: the same person's accumulations stay exact, no txn is lost or doubled.

Threads stand in for the gateway's worker pool; separate ledger objects stand in for separate
gateway processes sharing one ledger (one SQLite file, or one PostgreSQL database).
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from onestop.host.gateway.audit import audit
from onestop.host.gateway.ledger import TxnConflict, open_ledger
from onestop.host.gateway.ledger.checks import plus

WORKERS = 6
BILLS_PER_WORKER = 4


def add_bills(ledger, kit, psn_no: str, count: int) -> list[str]:
    ids = [f"{psn_no}-B{n:03d}" for n in range(count)]
    for n, bill_id in enumerate(ids):
        ledger.upsert_bill(kit.bill(bill_id, psn_no, amounts=(10_000 + 137 * n, 5_000)))
    return ids


def settle_all_at_once(ledgers, kit, jobs):
    """Run settle for every (txn_id, psn_no, bill_id), spread over the ledgers, released
    together; returns the stored settlements by txn_id."""
    start = threading.Barrier(len(jobs))

    def one(index: int):
        txn_id, psn_no, bill_id = jobs[index]
        start.wait()
        return kit.settle(ledgers[index % len(ledgers)], txn_id, psn_no, bill_id)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return {s.txn_id: s for s in pool.map(one, range(len(jobs)))}


def expected_accumulations(settlements):
    total: dict[str, int] = {}
    for settlement in settlements:
        total = plus(total, settlement.delta)
    return total


def test_threads_settling_for_one_person_keep_the_accumulations_exact(demo_people, kit):
    bills = add_bills(demo_people, kit, "P1", WORKERS * BILLS_PER_WORKER)
    jobs = [(f"T-{n:06d}", "P1", bill_id) for n, bill_id in enumerate(bills)]

    stored = settle_all_at_once([demo_people], kit, jobs)

    assert len(stored) == len(jobs)
    assert [b.bill_id for b in demo_people.pending_bills("P1")] == ["B1", "B2", "B3"]
    assert demo_people.accumulations("P1", kit.YEAR) == expected_accumulations(stored.values())
    settled_events = [e for e in demo_people.audit_events() if e["kind"] == "settled"]
    assert sorted(e["txn_id"] for e in settled_events) == sorted(stored)


def test_two_gateways_on_one_ledger_serialise_the_same_persons_settlements(
    ledger_url, demo_people, kit
):
    bills = add_bills(demo_people, kit, "P1", WORKERS * BILLS_PER_WORKER)
    second = open_ledger(ledger_url)  # another gateway process would open its own
    try:
        jobs = [(f"T-{n:06d}", "P1", bill_id) for n, bill_id in enumerate(bills)]
        stored = settle_all_at_once([demo_people, second], kit, jobs)
        assert second.accumulations("P1", kit.YEAR) == expected_accumulations(stored.values())
        report = audit(second)  # one unbroken chain, no forks; money adds up
        assert report.ok, report.problems
        assert report.settlements == len(jobs)
    finally:
        second.close()


def test_concurrent_retries_of_one_txn_settle_it_once(ledger_url, demo_people, kit):
    second = open_ledger(ledger_url)
    digest = kit.digest("T-000001")
    start = threading.Barrier(WORKERS)

    def attempt(index: int):
        ledger = (demo_people, second)[index % 2]
        start.wait()
        return ledger.settle(
            "T-000001", digest, kit.KIOSK, "P1", "B1", kit.build("T-000001", digest)
        )

    try:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            results = list(pool.map(attempt, range(WORKERS)))
    finally:
        second.close()

    assert sum(created for _, created in results) == 1
    assert len({s.signed for s, _ in results}) == 1
    assert demo_people.accumulations("P1", kit.YEAR) == results[0][0].delta


def test_one_txn_id_raced_onto_different_bills_is_stored_once(ledger_url, demo_people, kit):
    second = open_ledger(ledger_url)
    start = threading.Barrier(3)

    def attempt(bill_id: str):
        ledger = second if bill_id == "B2" else demo_people
        digest = f"request for {bill_id}".encode()
        start.wait()
        try:
            ledger.settle(
                "T-000001", digest, kit.KIOSK, "P1", bill_id, kit.build("T-000001", digest)
            )
            return "settled"
        except TxnConflict:
            return "conflict"

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            outcomes = Counter(pool.map(attempt, ["B1", "B2", "B3"]))
    finally:
        second.close()

    assert outcomes == {"settled": 1, "conflict": 2}
    assert len(demo_people.pending_bills("P1")) == 2


def test_different_people_settle_side_by_side(demo_people, kit):
    jobs = []
    for psn_no in ("P1", "P2"):
        for n, bill_id in enumerate(add_bills(demo_people, kit, psn_no, WORKERS)):
            jobs.append((f"T-{psn_no}-{n:04d}", psn_no, bill_id))
    stored = settle_all_at_once([demo_people], kit, jobs)
    for psn_no in ("P1", "P2"):
        mine = [s for s in stored.values() if s.psn_no == psn_no]
        assert demo_people.accumulations(psn_no, kit.YEAR) == expected_accumulations(mine)
