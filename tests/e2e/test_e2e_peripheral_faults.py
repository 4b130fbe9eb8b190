"""The kiosk's own cables failing under a resident: the screen restarting (a brown-out), one
instruction to it garbled, the card reader's cable pulled. The real firmware, the real
drivers and the device simulators on simulated UARTs (tests/firmware/test_escpos_printer.py
has the printer's line faults)."""

from __future__ import annotations

from collections.abc import Callable

from e2e_support import at_welcome, confirm_page
from onestop.host.sim.rig import Hall

HallFactory = Callable[..., Hall]  # the make_hall fixture (a conftest is not importable here)
RESTART = b"rest\xff\xff\xff"  # what the screen hears: it restarts as after a brown-out


def events(hall: Hall) -> list[str]:
    assert hall.firmware is not None
    return [e.get("ev", "") for e in hall.firmware.drain()]


def test_a_screen_that_restarts_mid_visit_is_drawn_again(hall: Hall) -> None:
    # It comes back blank on its first page; the kiosk counted the restart and never redrew:
    # the resident faced an empty screen until the step timed out (a minute).
    at_welcome(hall)
    hall.insert("P001")
    hall.wait_page("bills")
    bills = [hall.display.text(f"b{i}") for i in range(4)]
    hall.links["display"].inject("device", RESTART)
    assert hall.display.wait_for(lambda d: d.page == "welcome", 5)  # blank, on page 0
    hall.wait_page("bills", timeout=5)
    assert [hall.display.text(f"b{i}") for i in range(4)] == bills
    assert "display_restarted" in events(hall)
    hall.touch("b0")  # the redrawn buttons work
    hall.wait_page("confirm")


def test_a_screen_restarted_while_idle_shows_the_welcome_page_again(
        make_hall: HallFactory) -> None:
    hall = make_hall(retry_open=60_000)  # the welcome page is not drawn again meanwhile
    at_welcome(hall)
    welcome = hall.display.text("t_en")
    hall.links["display"].inject("device", RESTART)
    assert hall.display.wait_for(lambda d: d.text("t_en") == "", 5)
    assert hall.display.wait_for(lambda d: d.text("t_en") == welcome, 5)


def test_a_page_instruction_garbled_on_the_line_is_sent_again(hall: Hall) -> None:
    # "page confirm" with one byte flipped: the screen stayed on the page before with the
    # confirm page's texts on it, and the Confirm button did nothing (its touch named the
    # wrong page) until the step timed out.
    garbled = []

    def flip_once(chunk: bytes) -> bytes:
        if not garbled and b"page confirm" in chunk:
            garbled.append(True)
            return chunk.replace(b"page confirm", b"p`ge confirm")
        return chunk

    at_welcome(hall)
    hall.links["display"].faults["to_device"] = flip_once
    hall.insert("P001")
    hall.wait_page("bills")
    hall.touch("b0")
    hall.wait_page("confirm", timeout=5)
    assert garbled
    assert confirm_page(hall).you_pay > 0
    hall.touch("b0")
    hall.wait_page("done")
    assert [s.psn_no for s in hall.settlements()] == ["P001"]


def test_a_card_reader_that_stops_answering_takes_the_kiosk_out_of_service(
        hall: Hall) -> None:
    # The welcome page asked for a card while inserted cards were ignored, and the log had a
    # card_status_error line at every poll (6,000 an hour).
    at_welcome(hall)
    events(hall)
    hall.links["card"].unplug()
    assert hall.display.wait_for(lambda d: d.text("t_en") == "Out of service", 10)
    assert "card reader" in hall.display.text("l1")
    seen = events(hall)
    assert seen.count("card_status_error") == 1
    assert "out_of_service" in seen
    hall.links["card"].plug()
    hall.wait_welcome(timeout=10)
    assert "card_reader_back" in events(hall)
    hall.settle_first_bill("P001")
    hall.wait_page("done")


def test_a_screen_unplugged_and_plugged_back_is_drawn_again_and_logged_once(
        hall: Hall) -> None:
    at_welcome(hall)
    events(hall)
    hall.links["display"].unplug()
    hall.links["display"].inject("device", RESTART)  # it comes back blank, unheard
    assert hall.display.wait_for(lambda d: d.text("t_en") == "", 5)
    hall.firmware.wait_event("display_error", timeout=10)  # the redraw it could not confirm
    hall.links["display"].plug()
    hall.firmware.wait_event("display_back", timeout=15)
    assert hall.display.wait_for(lambda d: d.page == "welcome" and d.text("t_en") != "", 5)
    assert events(hall).count("display_error") <= 1  # once per spell, not at every try


def test_a_card_left_in_while_the_reader_stopped_answering_is_not_served_again(
        hall: Hall) -> None:
    # The reader's silence read as "the slot is empty" and cleared the kiosk's note that the
    # last visit's card might still be in: once the reader answered again, that card started
    # a new visit instead of being asked to come out.
    at_welcome(hall)
    hall.settle_first_bill("P001")
    hall.wait_page("done")  # the resident leaves the card in
    assert hall.firmware is not None
    hall.firmware.wait_event("session_end", timeout=15)
    hall.links["card"].unplug()
    assert hall.display.wait_for(lambda d: d.text("t_en") == "Out of service", 15)
    seen = len(hall.firmware.drain())
    hall.links["card"].plug()
    assert hall.display.wait_for(lambda d: d.text("t_en") == "Please take your card", 10)
    after = hall.firmware.drain()[seen:]
    assert "card_reader_back" in [e.get("ev") for e in after]
    # the card was not read again as a new visit's
    assert [e for e in after if e.get("ev") == "step" and e.get("step") == "reading"] == []
