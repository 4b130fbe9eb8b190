"""The faults the TUI causes on the simulated devices and cables: a screen that powers up
again, noise on a cable, a card pull armed and disarmed."""

from __future__ import annotations

import time

import serial
from onestop.host.sim.card import CardReaderSim, Latency
from onestop.host.sim.display import DisplaySim
from onestop.host.sim.link import SerialLink

END = b"\xff\xff\xff"


def read_for(port: serial.Serial, size: int, timeout: float = 5.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < size and time.monotonic() < deadline:
        got += port.read(size - len(got))
    return got


def test_a_screen_powered_up_again_forgets_what_it_had_half_received() -> None:
    """Plugged in mid-instruction, it starts on its first page and says so; the half
    instruction it had heard must not spoil the first one after (a restart sent as an
    instruction was taken as the tail of one and ignored)."""
    with SerialLink("display", pace=False) as link:
        display = DisplaySim(link.device_path)
        host = serial.Serial(link.host_path, 115200, timeout=0.1)
        try:
            host.write(b"page confirm" + END + b'l0.txt="half')
            assert display.wait_for(lambda d: d.page == "confirm", 5)
            display.restart()
            startup = b"\x00\x00\x00" + END + b"\x88" + END
            assert read_for(host, len(startup)) == startup
            assert display.wait_for(lambda d: d.page == "welcome", 5)
            host.write(b"page done" + END)
            assert display.wait_for(lambda d: d.page == "done", 5)
        finally:
            host.close()
            display.close()


def test_noise_on_a_cable_garbles_what_crosses_until_it_is_taken_off() -> None:
    with SerialLink("card", pace=False) as link:
        device = serial.Serial(link.device_path, 115200, timeout=0.1)
        host = serial.Serial(link.host_path, 115200, timeout=0.1)
        try:
            link.faults["to_host"] = other = lambda chunk: chunk  # a test's own stays
            link.noise(1, seed=7)  # every chunk
            assert link.noisy
            host.write(b"\x02\x00\x02\x31\x00\x33\x03")
            assert read_for(device, 7) != b"\x02\x00\x02\x31\x00\x33\x03"
            link.noise(None)
            assert not link.noisy and "to_device" not in link.faults
            assert "to_host" not in link.faults  # noise() had replaced it
            link.faults["to_host"] = other
            link.noise(None)
            assert link.faults["to_host"] is other  # not noise's: left alone
            host.write(b"clean")
            assert read_for(device, 5) == b"clean"
        finally:
            host.close()
            device.close()


def test_a_card_pull_armed_can_be_disarmed_before_it_fires() -> None:
    with SerialLink("card", pace=False) as link:
        reader = CardReaderSim(link.device_path, latency=Latency.instant())
        try:
            assert reader.pending_fault is None
            reader.pull_after(4, mid_apdu=True)
            assert reader.pending_fault == "pull_mid"
            reader.cancel_fault()
            assert reader.pending_fault is None
        finally:
            reader.close()
