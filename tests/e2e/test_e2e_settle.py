"""A resident of each assistance category, and residents treated off-site, settle at the real
firmware: the confirm page, the receipt and the ledger all show exactly what the settlement
engine computes for that bill and person.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from e2e_support import (
    Before,
    before_visit,
    masked_name,
    printed_of,
    receipt_amounts,
    settle_visit,
)
from onestop.host.settlement import Claim, load_policy, settle
from onestop.host.sim.rig import DEMO_HALL, Hall

POLICY = load_policy("reference")


def settles_as_the_engine_computes(hall: Hall, resident: str) -> tuple[Before, dict[str, int]]:
    """One visit; checks the ledger, the confirm page and the receipt against the engine."""
    before = before_visit(hall, resident)
    settled_before = len(hall.settlements())
    receipts_before = len(hall.receipts())

    seen = settle_visit(hall, resident)

    settlements = [s for s in hall.settlements() if s.psn_no == resident]
    assert len(settlements) == 1 and len(hall.settlements()) == settled_before + 1
    (settlement,) = settlements
    expected = before.expected(settlement)
    assert settlement.result == expected
    assert seen.you_pay == expected["psn_cash_pay"]
    assert seen.shares == {key: expected[key] for key in seen.shares}
    assert set(seen.shares) == {"hifp_pay", "hifmi_pay", "maf_pay", "medfee_sumamt"}

    receipts = hall.receipts()
    assert len(receipts) == receipts_before + 1
    receipt = receipts[-1]
    assert receipt_amounts(receipt) == printed_of(expected)
    text = receipt.text()
    # the name masked, as the ID number is (a receipt is left in trays and handed on)
    assert masked_name(before.person.name) in text and before.person.name not in text
    assert settlement.setl_id in text and settlement.txn_id in text
    return before, expected


def engine(before: Before, bill_id: str, setl_date: str, **changes: object) -> dict[str, int]:
    """What the engine computes for a variation of the claim (to show a rule was applied)."""
    (bill,) = [b for b in before.bills if b.bill_id == bill_id]
    claim = dataclasses.replace(Claim.from_bill(before.person, bill, setl_date), **changes)
    return settle(POLICY, claim, before.accumulations[claim.year]).breakdown


# (resident, assistance category, off-site: None if treated at home, else with a referral?)
RESIDENTS = [
    ("P001", "none", None),  # local inpatient, the worked example
    ("P002", "dibao", True),  # minimum subsistence, treated in Beijing with a referral
    ("P003", "tekun", None),  # special hardship, chronic-disease outpatient
    ("P004", "low_income", None),
    ("P005", "illness_poor", None),  # impoverished by illness, burden already high this year
    ("P006", "none", False),  # insured in Zhengzhou, treated here without a referral
]


@pytest.mark.parametrize(("resident", "category", "referral"), RESIDENTS)
def test_a_resident_settles_exactly_as_the_engine_computes(
        shared_hall: Hall, resident: str, category: str, referral: bool | None) -> None:
    before, expected = settles_as_the_engine_computes(shared_hall, resident)
    assert before.person.assistance == category
    (settlement,) = [s for s in shared_hall.settlements() if s.psn_no == resident]
    (bill,) = [b for b in before.bills if b.bill_id == settlement.bill_id]
    day = settlement.setl_date

    # The rules this resident is here for were applied (the engine, asked without them,
    # computes something else).
    if category == "none":
        assert expected["maf_pay"] == 0
    else:
        assert expected["maf_pay"] > 0
        assert expected["psn_cash_pay"] < engine(before, bill.bill_id, day,
                                                 assistance="none")["psn_cash_pay"]
    if category == "illness_poor":
        assert any(before.accumulations[int(day[:4])].values())
        first_of_year = settle(POLICY, Claim.from_bill(before.person, bill, day), {}).breakdown
        assert expected != first_of_year
    if referral is not None:
        assert bill.mdtrtarea_admvs != before.person.insu_admdvs
        assert bill.referral is referral
        at_home = engine(before, bill.bill_id, day, mdtrtarea_admvs=before.person.insu_admdvs)
        assert expected["hifp_pay"] < at_home["hifp_pay"]
        if not referral:
            referred = engine(before, bill.bill_id, day, referral=True)
            assert expected["hifp_pay"] < referred["hifp_pay"]



def test_the_boards_log_lines_say_when_once_the_gateway_has_told_the_time(hall: Hall) -> None:
    """`ms` (uptime) wraps every 12.4 days on a board, which has no real-time clock: from the
    first sign-in on, a line's `at` is Unix seconds on the gateway's clock, to set it beside
    the gateway's log weeks later."""
    started = time.time()
    settle_visit(hall, "P001")
    assert hall.firmware is not None
    lines = hall.firmware.drain()
    (ready,) = [line for line in lines if line.get("ev") == "ready"]
    assert "at" not in ready  # booted, not yet signed in: no date to give
    dated = [line for line in lines if "at" in line]
    assert {"txn_done", "session_end"} <= {line.get("ev") for line in dated}
    assert all(started - 2 <= line["at"] <= time.time() + 2 for line in dated)


def test_the_receipt_names_the_hall_under_its_title(hall: Hall) -> None:
    """The counter a resident brings a receipt to learns where it was printed (the kiosk id
    alone said nothing to a clerk); `kiosk fw provision --hall` gives the name."""
    settle_visit(hall, "P001")
    (receipt,) = hall.receipts()
    lines = [line.strip() for line in receipt.text().splitlines() if line.strip()]
    assert lines.index(DEMO_HALL) == 2  # under the title (its two lines), before the rest
