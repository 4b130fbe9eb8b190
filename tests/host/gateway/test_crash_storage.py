"""A full disk under `kiosk gateway serve` (SQLite): the gateway keeps running, kiosks are told
`unavailable` (the log says why, in words an operator understands), nothing is half-written,
and once space is freed the kiosk resolves its in-doubt settlement exactly once.

The disk fills for real: the gateway process runs with a file-size limit (RLIMIT_FSIZE, with
SIGXFSZ ignored, so a write past it fails with EFBIG as on a full filesystem), and the limit is
raised again from outside (prlimit) to "free space".
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import signal
import sys
from datetime import date
from pathlib import Path

import pytest
from onestop.host.bench.gateway import GatewayProcess, generate_residents, provision_gateway
from onestop.host.gateway.audit import audit
from onestop.host.gateway.kiosk_client import GatewayRefused, KioskConnection, enroll_kiosk
from onestop.host.gateway.ledger import open_ledger

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="prlimit of another process is Linux-only")

ROOM_BYTES = 256 * 1024  # what is left on the "disk" once the gateway starts


def _limit_file_size(limit: int):
    def apply() -> None:  # runs in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return apply


async def test_a_full_disk_refuses_clearly_writes_nothing_half_and_recovers(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with open_ledger(url) as ledger:
        ledger.init()
        provision_gateway(ledger, tmp_path / "gateway.key")
        client = enroll_kiosk(ledger, "K-DISK")
        resident = generate_residents(ledger, 0, 1, 200, date.today().isoformat(),
                                      random.Random(3))[0]
    largest = max(p.stat().st_size for p in tmp_path.iterdir() if p.is_file())
    gateway = GatewayProcess(url, tmp_path / "gateway.key", tmp_path / "gateway.log",
                             preexec_fn=_limit_file_size(largest + ROOM_BYTES))
    port = await asyncio.to_thread(gateway.start)
    acknowledged: dict[str, str] = {}
    try:
        kiosk = await KioskConnection.open_tcp(client, "127.0.0.1", port)
        refusal, in_doubt = None, None
        await kiosk.call("person_info", card=resident.card)
        for bill_id in resident.bill_ids:
            try:
                pre = await kiosk.call("pre_settle", psn_no=resident.psn_no, bill_id=bill_id)
                in_doubt = (f"TXN-DISK-{bill_id[-4:]}", bill_id, pre["result"]["psn_cash_pay"])
                reply = await kiosk.call("settle", psn_no=resident.psn_no, bill_id=bill_id,
                                         txn_id=in_doubt[0], confirmed_cash=in_doubt[2])
            except GatewayRefused as exc:
                refusal = exc
                break
            acknowledged[in_doubt[0]] = client.open_settlement(reply["settlement"])["setl_id"]
            in_doubt = None
        assert refusal is not None, "the disk never filled"
        assert refusal.code == "unavailable"
        # the kiosk hears that the ledger is unavailable, and whether it must ask again; not
        # where the ledger is (the hall's network is no place for the server's files)
        assert refusal.reply["msg"].startswith("the gateway's ledger is unavailable; ")
        assert str(tmp_path) not in refusal.reply["msg"]
        assert acknowledged  # some settled before the disk filled
        assert gateway.process is not None and gateway.process.poll() is None  # still serving
        # space is freed; the same connection carries on
        resource.prlimit(gateway.process.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        if in_doubt is not None:  # the refused settle (if it got that far) is resolved once
            answer = await kiosk.resolve(in_doubt[0], resident.psn_no, in_doubt[1],
                                         in_doubt[2])
            acknowledged[in_doubt[0]] = client.open_settlement(answer["settlement"])["setl_id"]
        await kiosk.close()
    finally:
        assert await asyncio.to_thread(gateway.stop) == 0
    # EFBIG reaches SQLite as an I/O error (ENOSPC as "disk is full"); either way the operator
    # reads in the log which ledger's disk failed
    refused = [json.loads(line) for line in (tmp_path / "gateway.log").read_text().splitlines()
               if '"refused"' in line]
    assert any(event["code"] == "unavailable" and "disk" in event["msg"]
               and str(tmp_path) in event["msg"] for event in refused), refused
    with open_ledger(url, create=False) as ledger:
        for txn_id, setl_id in acknowledged.items():
            stored = ledger.get_settlement(txn_id)
            assert stored is not None and stored.setl_id == setl_id
        settled_bills = [b for b in resident.bill_ids if ledger.get_bill(b).status == "settled"]
        assert len(settled_bills) == len(acknowledged)
        report = audit(ledger)
        assert report.ok, report.problems
        assert report.settlements == len(acknowledged)
