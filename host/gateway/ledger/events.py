"""What each audit event says. The ledger appends these; the auditor rebuilds them from the
tables and compares, so a row changed behind the ledger's back no longer matches its event.

An event's body is canonical JSON of {"kind", "seq", "at" (Unix seconds), **data}.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ..masking import mask_id
from .base import Bill, CertRecord, KeyRecord, Person, Settlement
from .chain import digest_hex
from .rows import bill_content

KEY_ADDED = "key_added"
KEY_REVOKED = "key_revoked"
KEY_RESTORED = "key_restored"
KEY_CERTIFIED = "key_certified"
LOOKED_UP = "looked_up"
PERSON_ADDED = "person_added"
PERSON_UPDATED = "person_updated"
BILL_IMPORTED = "bill_imported"
BILL_UPDATED = "bill_updated"
ACCUMULATIONS_SEEDED = "accumulations_seeded"
SETTLED = "settled"
CANCELLED = "cancelled"
RECEIPT_PRINTED = "receipt_printed"

KEY_STATUS_EVENTS = {"revoked": KEY_REVOKED, "active": KEY_RESTORED}
ENVELOPE = ("kind", "seq", "at")  # the fields every body has besides its data


def key_data(record: KeyRecord) -> dict[str, Any]:
    return {
        "kid": record.kid,
        "role": record.role,
        "alg": record.alg,
        "public_key": record.public_key.hex(),
        "status": record.status,
    }


def cert_data(record: CertRecord) -> dict[str, Any]:
    return {
        "kid": record.kid,
        "serial": record.serial,
        "authority": record.authority,
        "authority_public_key": record.authority_public_key.hex(),
    }


def cert_from_data(data: dict[str, Any]) -> CertRecord:
    """ValueError or TypeError (KeyError too) if `data` is not what cert_data gives."""
    serial = data["serial"]
    if type(serial) is not int or serial < 1:
        raise ValueError(f"a cert's serial is a whole number from 1, not {serial!r}")
    return CertRecord(kid=str(data["kid"]), serial=serial, authority=str(data["authority"]),
                      authority_public_key=bytes.fromhex(data["authority_public_key"]))


def lookup_data(operator: str, account: str, asked: str, persons: list[str],
                shown: int) -> dict[str, Any]:
    """Who looked up what at the counter (`kiosk gateway lookup`): the operator as they named
    themselves, the account the command ran under (user@host: what --operator cannot change),
    what was asked (an ID number masked, a settlement's number, a kiosk's day), whose
    settlements were shown (psn_no) and how many."""
    return {"operator": operator, "account": account, "asked": asked,
            "persons": sorted(set(persons)), "shown": shown}


def person_data(person: Person, ssn_key: bytes | None) -> dict[str, Any]:
    """The audit log is read by operators: the ID number appears masked, as everywhere else.
    The masked digits are the birth date, which the mask alone would let anyone change behind
    the ledger unseen; `ssn_digest`, a keyed hash of the whole number (the ledger's ssn_key,
    see SqlLedger), lets the audit see that without showing them (an unkeyed hash of a
    birth date is undone by trying the 40,000 days of a century). None: an event made before
    the ledger had the key, which has no digest."""
    data = {
        "psn_no": person.psn_no,
        "name": person.name,
        "ssn_masked": mask_id(person.ssn),
        "card_no": person.card_no,
        "insu_admdvs": person.insu_admdvs,
        "assistance": person.assistance,
        "insutype": person.insutype,
    }
    if ssn_key is not None:
        data["ssn_digest"] = hmac.new(ssn_key, person.ssn.encode("utf-8"),
                                      hashlib.sha256).hexdigest()
    return data


def bill_data(bill: Bill) -> dict[str, Any]:
    return bill_content(bill)


def seed_data(psn_no: str, year: int, amounts: dict[str, int]) -> dict[str, Any]:
    return {"psn_no": psn_no, "year": year, "amounts": dict(amounts)}


def settled_data(settlement: Settlement) -> dict[str, Any]:
    data = settled_row_data(settlement)
    if settlement.policy is not None:
        data["policy"] = dict(settlement.policy)
    return data


# What a `settled` event keeps that the settlements table does not (the audit compares the rest).
SETTLED_EVENT_ONLY = ("policy",)


def settled_row_data(settlement: Settlement) -> dict[str, Any]:
    """A settled event's data as its table row can tell it (without SETTLED_EVENT_ONLY)."""
    return {
        "txn_id": settlement.txn_id,
        "setl_id": settlement.setl_id,
        "kiosk_id": settlement.kiosk_id,
        "psn_no": settlement.psn_no,
        "bill_id": settlement.bill_id,
        "setl_time": settlement.setl_time,
        "setl_date": settlement.setl_date,
        "acc_year": settlement.acc_year,
        "result": dict(settlement.result),
        "delta": dict(settlement.delta),
        "signed_sha256": digest_hex(settlement.signed),
        "request_digest": settlement.request_digest.hex(),
    }


def cancelled_data(settlement: Settlement, today: str) -> dict[str, Any]:
    return {
        "txn_id": settlement.txn_id,
        "setl_id": settlement.setl_id,
        "kiosk_id": settlement.kiosk_id,
        "psn_no": settlement.psn_no,
        "bill_id": settlement.bill_id,
        "acc_year": settlement.acc_year,
        "delta": dict(settlement.delta),
        "date": today,
    }


def receipt_data(settlement: Settlement) -> dict[str, Any]:
    return receipt_data_of(settlement.txn_id, settlement.setl_id)


def receipt_data_of(txn_id: str, setl_id: str) -> dict[str, Any]:
    return {"txn_id": txn_id, "setl_id": setl_id}


def data_of(body: dict[str, Any]) -> dict[str, Any]:
    """An event body without its envelope: what the *_data function above returned."""
    return {key: value for key, value in body.items() if key not in ENVELOPE}
