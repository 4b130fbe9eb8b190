"""A board's status LED (boards.mcu StatusLight) under the real MicroPython unix port, told the
kiosk's state through a recording `machine` and `neopixel`: steady in service, blinking on its
own timer out of service and at a fault, a pattern shown again changes nothing, and a board
without an LED in its pin map does nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from onestop.host.fwtools import FIRMWARE_DIR
from onestop.host.mpy import Worker

SUPPORT = Path(__file__).parent / "support"

GREEN, AMBER, RED, DARK = [0, 24, 0], [40, 20, 0], [40, 0, 0], [0, 0, 0]


@pytest.fixture
def mp() -> Iterator[Worker]:
    # a worker of its own per test: the fakes stand in for `machine` for the whole process
    with Worker(heapsize="64K", paths=[FIRMWARE_DIR, SUPPORT]) as worker:
        yield worker


def test_a_plain_led_is_steady_in_service_and_blinks_out_of_it(mp: Worker) -> None:
    steps = mp.call("light_session", "run", {"pin": "LED", "kind": "plain"},
                    ["serving", "out_of_service", "out_of_service", "serving", "fault"], 3)
    serving, out, again, back, fault = steps
    assert serving == {"writes": [["pin", 1]], "timers": []}  # on, no timer
    # on, then off and on as its 1 s timer fires (the kiosk's loop need not run for it)
    assert out == {"writes": [["pin", 1], ["pin", 0], ["pin", 1], ["pin", 0]],
                   "timers": [1000]}
    # shown again: nothing restarted, only the same timer's three toggles
    assert again == {"writes": [["pin", 1], ["pin", 0], ["pin", 1]], "timers": [1000]}
    assert back == {"writes": [["pin", 1]], "timers": [None]}  # the blinking stopped
    assert fault["timers"] == [None, 150] and fault["writes"][:2] == [["pin", 1], ["pin", 0]]


def test_an_rgb_led_shows_each_patterns_colour(mp: Worker) -> None:
    serving, out, fault = mp.call("light_session", "run", {"pin": 48, "kind": "rgb"},
                                  ["serving", "out_of_service", "fault"], 1)
    assert serving["writes"] == [["pixel", GREEN]]
    assert out["writes"] == [["pixel", AMBER], ["pixel", DARK]]
    assert fault["writes"] == [["pixel", RED], ["pixel", DARK]]


def test_a_board_without_a_led_does_nothing(mp: Worker) -> None:
    (step,) = mp.call("light_session", "run", None, ["out_of_service"], 2)
    assert step == {"writes": [], "timers": []}
