"""The embedded ledger: one SQLite file in WAL mode with synchronous=FULL, so a commit is on disk
(fsync) before the call returns. `BEGIN IMMEDIATE` takes the write lock up front: writers queue
(up to the busy timeout) instead of failing half-way, which also serialises settlements for the
same person. Each thread has its own connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

from .base import LedgerError
from .sqlcore import SqlLedger

BUSY_TIMEOUT_S = 30.0


class SqliteLedger(SqlLedger):
    blob_type: ClassVar[str] = "BLOB"
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error,)

    def __init__(self, path: Path | str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # we say BEGIN and COMMIT ourselves
            check_same_thread=False,  # used by one thread; closed by whichever calls close()
        )
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(mode).lower() != "wal":
                raise LedgerError(f"{self.path}: cannot switch the ledger to WAL (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _begin(self, conn: Any, write: bool) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _end(self, conn: Any, commit: bool) -> None:
        conn.execute("COMMIT" if commit else "ROLLBACK")

    def _translate(self, sql: str) -> str:
        return sql.replace("{lock}", "")  # BEGIN IMMEDIATE already holds the only write lock

    def _storage_error(self, exc: BaseException, committing: bool) -> LedgerError:
        text = str(exc)
        if "database or disk is full" in text:
            reason = "the disk is full (database or disk is full)"
        elif "no such table" in text:
            reason = "it is not initialised: run `kiosk gateway init`"
        elif "database is locked" in text:
            reason = f"another writer held it for over {self._busy_timeout_s:g} s"
        elif "unable to open database file" in text:
            reason = "the file cannot be opened (does its folder exist?)"
        else:
            reason = text
            if committing:
                # An I/O error inside COMMIT may come after the commit record reached the disk.
                return LedgerError(
                    f"ledger {self.path}: {reason} while committing; the last write may or may "
                    "not have been stored — settlement_query tells"
                )
        return LedgerError(f"ledger {self.path}: {reason}; nothing was written")
