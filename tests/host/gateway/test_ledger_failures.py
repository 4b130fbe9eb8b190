"""Storage that fails: a full disk, a database that goes away, a failed commit, a gateway killed
with SIGKILL under load. Each ends in a clear LedgerError (or a clean restart) and never in a
half-written settlement.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace

import psycopg
import pytest
from onestop.host.gateway.audit import audit
from onestop.host.gateway.ledger import LedgerError, open_ledger
from onestop.host.gateway.ledger.checks import plus


def assert_nothing_settled(ledger, kit, events_before):
    assert ledger.get_settlement("T-000001") is None
    assert ledger.get_bill("B1").status == "pending"
    assert not any(ledger.accumulations("P1", kit.YEAR).values())
    assert ledger.audit_events() == events_before


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_full_disk_is_a_clear_error_and_writes_nothing(demo_people, kit):
    events_before = demo_people.audit_events()
    # Cap the file at its current size (on the connection this thread uses): the next write
    # that needs a new page fails with SQLITE_FULL, as on a full disk.
    conn = demo_people._connection()
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    digest = kit.digest("T-000001")
    good = kit.build("T-000001", digest)

    def large(acc, bill):  # a record bigger than a page needs fresh pages
        return replace(good(acc, bill), signed=b"s" * 20_000)

    with pytest.raises(LedgerError, match="disk is full"):
        demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1", large)

    assert_nothing_settled(demo_people, kit, events_before)
    conn.execute("PRAGMA max_page_count = 1073741823")  # space again: the same request works
    stored, created = demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1", large)
    assert created and len(stored.signed) == 20_000


def test_a_failure_at_commit_leaves_nothing(demo_people, kit, monkeypatch):
    events_before = demo_people.audit_events()
    real_end = demo_people._end
    driver_error = type(demo_people).driver_errors[0]

    def failing_commit(conn, commit):
        if commit:
            raise driver_error("disk I/O error (simulated at commit)")
        return real_end(conn, commit)

    monkeypatch.setattr(demo_people, "_end", failing_commit)
    with pytest.raises(LedgerError, match="simulated at commit"):
        kit.settle(demo_people, "T-000001", "P1", "B1")
    monkeypatch.setattr(demo_people, "_end", real_end)

    assert_nothing_settled(demo_people, kit, events_before)


def terminate_backend(dsn: str, pid: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_postgresql_going_away_mid_settlement_writes_nothing(demo_people, kit):
    events_before = demo_people.audit_events()
    dsn = os.environ["ONESTOP_TEST_PG"]
    digest = kit.digest("T-000001")
    good = kit.build("T-000001", digest)

    def database_dies(acc, bill):
        # The database drops this gateway's connection while the settlement is half done.
        terminate_backend(dsn, demo_people._connection().info.backend_pid)
        return good(acc, bill)

    with pytest.raises(LedgerError, match="unavailable|went away"):
        demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1", database_dies)

    # The next call reconnects on its own and finds nothing half-written.
    assert_nothing_settled(demo_people, kit, events_before)
    stored, created = demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1", good)
    assert created and stored.status == "settled"


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_a_connection_that_died_while_idle_is_replaced_without_an_error(demo_people, kit):
    """A server restart, a failover or an idle-session timeout closes the gateway's idle
    connection: the next request is served on a new one, not refused as `unavailable`."""
    dsn = os.environ["ONESTOP_TEST_PG"]
    idle = demo_people._connection()
    terminate_backend(dsn, idle.info.backend_pid)
    digest = kit.digest("T-000001")
    stored, created = demo_people.settle("T-000001", digest, kit.KIOSK, "P1", "B1",
                                         kit.build("T-000001", digest))
    assert created and stored.status == "settled"
    # a read, too, after its connection dies in turn
    terminate_backend(dsn, demo_people._connection().info.backend_pid)
    assert demo_people.get_bill("B1").status == "settled"


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_a_postgresql_link_is_checked_while_idle_unless_the_url_says_otherwise(ledger):
    # without keepalives, a server gone without closing the link went unnoticed for hours
    params = ledger._connection().info.get_parameters()
    assert (params["keepalives"], params["keepalives_idle"]) == ("1", "30")
    assert params["tcp_user_timeout"] == "30000"
    dsn = os.environ["ONESTOP_TEST_PG"]
    own = open_ledger(dsn + ("&" if "?" in dsn else "?") + "keepalives_idle=7")
    try:
        assert own._connection().info.get_parameters()["keepalives_idle"] == "7"
    finally:
        own.close()


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_a_role_that_may_not_use_the_schema_is_not_sent_to_init_alone(ledger, ledger_url):
    """The role lost USAGE on the ledger's schema: its tables drop out of the search path and
    look missing. The message names both causes; `init` alone would fail with another error."""
    role = f"onestop_test_role_{os.getpid()}"
    url = ledger_url.replace("://postgres@", f"://{role}@", 1)
    if url == ledger_url:
        pytest.skip("needs ONESTOP_TEST_PG as postgresql://postgres@... (trust auth)")
    with psycopg.connect(os.environ["ONESTOP_TEST_PG"], autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        try:
            outsider = open_ledger(url)
            try:
                with pytest.raises(LedgerError) as failed:
                    outsider.get_bill("B1")
            finally:
                outsider.close()
        finally:
            admin.execute(f'DROP ROLE "{role}"')
    assert "not initialised (run `kiosk gateway init`), or the role lacks USAGE on its " \
        "schema" in str(failed.value)


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_lock_waits_are_bounded_and_the_operators_own_server_settings_kept(
        ledger, monkeypatch):
    """Every connection waits LOCK_WAIT_MS for a lock at most, unless the URL or PGOPTIONS
    says otherwise; their other settings (with spaces, as libpq reads them) are kept."""
    def shown(url: str, *settings: str) -> list[str]:
        other = open_ledger(url)
        try:
            conn = other._connection()
            return [conn.execute(f"SHOW {name}").fetchone()[0] for name in settings]
        finally:
            other.close()

    assert ledger._connection().execute("SHOW lock_timeout").fetchone()[0] == "3s"
    # which gateway a session is, for an operator looking for who holds a lock
    name = ledger._connection().execute("SHOW application_name").fetchone()[0]
    assert name == f"onestop {socket.gethostname()}/{os.getpid()}"
    dsn = os.environ["ONESTOP_TEST_PG"]
    given = dsn + ("&" if "?" in dsn else "?") + \
        "options=-c%20lock_timeout%3D5s%20-c%20work_mem%3D9MB"
    assert shown(given, "lock_timeout", "work_mem") == ["5s", "9MB"]
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=7MB -c deadlock_timeout=2s")
    assert shown(dsn, "lock_timeout", "work_mem", "deadlock_timeout") == ["3s", "7MB", "2s"]


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_a_session_gone_silent_in_a_transaction_does_not_stop_the_others(
        demo_people, kit, ledger_url, monkeypatch):
    """A gateway frozen mid-transaction (a paused VM) holding the audit chain's head, which
    every write takes: the server ends its session and the others settle, instead of all of
    them being refused until TCP gives up on it (hours)."""
    from onestop.host.gateway.ledger import postgres

    monkeypatch.setattr(postgres, "IDLE_IN_TRANSACTION_MS", 1000)
    # an operator's commands are not limited: an audit converts rows between its reads
    assert demo_people._connection().execute(
        "SHOW idle_in_transaction_session_timeout").fetchone()[0] == "0"
    frozen = open_ledger(ledger_url)
    frozen._connection()  # serve reads the ledger (its clock check) before it tunes it
    frozen.tune_for_serving()
    try:
        conn = frozen._connection()
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1s"
        conn.execute("BEGIN")
        conn.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        # ...and says nothing more: the lock is the other gateway's for at most 3 s (lock_timeout)
        stored = kit.settle(demo_people, "T-000001", "P1", "B1")
        assert stored.status == "settled"
        with pytest.raises(psycopg.Error, match="idle-in-transaction"):
            conn.execute("SELECT 1")  # its session was ended by the server
    finally:
        frozen.close()


def test_postgresql_that_cannot_be_reached_is_a_clear_error():
    unreachable = open_ledger("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(LedgerError, match="unavailable"):
            unreachable.get_bill("B1")
    finally:
        unreachable.close()


# A gateway stand-in: settles bill after bill and prints each txn_id once settle has returned
# (acknowledged, as the reply to the kiosk would be sent).
LOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    from onestop.host.gateway.ledger import Settlement, open_ledger
    from onestop.host.keys import SigningKey
    from onestop.host.settlement import delta_of
    from onestop.protocol import messages

    url, count = sys.argv[1], int(sys.argv[2])
    kid, key = sys.argv[3], SigningKey(bytes.fromhex(sys.argv[4]))  # the gateway's own
    SETL_TIME = 1795399200  # 2026-11-23 10:00 China time: the day of setl_date below
    ledger = open_ledger(url)

    def build_for(txn_id, digest):
        def build(acc, bill):
            fee = bill.medfee_sumamt
            result = dict(medfee_sumamt=fee, fulamt_ownpay_amt=0, preselfpay_amt=0,
                          inscp_scp_amt=fee, act_pay_dedc=0, hifp_pay=fee // 2, hifmi_pay=0,
                          maf_pay=0, fund_pay_sumamt=fee // 2, psn_cash_pay=fee - fee // 2)
            record = dict(setl_id="S-" + txn_id, txn_id=txn_id, kiosk="kiosk-01",
                          psn_no=bill.psn_no, bill_id=bill.bill_id, setl_time=SETL_TIME,
                          result=result)
            return Settlement(txn_id=txn_id, setl_id="S-" + txn_id, kiosk_id="kiosk-01",
                              psn_no=bill.psn_no, bill_id=bill.bill_id, setl_time=SETL_TIME,
                              setl_date="2026-11-23", result=result,
                              signed=messages.seal_settlement(record, kid, key),
                              request_digest=digest, delta=delta_of(result, bill.med_type))
        return build

    for n in range(count):
        txn_id = "K-%06d" % n
        digest = ("digest:" + txn_id).encode()
        ledger.settle(txn_id, digest, "kiosk-01", "P1", "KB%04d" % n, build_for(txn_id, digest))
        print(txn_id, flush=True)
    """
)


