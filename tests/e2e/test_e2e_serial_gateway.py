"""A kiosk whose gateway is at the end of a serial line (`kiosk gateway serve --serial`, the
kiosk's config gateway kind "serial"): the real firmware and the real gateway on a simulated
cable, and what noise on it costs a resident."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from onestop.host.sim.rig import Hall

HallFactory = Callable[..., Hall]  # the make_hall fixture (a conftest is not importable here)

NOISE = bytes([0x55, 0xAA, 0x13, 0x7F])  # a cable brushed between residents: no 0x00 among them


def test_noise_on_the_idle_line_costs_the_next_resident_nothing(make_hall: HallFactory) -> None:
    """The noise became the head of the next frame, which failed its CRC and was dropped: the
    resident waited out the kiosk's reply timeout (card in to bills 11.5 s instead of 0.7 s)."""
    hall = make_hall(serial_gateway=True, gateway_reply=10000)  # a board's own reply timeout
    line = hall.gateway_line
    assert line is not None and hall.firmware is not None
    hall.wait_welcome()
    hall.insert("P003")  # a first visit opens the kiosk's end of the line
    hall.wait_page("bills")
    hall.card.pull()
    hall.wait_welcome()
    hall.firmware.drain()
    hall.firmware.seen.clear()

    line.inject("host", NOISE)  # towards the gateway
    line.inject("device", NOISE)  # towards the kiosk
    time.sleep(0.5)
    hall.settle_first_bill("P001")
    hall.wait_page("done")

    assert [s.psn_no for s in hall.settlements()] == ["P001"]
    events = [e.get("ev") for e in hall.firmware.drain()]
    assert "gateway_retry" not in events  # every request answered at its first attempt
    assert "gateway_frames_discarded" in events  # the noise that reached the kiosk, logged
    log = [json.loads(text) for text in (hall.folder / "gateway.log").read_text().splitlines()]
    (discarded,) = [e for e in log if e["event"] == "discarded"]  # and the gateway's
    assert discarded["device"] == line.host_path
