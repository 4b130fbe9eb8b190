"""The printer runs out of paper: before a visit, after the resident confirmed but before the
receipt, and part-way through the receipt. A settlement is saved exactly once, the resident is
told it is saved, and once paper is loaded the receipt prints exactly once, whole.
"""

from __future__ import annotations

from collections.abc import Callable

from e2e_support import (
    WAIT_S,
    Before,
    at_welcome,
    before_visit,
    masked_name,
    printed_of,
    receipt_amounts,
    settle_visit,
    shown_after,
    up_to_confirm,
    wait_screen,
)
from onestop.host.sim.rig import Hall

HallFactory = Callable[..., Hall]  # the make_hall fixture

RESIDENT = "P002"
PAPER_SAVED = ("The printer is out of paper",
               "Your settlement is saved; ask staff to load paper to print it")
OUT_OF_SERVICE = ("Out of service", "The printer is out of paper, please ask staff")


def confirm_without_paper(hall: Hall, since: int) -> None:
    """Confirm; the receipt cannot print: the resident is told the settlement is saved."""
    hall.touch("b0")
    message = wait_screen(hall, "error", since)
    for words in (*PAPER_SAVED, "Please wait, or leave: staff will give you the receipt"):
        assert words in message
    assert len(hall.settlements()) == 1  # saved, and only once
    assert hall.receipts() == []


def paper_loaded_prints_once(hall: Hall, before: Before, since: int) -> None:
    """The resident leaves; the kiosk is out of service until paper is loaded, then prints the
    saved receipt once, whole, and welcomes the next resident."""
    assert hall.firmware is not None
    hall.card.pull()
    notice = wait_screen(hall, "error", since + shown_after(hall, since).index("error") + 1)
    for words in OUT_OF_SERVICE:
        assert words in notice
    apdus = len(hall.card.apdus)
    hall.insert("P003")  # the next resident is not served meanwhile (no receipt for them)
    loaded = len(hall.screens)
    hall.printer.load_paper()
    hall.firmware.wait_event("txn_done")
    assert "Please take your card" in wait_screen(hall, "done", loaded)
    assert len(hall.card.apdus) == apdus  # P003's card was never read
    hall.card.pull()
    hall.wait_welcome()
    (settlement,) = hall.settlements()
    assert settlement.receipt_printed  # the gateway was told
    (receipt,) = hall.receipts()
    expected = before.expected(settlement)
    assert settlement.result == expected
    assert receipt_amounts(receipt) == printed_of(expected)
    assert masked_name(before.person.name) in receipt.text()  # masked, as the ID number is
    assert settlement.setl_id in receipt.text()
    # printed with the next resident's card in: it asks them to hand it to the clerk
    assert "Not yours? Hand it to the clerk" in receipt.text()
    assert "Printing a saved receipt" in wait_screen(hall, "printing", loaded)


def test_paper_out_before_the_receipt_prints_it_once_when_loaded(hall: Hall) -> None:
    before = before_visit(hall, RESIDENT)
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    hall.printer.paper_out = True  # the roll ran out while the resident read the amounts
    confirm_without_paper(hall, since)
    paper_loaded_prints_once(hall, before, since)
    assert len(hall.printer.receipts) == 1  # nothing but the one receipt came out


def test_paper_loaded_while_the_resident_waits_with_the_card_in_prints_it_for_them(
        hall: Hall) -> None:
    before = before_visit(hall, RESIDENT)
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    hall.printer.paper_out = True
    confirm_without_paper(hall, since)
    assert hall.firmware is not None
    loaded = len(hall.screens)
    hall.printer.load_paper()  # the clerk comes over; the resident's card is still in
    done = wait_screen(hall, "done", loaded)
    # the visit's own done page, with what they pay (not the take-card page of a kiosk that
    # gave up on them and printed it afterwards)
    assert "Settlement complete" in done and "You pay (yuan)" in done
    assert "Printing a saved receipt" in wait_screen(hall, "printing", loaded)
    hall.firmware.wait_event("txn_done")
    (settlement,) = hall.settlements()
    assert settlement.receipt_printed
    (receipt,) = hall.receipts()
    assert receipt_amounts(receipt) == printed_of(before.expected(settlement))
    assert "Not yours?" not in receipt.text()  # printed for the resident standing there
    hall.card.pull()
    hall.wait_welcome()
    assert len(hall.printer.receipts) == 1


