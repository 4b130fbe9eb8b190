"""The gateway's ledger: `open_ledger(url)` gives the backend the URL names (see config.py).

open_ledger("sqlite:///ledger.sqlite") or open_ledger("postgresql://...?schema=onestop"), then
ledger.init() once (idempotent) to create the tables.
"""

from __future__ import annotations

from ..config import parse_ledger_url, relative_hint
from .base import (
    AuditReader,
    Bill,
    BillUnavailable,
    CertRecord,
    KeyRecord,
    Ledger,
    LedgerError,
    Person,
    RequestJob,
    RequestOutcome,
    Settlement,
    SettlementSums,
    SignIn,
    TxnConflict,
    UnknownTxn,
    UnreadableRecord,
)

__all__ = [
    "AuditReader",
    "Bill",
    "BillUnavailable",
    "CertRecord",
    "KeyRecord",
    "Ledger",
    "LedgerError",
    "Person",
    "RequestJob",
    "RequestOutcome",
    "Settlement",
    "SettlementSums",
    "SignIn",
    "TxnConflict",
    "UnknownTxn",
    "UnreadableRecord",
    "open_ledger",
]


def open_ledger(url: str, *, create: bool = True) -> Ledger:
    """The ledger at `url`. Connections open lazily, on first use, one per thread.

    create=False: refuse a SQLite file that does not exist yet (for commands that only read or
    change an existing ledger) instead of starting an empty one. Raises LedgerError.
    Malformed URLs raise config.LedgerUrlError (a ValueError).
    """
    location = parse_ledger_url(url)
    if location.backend == "sqlite":
        from .sqlite import SqliteLedger

        assert location.path is not None
        if not create and not location.path.exists():
            hint = relative_hint(location.path)
            if hint:
                raise LedgerError(f"no ledger at {location.path}{hint}")
            raise LedgerError(
                f"no ledger at {location.path}: create one with `kiosk gateway init --db {url}`"
            )
        return SqliteLedger(location.path, existing=not create)
    from .postgres import PostgresLedger

    return PostgresLedger(location)
