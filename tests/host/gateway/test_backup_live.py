"""`kiosk gateway backup` of an SQLite ledger while `kiosk gateway serve` (two workers) settles
under load from several kiosks: the copy audits clean, holds every settlement acknowledged
before the backup began, exactly once, and a gateway served on the copy answers for them."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from onestop.host.bench.gateway import (
    GatewayProcess,
    Tally,
    VisitingKiosk,
    generate_residents,
    provision_gateway,
)
from onestop.host.gateway.audit import audit
from onestop.host.gateway.bills import settlement_today
from onestop.host.gateway.kiosk_client import KioskClient, KioskConnection, enroll_kiosk
from onestop.host.gateway.ledger import open_ledger

KIOSKS = 6
BEFORE_BACKUP = 40  # settlements acknowledged before the backup starts
AFTER_BACKUP = 20  # ...and more after it ends: the gateway went on serving


async def wait_for(tally: Tally, count: int, kiosks_done: asyncio.Future[object]) -> None:
    while len(tally.acknowledged) < count and not kiosks_done.done():
        await asyncio.sleep(0.005)


def backup(url: str, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onestop.host.cli", "gateway", "backup", "--db", url,
         "--to", str(target)],
        capture_output=True, text=True, timeout=120)


async def test_a_backup_under_load_holds_every_acknowledged_settlement_once(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    copy = tmp_path / "backups" / "ledger-copy.sqlite"
    copy.parent.mkdir()
    today = settlement_today().isoformat()  # China's day, where settlements are booked
    rng = random.Random(11)
    clients: list[KioskClient] = []
    with open_ledger(url) as ledger:
        ledger.init()
        provision_gateway(ledger, tmp_path / "gateway.key")
        residents = []
        for index in range(KIOSKS):
            clients.append(enroll_kiosk(ledger, f"K-BACKUP-{index}"))
            residents.append(generate_residents(ledger, index, 3, 80, today, rng))
    gateway = GatewayProcess(url, tmp_path / "gateway.key", tmp_path / "gateway.log", workers=2)
    tally = Tally()
    try:
        port = await asyncio.to_thread(gateway.start)
        kiosks = [await VisitingKiosk.open_tcp(c, tally, "127.0.0.1", port) for c in clients]
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        done = asyncio.ensure_future(asyncio.gather(*(
            kiosk.visits(mine, loop.time() + 60, stop)
            for kiosk, mine in zip(kiosks, residents, strict=True))))
        await wait_for(tally, BEFORE_BACKUP, done)
        acknowledged_before = dict(tally.acknowledged)
        made = await asyncio.to_thread(backup, url, copy)
        acknowledged_during = len(tally.acknowledged)
        await wait_for(tally, acknowledged_during + AFTER_BACKUP, done)
        stop.set()
        await done
        for kiosk in kiosks:
            await kiosk.close()
        assert await asyncio.to_thread(gateway.stop) == 0
    finally:
        gateway.kill()
    assert made.returncode == 0, made.stderr
    assert len(acknowledged_before) >= BEFORE_BACKUP
    assert len(tally.acknowledged) >= acknowledged_during + AFTER_BACKUP, "serving stalled"
    assert tally.errors == {}, tally.errors  # no kiosk was refused or timed out meanwhile

    with open_ledger(f"sqlite:///{copy}", create=False) as restored:
        report = audit(restored)
        assert report.ok, report.problems
        assert len(acknowledged_before) <= report.settlements <= len(tally.acknowledged)
        assert f"{report.settlements} settlements" in made.stdout
        for txn_id, setl_id in acknowledged_before.items():
            stored = restored.get_settlement(txn_id)
            assert stored is not None, f"{txn_id}, acknowledged before the backup, is missing"
            assert (stored.setl_id, stored.status) == (setl_id, "settled")
        copied = restored.settlements_on(today)
        assert len(copied) == report.settlements
        per_bill = Counter(s.bill_id for s in copied)
        assert [bill for bill, n in per_bill.items() if n > 1] == [], "a bill settled twice"
        assert {s.txn_id for s in copied} <= set(tally.acknowledged) | set(tally.in_doubt)

    # a gateway on the copy answers a kiosk's settlement_query for one of them
    txn_id, setl_id = next(iter(acknowledged_before.items()))
    with open_ledger(f"sqlite:///{copy}", create=False) as restored:
        stored = restored.get_settlement(txn_id)
        assert stored is not None
    client = next(c for c in clients if c.kiosk_id == stored.kiosk_id)
    served = GatewayProcess(f"sqlite:///{copy}", tmp_path / "gateway.key",
                            tmp_path / "restored.log")
    try:
        port = await asyncio.to_thread(served.start)
        connection = await KioskConnection.open_tcp(client, "127.0.0.1", port)
        try:
            answer = await connection.call("settlement_query", txn_id=txn_id)
        finally:
            await connection.close()
        assert await asyncio.to_thread(served.stop) == 0
    finally:
        served.kill()
    assert answer["status"] == "settled"
    assert client.open_settlement(answer["settlement"])["setl_id"] == setl_id
