"""A gateway started with several policies, over TCP in this process, on both ledger backends:
the off-site resident is settled under the policy of the region insured in, and the log says
which policy settled each bill; a region no policy covers is refused with an `error` frame."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from onestop.host.bench.gateway import provision_gateway
from onestop.host.gateway import logs
from onestop.host.gateway.kiosk_client import GatewayRefused, KioskConnection, enroll_kiosk
from onestop.host.gateway.ledger import Ledger
from onestop.host.gateway.server import GatewayConfig, start_gateway
from test_handlers import demo_card, seed_demo
from test_handlers_regions import LOCAL, OFFSITE, TO_BEIJING, regional_policy


async def serve_with(ledger: Ledger, url: str, folder: Path, policies: tuple[str, ...],
                     body: Any) -> list[dict[str, Any]]:
    """Start a gateway with `policies`, run `body(kiosk)`, stop; the JSON log events."""
    provision_gateway(ledger, folder / "gateway.key", kid="gateway-01")
    log = io.StringIO()
    logs.configure("debug", log)
    config = GatewayConfig(db=url, key_path=folder / "gateway.key", policy=policies)
    running = await start_gateway(config, ("127.0.0.1", 0))
    seed_demo(ledger)
    kiosk = await KioskConnection.open_tcp(enroll_kiosk(ledger, "K-01"), "127.0.0.1",
                                           running.address[1])
    try:
        await body(kiosk)
    finally:
        await kiosk.close()
        await running.close()
    return [json.loads(line) for line in log.getvalue().splitlines()]


async def settle(kiosk: KioskConnection, psn_no: str, bill_id: str, txn_id: str) -> int:
    await kiosk.call("person_info", card=demo_card(psn_no))
    pre = await kiosk.call("pre_settle", psn_no=psn_no, bill_id=bill_id)
    cash = pre["result"]["psn_cash_pay"]
    await kiosk.call("settle", psn_no=psn_no, bill_id=bill_id, txn_id=txn_id,
                     confirmed_cash=cash)
    return cash


async def test_each_resident_is_settled_and_logged_under_their_regions_policy(
    ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    henan = regional_policy(tmp_path, "test-4101", ["4101"])

    async def visits(kiosk: KioskConnection) -> None:
        await settle(kiosk, *OFFSITE, txn_id="TXN-REGION-06")
        await settle(kiosk, *LOCAL, txn_id="TXN-REGION-01")

    events = await serve_with(ledger, ledger_url, tmp_path, ("reference", henan), visits)
    serving = next(e for e in events if e["event"] == "serving")
    assert serving["policy"] == "reference, test-4101"  # names, not the files' paths
    settled = {e["txn_id"]: e["policy"] for e in events if e["event"] == "settled"}
    assert settled == {"TXN-REGION-06": "test-4101", "TXN-REGION-01": "reference"}
    # 900 yuan deductible; 65 % less its own 20-point cut on the 10,800 yuan above it
    assert ledger.get_settlement("TXN-REGION-06").result["hifp_pay"] == 486_000


async def test_sign_in_and_the_log_name_the_policies_not_their_files(
    ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    henan = regional_policy(tmp_path, "test-4101", ["4101"])
    default = regional_policy(tmp_path, "test-default", None)
    replies: list[dict[str, Any]] = []

    async def visit(kiosk: KioskConnection) -> None:
        replies.append(await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))

    events = await serve_with(ledger, ledger_url, tmp_path, (henan, default), visit)
    assert replies[0]["policy"] == "test-4101, test-default"  # in the order given
    serving = next(e for e in events if e["event"] == "serving")
    assert serving["policy"] == "test-4101, test-default"
    assert ".toml" not in json.dumps(events)


async def test_a_resident_treated_elsewhere_pays_the_class_b_share_of_the_place_of_treatment(
    ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    # P002, insured here, treated in Beijing: Beijing's catalogue (25 % of class B first)
    beijing = regional_policy(tmp_path, "test-11", ["11"], preselfpay_percent=25)

    async def visit(kiosk: KioskConnection) -> None:
        await settle(kiosk, *TO_BEIJING, txn_id="TXN-REGION-02")

    events = await serve_with(ledger, ledger_url, tmp_path, ("reference", beijing), visit)
    assert ledger.get_settlement("TXN-REGION-02").result["preselfpay_amt"] == 1_000_000
    settled = {e["txn_id"]: e["policy"] for e in events if e["event"] == "settled"}
    assert settled == {"TXN-REGION-02": "reference"}


async def test_a_region_no_policy_covers_is_refused_over_the_wire(
    ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    henan = regional_policy(tmp_path, "test-4101", ["4101"])

    async def visit(kiosk: KioskConnection) -> None:
        await kiosk.call("person_info", card=demo_card(LOCAL[0]))
        with pytest.raises(GatewayRefused) as refused:
            await kiosk.call("pre_settle", psn_no=LOCAL[0], bill_id=LOCAL[1])
        assert refused.value.code == "invalid"
        assert "region 130630" in refused.value.reply["msg"]

    await serve_with(ledger, ledger_url, tmp_path, (henan,), visit)
