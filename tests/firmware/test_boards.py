"""The boards' pin maps (hardware/boards/*.json) are data the firmware reads: every device has a
UART, no pin is used twice, and the firmware's timeouts suit each board's watchdog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "hardware" / "boards"
DEVICES = ("card", "printer", "display")
CONFIG = (ROOT / "firmware" / "app" / "config.py").read_text()


def spec(name: str) -> dict:
    return json.loads((BOARDS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["unix", "esp32s3", "rp2040"])
def test_every_device_has_a_uart(name: str) -> None:
    board = spec(name)
    assert board["board"] == name
    for role in DEVICES:
        assert board["uarts"][role]["baud"] in (9600, 19200, 38400, 57600, 115200)


@pytest.mark.parametrize("name", ["esp32s3", "rp2040"])
def test_no_pin_or_uart_is_used_twice(name: str) -> None:
    uarts = spec(name)["uarts"].values()
    pins = [u[k] for u in uarts for k in ("tx", "rx")]
    assert len(pins) == len(set(pins))
    hardware = [u["id"] for u in uarts if u.get("kind", "hardware") == "hardware"]
    assert len(hardware) == len(set(hardware))


def test_esp32s3_keeps_off_strapping_usb_and_psram_pins() -> None:
    forbidden = {0, 3, 45, 46, 19, 20, 43, 44, *range(26, 38)}
    pins = {u[k] for u in spec("esp32s3")["uarts"].values() for k in ("tx", "rx")}
    assert not pins & forbidden


def test_pico_w_printer_runs_on_pio0_beside_two_hardware_uarts() -> None:
    uarts = spec("rp2040")["uarts"]
    assert sorted(u["id"] for u in uarts.values() if u["kind"] == "hardware") == [0, 1]
    assert uarts["printer"]["kind"] == "pio"
    assert {uarts["printer"]["sm_tx"], uarts["printer"]["sm_rx"]} <= set(range(4))  # PIO0


@pytest.mark.parametrize("name", ["esp32s3", "rp2040"])
def test_the_watchdog_period_fits_the_board(name: str) -> None:
    period = int(CONFIG.split('"watchdog": ')[1].split(",")[0])
    assert period <= spec(name)["watchdog_max_ms"]
