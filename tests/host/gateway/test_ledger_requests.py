"""Ledger.run_requests: each authenticated request's replay check and work as one transaction,
several per commit. Both backends."""

from __future__ import annotations

import os
import time

import pytest
from onestop.host.gateway.ledger import (
    KeyRecord,
    Ledger,
    LedgerError,
    RequestJob,
    open_ledger,
)
from onestop.host.keys import SigningKey

KIOSK_KEYS = {kiosk: SigningKey.generate().public_key for kiosk in ("K-1", "K-2", "K-3")}
NOBODYS_KEY = SigningKey.generate().public_key


@pytest.fixture
def enrolled(demo_people: Ledger) -> Ledger:
    for kiosk, key in KIOSK_KEYS.items():
        demo_people.add_key(KeyRecord(kid=kiosk, role="kiosk", public_key=key, status="active"))
    return demo_people


def job(kiosk: str, ctr: int, work=lambda ledger: "done", durable: bool = False,
        key: bytes | None = None) -> RequestJob:
    key = key if key is not None else KIOSK_KEYS.get(kiosk, NOBODYS_KEY)
    return RequestJob(kiosk_id=kiosk, ctr=ctr, public_key=key, work=work, durable=durable)


def statuses(outcomes) -> list[str]:
    return [outcome.status for outcome in outcomes]


def test_each_request_advances_its_kiosks_counter_once(enrolled: Ledger) -> None:
    outcomes = enrolled.run_requests([job("K-1", 5), job("K-2", 1), job("K-1", 5)])
    assert statuses(outcomes) == ["done", "done", "replay"]
    assert outcomes[0].value == "done"
    assert statuses(enrolled.run_requests([job("K-1", 4), job("K-1", 6)])) == ["replay", "done"]
    assert not enrolled.advance_counter("K-1", 6)  # the same counters advance_counter keeps


def test_a_full_batch_of_many_kiosks_checks_each_as_if_it_came_alone(enrolled: Ledger) -> None:
    # 128 requests (a full batch) from 100 kiosks: counters up and replays, revoked, unknown
    # and re-keyed kiosks, and kiosks with a second request right after their first (a replay
    # sent with its original, or the next one). Each is judged as a request alone, in order,
    # would be.
    keys = {f"M-{n:03d}": SigningKey.generate().public_key for n in range(100)}
    for kiosk, key in keys.items():
        enrolled.add_key(KeyRecord(kid=kiosk, role="kiosk", public_key=key, status="active"))
    assert all(enrolled.advance_counter(kiosk, 10) for kiosk in keys)
    enrolled.set_key_status("M-007", "revoked")
    batch, expected = [], []
    for n, kiosk in enumerate(keys):
        ctr, status = (9, "replay") if n % 3 == 0 else (11 + n, "done")
        key = keys[kiosk]
        if kiosk == "M-007":
            status = "key"
        elif n == 50:
            key, status = SigningKey.generate().public_key, "key"  # not its enrolled key
        batch.append(job(kiosk, ctr, key=key))
        expected.append(status)
        if 1 <= n <= 27:  # its second request
            again = ctr if n % 2 else ctr + 100  # a replay of the first, or the next
            batch.append(job(kiosk, again, key=key))
            expected.append("key" if kiosk == "M-007" else
                            "replay" if n % 2 or again <= 10 else "done")
    batch.append(job("M-999", 1, key=NOBODYS_KEY))
    expected.append("key")
    assert len(batch) == 128

    assert statuses(enrolled.run_requests(batch)) == expected
    # and the counters stand where the accepted requests left them
    assert not enrolled.advance_counter("M-001", 12)  # its first (12) advanced it
    assert enrolled.advance_counter("M-003", 10 + 1)  # its first was a replay (9)...
    assert not enrolled.advance_counter("M-004", 115)  # ...M-004's second (115) advanced it


def test_a_revoked_or_unknown_kiosk_runs_nothing(enrolled: Ledger) -> None:
    enrolled.set_key_status("K-2", "revoked")
    ran = []
    outcomes = enrolled.run_requests([
        job("K-2", 1, lambda ledger: ran.append("K-2")),
        job("K-9", 1, lambda ledger: ran.append("K-9")),
        job("K-3", 1, lambda ledger: ran.append("K-3"), key=SigningKey.generate().public_key),
    ])
    assert [(o.status, o.value) for o in outcomes] == [("key", "revoked"), ("key", None),
                                                      ("key", "active")]
    assert ran == []


