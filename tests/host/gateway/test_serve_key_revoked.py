"""A gateway whose key an operator revokes while it serves (`kiosk gateway revoke --gateway-id`,
a leaked key) stops within KEY_CHECK_S instead of signing settlements with it until restarted."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import time

from onestop.host.cli import build_parser, main
from onestop.host.gateway import logs, serve_cli
from onestop.host.gateway.ledger import open_ledger


async def serving(db: str, monkeypatch) -> tuple[asyncio.Task[int], io.StringIO]:
    """`kiosk gateway serve` in this event loop, its key checked every 0.1 s; its task (the
    exit status) and its log, once it serves."""
    monkeypatch.setattr(serve_cli, "KEY_CHECK_S", 0.1)
    log = io.StringIO()
    logs.configure("info", log)
    args = build_parser().parse_args(["gateway", "serve", "--db", db, "--listen", "127.0.0.1:0"])
    task = asyncio.create_task(serve_cli._serve(args))
    await asyncio.sleep(0.5)
    assert not task.done()  # serves while its key is active
    return task, log


async def test_a_serving_gateway_stops_once_its_key_is_revoked(db: str, monkeypatch) -> None:
    gateway_task, log = await serving(db, monkeypatch)
    with open_ledger(db) as ledger:
        [gateway] = [key for key in ledger.list_keys() if key.role == "gateway"]

    def revoke() -> int:
        try:
            main(["gateway", "revoke", "--db", db, "--gateway-id", gateway.kid])
        except SystemExit as done:
            return int(done.code or 0)
        return 0

    assert await asyncio.to_thread(revoke) == 0
    revoked_at = time.monotonic()
    assert await asyncio.wait_for(gateway_task, 5) == 3  # stopped on its own, status 3
    assert time.monotonic() - revoked_at < 2
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    assert {"event": "gateway_key_revoked", "kid": gateway.kid, "status": "revoked"}.items() \
        <= next(e for e in events if e.get("event") == "gateway_key_revoked").items()


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
