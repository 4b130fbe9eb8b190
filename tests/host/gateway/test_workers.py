"""`kiosk gateway serve --workers N`: N processes on one listening socket, the kiosks spread
evenly over them, one ledger; both backends."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import signal
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from onestop.host.bench.gateway import GatewayProcess, generate_residents, provision_gateway
from onestop.host.gateway.audit import audit
from onestop.host.gateway.kiosk_client import KioskConnection, enroll_kiosk, new_txn_id
from onestop.host.gateway.ledger import Ledger

KIOSKS = 16


async def test_two_workers_share_the_port_and_the_ledger(
        ledger: Ledger, ledger_url: str, tmp_path: Path) -> None:
    provision_gateway(ledger, tmp_path / "gateway.key")
    today = date.today().isoformat()
    rng = random.Random(5)
    clients = [enroll_kiosk(ledger, f"K-W{index:02d}") for index in range(KIOSKS)]
    residents = [generate_residents(ledger, index, 1, 2, today, rng)[0]
                 for index in range(KIOSKS)]
    log = tmp_path / "gateway.log"
    gateway = GatewayProcess(ledger_url, tmp_path / "gateway.key", log, workers=2)
    try:
        port = await asyncio.to_thread(gateway.start)

        # every kiosk connected and signed in before any visit ends: all open together
        connections = [await KioskConnection.open_tcp(client, "127.0.0.1", port)
                       for client in clients]
        await asyncio.gather(*(connection.call("sign_in", fw="test", board="cpython")
                               for connection in connections))

        async def visit(index: int) -> str:
            connection = connections[index]
            try:
                resident = residents[index]
                await connection.call("person_info", card=resident.card)
                pre = await connection.call("pre_settle", psn_no=resident.psn_no,
                                            bill_id=resident.bill_ids[0])
                reply = await connection.call(
                    "settle", psn_no=resident.psn_no, bill_id=resident.bill_ids[0],
                    txn_id=new_txn_id(), confirmed_cash=pre["result"]["psn_cash_pay"])
                return connection.client.open_settlement(reply["settlement"])["txn_id"]
            finally:
                await connection.close()

        txn_ids = await asyncio.gather(*(visit(index) for index in range(KIOSKS)))
    finally:
        assert await asyncio.to_thread(gateway.stop) == 0
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    settled_by = Counter(event["worker"] for event in events if event["event"] == "settled")
    assert set(settled_by) == {0, 1}
    assert abs(settled_by[0] - settled_by[1]) <= 2  # the kiosks spread evenly
    assert [e["event"] for e in events if "worker" not in e] == ["listening"]
    # each worker says what serves it: uvloop where it is installed (eventloop.py)
    expected_loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert sorted((e["worker"], e["event_loop"]) for e in events if e["event"] == "serving") \
        == [(0, expected_loop), (1, expected_loop)]
    for txn_id in txn_ids:
        assert ledger.get_settlement(txn_id) is not None
    report = audit(ledger)
    assert report.ok, report.problems


def worker_pids(supervisor: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == supervisor and fields[0] != "Z":
                pids.append(int(entry.name))
    return sorted(pids)


async def test_a_worker_that_dies_is_started_again_and_sigterm_stops_them_all(
        ledger: Ledger, ledger_url: str, tmp_path: Path) -> None:
    if not ledger_url.startswith("sqlite"):
        pytest.skip("the supervisor does not depend on the backend")
    provision_gateway(ledger, tmp_path / "gateway.key")
    client = enroll_kiosk(ledger, "K-AGAIN")
    log = tmp_path / "gateway.log"
    gateway = GatewayProcess(ledger_url, tmp_path / "gateway.key", log, workers=2)
    try:
        port = await asyncio.to_thread(gateway.start)
        assert gateway.process is not None
        first = worker_pids(gateway.process.pid)
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        for _ in range(100):  # started again after RESTART_DELAY_S
            now = worker_pids(gateway.process.pid)
            if len(now) == 2 and now != first:
                break
            await asyncio.sleep(0.05)
        assert len(now) == 2 and first[0] not in now
        for _ in range(4):  # the kiosks still get answers, from either worker
            connection = await KioskConnection.open_tcp(client, "127.0.0.1", port)
            try:
                assert (await connection.call("sign_in", fw="t", board="c"))["t"] == (
                    "sign_in_reply")
            finally:
                await connection.close()
    finally:
        assert await asyncio.to_thread(gateway.stop) == 0  # SIGTERM: all stop, cleanly
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert len([e for e in events if e["event"] == "worker_exited"]) == 1
    # each worker stopped: by itself, or (the one started again, if the stop came while it was
    # still starting) by the signal, which the supervisor reports
    assert sorted(e["worker"] for e in events
                  if e["event"] in ("stopping", "worker_stopped_while_starting")) == [0, 1]


@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_stops_the_gateway_cleanly(
        ledger: Ledger, ledger_url: str, tmp_path: Path, workers: int) -> None:
    # a closed terminal or a habitual `kill -HUP` used to kill it outright, mid-batch
    if not ledger_url.startswith("sqlite"):
        pytest.skip("signals do not depend on the backend")
    provision_gateway(ledger, tmp_path / "gateway.key")
    log = tmp_path / "gateway.log"
    gateway = GatewayProcess(ledger_url, tmp_path / "gateway.key", log, workers=workers)
    try:
        await asyncio.to_thread(gateway.start)
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGHUP)
        assert await asyncio.to_thread(gateway.process.wait, 15) == 0
    finally:
        if gateway.process is not None and gateway.process.poll() is None:
            gateway.kill()
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stopping = [e["signal"] for e in events if e["event"] == "stopping"]
    # each worker stopped itself; with several, the supervisor tells them with SIGTERM
    assert stopping == (["SIGHUP"] if workers == 1 else ["SIGTERM"] * workers)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """The metrics page on `port`: (sample name, its labels as text) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    return {(sample.name, ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))):
            sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def worker_0_metrics_port(log: Path) -> int:
    """The port worker 0's `metrics` event names (a worker's log lines are written at the end
    of its event loop's turn: it may come just after the supervisor's `listening`)."""
    for _ in range(100):
        ports = [event["port"] for event in map(json.loads, (
            line for line in log.read_text().splitlines() if line.startswith("{")))
            if event["event"] == "metrics" and event.get("worker") == 0]
        if ports:
            return int(ports[0])
        await asyncio.sleep(0.1)
    raise AssertionError("worker 0 never said where its metrics are")


