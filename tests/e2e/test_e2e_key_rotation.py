"""The operator rotates the gateway key under a running hall (README: rotating the gateway key):
a new key (`kiosk gateway init --key NEW`), certified by the offline authority with the next
serial (`kiosk gateway certify`), the gateway restarted with it, the old key revoked. The kiosk
(real firmware, provisioned with the authority's public key) learns the new key at its next
visit without a technician, settles, and its receipt verifies at the counter; a settle reply
forged on the network with the old (leaked) key is refused."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from e2e_support import QUICK, settle_visit
from onestop.host.keys import load_signing_key
from onestop.host.sim.card import Latency
from onestop.host.sim.rig import Hall, kiosk_cli
from onestop.protocol import cbor, cose, messages


def kid_of(out: str) -> str:
    found = re.search(r"gateway key (\S+): created", out)
    assert found, out
    return found.group(1)


def hall_with_authority(tmp_path: Path, stage: Path, ledger_template: Path) -> tuple[Hall, Path]:
    """`kiosk gateway authority-init`, and a hall whose kiosk is provisioned with it."""
    authority = tmp_path / "offline" / "authority.key"
    authority.parent.mkdir()
    out = kiosk_cli("gateway", "authority-init", "--out", str(authority))
    public = load_signing_key(authority).public_key.hex()
    auth_kid = re.search(r"--authority-kid (\S+)", out).group(1)  # type: ignore[union-attr]
    hall = Hall(tmp_path / "hall", stage=stage, ledger_from=ledger_template,
                card_latency=Latency.instant(), timeouts_ms=dict(QUICK),
                authority=(auth_kid, public))
    return hall, authority


def rotate(hall: Hall, authority: Path, serial: int) -> tuple[str, str]:
    """The operator's rotation (README): a new key, certified, served with, the old revoked.
    (old kid, new kid)."""
    [old_kid] = [k["kid"] for k in keys(hall) if k["role"] == "gateway" and
                 k["status"] == "active"]
    new_key = hall.folder / f"gateway-{serial + 1}.key"
    new_kid = kid_of(kiosk_cli("gateway", "init", "--db", hall.db, "--key", str(new_key)))
    kiosk_cli("gateway", "certify", "--authority", str(authority), "--key", str(new_key),
              "--serial", str(serial), "--db", hall.db)
    if hall.gateway_running():
        hall.stop_gateway()
    hall.start_gateway(key=new_key)
    kiosk_cli("gateway", "revoke", "--db", hall.db, "--gateway-id", old_kid)
    return old_kid, new_kid


def test_a_rotated_gateway_key_reaches_the_kiosk_and_the_old_one_is_refused(
        tmp_path: Path, stage: Path, ledger_template: Path) -> None:
    hall, authority = hall_with_authority(tmp_path, stage, ledger_template)
    try:
        hall.boot()
        settle_visit(hall, "P001")  # under the key the kiosk was provisioned with
        assert len(hall.receipts()) == 1
        old_key = load_signing_key(hall.folder / "gateway.key")
        old_kid, new_kid = rotate(hall, authority, 1)

        # whoever holds the leaked key answers the next settle in the gateway's place
        assert hall.tap is not None
        forged: list[bytes] = []
        settles: list[dict[str, Any]] = []

        def forge(way: str, frame: bytes) -> bytes | None:
            msg = cbor.loads(cose.decode1(frame).payload)
            if way == "k2g" and msg["t"] == "settle":
                settles.append(msg)
            elif way == "g2k" and msg["t"] == "settle_reply" and not forged:
                record = cbor.loads(cose.decode1(msg["settlement"]).payload)
                record["result"] = dict(record["result"], psn_cash_pay=0)
                reply = messages.reply(settles[-1], "settle_reply", msg["ts"],
                                       txn_id=msg["txn_id"],
                                       settlement=messages.seal_settlement(record, old_kid,
                                                                           old_key))
                forged.append(messages.seal(reply, old_kid, old_key))
                return forged[-1]
            return None

        hall.tap.rewrite = forge
        settle_visit(hall, "P002")  # the kiosk's next visit, no technician in between
        hall.tap.rewrite = None
        assert len(forged) == 1

        events = hall.firmware.drain() if hall.firmware else []
        changed = [e for e in events if e.get("ev") == "gateway_key_changed"]
        assert [(e["old_kid"], e["kid"], e["serial"]) for e in changed] == [
            (old_kid, new_kid, 1)]
        refused = [e for e in events if e.get("ev") == "gateway_reply_rejected"
                   and e.get("kid") == old_kid]
        assert refused, events[-30:]  # the forged reply
        assert not [e for e in events if e.get("ev") in ("settlement_invalid",
                                                          "gateway_untrusted")]

        # the visit settled once, and its receipt is the genuine one
        settled = [s for s in hall.settlements() if s.psn_no == "P002"]
        assert len(settled) == 1 and settled[0].result["psn_cash_pay"] > 0
        receipts = hall.receipts()
        assert len(receipts) == 2
        [qr] = receipts[-1].qr_codes
        out = kiosk_cli("gateway", "verify-receipt", "--db", hall.db, qr.data.decode())
        assert out.splitlines()[-1].startswith("GENUINE"), out
        assert settled[0].setl_id in receipts[-1].text()
        # the kiosk keeps the new key on its flash
        assert new_kid in (hall.flash / "gateway.json").read_text()
    finally:
        hall.close()


def keys(hall: Hall) -> list[dict[str, Any]]:
    import json

    return json.loads(kiosk_cli("keys", "list", "--db", hall.db, "--json"))


def test_a_settlement_in_doubt_across_the_rotation_is_resolved_at_power_on(
        tmp_path: Path, stage: Path, ledger_template: Path) -> None:
    """The settle committed under the old key, its reply was lost and the kiosk's power cut:
    meanwhile the key was rotated. At power-on the kiosk asks about the settlement before any
    sign-in; the answer is signed by a key it does not know, so it signs in, learns the key, and
    takes the settlement the old key signed (inside the new key's reply): the receipt prints."""
    hall, authority = hall_with_authority(tmp_path, stage, ledger_template)
    try:
        hall.boot()
        assert hall.tap is not None
        tap = hall.tap

        def lose_the_reply(way: str, frame: bytes) -> None:
            if way == "k2g" and cbor.loads(cose.decode1(frame).payload)["t"] == "settle":
                tap.blocked.add("g2k")

        tap.on_frame = lose_the_reply
        hall.settle_first_bill("P001")
        deadline = time.monotonic() + 30
        while not hall.settlements():
            assert time.monotonic() < deadline, "the gateway never settled"
            time.sleep(0.05)
        hall.power_cut()
        tap.on_frame = None
        tap.blocked.clear()
        hall.card.pull()
        old_kid, new_kid = rotate(hall, authority, 1)

        firmware = hall.boot()
        firmware.wait_event("txn_done")
        events = firmware.drain()
        changed = [e for e in events if e.get("ev") == "gateway_key_changed"]
        assert [(e["old_kid"], e["kid"]) for e in changed] == [(old_kid, new_kid)]
        assert not [e for e in events if e.get("ev") == "settlement_invalid"]
        [settlement] = hall.settlements()
        assert cose.decode1(settlement.signed).kid == old_kid  # signed before the rotation
        [receipt] = hall.receipts()
        [qr] = receipt.qr_codes
        out = kiosk_cli("gateway", "verify-receipt", "--db", hall.db, qr.data.decode())
        assert out.splitlines()[-1].startswith("GENUINE"), out
    finally:
        hall.close()
