"""`kiosk bench gateway` runs end to end (a gateway process, signed kiosks, the ledger check) and
reports its figures beside the targets. Speed is not asserted here: the figures are the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


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