async def test_every_workers_metrics_are_on_the_one_metrics_address(
        ledger: Ledger, ledger_url: str, tmp_path: Path) -> None:
    """One scrape target per gateway: each worker's series there, labelled `worker` (worker i
    served its own on PORT + i, N targets to configure); a worker that does not answer is said
    so, and the page still answers."""
    if not ledger_url.startswith("sqlite"):
        pytest.skip("the metrics do not depend on the backend")
    provision_gateway(ledger, tmp_path / "gateway.key")
    today = date.today().isoformat()
    rng = random.Random(7)
    kiosks = 8
    clients = [enroll_kiosk(ledger, f"K-M{index:02d}") for index in range(kiosks)]
    residents = [generate_residents(ledger, index, 1, 1, today, rng)[0]
                 for index in range(kiosks)]
    log = tmp_path / "gateway.log"
    gateway = GatewayProcess(ledger_url, tmp_path / "gateway.key", log, workers=2,
                             extra=("--metrics", "127.0.0.1:0"))
    try:
        port = await asyncio.to_thread(gateway.start)
        metrics_port = await worker_0_metrics_port(log)
        connections = [await KioskConnection.open_tcp(client, "127.0.0.1", port)
                       for client in clients]
        for connection, resident in zip(connections, residents, strict=True):
            await connection.call("person_info", card=resident.card)
            pre = await connection.call("pre_settle", psn_no=resident.psn_no,
                                        bill_id=resident.bill_ids[0])
            await connection.call("settle", psn_no=resident.psn_no,
                                  bill_id=resident.bill_ids[0], txn_id=new_txn_id(),
                                  confirmed_cash=pre["result"]["psn_cash_pay"])
        await connections[0].call("sign_in", fw="1.0.0", board="esp32s3")
        page = await asyncio.to_thread(scrape, metrics_port)
        settled = {labels: value for (name, labels), value in page.items()
                   if name == "onestop_settlements_total"}
        # the kiosks' sign-ins are the ledger's, every worker's: on the page once, unlabelled
        signed_in = {labels: value for (name, labels), value in page.items()
                     if name == "onestop_kiosk_last_sign_in_timestamp_seconds"}
        assert set(signed_in) == {f"kiosk=K-M{index:02d}" for index in range(kiosks)}
        assert signed_in["kiosk=K-M00"] > 0 and signed_in["kiosk=K-M01"] == 0
        # the kiosks spread over both workers: the page has each one's, and all of them
        assert set(settled) == {"kind=new,worker=0", "kind=new,worker=1"}
        assert sum(settled.values()) == kiosks
        assert page[("onestop_connections", "transport=tcp,worker=0")] + page[
            ("onestop_connections", "transport=tcp,worker=1")] == kiosks
        assert page[("onestop_worker_up", "worker=0")] == page[("onestop_worker_up",
                                                                "worker=1")] == 1.0
        for connection in connections:
            await connection.close()

        # a worker that does not answer (stopped, as a stuck one): left out, said so, and the
        # page still answers
        assert gateway.process is not None
        (stuck,) = [event["pid"] for event in map(json.loads, (
            line for line in log.read_text().splitlines() if line.startswith("{")))
            if event["event"] == "serving" and event["worker"] == 1]
        os.kill(stuck, signal.SIGSTOP)
        try:
            gone = await asyncio.to_thread(scrape, metrics_port)
        finally:
            os.kill(stuck, signal.SIGCONT)
        assert (gone[("onestop_worker_up", "worker=0")],
                gone[("onestop_worker_up", "worker=1")]) == (1.0, 0.0)
        assert [labels for (name, labels) in gone if name == "onestop_settlements_total"] \
            == ["kind=new,worker=0"]
        back = await asyncio.to_thread(scrape, metrics_port)
        assert back[("onestop_worker_up", "worker=1")] == 1.0
        assert sum(value for (name, _), value in back.items()
                   if name == "onestop_settlements_total") == kiosks
    finally:
        assert await asyncio.to_thread(gateway.stop) == 0


