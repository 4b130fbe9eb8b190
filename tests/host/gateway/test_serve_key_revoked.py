"""A gateway whose key an operator revokes while it serves (`kiosk gateway revoke --gateway-id`,
a leaked key) signs no settlement once the revocation has committed, and stops: at the first
settle it is asked for, or within KEY_CHECK_S, instead of serving with it until restarted."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from onestop.host.cli import build_parser, main
from onestop.host.gateway import eventloop, logs, serve_cli
from onestop.host.gateway.kiosk_client import GatewayRefused, KioskConnection, enroll_kiosk
from onestop.host.gateway.ledger import KeyRecord, open_ledger
from onestop.host.sim.link import SerialLink
from test_handlers import card_of, seed_demo


async def serving(db: str, monkeypatch, check_every: float = 0.1,
                  listen: str = "127.0.0.1:0") -> tuple[asyncio.Task[int], io.StringIO]:
    """`kiosk gateway serve` in this event loop, its key checked every `check_every` s; its
    task (the exit status) and its log, once it serves."""
    monkeypatch.setattr(serve_cli, "KEY_CHECK_S", check_every)
    log = io.StringIO()
    logs.configure("info", log)
    args = build_parser().parse_args(["gateway", "serve", "--db", db, "--listen", listen])
    task = asyncio.create_task(serve_cli._serve(args))
    await asyncio.sleep(0.5)
    assert not task.done()  # serves while its key is active
    return task, log


def revoke(db: str, kid: str) -> int:
    """`kiosk gateway revoke --gateway-id kid`, as an operator runs it; its exit status."""
    try:
        main(["gateway", "revoke", "--db", db, "--gateway-id", kid])
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def gateway_key(db: str) -> KeyRecord:
    with open_ledger(db) as ledger:
        [gateway] = [key for key in ledger.list_keys() if key.role == "gateway"]
    return gateway


async def test_a_serving_gateway_stops_once_its_key_is_revoked(db: str, monkeypatch) -> None:
    gateway_task, log = await serving(db, monkeypatch)
    gateway = gateway_key(db)
    assert await asyncio.to_thread(revoke, db, gateway.kid) == 0
    revoked_at = time.monotonic()
    assert await asyncio.wait_for(gateway_task, 5) == 3  # stopped on its own, status 3
    assert time.monotonic() - revoked_at < 2
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    assert {"event": "gateway_key_revoked", "kid": gateway.kid, "status": "revoked"}.items() \
        <= next(e for e in events if e.get("event") == "gateway_key_revoked").items()


async def test_a_settle_after_the_revocation_is_refused_and_stops_the_gateway_at_once(
        db: str, monkeypatch) -> None:
    """The periodic check is an hour away: the settle itself finds the key revoked, signs
    nothing, is answered `unavailable`, and the gateway stops."""
    with socket.socket() as probe:  # a free port for the gateway to listen on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open_ledger(db) as ledger:
        residents = seed_demo(ledger)
        client = enroll_kiosk(ledger, "K-01")
    gateway_task, log = await serving(db, monkeypatch, check_every=3600,
                                      listen=f"127.0.0.1:{port}")
    kiosk = await KioskConnection.open_tcp(client, "127.0.0.1", port)
    try:
        await kiosk.call("person_info", card=card_of(residents["P001"]))
        priced = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")
        assert await asyncio.to_thread(revoke, db, gateway_key(db).kid) == 0
        with pytest.raises(GatewayRefused) as refused:
            await kiosk.call("settle", psn_no="P001", bill_id="B-130630-0001",
                             txn_id="TXN-AFTER-REVOKE",
                             confirmed_cash=priced["result"]["psn_cash_pay"])
        assert refused.value.code == "unavailable"
        assert "revoked" in refused.value.reply["msg"]
        assert await asyncio.wait_for(gateway_task, 5) == 3
    finally:
        await kiosk.close()
    with open_ledger(db) as ledger:
        assert ledger.get_settlement("TXN-AFTER-REVOKE") is None
        assert [bill.bill_id for bill in ledger.pending_bills("P001")] == ["B-130630-0001"]
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    assert any(e.get("event") == "gateway_key_revoked" for e in events)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_refusal_reaches_a_kiosk_on_a_serial_line_before_the_gateway_stops(
        db: str, monkeypatch, loop: str) -> None:
    """The same over a serial line (a real pty pair, paced at 115200 baud): the settle's
    refusal was written to the line whole before the stop closed the port, so the kiosk gets
    it although the gateway has stopped and its port is closed by the time the kiosk reads it.
    On both event loops: `kiosk gateway serve` runs on uvloop."""
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not available on this platform")
    monkeypatch.setattr(serve_cli, "KEY_CHECK_S", 3600)  # only the settle finds the revocation
    with open_ledger(db) as ledger:
        residents = seed_demo(ledger)
        client = enroll_kiosk(ledger, "K-SERIAL")
    log = io.StringIO()
    logs.configure("info", log)

    async def scenario() -> None:
        link = SerialLink("kiosk-01", baud=115200)
        try:
            args = build_parser().parse_args([
                "gateway", "serve", "--db", db, "--listen", "127.0.0.1:0",
                "--serial", f"{link.host_path}@115200"])
            gateway_task = asyncio.create_task(serve_cli._serve(args))
            async with asyncio.timeout(5):  # the line open (opening it drops what came before)
                while '"serving"' not in log.getvalue():
                    await asyncio.sleep(0.02)
            kiosk = await KioskConnection.open_serial(client, link.device_path, 115200)
            try:
                await kiosk.call("person_info", card=card_of(residents["P001"]))
                assert not gateway_task.done()
                priced = await kiosk.call("pre_settle", psn_no="P001",
                                          bill_id="B-130630-0001")
                assert await asyncio.to_thread(revoke, db, gateway_key(db).kid) == 0
                settle = asyncio.create_task(kiosk.call(
                    "settle", psn_no="P001", bill_id="B-130630-0001",
                    txn_id="TXN-SERIAL-AFTER-REVOKE",
                    confirmed_cash=priced["result"]["psn_cash_pay"], timeout=5))
                # stopped, its port closed: what the kiosk reads now was written before
                assert await asyncio.wait_for(gateway_task, 5) == 3
                with pytest.raises(GatewayRefused) as refused:
                    await settle
                assert refused.value.code == "unavailable"
                assert "revoked" in refused.value.reply["msg"]
            finally:
                await kiosk.close()
        finally:
            link.close()

    if loop == "uvloop":
        eventloop.run(scenario())
    else:
        asyncio.run(scenario())
    with open_ledger(db) as ledger:
        assert ledger.get_settlement("TXN-SERIAL-AFTER-REVOKE") is None
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    assert any(e.get("event") == "gateway_key_revoked" for e in events)


# Both workers serve; worker 1 then finds its key revoked and exits 3. Started again it would be
# refused (2) every second, forever: the supervisor stops the gateway instead, with status 3.
SUPERVISED = """
import os, signal, sys, time
from onestop.host.gateway.logs import EventLog, configure
from onestop.host.gateway.workers import supervise

