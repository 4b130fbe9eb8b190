"""Rows to records and back: the column lists the queries use and the dataclasses they make."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import jsontext
from .base import Bill, KeyRecord, Person, Settlement
from .chain import canonical_json

KEY_COLUMNS = "kid, role, public_key, status, alg"
PERSON_COLUMNS = "psn_no, name, ssn, card_no, insu_admdvs, assistance, insutype"
BILL_COLUMNS = (
    "bill_id, psn_no, fixmedins_name, mdtrtarea_admvs, med_type, hosp_lv, referral, bill_date, "
    "items, status"
)
# A settle takes its bill by marking it settled (UPDATE ... RETURNING): the bill as it was.
BILL_AS_TAKEN = BILL_COLUMNS.removesuffix("status") + "'pending'"
SETTLEMENT_COLUMNS = (
    "txn_id, setl_id, kiosk_id, psn_no, bill_id, setl_time, setl_date, result, signed, "
    "request_digest, status, receipt_printed, delta, acc_year"
)


def _qualified(columns: str, table: str) -> str:
    return ", ".join(f"{table}.{column.strip()}" for column in columns.split(","))


# pricing_inputs: a person (p), their bill (b) and a year's accumulations (a) in one row
PERSON_WIDTH = len(PERSON_COLUMNS.split(","))
PRICING_COLUMNS = f"{_qualified(PERSON_COLUMNS, 'p')}, {_qualified(BILL_COLUMNS, 'b')}, a.amounts"


def key_from_row(row: Sequence[Any]) -> KeyRecord:
    kid, role, public_key, status, alg = row
    return KeyRecord(kid=kid, role=role, public_key=bytes(public_key), status=status, alg=alg)


def person_from_row(row: Sequence[Any]) -> Person:
    psn_no, name, ssn, card_no, insu_admdvs, assistance, insutype = row
    return Person(
        psn_no=psn_no,
        name=name,
        ssn=ssn,
        card_no=card_no,
        insu_admdvs=insu_admdvs,
        assistance=assistance,
        insutype=int(insutype),
    )


def person_values(person: Person) -> tuple[Any, ...]:
    return (
        person.psn_no,
        person.name,
        person.ssn,
        person.card_no,
        person.insu_admdvs,
        person.assistance,
        person.insutype,
    )


def bill_from_row(row: Sequence[Any]) -> Bill:
    bill_id, psn_no, fixmedins_name, mdtrtarea_admvs, med_type, hosp_lv, referral, date = row[:8]
    items, status = row[8:]
    return Bill(
        bill_id=bill_id,
        psn_no=psn_no,
        fixmedins_name=fixmedins_name,
        mdtrtarea_admvs=mdtrtarea_admvs,
        med_type=med_type,
        hosp_lv=int(hosp_lv),
        referral=bool(referral),
        date=date,
        items=tuple(jsontext.loads(items)),
        status=status,
    )


def bill_content(bill: Bill) -> dict[str, Any]:
    """What a clinic says about a bill (everything but its settlement status)."""
    return {
        "bill_id": bill.bill_id,
        "psn_no": bill.psn_no,
        "fixmedins_name": bill.fixmedins_name,
        "mdtrtarea_admvs": bill.mdtrtarea_admvs,
        "med_type": bill.med_type,
        "hosp_lv": bill.hosp_lv,
        "referral": bill.referral,
        "date": bill.date,
        "items": [dict(item) for item in bill.items],
    }


def bill_values(bill: Bill, status: str) -> tuple[Any, ...]:
    return (
        bill.bill_id,
        bill.psn_no,
        bill.fixmedins_name,
        bill.mdtrtarea_admvs,
        bill.med_type,
        bill.hosp_lv,
        int(bill.referral),
        bill.date,
        canonical_json([dict(item) for item in bill.items]),
        status,
    )


def _blob(value: Any) -> bytes:
    """A BLOB column's bytes. SQLite keeps whatever was written: text put there behind the
    ledger is read as its UTF-8 bytes, for the audit to refuse, not as a crash."""
    return value.encode() if isinstance(value, str) else bytes(value)


def settlement_from_row(row: Sequence[Any]) -> Settlement:
    (txn_id, setl_id, kiosk_id, psn_no, bill_id, setl_time, setl_date, result, signed) = row[:9]
    request_digest, status, receipt_printed, delta, acc_year = row[9:]
    return Settlement(
        txn_id=txn_id,
        setl_id=setl_id,
        kiosk_id=kiosk_id,
        psn_no=psn_no,
        bill_id=bill_id,
        setl_time=int(setl_time),
        setl_date=setl_date,
        result=jsontext.loads(result),
        signed=_blob(signed),
        request_digest=_blob(request_digest),
        status=status,
        receipt_printed=bool(receipt_printed),
        delta=jsontext.loads(delta),
        acc_year=int(acc_year),
    )


def settlement_values(settlement: Settlement, acc_year: int) -> tuple[Any, ...]:
    return (
        settlement.txn_id,
        settlement.setl_id,
        settlement.kiosk_id,
        settlement.psn_no,
        settlement.bill_id,
        settlement.setl_time,
        settlement.setl_date,
        canonical_json(settlement.result),
        settlement.signed,
        settlement.request_digest,
        settlement.status,
        int(settlement.receipt_printed),
        canonical_json(settlement.delta),
        acc_year,
    )