# The supervisor, told to stop (SIGTERM) while it is still forking its workers. Its first
# fork sends the stop: it arrives, as from systemd or an operator's ^C, the moment the
# supervisor takes signals again. Each worker says it serves and waits for SIGTERM.
STOP_WHILE_FORKING = r"""
import os, signal, sys, time
from onestop.host.gateway import workers
from onestop.host.gateway.logs import EventLog

real_fork = os.fork
forks = []

def fork():
    pid = real_fork()
    if pid:
        forks.append(pid)
        if len(forks) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # blocked now: delivered at the unblock
    return pid

def run_worker(index, listener, shares, ready_fd):
    if ready_fd is not None:
        os.write(ready_fd, b"r")
    while True:
        time.sleep(1)  # SIGTERM (default action) ends it

workers.os.fork = fork
status = workers.supervise(int(sys.argv[1]), run_worker, "127.0.0.1", 0, EventLog())
alive = [pid for pid in forks if os.path.exists(f"/proc/{pid}")]
print(status, len(forks), len(alive))
"""


def test_a_stop_while_the_workers_are_being_started_stops_them_all() -> None:
    """`serve --workers N` stopped (SIGTERM) while it forks: it started the workers it had not
    yet forked after the stop, which nothing told to stop, and served on, waiting for them."""
    import subprocess
    import sys

    workers = 6
    try:
        done = subprocess.run([sys.executable, "-c", STOP_WHILE_FORKING, str(workers)],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:  # killed (-9): its workers die with it (PDEATHSIG)
        raise AssertionError("the supervisor did not stop: workers it started after the "
                             "stop were never told to stop") from None
    status, forked, alive = map(int, done.stdout.split())
    assert status == 0, done.stderr
    assert forked == 1  # no worker started once told to stop
    assert alive == 0
