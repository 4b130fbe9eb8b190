"""A resident who changes their mind at the confirm page: presses cancel, walks away leaving the
card in, or walks away with it. Nothing is settled, nothing printed, the kiosk goes back to its
welcome page, and the bill is still there to settle later.
"""

from __future__ import annotations

import time

from e2e_support import (
    at_welcome,
    before_visit,
    pending_bill_ids,
    settle_visit,
    shown_after,
    up_to_confirm,
    wait_screen,
)
from onestop.host.sim.rig import Hall

RESIDENT = "P004"
CONFIRM_MS = 2000  # how long the confirm page waits for a resident who walked away
COUNTDOWN_MS = 1500  # its last 1.5 s are counted down on the strip over the titles
HALL_TIMEOUTS = {"confirm": CONFIRM_MS, "more_time": COUNTDOWN_MS}


def left_without_settling(hall: Hall, since: int, pending: list[str],
                          says: tuple[str, ...]) -> None:
    message = wait_screen(hall, "error", since)
    for words in says:
        assert words in message
    hall.card.pull()
    hall.wait_welcome()
    assert shown_after(hall, since)[-2:] == ["error", "welcome"]
    assert hall.settlements() == [] and hall.printer.receipts == []
    assert pending_bill_ids(hall, RESIDENT) == pending  # the bill is still there


def test_cancel_at_the_confirm_page(shared_hall: Hall) -> None:
    hall = shared_hall
    pending = pending_bill_ids(hall, RESIDENT)
    assert pending
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    hall.touch("b1")
    left_without_settling(hall, since, pending,
                          ("Cancelled", "Nothing was settled", "Please take your card"))


def test_walking_away_from_the_confirm_page_leaving_the_card(shared_hall: Hall) -> None:
    hall = shared_hall
    pending = pending_bill_ids(hall, RESIDENT)
    assert pending
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    # nobody touches anything: the page gives up after CONFIRM_MS
    left_without_settling(hall, since, pending,
                          ("Timed out", "Cancelled, nothing was settled", "Please take your card"))


def test_a_resident_still_reading_touches_the_countdown_and_the_page_waits(
        shared_hall: Hall) -> None:
    hall = shared_hall
    pending = pending_bill_ids(hall, RESIDENT)
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    first_end = hall.display.page_shown_at + CONFIRM_MS / 1000
    assert hall.display.wait_for(lambda screen: screen.visible("more"), timeout=CONFIRM_MS)
    strip = hall.display.text("more")
    assert "点这里继续" in strip and "touch here for more time" in strip
    hall.touch("more", wait=False)
    assert hall.firmware is not None
    assert hall.firmware.wait_event("more_time", timeout=1)["step"] == "confirming"
    assert hall.display.wait_for(lambda screen: not screen.visible("more"), timeout=1)
    time.sleep(max(0.0, first_end + 0.3 - time.monotonic()))
    assert hall.display.page == "confirm"  # past the time it had: the resident asked for more
    hall.touch("b1")  # and then thinks better of it
    left_without_settling(hall, since, pending, ("Cancelled", "Nothing was settled"))


def test_walking_away_from_the_confirm_page_with_the_card(shared_hall: Hall) -> None:
    hall = shared_hall
    pending = pending_bill_ids(hall, RESIDENT)
    assert pending
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    hall.card.pull()
    left_without_settling(hall, since, pending,
                          ("Card taken out", "Cancelled, nothing was settled"))


def test_a_tap_the_instant_the_confirm_page_appears_settles_nothing(shared_hall: Hall) -> None:
    # a double tap on the bill: its second press lands where Confirm now is
    hall = shared_hall
    pending = pending_bill_ids(hall, RESIDENT)
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    assert hall.display.touch("b0")  # at once, not as hall.touch (which reads the page first)
    time.sleep(0.6)  # well past the touch guard (QUICK: 200 ms)
    assert hall.display.page == "confirm" and hall.settlements() == []
    hall.touch("b1")  # read, and meant
    left_without_settling(hall, since, pending, ("Cancelled", "Nothing was settled"))


def test_the_bill_left_behind_settles_on_the_next_visit(shared_hall: Hall) -> None:
    hall = shared_hall
    before = before_visit(hall, RESIDENT)
    seen = settle_visit(hall, RESIDENT)
    (settlement,) = hall.settlements()
    assert settlement.result == before.expected(settlement)
    assert seen.you_pay == settlement.result["psn_cash_pay"]
    assert len(hall.receipts()) == 1


def test_a_power_cut_at_the_confirm_page_tells_the_resident_nothing_was_settled(
        make_hall) -> None:
    """The power goes at the confirm page, the card stays in. As it starts again the kiosk asks
    for the card, and says how to tell what was settled: a bill with a receipt is; this one,
    without, is not, and the card goes in again to settle it. A later visit's take-card page
    says nothing of a restart."""
    hall = make_hall()
    pending = pending_bill_ids(hall, RESIDENT)
    at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    hall.power_cut()
    restarted = len(hall.screens)
    hall.boot()
    page = wait_screen(hall, "done", restarted)
    assert "Please take your card" in page
    assert "The kiosk restarted: a bill with a receipt is settled" in page
    assert "No receipt: not settled, insert your card again" in page
    assert hall.settlements() == [] and pending_bill_ids(hall, RESIDENT) == pending
    hall.card.pull()
    hall.wait_welcome()
    since = len(hall.screens)
    settle_visit(hall, RESIDENT)  # the card in again: the bill settles
    hall.firmware.wait_event("txn_done")
    assert len(hall.settlements()) == 1
    after = "\n".join(screen.words for screen in hall.screens[since:])
    assert "The kiosk restarted" not in after
