"""Two `kiosk gateway serve` processes on one PostgreSQL ledger. Each settle's retry goes to the
*other* gateway and gets the very same signed settlement; then one gateway is killed (-9) under
load and its kiosks resolve their in-doubt settlements on the survivor: still exactly once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from onestop.host.bench.gateway import GatewayProcess, provision_gateway
from onestop.host.gateway.kiosk_client import KioskConnection, new_txn_id
from onestop.host.gateway.ledger import Ledger
from test_crash import Hall, check_exactly_once, load_until, power_cut, resolve_all


@pytest.fixture
def ledger_url(ledger_url: str) -> str:
    """Several gateway processes share a ledger only on PostgreSQL."""
    if not ledger_url.startswith("postgresql"):
        pytest.skip("two gateways on one ledger is the PostgreSQL deployment")
    return ledger_url


@pytest.fixture
def gateways(ledger: Ledger, ledger_url: str, tmp_path: Path):
    provision_gateway(ledger, tmp_path / "gateway.key")  # both run with the same gateway key
    pair = [GatewayProcess(ledger_url, tmp_path / "gateway.key", tmp_path / f"gateway-{n}.log")
            for n in "ab"]
    yield pair
    for gateway in pair:
        gateway.kill()


async def test_every_retry_to_the_other_gateway_returns_the_same_settlement(
        ledger: Ledger, gateways: list[GatewayProcess], tmp_path: Path) -> None:
    ports = await asyncio.gather(*(asyncio.to_thread(g.start) for g in gateways))
    hall = Hall(ledger, tmp_path, 4, "K-PAIR")

    async def kiosk(index: int) -> int:
        client = hall.clients[index]
        near = await KioskConnection.open_tcp(client, "127.0.0.1", ports[index % 2])
        far = await KioskConnection.open_tcp(client, "127.0.0.1", ports[1 - index % 2])
        retried = 0
        try:
            for resident in hall.residents[index]:
                await near.call("person_info", card=resident.card)  # their card, at this kiosk
                for bill_id in resident.bill_ids[:4]:
                    pre = await near.call("pre_settle", psn_no=resident.psn_no, bill_id=bill_id)
                    ask = {"psn_no": resident.psn_no, "bill_id": bill_id,
                           "txn_id": new_txn_id(),
                           "confirmed_cash": pre["result"]["psn_cash_pay"]}
                    # one request outstanding per kiosk (its counter orders them), so the
                    # retry follows the first answer, which the kiosk "lost"
                    first = await near.call("settle", **ask)
                    retry = await far.call("settle", **ask)
                    assert retry["settlement"] == first["settlement"]
                    hall.tally.acknowledged[ask["txn_id"]] = client.open_settlement(
                        first["settlement"])["setl_id"]
                    retried += 1
        finally:
            await near.close()
            await far.close()
        return retried

    counts = await asyncio.gather(*(kiosk(index) for index in range(4)))
    assert sum(counts) == 4 * 2 * 4
    check_exactly_once(ledger, hall.tally)
    assert [await asyncio.to_thread(g.stop) for g in gateways] == [0, 0]


async def test_kill_9_of_one_gateway_then_resolving_on_the_other_is_exactly_once(
        ledger: Ledger, gateways: list[GatewayProcess], tmp_path: Path) -> None:
    ports = await asyncio.gather(*(asyncio.to_thread(g.start) for g in gateways))
    hall = Hall(ledger, tmp_path, 6, "K-FAIL")
    victim, survivor = gateways
    # kiosks 0, 2, 4 talk to the victim and 1, 3, 5 to the survivor
    await load_until(hall, ports, power_cut(victim))
    assert hall.tally.errors["ConnectionError"] >= 1, dict(hall.tally.errors)  # mid-load
    check_exactly_once(ledger, hall.tally)
    in_doubt = len(hall.tally.in_doubt)
    assert await resolve_all(hall, survivor.port) == in_doubt
    check_exactly_once(ledger, hall.tally)
    assert await asyncio.to_thread(survivor.stop) == 0

