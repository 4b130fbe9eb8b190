"""`kiosk bench gateway` runs end to end (a gateway process, signed kiosks, the ledger check) and
reports its figures beside the targets. Speed is not asserted here: the figures are the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from onestop.host.gateway.ledger import open_ledger


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_bench_settles_checks_the_ledger_and_prints_its_figures(backend: str) -> None:
    command = [sys.executable, "-m", "onestop.host.cli", "bench", "gateway",
               "--kiosks", "4", "--seconds", "1", "--floor-seconds", "0.3", "--json"]
    if backend == "postgresql":
        dsn = os.environ.get("ONESTOP_TEST_PG")
        if not dsn:
            pytest.skip("set ONESTOP_TEST_PG to bench on PostgreSQL too")
        command += ["--db", dsn]  # the bench makes its own schema and drops it
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    table, figures_line = result.stdout.rsplit("\n", 2)[0], result.stdout.splitlines()[-1]
    figures = json.loads(figures_line)
    assert figures["settlements"] > 0
    assert (figures["lost"], figures["duplicated"]) == (0, 0)
    assert figures["floor"] > 0 and figures["rate"] > 0
    for label in ("settlements/s", "settle p99 (ms)", "lost", "duplicated", "floor",
                  "throughput / floor"):
        assert label in table
    assert ">= 500" in table and "<= 150" in table  # the targets stand beside the figures
    # a settlement's CPU counted in floor exchanges, beside what the share's target allows
    cost = (figures["gateway_cpu"] + figures["kiosks_cpu"]) * figures["floor"] / figures["rate"]
    assert figures["cost_in_floor"] == pytest.approx(cost, abs=0.01) and cost > 0
    cores = os.cpu_count()
    assert f"{figures['cost_in_floor']:.2f}" in table and f"<= {cores / 0.4:.2f} for 40%" in table


def test_a_kiosk_process_that_cannot_reach_the_gateway_fails_the_bench_with_its_reason(
        tmp_path) -> None:
    import socket

    from onestop.host.bench.gateway import BenchError, Fleet, GatewayProcess, run_fleets
    from onestop.host.gateway.kiosk_client import KioskClient, MemoryCounter
    from onestop.host.keys import SigningKey, VerifyingKey

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = KioskClient("K-LOST", SigningKey.generate(), MemoryCounter(), "gw",
                         VerifyingKey(SigningKey.generate().public_key))
    not_started = GatewayProcess("sqlite:///unused", tmp_path / "key", tmp_path / "log")
    with pytest.raises(BenchError, match="kiosk fleet process failed: ConnectionRefusedError"):
        run_fleets([Fleet([client], [[]])], port, 1.0, not_started)


def test_a_ledger_the_bench_cannot_reach_is_one_clear_line() -> None:
    import socket

    with socket.socket() as probe:  # a port no PostgreSQL listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "onestop.host.cli", "bench", "gateway", "--kiosks", "2",
         "--seconds", "1", "--db", f"postgresql://postgres@127.0.0.1:{port}/test"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot set up a ledger" in result.stderr and "unavailable" in result.stderr


def test_the_bench_refuses_a_ledger_in_use(db: str) -> None:
    """Its own gateway key, kiosks and thousands of settlements must never go into a real
    ledger (it crashed on the second active gateway key, having enrolled its own)."""
    with open_ledger(db) as ledger:
        before = ledger.list_keys()
    result = subprocess.run(
        [sys.executable, "-m", "onestop.host.cli", "bench", "gateway", "--kiosks", "2",
         "--seconds", "1", "--db", db], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"is in use (it holds the keys {before[0].kid})" in result.stderr
    with open_ledger(db) as ledger:
        assert ledger.list_keys() == before


# ---- the bench's kiosks meet a gateway that misbehaves: they end their run and say why,
# never hang (the bench must always finish and print its figures)


async def _one_kiosk_against(answer, timeout_s: float = 0.3):
    """A VisitingKiosk with one resident, against a fake gateway that handles each frame with
    `answer(payload, transport, client)`; returns the tally when its run ends."""
    import asyncio

    from onestop.host.bench.gateway import (
        BenchResident,
        Tally,
        VisitingKiosk,
        ssn_with_check_digit,
    )
    from onestop.host.gateway.kiosk_client import KioskClient, MemoryCounter
    from onestop.host.keys import SigningKey, VerifyingKey
    from onestop.protocol import framing

    gateway_key = SigningKey.generate()
    client = KioskClient("K-1", SigningKey.generate(), MemoryCounter(), "gw",
                         VerifyingKey(gateway_key.public_key))

    class FakeGateway(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.deframer = transport, framing.Deframer()

        def data_received(self, data):
            self.deframer.receive_data(data)
            while (payload := self.deframer.next_frame()) is not None:
                answer(payload, self.transport, client, gateway_key)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeGateway, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tally = Tally()
    kiosk = await VisitingKiosk.open_tcp(client, tally, "127.0.0.1", port)
    kiosk.timeout_s = timeout_s
    card = {"ssn": ssn_with_check_digit("13063019600101000"), "card_no": "BN0000001",
            "card_id": "130630D000000001", "name": "测试", "issue": "2020-01-01",
            "expiry": "2035-01-01"}
    resident = BenchResident("P1", card, ["B1", "B2"])
    await asyncio.wait_for(kiosk.visits([resident], loop.time() + 30), 10)
    await kiosk.close()
    server.close()
    return tally


def _refusal_frame(payload, client, gateway_key, code: str) -> bytes:
    """The gateway's signed `error` answer to the request in `payload`."""
    from onestop.host.gateway import fastwire
    from onestop.host.keys import VerifyingKey
    from onestop.protocol import messages

    _kid, request = fastwire.open(payload, lambda _kid: VerifyingKey(client.key.public_key))
    reply = messages.error_reply(request, code, "refused for the test", 1)
    return fastwire.encode_frame(fastwire.seal(reply, "gw", gateway_key))


