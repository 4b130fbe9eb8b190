"""The ledger API: what the gateway's request handlers need from durable storage.

One contract, two backends (`sqlite.py`, embedded default; `postgres.py`, shared by many gateway
processes). Every method that writes commits durably before it returns. Money is integer fen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class LedgerError(Exception):
    """Storage failed (disk full, database gone...). Nothing was half-written."""


class TxnConflict(Exception):
    """The txn_id is already settled with a different request."""


class BillUnavailable(Exception):
    """The bill is unknown, not this person's, or already settled by another txn."""

    def __init__(self, code: str, msg: str) -> None:  # code: "unknown_bill" | "bill_settled"
        super().__init__(msg)
        self.code = code


@dataclass(frozen=True)
class KeyRecord:
    kid: str  # text id; its UTF-8 bytes are the COSE kid
    role: str  # "gateway" | "kiosk"
    public_key: bytes  # 32 bytes, Ed25519
    status: str  # "active" | "revoked"
    alg: str = "EdDSA"


@dataclass(frozen=True)
class Person:
    psn_no: str
    name: str
    ssn: str  # full; only ever shown masked (first 6, last 4)
    card_no: str
    insu_admdvs: str
    assistance: str  # none | tekun | dibao | low_income | illness_poor
    insutype: int = 390


@dataclass(frozen=True)
class Bill:
    bill_id: str
    psn_no: str
    fixmedins_name: str
    mdtrtarea_admvs: str
    med_type: str  # inpatient | outpatient_chronic
    hosp_lv: int
    referral: bool
    date: str  # YYYY-MM-DD
    items: tuple[dict[str, Any], ...]  # ({"amount": fen, "class": "A"|"B"|"C", "name": str}, ...)
    status: str = "pending"  # pending | settled

    @property
    def medfee_sumamt(self) -> int:
        return sum(int(item["amount"]) for item in self.items)


@dataclass(frozen=True)
class Settlement:
    txn_id: str
    setl_id: str
    kiosk_id: str
    psn_no: str
    bill_id: str
    setl_time: int
    setl_date: str  # YYYY-MM-DD (accumulation year and reconciliation day)
    result: dict[str, int]  # the breakdown, field names as in frames.cddl
    signed: bytes  # the gateway-signed settlement record (COSE_Sign1), returned byte-identical
    request_digest: bytes  # what the settle request asked, to tell a retry from a conflict
    status: str = "settled"  # settled | cancelled
    receipt_printed: bool = False
    delta: dict[str, int] = field(default_factory=dict)  # contributions to the accumulations


class Ledger(Protocol):
    # ---- lifecycle
    def init(self) -> None: ...  # create the schema if absent (idempotent)
    def close(self) -> None: ...

    # ---- keys (public keys only)
    def add_key(self, record: KeyRecord) -> None: ...  # replaces status if kid exists
    def get_key(self, kid: str) -> KeyRecord | None: ...
    def set_key_status(self, kid: str, status: str) -> bool: ...  # False: unknown kid
    def list_keys(self) -> list[KeyRecord]: ...

    # ---- replay guard: atomically store ctr if it is above the last seen; False = replay
    def advance_counter(self, kiosk_id: str, ctr: int) -> bool: ...

    # ---- residents and bills
    def upsert_person(self, person: Person) -> None: ...
    def find_person(self, ssn: str, card_no: str) -> Person | None: ...
    def get_person(self, psn_no: str) -> Person | None: ...
    def upsert_bill(self, bill: Bill) -> None: ...  # idempotent import; never un-settles
    def get_bill(self, bill_id: str) -> Bill | None: ...
    def pending_bills(self, psn_no: str) -> list[Bill]: ...
    def accumulations(self, psn_no: str, year: int) -> dict[str, int]: ...

    # ---- exactly-once settlement
    def settle(
        self,
        txn_id: str,
        request_digest: bytes,
        kiosk_id: str,
        psn_no: str,
        bill_id: str,
        build: Callable[[dict[str, int], Bill], Settlement],
    ) -> tuple[Settlement, bool]:
        """Settle once. In one durable transaction, serialised per person:
        - txn_id already present: same digest -> (stored, False); else raise TxnConflict.
        - bill not pending for psn_no -> raise BillUnavailable.
        - else call build(accumulations of the bill's year, bill) -> Settlement (which carries
          `delta`), store it, add delta to the accumulations, mark the bill settled, append an
          audit event; commit (fsync); return (settlement, True).
        `build` may raise to abort (nothing is written)."""
        ...

    def get_settlement(self, txn_id: str) -> Settlement | None: ...
    def cancel(self, txn_id: str, kiosk_id: str, today: str) -> Settlement: ...
    # cancel: same day and same kiosk only (else raise PermissionError with the reason); takes
    # `delta` back out of the accumulations, re-opens the bill, audits; idempotent.
    def mark_receipt_printed(self, txn_id: str) -> bool: ...

    # ---- audit and reconciliation
    def audit_events(self) -> list[dict[str, Any]]: ...  # in order, each with prev hash and hash
    def settlements_on(self, date: str) -> list[Settlement]: ...
