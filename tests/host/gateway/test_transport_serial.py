"""The gateway on a serial line: a kiosk on a real pseudo-terminal pair (host/sim/link.py) at
115200 baud settles through the same framing as over TCP, and noise on the line is skipped —
on asyncio's event loop and on uvloop's, which `kiosk gateway serve` runs on (eventloop.py) and
which watches the line's descriptor with its own reactor."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from onestop.host.gateway import eventloop, logs
from onestop.host.gateway.kiosk_client import KioskConnection, enroll_kiosk
from onestop.host.gateway.ledger import KeyRecord, Ledger
from onestop.host.gateway.server import GatewayConfig, RunningGateway, start_gateway
from onestop.host.gateway.transports import SerialSpec, SerialStream
from onestop.host.keys import SigningKey, save_signing_key
from onestop.host.sim.link import SerialLink
from test_handlers import card_of, seed_demo


@contextlib.asynccontextmanager
async def serial_gateway(
    ledger: Ledger, tmp_path: Path, device: Path | None = None, log: io.StringIO | None = None
) -> AsyncIterator[tuple[RunningGateway, SerialLink]]:
    """A gateway serving one serial line (`device`, or the kiosk's line), the kiosk's end of
    it, for the length of a test; its log at info level in `log` if given."""
    key = SigningKey.generate()
    save_signing_key(tmp_path / "gateway.key", key)
    ledger.add_key(
        KeyRecord(kid="gateway-01", role="gateway", public_key=key.public_key, status="active")
    )
    logs.configure("warning" if log is None else "info", log or io.StringIO())
    link = SerialLink("kiosk-01", baud=115200)
    config = GatewayConfig(
        db=f"sqlite:///{tmp_path / 'ledger.sqlite'}", key_path=tmp_path / "gateway.key"
    )
    running = await start_gateway(
        config, ("127.0.0.1", 0), serials=[SerialSpec(str(device or link.host_path), 115200)]
    )
    try:
        yield running, link
    finally:
        await running.close()
        link.close()


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    """Serial is a transport: one backend is enough (SQLite)."""
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


async def test_a_kiosk_on_a_serial_line_settles_and_line_noise_is_skipped(
    ledger: Ledger, tmp_path: Path
) -> None:
    assert await settle_over_serial(ledger, tmp_path) == "asyncio"


def test_the_same_on_uvloop_the_loop_the_gateway_serves_on(ledger: Ledger, tmp_path: Path) -> None:
    pytest.importorskip("uvloop", reason="uvloop is not available on this platform")
    assert eventloop.run(settle_over_serial(ledger, tmp_path)) == "uvloop"


async def settle_over_serial(ledger: Ledger, tmp_path: Path) -> str:
    """A kiosk settles over a serial line; returns the event loop it ran on."""
    async with serial_gateway(ledger, tmp_path) as (_running, link):
        await _settle_over(link, ledger)
    return eventloop.loop_name()


async def _settle_over(link: SerialLink, ledger: Ledger) -> None:
    residents = seed_demo(ledger)
    client = enroll_kiosk(ledger, "K-SERIAL")
    kiosk = await KioskConnection.open_serial(client, link.device_path, 115200)
    try:
        await kiosk.send_raw(b"\x13\x37 line noise before the kiosk speaks \xff\x00")
        signed_in = await kiosk.call("sign_in", fw="1.0.0", board="rp2040")
        assert signed_in["gateway"] == "gateway-01"
        person = await kiosk.call("person_info", card=card_of(residents["P003"]))
        pre = await kiosk.call("pre_settle", psn_no=person["psn_no"], bill_id="B-130630-0003")
        settled = await kiosk.call(
            "settle",
            psn_no="P003",
            bill_id="B-130630-0003",
            txn_id="TXN-SERIAL-01",
            confirmed_cash=pre["result"]["psn_cash_pay"],
        )
        record = client.open_settlement(settled["settlement"])
        assert record["result"] == pre["result"]
    finally:
        await kiosk.close()
    stored = ledger.get_settlement("TXN-SERIAL-01")
    assert stored is not None and stored.signed == settled["settlement"]
    assert link.bytes_to_host > 0 and link.bytes_to_device > 0


async def test_a_missing_serial_line_is_logged_once_and_served_when_plugged_in(
        ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # it used to log a warning every second for as long as the adapter was unplugged
    from onestop.host.gateway import server

    monkeypatch.setattr(server, "SERIAL_REOPEN_S", 0.02)
    device, log = tmp_path / "ttyUSB-kiosk", io.StringIO()
    async with serial_gateway(ledger, tmp_path, device, log) as (_running, link):
        await asyncio.sleep(0.4)  # about 20 tries
        events = [json.loads(line) for line in log.getvalue().splitlines()]
        missing = [e for e in events if e["event"] == "serial_unavailable"]
        assert len(missing) == 1 and missing[0]["device"] == str(device)

        device.symlink_to(link.host_path)  # plugged in
        for _ in range(100):
            events = [json.loads(line) for line in log.getvalue().splitlines()]
            if any(e["event"] == "listening" and e.get("device") == str(device)
                   for e in events):
                break
            await asyncio.sleep(0.02)
        (back,) = [e for e in events if e["event"] == "listening" and e.get("device")]
        assert back["down_s"] == 0
        await _settle_over(link, ledger)  # and a kiosk on it is served


NOISE = bytes([0x55, 0xAA, 0x13, 0x7F])  # a cable brushed: a few bytes, no delimiter among them


async def test_noise_on_an_idle_line_costs_neither_end_its_next_frame(
        ledger: Ledger, tmp_path: Path) -> None:
    """Frames were only ended by 0x00, so noise on an idle line became the head of the next
    frame, which then failed its CRC: the kiosk's request or the gateway's answer was lost and
    the kiosk waited out its reply timeout (10 s) before asking again. Each end now writes a
    0x00 before each frame too, and the noise is discarded on its own."""
    async with serial_gateway(ledger, tmp_path) as (_running, link):
        residents = seed_demo(ledger)
        client = enroll_kiosk(ledger, "K-SERIAL")
        kiosk = await KioskConnection.open_serial(client, link.device_path, 115200)
        try:
            await kiosk.call("sign_in", fw="1.0.0", board="rp2040")
            link.inject("device", NOISE)  # towards the kiosk, ahead of the gateway's answer
            await asyncio.sleep(0.2)
            person = await kiosk.call("person_info", card=card_of(residents["P003"]), timeout=5)
            link.inject("host", NOISE)  # towards the gateway, ahead of the kiosk's request
            await asyncio.sleep(0.2)
            bills = await kiosk.call("pending_bills", psn_no=person["psn_no"], timeout=5)
        finally:
            await kiosk.close()
        assert bills["bills"]


async def test_garbage_on_the_line_is_logged_naming_the_line_a_burst_at_a_time(
        ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line at the wrong baud rate (or a noisy one) delivers garbage: it was only counted in
    a metric, so the log read the same as a cut cable's. It is logged now, naming the line and
    what to suspect, with the refusals' limit on how many lines a flood may write."""
    from onestop.host.gateway import server

    monkeypatch.setattr(server, "REFUSED_LOG_BURST", 5)
    monkeypatch.setattr(server, "REFUSED_LOG_WINDOW_S", 0.5)
    log = io.StringIO()
    async with serial_gateway(ledger, tmp_path, log=log) as (_running, link):
        link.inject("host", (NOISE + b"\x00") * 20)  # 20 runs that are not frames

        def events() -> list[dict[str, Any]]:
            return [json.loads(line) for line in log.getvalue().splitlines()]

        async with asyncio.timeout(10):
            while not any(e["event"] == "refused_unlogged" for e in events()):
                await asyncio.sleep(0.05)
        discarded = [e for e in events() if e["event"] == "discarded"]
        assert len(discarded) == 5
        assert {(e["device"], e["baud"], e["code"]) for e in discarded} == {
            (link.host_path, 115200, "malformed")}
        assert "wrong baud rate" in discarded[0]["hint"]
        (summary,) = [e for e in events() if e["event"] == "refused_unlogged"]
        assert summary["frames"] == 15


async def test_a_frame_the_full_line_was_taking_goes_out_whole_when_a_stop_cancels_it() -> None:
    """A stop cancels each line's task, then closes the port. A reply the line had only partly
    taken (its output full: a kiosk slow to read, flow held) must still go out whole: cut,
    the kiosk would never have its answer (a settle's refusal at a key revocation)."""
    import os

    controller, line = os.openpty()
    os.set_blocking(controller, False)
    stream = SerialStream(SerialSpec(os.ttyname(line), 115200))
    try:
        sent_before, added = 0, -1
        while added:  # the line's output full (the kiosk reads nothing), and staying so
            added = 0
            for size in (4096, 256, 16, 1):
                with contextlib.suppress(BlockingIOError):
                    while True:
                        added += os.write(stream._fd, b"\x55" * size)
            sent_before += added
            await asyncio.sleep(0.05)  # the pty moves what it took on to the other end
        frame = b"\x00" + bytes(range(1, 256)) * 4 + b"\x00"
        writing = asyncio.create_task(stream.write(frame))
        await asyncio.sleep(0.05)
        assert not writing.done()  # waiting for the line to have room
        writing.cancel()  # the stop

        received = bytearray()

        async def kiosk_reads() -> None:
            while len(received) < sent_before + len(frame):
                try:
                    received.extend(os.read(controller, 65536))
                except BlockingIOError:
                    await asyncio.sleep(0.01)

        await asyncio.wait_for(kiosk_reads(), 5)
        with pytest.raises(asyncio.CancelledError):
            await writing  # cancelled still, once the frame was out
        assert bytes(received[sent_before:]) == frame
    finally:
        await stream.close()
        os.close(controller)
        os.close(line)