def test_the_work_sees_and_joins_the_requests_transaction(enrolled: Ledger, kit) -> None:
    digest = kit.digest("T-000001")

    def settle(ledger: Ledger):
        return ledger.settle("T-000001", digest, "K-1", "P1", "B1",
                             kit.build("T-000001", digest, kiosk_id="K-1"))

    (outcome,) = enrolled.run_requests([job("K-1", 1, settle, durable=True)])
    assert outcome.status == "done"
    stored, created = outcome.value
    assert created and enrolled.get_settlement("T-000001") == stored


def test_a_refusal_undoes_its_own_writes_keeps_its_counter_and_spares_the_others(
        enrolled: Ledger, kit) -> None:
    def settle_then_refuse(ledger: Ledger):
        kit.settle(ledger, "T-000001", "P1", "B1", kiosk_id="K-1")
        raise ValueError("refused after writing")

    def settle_b2(ledger: Ledger):
        return kit.settle(ledger, "T-000002", "P1", "B2", kiosk_id="K-2")

    outcomes = enrolled.run_requests([job("K-1", 1, settle_then_refuse, durable=True),
                                      job("K-2", 1, settle_b2, durable=True)])
    assert statuses(outcomes) == ["refused", "done"]
    assert isinstance(outcomes[0].error, ValueError)
    assert enrolled.get_settlement("T-000001") is None
    assert enrolled.get_bill("B1").status == "pending"
    assert enrolled.get_settlement("T-000002") is not None
    assert statuses(enrolled.run_requests([job("K-1", 1)])) == ["replay"]  # counter spent


def test_a_request_reads_what_an_earlier_request_of_its_batch_wrote(enrolled: Ledger,
                                                                   kit) -> None:
    # One transaction for the batch: the next request's reads find the settlement's writes
    # (the accumulations, the bill no longer pending) before anything is committed.
    def settle_b1(ledger: Ledger):
        return kit.settle(ledger, "T-000001", "P1", "B1", kiosk_id="K-1")

    def look(ledger: Ledger):
        return (ledger.accumulations("P1", kit.YEAR), ledger.get_bill("B1").status,
                [bill.bill_id for bill in ledger.pending_bills("P1")])

    outcomes = enrolled.run_requests([job("K-1", 1, settle_b1, durable=True), job("K-2", 1, look)])
    assert statuses(outcomes) == ["done", "done"]
    assert outcomes[1].value == (outcomes[0].value.delta, "settled", ["B2", "B3"])


def refuse_settling(ledger: Ledger, ledger_url: str, bill_id: str) -> None:
    """A trigger that fails the statement marking `bill_id` settled: the settlement's last
    write, made after its row and the accumulations."""
    message = f"bill {bill_id} may not be settled (test trigger)"
    if ledger_url.startswith("sqlite"):
        statements = [f"CREATE TRIGGER refuse_settling BEFORE UPDATE OF status ON bills "
                      f"WHEN NEW.bill_id = '{bill_id}' BEGIN SELECT RAISE(ABORT, '{message}'); "
                      "END"]
    else:
        statements = [
            "CREATE FUNCTION refuse_settling() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$",
            "CREATE TRIGGER refuse_settling BEFORE UPDATE OF status ON bills FOR EACH ROW "
            f"WHEN (NEW.bill_id = '{bill_id}') EXECUTE FUNCTION refuse_settling()",
        ]
    ledger._write(lambda tx: [tx.run(sql) for sql in statements])


@pytest.mark.parametrize("failing_first", [True, False], ids=["then-another", "last"])
def test_a_settlements_last_write_failing_fails_that_request_alone(
        enrolled: Ledger, ledger_url: str, kit, failing_first: bool) -> None:
    refuse_settling(enrolled, ledger_url, "B1")

    def settle(txn_id: str, psn_no: str, bill_id: str, kiosk: str):
        return lambda ledger: kit.settle(ledger, txn_id, psn_no, bill_id, kiosk_id=kiosk)

    failing = job("K-1", 1, settle("T-000001", "P1", "B1", "K-1"), durable=True)
    others = [job("K-2", 1, settle("T-000002", "P2", "B4", "K-2"), durable=True), job("K-3", 1)]
    jobs = [failing, *others] if failing_first else [*others, failing]

    outcomes = enrolled.run_requests(jobs)

    assert statuses(outcomes) == (["failed", "done", "done"] if failing_first
                                  else ["done", "done", "failed"])
    error = outcomes[0 if failing_first else 2].error
    assert isinstance(error, LedgerError) and "may not be settled" in str(error)
    assert not error.at_commit  # nothing stored: the kiosk is told so, not to ask later
    assert enrolled.get_settlement("T-000001") is None
    assert enrolled.get_bill("B1").status == "pending"
    assert enrolled.accumulations("P1", kit.YEAR) == {}
    assert enrolled.get_settlement("T-000002") is not None
    # the failed request's counter was not spent either: the kiosk may send it again
    assert statuses(enrolled.run_requests([job("K-1", 1), job("K-3", 1)])) == ["done", "replay"]


