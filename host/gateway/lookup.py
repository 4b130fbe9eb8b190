"""`kiosk gateway lookup`: what the hall's counter answers a resident a kiosk sent there, and
a kiosk's settlements of a day, to set beside its own account when reconcile says they differ.

A kiosk tells a resident to ask at the counter when it could not finish for them: a settlement
in doubt, a receipt that did not print, a card it does not know. The clerk finds the resident by
the ID number on their ID card, or one settlement by the transaction or settlement number on a
receipt or in a kiosk's log, and reads off what happened: each settlement (settled or cancelled,
receipt printed or not, what each fund paid and what the resident pays) and the bills still
waiting. ID numbers are shown masked. The CLI records each lookup first (access.py).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from onestop.host.settlement.money import format_yuan

from .ledger.base import Bill, Ledger, Person, Settlement
from .masking import mask_id
from .receipt_check import amount_lines, china_time, shown


@dataclass(frozen=True)
class Found:
    """A resident (None if the settlement's person is not in the ledger), their settlements
    (with each one's bill, if the ledger has it) and their bills waiting for settlement."""

    person: Person | None
    settlements: list[tuple[Settlement, Bill | None]]
    waiting: list[Bill]
    since: str | None = None  # the first day looked at, for a lookup by ID number

    def residents(self) -> list[str]:
        """Whose data this shows (psn_no): the resident's, and each settlement's."""
        return ([] if self.person is None else [self.person.psn_no]) + [
            s.psn_no for s, _ in self.settlements]


@dataclass(frozen=True)
class KioskDay:
    """A kiosk's settlements of one day, newest first, each with its bill and its resident (if
    the ledger has them): to set beside the kiosk's own account when reconcile says they
    differ."""

    kiosk_id: str
    date: str
    settlements: list[tuple[Settlement, Bill | None, Person | None]]


def by_id_number(ledger: Ledger, ssn: str, since: datetime.date) -> Found | None:
    """The resident holding ID number `ssn` and their settlements dated `since` or later; None
    if no resident holds it."""
    person = ledger.person_with_ssn(ssn)
    if person is None:
        return None
    settlements = ledger.settlements_of(person.psn_no, since.isoformat())
    return Found(person, [(s, ledger.get_bill(s.bill_id)) for s in settlements],
                 ledger.pending_bills(person.psn_no), since.isoformat())


def by_number(ledger: Ledger, *, txn_id: str | None = None,
              setl_id: str | None = None) -> Found | None:
    """One settlement, by its kiosk transaction number or its settlement number, with its
    resident and their bills waiting; None if the ledger has no such settlement."""
    settlement = (ledger.get_settlement(txn_id) if txn_id is not None
                  else ledger.settlement_numbered(setl_id or ""))
    if settlement is None:
        return None
    return Found(ledger.get_person(settlement.psn_no),
                 [(settlement, ledger.get_bill(settlement.bill_id))],
                 ledger.pending_bills(settlement.psn_no))


def kiosk_day(ledger: Ledger, kiosk_id: str, day: str) -> KioskDay:
    settlements = ledger.settlements_on(day, kiosk_id)[::-1]  # newest first
    return KioskDay(kiosk_id, day, [(s, ledger.get_bill(s.bill_id), ledger.get_person(s.psn_no))
                                    for s in settlements])


def state(settlement: Settlement) -> str:
    """What the clerk tells the resident about it, first."""
    if settlement.status == "cancelled":
        return "CANCELLED (reversed: nothing was paid by the funds; the bill is waiting again)"
    if settlement.receipt_printed:
        return "settled, receipt printed"
    # Only the kiosk's receipt_printed report sets it: a resident may hold a receipt whose
    # report has not reached the gateway yet (the link was down), so "not printed" would be wrong.
    return ("settled, receipt not reported printed yet: if the resident has no receipt, the "
            "kiosk prints it once it can (paper, a fault); what the resident pays is below")


def _clinic(bill: Bill | None) -> str:
    return "" if bill is None else f"  {shown(bill.fixmedins_name)}, {bill.date}"


def format_found(found: Found) -> str:
    lines = [resident_line(found.person)]
    if found.since is not None:
        lines.append(f"settlements since {found.since}, newest first: {len(found.settlements)}"
                     if found.settlements else f"no settlements since {found.since}")
    for settlement, bill in found.settlements:
        lines += _settlement_lines(settlement, bill)
    lines.append("")
    if found.waiting:
        lines.append(f"bills waiting for settlement: {len(found.waiting)}")
        lines += [f"  {shown(bill.bill_id)}{_clinic(bill)}  total {format_yuan(bill.medfee_sumamt)}"
                  for bill in found.waiting]
    else:
        lines.append("no bills waiting for settlement")
    return "\n".join(lines)


def _settlement_lines(settlement: Settlement, bill: Bill | None,
                      resident: list[str] | None = None) -> list[str]:
    return [
        "",
        f"  {china_time(settlement.setl_time)} China time  {state(settlement)}",
        *(resident or []),
        f"    settlement {shown(settlement.setl_id)}  kiosk {shown(settlement.kiosk_id)}  "
        f"transaction {shown(settlement.txn_id)}",
        f"    bill {shown(settlement.bill_id)}{_clinic(bill)}",
        *amount_lines(settlement.result, "    "),
    ]


def format_kiosk_day(day: KioskDay) -> str:
    settled = sum(1 for s, _, _ in day.settlements if s.status == "settled")
    count = len(day.settlements)
    lines = [f"kiosk {shown(day.kiosk_id)} on {day.date}: {count} settlement"
             f"{'' if count == 1 else 's'} ({settled} settled, {count - settled} cancelled)"
             + (", newest first" if count > 1 else "")]
    for settlement, bill, person in day.settlements:
        lines += _settlement_lines(settlement, bill, ["    " + resident_line(person).strip()])
    return "\n".join(lines)


def kiosk_day_json(day: KioskDay) -> dict[str, Any]:
    return {"kiosk": day.kiosk_id, "date": day.date,
            "settlements": [{**_settlement_json(s, bill), "resident": _person_json(person)}
                            for s, bill, person in day.settlements]}


def resident_line(person: Person | None) -> str:
    if person is None:
        return "resident    not in this ledger"
    return (f"resident    {shown(person.name)}  ID {mask_id(person.ssn)}  ({shown(person.psn_no)}"
            f", insured in {shown(person.insu_admdvs)}, assistance: {person.assistance})")


def found_json(found: Found) -> dict[str, Any]:
    """As plain data; money in integer fen, as in the ledger."""
    return {
        "resident": _person_json(found.person),
        "since": found.since,
        "settlements": [_settlement_json(s, bill) for s, bill in found.settlements],
        "waiting": [{"bill_id": b.bill_id, "clinic": b.fixmedins_name, "date": b.date,
                     "medfee_sumamt": b.medfee_sumamt} for b in found.waiting],
    }


def _person_json(person: Person | None) -> dict[str, Any] | None:
    return None if person is None else {
        "name": person.name, "ssn_masked": mask_id(person.ssn), "psn_no": person.psn_no,
        "insu_admdvs": person.insu_admdvs, "assistance": person.assistance}


def _settlement_json(s: Settlement, bill: Bill | None) -> dict[str, Any]:
    return {
        "setl_id": s.setl_id, "txn_id": s.txn_id, "kiosk": s.kiosk_id,
        "setl_time": s.setl_time, "setl_time_china": china_time(s.setl_time),
        "status": s.status, "receipt_printed": s.receipt_printed, "bill_id": s.bill_id,
        "clinic": None if bill is None else bill.fixmedins_name,
        "bill_date": None if bill is None else bill.date, "result": s.result,
    }