configure("info")

def run_worker(index, listener, shares, ready_fd):
    if ready_fd is None:  # started again
        return 2
    os.write(ready_fd, b".")
    os.close(ready_fd)
    if index == 0:
        signal.pause()  # serving, until the supervisor's SIGTERM
        return 0
    time.sleep(0.5)
    return 3

sys.exit(supervise(2, run_worker, "127.0.0.1", 0, EventLog()))
"""


def test_workers_stop_all_together_once_one_finds_its_key_revoked() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SUPERVISED], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started < 10
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events if e.get("worker") == 1] == ["worker_exited"]
    assert any(e["event"] == "gateway_stopping" for e in events)


async def test_the_key_is_checked_on_the_gateways_own_ledger_connection(
        db: str, tmp_path, monkeypatch) -> None:
    """The ledger's folder moved while serving (the gateway goes on settling in the file it
    has open): a revocation made in the moved file still stops it."""
    gateway_task, _log = await serving(db, monkeypatch)
    moved = tmp_path.with_name(tmp_path.name + "-moved")
    tmp_path.rename(moved)
    try:
        with open_ledger(f"sqlite:///{moved / 'ledger.sqlite'}", create=False) as ledger:
            [gateway] = [key for key in ledger.list_keys() if key.role == "gateway"]
            ledger.set_key_status(gateway.kid, "revoked")
        assert await asyncio.wait_for(gateway_task, 5) == 3
    finally:
        moved.rename(tmp_path)


async def test_a_key_check_that_fails_is_logged_and_serving_goes_on(db: str, monkeypatch) -> None:
    from onestop.host.gateway.ledger.base import LedgerError
    from onestop.host.gateway.ledger.sqlite import SqliteLedger

    gateway_task, log = await serving(db, monkeypatch)

    def away(self, kid):
        raise LedgerError("the ledger cannot be reached")

    monkeypatch.setattr(SqliteLedger, "get_key", away)
    await asyncio.sleep(0.5)
    assert not gateway_task.done()  # a ledger away is no revocation
    gateway_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gateway_task  # closed as on a stop
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    failed = [e for e in events if e.get("event") == "key_check_failed"]
    assert failed and "the ledger cannot be reached" in failed[0]["error"]


async def test_the_key_check_waits_for_another_writer_without_holding_up_the_kiosks(
        db: str, monkeypatch) -> None:
    """A long `kiosk gateway import-bills` has the ledger's write turn for seconds. The key
    check records the gateway's rules, a write: it waits for that turn on a thread of its own
    while the gateway goes on answering kiosks (it froze the whole gateway until the import
    ended), and records them once the turn is free."""
    import fcntl
    import threading

    from onestop.host.gateway.rules import serving_name
    from onestop.protocol import framing

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open_ledger(db) as ledger:
        client = enroll_kiosk(ledger, "K-01")
    gateway_task, _log = await serving(db, monkeypatch, listen=f"127.0.0.1:{port}")
    kiosk = await KioskConnection.open_tcp(client, "127.0.0.1", port)
    name = serving_name(gateway_key(db).kid, os.getpid())
    with open_ledger(db) as ledger:
        _rules, recorded_before = ledger.serving_records()[name]
    lock = os.open(f"{db.removeprefix('sqlite:///')}-writer.lock", os.O_RDWR)
    # let go after 3 s whatever happens: a gateway frozen until then freezes this test too
    valve = threading.Timer(3.0, fcntl.flock, (lock, fcntl.LOCK_UN))
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the import's turn, as the ledger takes it
        valve.start()
        await asyncio.sleep(0.5)  # a key check (every 0.1 s here) now waits for the turn
        await kiosk.send_raw(framing.encode(b"\xff\x00 not cbor"))
        reply = client.open_reply(await kiosk.receive_payload())
        assert (reply["t"], reply["code"]) == ("error", "malformed")
        assert valve.is_alive(), "the gateway answered only once the other writer let go"
    finally:
        valve.cancel()
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
        await kiosk.close()
    try:  # the turn is free: the checks go on, and record the rules again
        deadline = time.monotonic() + 3.0
        while True:
            with open_ledger(db) as ledger:
                _rules, recorded = ledger.serving_records()[name]
            if recorded > recorded_before or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert recorded > recorded_before
        assert not gateway_task.done()
    finally:
        gateway_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gateway_task