def test_a_storage_fault_in_one_request_is_its_own(enrolled: Ledger) -> None:
    def broken(ledger: Ledger):
        ledger._write(lambda tx: tx.run("INSERT INTO no_such_table VALUES (1)"))

    outcomes = enrolled.run_requests([job("K-1", 1), job("K-2", 1, broken, durable=True),
                                      job("K-3", 1)])
    assert statuses(outcomes) == ["done", "failed", "done"]
    assert isinstance(outcomes[1].error, LedgerError)
    # the failed request wrote nothing, its counter included: the kiosk may send it again
    assert statuses(enrolled.run_requests([job("K-2", 1), job("K-1", 1)])) == ["done", "replay"]


def test_a_commit_that_did_not_wait_for_the_disk_is_visible_to_other_gateways_at_once(
        enrolled: Ledger, ledger_url: str) -> None:
    assert statuses(enrolled.run_requests([job("K-1", 10, durable=False)])) == ["done"]
    other = open_ledger(ledger_url)  # another gateway process
    try:
        assert statuses(other.run_requests([job("K-1", 10)])) == ["replay"]
        assert statuses(other.run_requests([job("K-1", 11, durable=True)])) == ["done"]
    finally:
        other.close()
    assert statuses(enrolled.run_requests([job("K-1", 11)])) == ["replay"]