def test_paper_running_out_during_the_receipt_reprints_it_whole_once(hall: Hall) -> None:
    before = before_visit(hall, RESIDENT)
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    hall.printer.paper_left_lines = 10  # less than a receipt
    confirm_without_paper(hall, since)
    (torn,) = hall.printer.receipts
    assert torn.truncated
    paper_loaded_prints_once(hall, before, since)
    torn_again, whole = hall.printer.receipts
    assert torn_again is torn or torn_again == torn
    assert not whole.truncated and whole.cut
    # what came out before the paper ran out is the start of the same receipt, which now
    # says under its title that it is a reprint of one settlement, and (its resident gone,
    # the next one's card in) whose it is not
    title, rest = 2, whole.items[6:]
    assert whole.items[:title] == torn.items[:title]
    assert [item.text for item in whole.items[title:6]] == [
        "补打凭条 同一笔结算", "Reprint - settled once only",
        "非本人凭条请交大厅工作人员", "Not yours? Hand it to the clerk"]
    assert rest[:len(torn.items) - title] == torn.items[title:]
    assert len(torn.items) < len(whole.items)


def test_paper_out_when_a_card_goes_in_serves_nobody_until_loaded(hall: Hall) -> None:
    since = at_welcome(hall)
    hall.printer.paper_out = True
    hall.insert(RESIDENT)
    notice = wait_screen(hall, "error", since)
    for words in OUT_OF_SERVICE:
        assert words in notice
    assert hall.card.apdus == [] and hall.settlements() == []
    hall.card.pull()
    hall.printer.load_paper()
    before = before_visit(hall, RESIDENT)
    seen = settle_visit(hall, RESIDENT)
    (settlement,) = hall.settlements()
    assert settlement.result == before.expected(settlement)
    assert seen.you_pay == settlement.result["psn_cash_pay"]
    assert len(hall.receipts()) == 1
    assert hall.printer.wait_for_receipts(1, WAIT_S)


def test_paper_running_out_at_the_welcome_page_is_noticed_at_once(
        make_hall: HallFactory) -> None:
    # An idle kiosk asked the printer only at its retry (20 s): meanwhile the welcome page went
    # on inviting cards with no paper in, and a technician testing it thought it had failed.
    hall = make_hall(retry_open=60_000)
    since = at_welcome(hall)
    hall.printer.paper_out = True
    notice = wait_screen(hall, "error", since, timeout=5)
    for words in OUT_OF_SERVICE:
        assert words in notice
    hall.printer.load_paper()
    hall.wait_welcome(timeout=5)


def test_a_roll_near_its_end_is_shown_to_the_staff_and_logged_once(
        make_hall: HallFactory) -> None:
    # The sensor's near-end was read and dropped: nobody knew before the roll ran out under a
    # resident.
    hall = make_hall(retry_open=60_000)
    at_welcome(hall)
    assert hall.firmware is not None
    hall.firmware.drain()
    hall.printer.paper_near_end = True
    assert hall.display.wait_for(lambda d: "Paper running low" in d.text("l5"), 5)
    assert "打印纸即将用完" in hall.display.text("l4")
    assert hall.display.text("l1") == "Please insert your social security card"
    settle_visit(hall, RESIDENT)  # near its end still prints
    hall.printer.load_paper()  # a new roll
    assert hall.display.wait_for(
        lambda d: d.page == "welcome" and d.text("l5") == "", 5)
    logged = [event.get("ev") for event in hall.firmware.drain()]
    assert logged.count("paper_near_end") == 1
