"""What the end-to-end tests share: a resident's visit at the simulated hall, what the settlement
engine says the visit must cost, and what the resident saw and took home.

Expected amounts are never written down: they come from the settlement engine
(`onestop.host.settlement`), given the bill and the person as the ledger holds them before the
visit and the settlement date the gateway used.
"""

from __future__ import annotations

import dataclasses
import re
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date

from onestop.host.gateway.ledger import open_ledger
from onestop.host.gateway.ledger.base import Bill, Person, Settlement
from onestop.host.settlement import Claim, load_policy, settle
from onestop.host.sim.printer import Receipt
from onestop.host.sim.rig import Hall, RigError

POLICY = "reference"  # what `kiosk gateway serve` settles with unless told otherwise
WAIT_S = 30.0
# Kiosk timeouts (ms) that keep the suite quick: an error page stays up briefly, unfinished
# transactions are retried every second, a dead gateway is given up on sooner.
QUICK = {"message": 600, "take_card": 5000, "retry_open": 1000, "backoff_first": 200,
         "gateway_reply": 3000, "gateway_connect": 2000, "touch_guard": 200}

# What each fund's share is called on the receipt (firmware/app/receipt.py SHARES) and on the
# confirm page (firmware/app/screens.py confirm).
RECEIPT_LABELS = {"medfee_sumamt": "费用总额 Total", "fulamt_ownpay_amt": "全自费 Not covered",
                  "preselfpay_amt": "先行自付 B share", "inscp_scp_amt": "范围内 In scope",
                  "act_pay_dedc": "起付线 Deductible", "hifp_pay": "医保统筹 Basic",
                  "hifmi_pay": "大病保险 Serious", "maf_pay": "医疗救助 Assistance",
                  "fund_pay_sumamt": "基金支付 Funds"}
SCREEN_LABELS = {"hifp_pay": "Basic insurance", "hifmi_pay": "Serious illness insurance",
                 "maf_pay": "Medical assistance", "medfee_sumamt": "Total bill"}
YOU_PAY = "个人支付(元) You pay (yuan)"
AMOUNT = re.compile(r"-?[0-9]{1,3}(?:,[0-9]{3})*\.[0-9]{2}")


def fen(shown: str) -> int:
    """'16,562.50' -> 1656250."""
    if not AMOUNT.fullmatch(shown):
        raise ValueError(f"not an amount in yuan: {shown!r}")
    whole, cents = shown.replace(",", "").split(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 100 + int(cents))


# ---------------------------------------------------------------- the ledger, before and after
@dataclass
class Before:
    """The ledger's view of a resident before a visit: who, which bills, this year's sums."""

    person: Person
    bills: list[Bill]
    accumulations: dict[int, dict[str, int]]  # year -> amounts

    def expected(self, settlement: Settlement) -> dict[str, int]:
        """The breakdown the engine computes for the bill this settlement settled."""
        (bill,) = [b for b in self.bills if b.bill_id == settlement.bill_id]
        claim = Claim.from_bill(self.person, bill, settlement.setl_date)
        return settle(load_policy(POLICY), claim, self.accumulations[claim.year]).breakdown


def before_visit(hall: Hall, psn_no: str) -> Before:
    year = date.today().year
    with closing(open_ledger(hall.db)) as ledger:
        person = ledger.get_person(psn_no)
        assert person is not None, f"no {psn_no} in the ledger"
        return Before(person, ledger.pending_bills(psn_no),
                      {y: ledger.accumulations(psn_no, y) for y in (year - 1, year, year + 1)})


def pending_bill_ids(hall: Hall, psn_no: str) -> list[str]:
    with closing(open_ledger(hall.db)) as ledger:
        return [b.bill_id for b in ledger.pending_bills(psn_no)]


