"""Two `kiosk gateway serve` processes on one PostgreSQL ledger. Each settle's retry goes to the
*other* gateway and gets the very same signed settlement; then one gateway is killed (-9) under
load and its kiosks resolve their in-doubt settlements on the survivor: still exactly once.
A settlement_query to one gateway while the other's settle is stuck at its COMMIT is never
answered not_found, and a settle still on its way when it is answered not_found never commits:
each request advances the kiosk's replay counter inside its own transaction, so the query waits
on the counter row a settle in flight holds, and a settle arriving after the query is a replay.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from onestop.host.bench.gateway import GatewayProcess, provision_gateway
from onestop.host.gateway.audit import audit
from onestop.host.gateway.config import parse_ledger_url
from onestop.host.gateway.kiosk_client import GatewayRefused, KioskConnection, new_txn_id
from onestop.host.gateway.ledger import Ledger
from test_crash import Hall, check_exactly_once, load_until, power_cut, resolve_all
from test_server import FreezingProxy


@pytest.fixture
def ledger_url(ledger_url: str) -> str:
    """Several gateway processes share a ledger only on PostgreSQL."""
    if not ledger_url.startswith("postgresql"):
        pytest.skip("two gateways on one ledger is the PostgreSQL deployment")
    return ledger_url


@pytest.fixture
def gateway_key(ledger: Ledger, tmp_path: Path) -> Path:
    provision_gateway(ledger, tmp_path / "gateway.key")  # every gateway runs with this key
    return tmp_path / "gateway.key"


@pytest.fixture
def gateways(ledger_url: str, gateway_key: Path, tmp_path: Path):
    pair = [GatewayProcess(ledger_url, gateway_key, tmp_path / f"gateway-{n}.log")
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


# ---------------------------------------------------------------- a query and a settle in flight
WAIT_S = 10.0  # for a gateway to get where the test needs it (it takes milliseconds)


class SettleHold:
    """Gateways' settlements held inside PostgreSQL until released: a trigger on settlements
    waits for an advisory lock this test holds. `at="commit"`: a deferred trigger, run in the
    settle's COMMIT (its row inserted, not yet visible: a database slow to commit). "insert":
    before the row is inserted (the settle has looked the txn_id up and locked the bill)."""

    def __init__(self, ledger_url: str, at: str) -> None:
        location = parse_ledger_url(ledger_url)
        self.key = random.getrandbits(62)
        self.conn = psycopg.connect(location.dsn or "", autocommit=True,
                                    options=f"-c search_path={location.schema}")
        self.conn.execute(f"""CREATE FUNCTION hold_settlement() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN
                PERFORM set_config('lock_timeout', '0', true);
                PERFORM pg_advisory_xact_lock_shared({self.key});
                RETURN NEW;
            END $$""")
        when = ("AFTER INSERT ON settlements DEFERRABLE INITIALLY DEFERRED" if at == "commit"
                else "BEFORE INSERT ON settlements")
        kind = "CONSTRAINT TRIGGER" if at == "commit" else "TRIGGER"
        self.conn.execute(f"CREATE {kind} hold_settlement {when} FOR EACH ROW "
                          "WHEN (NEW.status = 'settled') EXECUTE FUNCTION hold_settlement()")
        self.conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))

    def blocked_by(self, pid: int) -> int:
        """The backend of a session waiting for a lock `pid` holds (waits until there is one)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            row = self.conn.execute("SELECT pid FROM pg_stat_activity "
                                    "WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)).fetchone()
            if row is not None:
                return int(row[0])
            time.sleep(0.01)
        raise AssertionError(f"nothing waited for backend {pid}")

    def held(self) -> int:
        """The backend of the settle held here (waits until one is)."""
        return self.blocked_by(self.conn.info.backend_pid)

    def release(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock_all()")

    def close(self) -> None:
        self.release()
        self.conn.close()


class Visit:
    """One resident at one kiosk, with a link to each gateway; the bill priced, not settled."""

    def __init__(self, ledger: Ledger, tmp_path: Path) -> None:
        self.ledger = ledger
        self.hall = Hall(ledger, tmp_path, 1, "K-VOID")
        self.resident = self.hall.residents[0][0]
        self.bill_id = self.resident.bill_ids[0]
        self.links: list[KioskConnection] = []
        self.settle: dict[str, Any] = {}  # the settle request, once priced
        self.accumulations: dict[str, int] = {}  # the resident's, before it

    async def open(self, ports: list[int]) -> None:
        client = self.hall.clients[0]
        self.links = [await KioskConnection.open_tcp(client, "127.0.0.1", port)
                      for port in ports]
        await self.links[0].call("person_info", card=self.resident.card)
        pre = await self.links[0].call("pre_settle", psn_no=self.resident.psn_no,
                                       bill_id=self.bill_id)
        self.settle = {"psn_no": self.resident.psn_no, "bill_id": self.bill_id,
                       "txn_id": new_txn_id(), "confirmed_cash": pre["result"]["psn_cash_pay"]}
        self.accumulations = self.owed()

    def owed(self) -> dict[str, int]:
        return self.ledger.accumulations(self.resident.psn_no, date.today().year)

    def query(self, gateway: int) -> asyncio.Future[dict[str, Any]]:
        return asyncio.ensure_future(self.links[gateway].call(
            "settlement_query", txn_id=self.settle["txn_id"]))

    def check_nothing_settled(self) -> None:
        assert self.ledger.get_settlement(self.settle["txn_id"]) is None
        assert self.ledger.get_bill(self.bill_id).status == "pending"
        assert self.owed() == self.accumulations
        report = audit(self.ledger)
        assert report.ok, report.problems

    async def close(self) -> None:
        for link in self.links:
            await link.close()


@pytest.fixture
async def visit(ledger: Ledger, gateway_key: Path, tmp_path: Path):
    opened = Visit(ledger, tmp_path)
    yield opened
    await opened.close()


async def started(gateways: list[GatewayProcess]) -> list[int]:
    return list(await asyncio.gather(*(asyncio.to_thread(g.start) for g in gateways)))


async def test_a_query_while_the_other_gateways_settle_is_stuck_at_commit_waits_for_it(
        ledger_url: str, gateways: list[GatewayProcess], visit: Visit) -> None:
    """Gateway A's settle has inserted its row and hangs in COMMIT; the kiosk, out of
    patience, asks gateway B. B does not answer not_found (the kiosk would abort, and the
    settlement stand unreceipted): it waits for A's transaction, and answers settled with the
    settlement A signed once A commits."""
    await visit.open(await started(gateways))
    hold = SettleHold(ledger_url, at="commit")
    try:
        settling = asyncio.ensure_future(visit.links[0].call("settle", **visit.settle))
        at_commit = await asyncio.to_thread(hold.held)
        asking = visit.query(1)
        await asyncio.to_thread(hold.blocked_by, at_commit)  # B waits on A's transaction
        assert not asking.done()
        hold.release()
        settled, answer = await settling, await asking
    finally:
        hold.close()
    assert answer["status"] == "settled"
    assert answer["settlement"] == settled["settlement"]
    assert audit(visit.ledger).ok


async def test_a_query_that_outwaits_its_lock_wait_is_told_to_ask_again(
        ledger_url: str, gateway_key: Path, tmp_path: Path, visit: Visit,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, with A stuck longer than B waits for a lock: B answers `unavailable`
    ("nothing was stored": the kiosk keeps the txn in doubt and asks again), never not_found;
    asked again after A's COMMIT, settled."""
    first = GatewayProcess(ledger_url, gateway_key, tmp_path / "gateway-a.log")
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=300")  # B's own, read at its start
    second = GatewayProcess(ledger_url, gateway_key, tmp_path / "gateway-b.log")
    ports = [await asyncio.to_thread(first.start), await asyncio.to_thread(second.start)]
    monkeypatch.delenv("PGOPTIONS")
    hold = SettleHold(ledger_url, at="commit")
    try:
        await visit.open(ports)
        settling = asyncio.ensure_future(visit.links[0].call("settle", **visit.settle))
        await asyncio.to_thread(hold.held)
        with pytest.raises(GatewayRefused) as refused:
            await visit.query(1)
        assert refused.value.code == "unavailable"
        assert "nothing was stored" in refused.value.reply["msg"]
        hold.release()
        settled = await settling
        answer = await visit.query(1)
        assert (answer["status"], answer["settlement"]) == ("settled", settled["settlement"])
    finally:
        hold.close()
        for gateway in (first, second):
            gateway.kill()


async def test_a_query_while_the_other_gateways_settle_is_held_before_its_insert_waits(
        ledger_url: str, gateways: list[GatewayProcess], visit: Visit) -> None:
    """A's settle has looked the txn_id up (absent) and locked the bill, and is held before its
    insert; the kiosk asks B. B waits for A's transaction (it holds the kiosk's replay counter
    row) and answers what A did: settled, never not_found."""
    await visit.open(await started(gateways))
    hold = SettleHold(ledger_url, at="insert")
    try:
        settling = asyncio.ensure_future(visit.links[0].call("settle", **visit.settle))
        held = await asyncio.to_thread(hold.held)
        asking = visit.query(1)
        await asyncio.to_thread(hold.blocked_by, held)
        assert not asking.done()
        hold.release()
        settled, answer = await settling, await asking
    finally:
        hold.close()
    assert (answer["status"], answer["settlement"]) == ("settled", settled["settlement"])


async def test_a_settle_that_reaches_the_ledger_after_not_found_leaves_nothing(
        ledger_url: str, gateway_key: Path, tmp_path: Path, visit: Visit) -> None:
    """The other order: A's link to the database hangs before its settle's transaction has
    begun; B answers not_found (committed). When A's link comes back, its settle is refused
    and the ledger holds nothing of it: bill pending, accumulations unchanged, audit OK."""
    proxy = FreezingProxy.to(ledger_url)
    first = GatewayProcess(proxy.url(ledger_url), gateway_key, tmp_path / "gateway-a.log")
    second = GatewayProcess(ledger_url, gateway_key, tmp_path / "gateway-b.log")
    try:
        await visit.open([await asyncio.to_thread(g.start) for g in (first, second)])
        proxy.frozen.set()
        settling = asyncio.ensure_future(visit.links[0].call("settle", **visit.settle))
        await asyncio.sleep(0.2)  # A takes the frame and waits on its database
        assert (await visit.query(1))["status"] == "not_found"
        proxy.frozen.clear()
        with pytest.raises(GatewayRefused) as refused:
            await settling
        # refused before it is run: its replay counter is below the query's (committed)
        assert refused.value.code == "replay"
        visit.check_nothing_settled()
        assert (await visit.query(0))["status"] == "not_found"
    finally:
        proxy.frozen.clear()
        for gateway in (first, second):
            gateway.kill()
        proxy.close()
