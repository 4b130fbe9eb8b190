"""Cards that cannot be served: pulled out at each step of the read, the wrong card, an
unreadable one, an expired one. The resident is told clearly, the kiosk goes back to its welcome
page, nothing is settled, and the next resident is served normally.
"""

from __future__ import annotations

import pytest
from e2e_support import (
    add_bill,
    at_welcome,
    before_visit,
    pending_bill_ids,
    printed_of,
    receipt_amounts,
    settle_visit,
    shown_after,
    wait_screen,
)
from onestop.host.sim.cards import deck_card
from onestop.host.sim.rig import Hall

RESIDENT = "P001"
# The read (firmware/drivers/cardreader.py): SELECT the SSSE application; SELECT EF05 and READ
# RECORD 01, 05, 06, 07; SELECT EF06 and READ RECORD 08, 09. `pull_after(n)`: the card leaves
# once it has answered n of them (0: right after the ATR).
READ_APDUS = 9


def settle_another_bill(hall: Hall, bill_id: str) -> None:
    """The next visit: a new bill of the same resident settles normally, as the engine says."""
    add_bill(hall, RESIDENT, bill_id)
    before = before_visit(hall, RESIDENT)
    settled = {s.txn_id for s in hall.settlements()}
    whole = len(hall.receipts())
    apdus = len(hall.card.apdus)
    seen = settle_visit(hall, RESIDENT)
    assert len(hall.card.apdus) - apdus == READ_APDUS  # every step pulled at was a step
    (settlement,) = [s for s in hall.settlements() if s.txn_id not in settled]
    expected = before.expected(settlement)
    assert settlement.result == expected and seen.you_pay == expected["psn_cash_pay"]
    assert len(hall.receipts()) == whole + 1
    assert receipt_amounts(hall.receipts()[-1]) == printed_of(expected)


# After each APDU of the read; and while the first and the last are being exchanged.
PULLS = [(n, False) for n in range(READ_APDUS)] + [(0, True), (READ_APDUS - 1, True)]


@pytest.mark.parametrize(("answered", "mid_apdu"), PULLS,
                         ids=[f"{'during' if mid else 'after'}-{n}" for n, mid in PULLS])
def test_a_card_pulled_during_the_read_cancels_the_visit(
        shared_hall: Hall, answered: int, mid_apdu: bool) -> None:
    hall = shared_hall
    since = at_welcome(hall)
    settled = len(hall.settlements())
    pending = pending_bill_ids(hall, RESIDENT)
    apdus = len(hall.card.apdus)

    hall.card.pull_after(answered, mid_apdu=mid_apdu)
    hall.insert(RESIDENT)

    message = wait_screen(hall, "error", since)
    assert "Card taken out" in message and "nothing was settled" in message
    wait_screen(hall, "welcome", since + 1)
    assert shown_after(hall, since)[-2:] == ["error", "welcome"]
    assert "bills" not in shown_after(hall, since)
    assert len(hall.card.apdus) - apdus == answered + 1  # the read stopped where it failed
    assert len(hall.settlements()) == settled
    assert pending_bill_ids(hall, RESIDENT) == pending

    settle_another_bill(hall, f"B-130630-9{answered:02d}{int(mid_apdu)}")


def test_a_card_pulled_on_the_bills_page_cancels_the_visit(shared_hall: Hall) -> None:
    hall = shared_hall
    add_bill(hall, RESIDENT, "B-130630-9100")
    since = at_welcome(hall)
    settled = len(hall.settlements())
    hall.insert(RESIDENT)
    hall.wait_page("bills")
    hall.card.pull()
    message = wait_screen(hall, "error", since)
    assert "Card taken out" in message and "nothing was settled" in message
    wait_screen(hall, "welcome", since + 1)
    assert len(hall.settlements()) == settled
    settle_another_bill(hall, "B-130630-9101")


@pytest.mark.parametrize(("card", "says"), [
    ("wrong_app", ("This is not a social security card", "Please insert your social security")),
    ("mute", ("The card could not be read", "insert it again")),
    ("garbled_atr", ("The card could not be read", "insert it again")),
    ("P007", ("This card has expired", "Please ask at the counter")),
])
def test_a_card_that_cannot_be_served_is_refused_clearly(
        shared_hall: Hall, card: str, says: tuple[str, ...]) -> None:
    hall = shared_hall
    since = at_welcome(hall)
    settled = len(hall.settlements())
    receipts = len(hall.printer.receipts)

    hall.card.insert(deck_card(card))
    message = wait_screen(hall, "error", since)
    for words in says:
        assert words in message
    # it is still in the slot (a bank card is not called a social security card)
    take = "Please take this card out" if card == "wrong_app" else "Please take your card"
    assert take in message
    hall.card.pull()
    wait_screen(hall, "welcome", since + 1)
    assert "bills" not in shown_after(hall, since)
    assert len(hall.settlements()) == settled
    assert len(hall.printer.receipts) == receipts
    if card == "P007":
        assert pending_bill_ids(hall, "P007")  # the bill waits for the counter

    settle_another_bill(hall, f"B-130630-98{len(card):02d}{card[-1]}")