def test_a_ledger_that_cannot_be_reached_fails_every_request_at_once() -> None:
    unreachable = open_ledger("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        outcomes = unreachable.run_requests([job("K-1", 1), job("K-2", 1)])
    finally:
        unreachable.close()
    assert statuses(outcomes) == ["failed", "failed"]
    assert all(outcome.error.at_begin for outcome in outcomes)


# ---------------------------------------------------------------- SQLite: when the WAL is flushed


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the files the SQLite ledger flushes (fdatasync), in order."""
    from onestop.host.gateway.ledger import sqlite

    calls: list[str] = []
    real = sqlite.os.fdatasync

    def recording(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(sqlite.os, "fdatasync", recording)
    return calls


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_durable_request_has_the_wal_flushed_before_the_answer(
        enrolled: Ledger, ledger_url: str, fsyncs: list[str]) -> None:
    assert statuses(enrolled.run_requests([job("K-1", 1, durable=True)])) == ["done"]
    assert fsyncs == [ledger_url.removeprefix("sqlite:///") + "-wal"]


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_read_only_counters_reach_the_disk_within_the_flush_delay(
        enrolled: Ledger, ledger_url: str, fsyncs: list[str]) -> None:
    from onestop.host.gateway.ledger.sqlite import FLUSH_AFTER_S

    assert statuses(enrolled.run_requests([job("K-1", 1, durable=False)])) == ["done"]
    assert fsyncs == []  # the answer did not wait for the disk...
    deadline = time.monotonic() + 20 * FLUSH_AFTER_S
    while not fsyncs and time.monotonic() < deadline:
        time.sleep(FLUSH_AFTER_S / 5)
    assert fsyncs == [ledger_url.removeprefix("sqlite:///") + "-wal"]  # ...but soon went there


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_commits_whose_flush_is_left_to_the_caller_share_one_flush(
        enrolled: Ledger, ledger_url: str, fsyncs: list[str]) -> None:
    """The gateway's event loop leaves the flush to a worker thread: two batches committed
    meanwhile need one flush, the later one's, which covers the earlier one too."""
    with enrolled.durable_later() as first:
        assert statuses(enrolled.run_requests([job("K-1", 1, durable=True)])) == ["done"]
    with enrolled.durable_later() as second:
        assert statuses(enrolled.run_requests([job("K-2", 1, durable=True)])) == ["done"]
    assert fsyncs == []  # nothing waited for the disk yet: nothing may be answered yet
    assert first.owed and second.owed
    second.wait()
    assert fsyncs == [ledger_url.removeprefix("sqlite:///") + "-wal"]
    first.wait()  # already on disk: flushed by second's
    assert len(fsyncs) == 1


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_read_only_requests_leave_no_flush_owed(enrolled: Ledger, fsyncs: list[str]) -> None:
    with enrolled.durable_later() as owed:
        assert statuses(enrolled.run_requests([job("K-1", 1, durable=False)])) == ["done"]
    assert not owed.owed


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_failed_flush_is_an_answer_that_may_or_may_not_be_stored(
        enrolled: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    from onestop.host.gateway.ledger import sqlite

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sqlite.os, "fdatasync", failing)
    (outcome,) = enrolled.run_requests([job("K-1", 1, durable=True)])
    assert outcome.status == "failed" and outcome.error.at_commit
    assert "may or may not have been stored" in str(outcome.error)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_serving_ledger_checkpoints_in_the_background(enrolled: Ledger, ledger_url: str) -> None:
    from onestop.host.gateway.ledger.sqlite import CHECKPOINT_EVERY_S, SERVING_AUTOCHECKPOINT

    path = ledger_url.removeprefix("sqlite:///")
    serving = open_ledger(ledger_url)
    try:
        serving.tune_for_serving()
        time.sleep(3 * CHECKPOINT_EVERY_S)  # what init and the fixtures wrote is copied now
        before = os.stat(path).st_mtime_ns
        for ctr in range(1, 40):  # far fewer WAL pages than a commit would checkpoint at
            assert statuses(serving.run_requests([job("K-1", ctr, durable=True)])) == ["done"]
        conn = serving._connection()
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SERVING_AUTOCHECKPOINT
        deadline = time.monotonic() + 50 * CHECKPOINT_EVERY_S
        while os.stat(path).st_mtime_ns == before and time.monotonic() < deadline:
            time.sleep(CHECKPOINT_EVERY_S / 2)
        # in WAL mode only a checkpoint writes the database file itself
        assert os.stat(path).st_mtime_ns != before
    finally:
        serving.close()


def test_a_job_that_breaks_outside_its_work_costs_no_other_job(enrolled: Ledger) -> None:
    # the gateway refuses such a counter before the ledger; the ledger still keeps the fault
    # to the one request (the other jobs run again without it)
    outcomes = enrolled.run_requests([job("K-1", 1), job("K-2", 2**63, durable=True),
                                      job("K-3", 1)])
    assert statuses(outcomes) == ["done", "refused", "done"]
    assert isinstance(outcomes[1].error, ValueError)
    assert statuses(enrolled.run_requests([job("K-2", 1)])) == ["done"]  # K-2 kept nothing


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_a_row_locked_elsewhere_fails_only_the_request_that_needs_it(
        enrolled: Ledger, ledger_url: str, kit, monkeypatch) -> None:
    """An operator's psql session holds one bill's row: the settle of that bill waits for the
    lock, runs out of time and is answered `unavailable`; the other kiosks' requests in the same
    batch are settled (before, a lock timeout failed the whole batch)."""
    import psycopg
    from onestop.host.gateway.ledger import postgres

    monkeypatch.setattr(postgres, "LOCK_WAIT_MS", 500)
    ledger = open_ledger(ledger_url)  # its connections take the shorter wait
    schema = ledger_url.split("schema=")[1].split("&")[0]

    def settling(txn_id: str, psn_no: str, bill_id: str):
        return lambda joined: kit.settle(joined, txn_id, psn_no, bill_id)

    try:
        with psycopg.connect(os.environ["ONESTOP_TEST_PG"]) as holder:
            holder.execute(f'SELECT 1 FROM "{schema}".bills WHERE bill_id = %s FOR UPDATE',
                           ("B1",))
            outcomes = ledger.run_requests([
                job("K-1", 1, settling("TXN-LOCKED-1", "P1", "B1"), durable=True),
                job("K-2", 1, settling("TXN-FREE-01", "P2", "B4"), durable=True),
                job("K-3", 1, durable=True),
            ])
            holder.rollback()
        assert statuses(outcomes) == ["failed", "done", "done"], [o.error for o in outcomes]
        assert outcomes[0].error is not None and outcomes[0].error.busy
        assert ledger.get_settlement("TXN-LOCKED-1") is None
        assert ledger.get_settlement("TXN-FREE-01") is not None
    finally:
        ledger.close()


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_the_rest_of_a_batch_run_again_after_a_lock_wait_waits_only_briefly(
        enrolled: Ledger, ledger_url: str, kit, monkeypatch) -> None:
    """A table locked from psql: the request that needed it waited LOCK_WAIT_MS, and the rest
    of its batch, run again, waited as long once more (6 s of a kiosk's 10 s) though they had
    all waited through the first: the second run waits RERUN_LOCK_WAIT_MS."""
    import psycopg
    from onestop.host.gateway.ledger import postgres

    monkeypatch.setattr(postgres, "LOCK_WAIT_MS", 500)
    monkeypatch.setattr(postgres, "RERUN_LOCK_WAIT_MS", 123)
    ledger = open_ledger(ledger_url)
    schema = ledger_url.split("schema=")[1].split("&")[0]
    waits: list[str] = []

    def noting_the_wait(joined: Ledger) -> None:
        waits.append(joined._read(lambda tx: tx.one("SHOW lock_timeout"))[0])

    try:
        with psycopg.connect(os.environ["ONESTOP_TEST_PG"]) as holder:
            holder.execute(f'SELECT 1 FROM "{schema}".bills WHERE bill_id = %s FOR UPDATE',
                           ("B1",))
            outcomes = ledger.run_requests([
                job("K-1", 1, lambda joined: kit.settle(joined, "TXN-LOCKED-1", "P1", "B1"),
                    durable=True),
                job("K-2", 1, noting_the_wait, durable=True),
            ])
            holder.rollback()
        assert statuses(outcomes) == ["failed", "done"]
        assert waits == ["123ms"]  # K-2 ran once, in the second run: with the short wait
    finally:
        ledger.close()


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_a_batch_whose_database_stopped_answering_fails_whole_when_its_link_is_broken(
        enrolled: Ledger, ledger_url: str, monkeypatch) -> None:
    """The stall watch breaks the connection of a transaction the database left unanswered:
    every request of the batch is answered at once, nothing stored; before, the rest were run
    again one by one, each opening a connection to the silent server (a connect timeout each,
    the gateway's loop held all the while)."""
    import threading

    from onestop.host.gateway.ledger import postgres
    from test_server import FreezingProxy

    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_S", 2)
    proxy = FreezingProxy.to(ledger_url)
    ledger = open_ledger(proxy.url(ledger_url))
    loop_thread = threading.get_ident()

    def the_database_stops_answering(joined: Ledger) -> None:
        proxy.frozen.set()
        joined._read(lambda tx: tx.one("SELECT 1"))

    def watch() -> None:
        while not ledger.interrupt(loop_thread, 0.3):
            time.sleep(0.05)

    try:
        assert statuses(ledger.run_requests([job("K-1", 1)])) == ["done"]  # connected
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        outcomes = ledger.run_requests([job("K-1", 2, the_database_stops_answering),
                                        job("K-2", 1), job("K-3", 1, durable=True)])
        watcher.join(timeout=5)
        assert statuses(outcomes) == ["failed"] * 3
        assert all(o.error.interrupted and not o.error.at_commit for o in outcomes)
        assert "answered nothing" in str(outcomes[0].error)
        assert proxy.accepted == 1  # no request was run again on a new connection
        proxy.frozen.clear()
        assert statuses(ledger.run_requests([job("K-2", 2)])) == ["done"]  # it carries on
    finally:
        proxy.frozen.clear()
        ledger.close()
        proxy.close()


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_a_transaction_whose_commit_has_gone_out_is_never_broken(
        enrolled: Ledger, ledger_url: str, kit, monkeypatch) -> None:
    """A COMMIT cut off may still complete on the server: the kiosk, told to ask, could ask
    before it did and hear not_found, and take a settlement that then stands for one that
    never happened. A commit that takes long is waited for."""
    import threading

    ledger = open_ledger(ledger_url)
    loop_thread = threading.get_ident()
    real_end = ledger._end
    refused: list[bool] = []

    def slow_commit(conn, commit: bool) -> None:
        if commit:  # a disk that takes its time: the watch tries meanwhile
            refused.append(ledger.interrupt(loop_thread, 0.0))
        real_end(conn, commit)

    monkeypatch.setattr(ledger, "_end", slow_commit)
    try:
        outcomes = ledger.run_requests([
            job("K-1", 1, lambda joined: kit.settle(joined, "TXN-COMMIT-1", "P1", "B1"),
                durable=True)])
        assert statuses(outcomes) == ["done"]
        assert refused == [False]
        assert ledger.get_settlement("TXN-COMMIT-1") is not None
    finally:
        ledger.close()