def test_a_bench_kiosk_whose_gateway_goes_quiet_gives_up_after_its_timeout() -> None:
    import asyncio

    tally = asyncio.run(_one_kiosk_against(lambda *_: None))
    assert tally.errors == {"TimeoutError": 1}
    assert tally.acknowledged == {} and tally.in_doubt == {}


def test_a_bench_kiosk_whose_gateway_hangs_up_mid_visit_ends_its_run() -> None:
    import asyncio

    def hang_up(payload, transport, client, gateway_key):
        transport.close()

    tally = asyncio.run(_one_kiosk_against(hang_up))
    assert tally.errors == {"ConnectionError": 1}


def test_a_refused_request_is_counted_and_the_kiosk_goes_on_to_its_next_bill() -> None:
    import asyncio

    asked = []

    def refuse_then_quiet(payload, transport, client, gateway_key):
        asked.append(payload)
        if len(asked) <= 2:  # each bill's person_info is refused; then silence
            transport.write(_refusal_frame(payload, client, gateway_key, "unknown_person"))

    tally = asyncio.run(_one_kiosk_against(refuse_then_quiet))
    assert tally.errors == {"unknown_person": 2}
    assert tally.exchanges == 0  # refusals are not counted as answered requests
    assert tally.ran_out_of_bills == 1  # both bills tried, then the kiosk's run ended


def bench_figures(floor_runs: tuple[float, float]) -> Any:
    from onestop.host.bench.gateway import Figures

    return Figures(
        kiosks=200, seconds=10.0, warmup=1.0, checked=6000, ledger="sqlite:///x.sqlite",
        settlements=5800, rate=580.0, exchange_rate=2320.0, p50_ms=88.0, p99_ms=140.0,
        errors={}, lost=0, duplicated=0, in_doubt_settled=0, in_doubt_not_found=0,
        floor=sum(floor_runs) / 2, floor_board=600.0, workers=2, kiosk_processes=2,
        ran_out_of_bills=0, gateway_cpu=1.2, kiosks_cpu=0.7, floor_runs=floor_runs)


def test_a_floor_that_moved_during_the_run_is_said_to_make_the_share_uncertain() -> None:
    # This machine's speed swings by a quarter within a minute (floors of 1,267 before and
    # 1,926 after one run): the share printed then is that much in doubt, and says so.
    from onestop.host.bench.gateway import format_table

    steady = format_table(bench_figures((1500.0, 1560.0)))
    moved = format_table(bench_figures((1267.0, 1926.0)))
    assert "differ by" not in steady
    assert ("note: the floor before and after the run differ by 41%: this machine's speed "
            "changed meanwhile, so the share is that uncertain; run again") in moved
    # the share itself stands as measured, against the mean of the two floors
    assert "36.3%" in moved and "(before 1267, after 1926)" in moved
