"""Gateways sharing a ledger that would settle a resident differently (a policy file of the
same name with other figures, another --timezone) are told: a `rules_differ` warning and
metric, once per difference. Agreeing gateways hear nothing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from pathlib import Path

from onestop.host.bench.gateway import GatewayProcess
from onestop.host.cli import build_parser, main
from onestop.host.gateway import logs, rules, serve_cli
from onestop.host.settlement import load_policy, policy_digest
from test_handlers_regions import regional_policy


def new_gateway_key(db: str, path: Path) -> None:
    """A second gateway (its own key) on the same ledger, as `kiosk gateway init` makes one."""
    with contextlib.suppress(SystemExit):
        main(["gateway", "init", "--db", db, "--key", str(path)])


async def run_gateways(db: str, monkeypatch, *extras: list[str]) -> list[dict]:
    """Serve the ledger with one gateway per `extras` (its extra serve options), all at once
    for a few key checks; the log events."""
    monkeypatch.setattr(serve_cli, "KEY_CHECK_S", 0.1)
    log = io.StringIO()
    logs.configure("info", log)
    tasks = []
    for extra in extras:
        args = build_parser().parse_args(
            ["gateway", "serve", "--db", db, "--listen", "127.0.0.1:0", *extra])
        tasks.append(asyncio.create_task(serve_cli._serve(args)))
        await asyncio.sleep(0.3)
    await asyncio.sleep(0.5)
    assert not any(task.done() for task in tasks)
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return [json.loads(line) for line in log.getvalue().splitlines()]


def told(events: list[dict]) -> list[list[str]]:
    return [e["differences"] for e in events if e["event"] == "rules_differ"]


async def test_another_policy_of_the_same_name_or_another_time_zone_is_told(
        db: str, tmp_path: Path, monkeypatch) -> None:
    other = regional_policy(tmp_path, "reference", None, ratio_percent=75)
    new_gateway_key(db, tmp_path / "b.key")
    new_gateway_key(db, tmp_path / "c.key")
    events = await run_gateways(
        db, monkeypatch, [],
        ["--key", str(tmp_path / "b.key"), "--policy", other],
        ["--key", str(tmp_path / "c.key"), "--timezone", "UTC"])
    ours = policy_digest(load_policy("reference"))
    theirs = policy_digest(load_policy(other))
    assert ours != theirs
    differences = told(events)
    assert [f"policy reference is {theirs} here, {ours} there"] in differences
    assert [f"policy reference is {ours} here, {theirs} there"] in differences
    assert ["time zone UTC here, Asia/Shanghai there"] in differences
    # once per difference and gateway pair, not at every check
    assert len(differences) == len({(e["gateway"], e["other"]) for e in events
                                    if e["event"] == "rules_differ"})


async def test_gateways_that_settle_alike_hear_nothing(db: str, tmp_path: Path,
                                                       monkeypatch) -> None:
    same = regional_policy(tmp_path, "reference", None, deductible_fen=60_000, ratio_percent=70,
                           cut_without_referral=15, preselfpay_percent=10)  # another file
    assert policy_digest(load_policy(same)) == policy_digest(load_policy("reference"))
    new_gateway_key(db, tmp_path / "b.key")
    events = await run_gateways(db, monkeypatch, [],
                                ["--key", str(tmp_path / "b.key"), "--policy", same])
    assert told(events) == []
    assert sum(e["event"] == "serving" for e in events) == 2


def test_two_gateway_processes_with_one_key_on_one_host_are_compared_too(
        db: str, tmp_path: Path) -> None:
    # The usual way to get two: a service, and one started by hand with the same key file.
    # They once shared one record (key@host), each overwriting the other's, and never warned.
    other = regional_policy(tmp_path, "reference", None, preselfpay_percent=20)
    key = tmp_path / "gateway.key"
    new_gateway_key(db, key)
    first = GatewayProcess(db, key, tmp_path / "first.log")
    second = GatewayProcess(db, key, tmp_path / "second.log", extra=("--policy", other))
    try:
        first.start()
        second.start()  # it compares at start-up, with the first's record of a moment ago
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not told(logged(second)):
            time.sleep(0.1)
        ours = policy_digest(load_policy("reference"))
        theirs = policy_digest(load_policy(other))
        assert told(logged(second)) == [[f"policy reference is {theirs} here, {ours} there"]]
    finally:
        first.stop()
        second.stop()


def logged(gateway: GatewayProcess) -> list[dict]:
    events = []
    for line in gateway.log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def test_records_of_gateways_long_stopped_are_removed(ledger) -> None:
    # A record per gateway process: without this they would pile up, one per restart.
    now = 10_000_000
    ledger.record_serving("gw-old@host/11", '{"timezone": "UTC"}', now - rules.FORGET_S - 1)
    ledger.record_serving("gw-recent@host/12", '{"timezone": "UTC"}', now - rules.LIVE_S - 1)
    ours = {"policies": {}, "timezone": "Asia/Shanghai"}
    assert rules.record_and_compare(ledger, "gw-new@host/13", ours, now) == {}  # none live
    assert set(ledger.serving_records()) == {"gw-recent@host/12", "gw-new@host/13"}


def test_a_gateway_restarted_with_another_policy_is_not_warned_against_its_stopped_self(
        db: str, tmp_path: Path) -> None:
    """The operator's update: stop the gateway, start it with the new policy file. The stopped
    one's record said it was serving for another minute, and the new one warned against it
    (an alert to page on, with nothing to act on)."""
    from onestop.host.gateway.ledger import open_ledger

    other = regional_policy(tmp_path, "reference", None, preselfpay_percent=20)
    key = tmp_path / "gateway.key"
    new_gateway_key(db, key)
    before = GatewayProcess(db, key, tmp_path / "before.log")
    before.start()
    assert before.stop() == 0
    ledger = open_ledger(db)
    try:
        assert ledger.serving_records() == {}  # said it stopped serving
        after = GatewayProcess(db, key, tmp_path / "after.log", extra=("--policy", other))
        try:
            after.start()
            time.sleep(1.0)  # its start-up comparison is done by then
            assert told(logged(after)) == []
            assert len(ledger.serving_records()) == 1
        finally:
            after.stop()
    finally:
        ledger.close()