def test_kill_9_under_load_loses_no_acknowledged_settlement_and_doubles_none(
    ledger_url, demo_people, kit
):
    bills = 60
    for n in range(bills):
        demo_people.upsert_bill(kit.bill(f"KB{n:04d}", "P1", amounts=(1_000 + n, 500)))
    gateway = subprocess.Popen(
        [sys.executable, "-c", LOAD_SCRIPT, ledger_url, str(bills), kit.GATEWAY_KID,
         kit.GATEWAY_SEED.hex()],
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged = [gateway.stdout.readline().strip() for _ in range(10)]
    gateway.send_signal(signal.SIGKILL)
    acknowledged += [line.strip() for line in gateway.stdout]  # acks already on their way
    gateway.wait()
    gateway.stdout.close()
    assert gateway.returncode == -signal.SIGKILL

    restarted = open_ledger(ledger_url)
    try:
        for txn_id in acknowledged:
            assert restarted.get_settlement(txn_id) is not None, f"acknowledged {txn_id} lost"
        # The kiosks retry everything that was in flight; each txn settles at most once.
        retried = len(acknowledged) + 1
        if retried < bills:
            kit.settle(restarted, f"K-{retried - 1:06d}", "P1", f"KB{retried - 1:04d}")
        stored = [restarted.get_settlement(f"K-{n:06d}") for n in range(bills)]
        stored = [s for s in stored if s is not None]
        assert len({s.bill_id for s in stored}) == len(stored)
        expected: dict[str, int] = {}
        for settlement in stored:
            expected = plus(expected, settlement.delta)
        assert restarted.accumulations("P1", kit.YEAR) == expected
        settled_events = [e for e in restarted.audit_events() if e["kind"] == "settled"]
        assert sorted(e["txn_id"] for e in settled_events) == sorted(s.txn_id for s in stored)
        assert audit(restarted).ok, audit(restarted).problems
    finally:
        restarted.close()
