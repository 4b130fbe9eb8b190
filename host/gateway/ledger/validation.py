"""What the ledger refuses to store: keys that are not Ed25519 public keys, settlements that do
not answer the request they were built for or whose money does not add up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import Bill, KeyRecord, Settlement
from .checks import amounts_problems, breakdown_problems

PUBLIC_KEY_BYTES = 32
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def key_problems(record: KeyRecord, roles: Sequence[str], statuses: Sequence[str]) -> list[str]:
    problems = []
    if not record.kid:
        problems.append("the key id is empty")
    if record.role not in roles:
        problems.append(f"role must be one of {', '.join(roles)}, not {record.role!r}")
    if record.status not in statuses:
        problems.append(f"status must be one of {', '.join(statuses)}, not {record.status!r}")
    if record.alg != "EdDSA":
        problems.append(f"alg must be EdDSA, not {record.alg!r}")
    if not isinstance(record.public_key, bytes) or len(record.public_key) != PUBLIC_KEY_BYTES:
        problems.append(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes")
    return problems


def built_settlement_problems(
    built: Settlement,
    txn_id: str,
    request_digest: bytes,
    kiosk_id: str,
    psn_no: str,
    bill: Bill,
) -> list[str]:
    """Why `built` cannot be stored as the answer to this settle request; empty if it can."""
    problems = []
    if not isinstance(built, Settlement):
        return [f"build returned {type(built).__name__}, not a Settlement"]
    asked = {"txn_id": txn_id, "kiosk_id": kiosk_id, "psn_no": psn_no, "bill_id": bill.bill_id}
    for name, value in asked.items():
        if getattr(built, name) != value:
            problems.append(f"{name} is {getattr(built, name)!r}, the request says {value!r}")
    if built.request_digest != request_digest:
        problems.append("request_digest differs from the request's")
    if not built.setl_id:
        problems.append("setl_id is empty")
    if type(built.setl_time) is not int or built.setl_time < 0:
        problems.append(f"setl_time {built.setl_time!r} is not Unix seconds")
    if not isinstance(built.setl_date, str) or not DATE.fullmatch(built.setl_date):
        problems.append(f"setl_date {built.setl_date!r} is not YYYY-MM-DD")
    if not isinstance(built.signed, bytes) or not built.signed:
        problems.append("the signed settlement record is missing")
    problems += ["breakdown: " + p for p in breakdown_problems(built.result)]
    if not problems and built.result["medfee_sumamt"] != bill.medfee_sumamt:
        problems.append(
            f"medfee_sumamt {built.result['medfee_sumamt']} is not the bill's total "
            f"{bill.medfee_sumamt}"
        )
    problems += amounts_problems(built.delta, "delta")
    return problems
