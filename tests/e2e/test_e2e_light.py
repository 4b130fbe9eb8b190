"""The board's status LED, as a technician sees it from the hall's door whatever the screen shows
(dark, its cable out): steady while in service, a slow blink out of service, a fast blink when
the kiosk cannot start (it stays at its REPL, still blinking), off without power. The unix board
has no LED: it writes the pattern to FLASH/status_light, which the simulated hall reads.
"""

from __future__ import annotations

import json
import time

from conftest import HallFactory
from e2e_support import at_welcome, wait_screen
from onestop.host.sim.rig import FIRMWARE_LOG, Firmware, Hall

WAIT_S = 10.0
OUT_OF_SERVICE_PAPER = ("Out of service", "The printer is out of paper, please ask staff")


def lit(hall: Hall, pattern: str) -> bool:
    """Whether the light comes to show `pattern` within WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if hall.status_light() == pattern:
            return True
        time.sleep(0.05)
    return False


def test_steady_in_service_blinking_out_of_it_and_dark_without_power(
        make_hall: HallFactory) -> None:
    hall = make_hall(retry_open=60_000)
    since = at_welcome(hall)
    assert lit(hall, "serving"), hall.status_light()
    hall.printer.paper_out = True  # out of service: the screen says why, the light blinks
    notice = wait_screen(hall, "error", since)
    assert all(words in notice for words in OUT_OF_SERVICE_PAPER)
    assert lit(hall, "out_of_service"), hall.status_light()
    hall.printer.load_paper()
    hall.wait_welcome()
    assert lit(hall, "serving"), hall.status_light()
    hall.power_cut()
    assert hall.status_light() == "off"


def test_a_kiosk_that_cannot_start_blinks_its_fault(make_hall: HallFactory) -> None:
    hall = make_hall()
    hall.power_cut()
    (hall.flash / "kiosk.key").write_bytes(b"a damaged flash")
    hall.firmware = Firmware(hall.flash, hall.stage, log_path=hall.folder / FIRMWARE_LOG)
    assert hall.firmware.proc.wait(timeout=60) == 2
    assert hall.status_light() == "fault"
    # each line: the rig's time stamp (date and time), then the firmware's JSON
    logged = [line.split(" ", 2)[2] for line in
              (hall.folder / FIRMWARE_LOG).read_text().splitlines()]
    faults = [event for event in map(json.loads, filter(lambda x: x.startswith("{"), logged))
              if event["ev"] == "fault"]
    assert len(faults) == 1 and "kiosk.key" in faults[0]["error"]  # once, saying what
    assert hall.display.wait_for_page("error", timeout=WAIT_S)
    hall.power_cut()  # the technician switches it off to provision it again
    assert hall.status_light() == "off"


def test_a_kiosk_finishing_a_visit_after_a_power_cut_is_lit(make_hall: HallFactory) -> None:
    """Power came back while a settled receipt was still to print, the card still in: the
    kiosk prints it and waits for the card. It is powered and working: the light is steady
    (dark, it says "no power", and a technician would cut it again in the middle)."""
    from e2e_support import up_to_confirm

    hall = make_hall()
    since = at_welcome(hall)
    up_to_confirm(hall, "P002")
    hall.printer.paper_out = True  # the receipt cannot print: the settlement is saved
    hall.touch("b0")
    assert "Your settlement is saved" in wait_screen(hall, "error", since)
    assert len(hall.settlements()) == 1 and hall.receipts() == []
    hall.power_cut()
    hall.printer.load_paper()
    rebooted = len(hall.screens)
    firmware = hall.boot()
    assert "Printing a saved receipt" in wait_screen(hall, "printing", rebooted)
    firmware.wait_event("txn_done")
    assert hall.card.present  # the resident's card: the kiosk waits for it to be taken
    assert hall.status_light() == "serving"
    assert len(hall.receipts()) == 1