# ---------------------------------------------------------------- what the resident saw
def wait_screen(hall: Hall, page: str, since: int = 0, timeout: float = WAIT_S) -> str:
    """Every text on the first `page` screen shown from screen number `since` on (waiting for
    it to appear)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for screen in hall.screens[since:]:
            if screen.page == page:
                return screen.words
        time.sleep(0.02)
    raise RigError(f"no {page!r} screen from screen {since} on; shown: "
                   f"{shown_after(hall, since)}\n{hall.story()}")


def shown_after(hall: Hall, since: int) -> list[str]:
    """Pages shown since screen number `since`, a page shown twice running counted once."""
    pages: list[str] = []
    for screen in hall.screens[since:]:
        if not pages or pages[-1] != screen.page:
            pages.append(screen.page)
    return pages


def at_welcome(hall: Hall) -> int:
    """Wait until the kiosk shows its welcome page with the slot empty; the screen count then
    (later screens are this visit's)."""
    assert hall.firmware is not None, "boot() first"
    hall.card.pull()
    hall.wait_welcome()
    return len(hall.screens)


@dataclass
class Confirmed:
    """The confirm page as the resident saw it."""

    you_pay: int
    shares: dict[str, int] = field(default_factory=dict)


def confirm_page(hall: Hall) -> Confirmed:
    """Read the confirm page on the screen (wait_page('confirm') first)."""
    shares = {}
    for i in range(6):
        line = hall.display.text(f"l{i}")
        for key, label in SCREEN_LABELS.items():
            if label in line:
                shares[key] = fen(line.split()[-1])
    return Confirmed(fen(hall.display.text("big")), shares)


def up_to_confirm(hall: Hall, resident: str) -> None:
    """A resident at the welcome page inserts the card and chooses the first bill."""
    hall.insert(resident)
    hall.wait_page("bills")
    hall.touch("b0")
    hall.wait_page("confirm")


def settle_visit(hall: Hall, resident: str) -> Confirmed:
    """A whole visit: card in, first bill, confirm, receipt, card out, welcome again."""
    at_welcome(hall)
    up_to_confirm(hall, resident)
    seen = confirm_page(hall)
    hall.touch("b0")
    hall.wait_page("done")
    hall.card.pull()
    hall.wait_page("welcome")
    return seen


# ---------------------------------------------------------------- what the resident took home
def receipt_amounts(receipt: Receipt | str) -> dict[str, int]:
    """The amounts printed on a receipt (or its text as the printer renders it), by breakdown
    field."""
    rows = (receipt if isinstance(receipt, str) else receipt.text()).splitlines()
    amounts = {}
    for key, label in RECEIPT_LABELS.items():
        (row,) = [r for r in rows if r.startswith(label)]
        amounts[key] = fen(row.split()[-1])
    you_pay = [i for i, r in enumerate(rows) if r.strip() == YOU_PAY]
    assert len(you_pay) == 1, "\n".join(rows)
    amounts["psn_cash_pay"] = fen(rows[you_pay[0] + 1].strip())
    return amounts


def masked_name(name: str) -> str:
    """The resident's name as the receipt prints it (app.receipt.mask_name): 张*兰, 王*."""
    if len(name) < 2:
        return name
    return name[0] + "*" * (len(name) - 2) + (name[-1] if len(name) > 2 else "*")


def printed_of(breakdown: dict[str, int]) -> dict[str, int]:
    """The fields of a breakdown a receipt prints."""
    return {key: breakdown[key] for key in (*RECEIPT_LABELS, "psn_cash_pay")}


def add_bill(hall: Hall, psn_no: str, bill_id: str) -> Bill:
    """Another pending bill for `psn_no`, like the first one the ledger had for them (a clinic
    sent in a second bill): lets one hall serve several visits of the same resident."""
    with closing(open_ledger(hall.db)) as ledger:
        model = ledger.get_bill(_first_bill_id(psn_no))
        assert model is not None
        bill = dataclasses.replace(model, bill_id=bill_id, status="pending")
        ledger.upsert_bill(bill)
        return bill


def _first_bill_id(psn_no: str) -> str:
    from onestop.host.sim.cards import demo_residents

    (resident,) = [r for r in demo_residents() if r["psn_no"] == psn_no]
    return str(resident["bills"][0]["bill_id"])
