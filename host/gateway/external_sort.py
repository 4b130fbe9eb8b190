"""Sorting more records than should be held in memory, for the audit (audit.py).

The audit reads the ledger's events in their order (seq) but compares them with the tables
by key (a settlement's txn_id, a bill's bill_id...): it writes what each event tells of a key
here, then reads it back sorted by key. The records go to a private scratch database of
SQLite's in the temporary folder (SQLite's TMPDIR rules; deleted when closed, never named on
disk), which sorts them with a bounded amount of memory: a few MB of page cache, the rest on
disk. Nothing here touches the ledger.
"""

from __future__ import annotations

import marshal
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import Any

from .ledger.base import LedgerError

CACHE_KIB = 8 * 1024  # the scratch database's page cache (and its sorter's memory), in KiB
WRITE_BATCH = 1000  # records kept in Python (per table) before they go to the scratch database


class ScratchError(LedgerError):
    """The scratch database failed (the temporary folder full or not writable): the audit
    cannot go on, and says where it needed room."""


def _failed(exc: sqlite3.Error) -> ScratchError:
    return ScratchError(f"the audit's scratch space in the temporary folder "
                        f"({tempfile.gettempdir()}; TMPDIR sets another) failed: {exc}")


class Scratch:
    """A private, temporary SQLite database holding sorted tables of records; close() (or the
    `with` block's end) deletes it."""

    def __init__(self) -> None:
        try:
            # "": a private temporary database, in memory until its cache fills, then on disk
            self._conn = sqlite3.connect("", isolation_level=None)
            for pragma in (f"cache_size = -{CACHE_KIB}", "journal_mode = OFF",
                           "synchronous = OFF", "temp_store = FILE"):
                self._conn.execute(f"PRAGMA {pragma}")
        except sqlite3.Error as exc:
            raise _failed(exc) from exc
        self._tables = 0

    def table(self) -> SortedRecords:
        self._tables += 1
        return SortedRecords(self._conn, f"records_{self._tables}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SortedRecords:
    """Records (key, number, seq, value) added in any order, read back ordered by (key, number,
    seq): `key` text, `number` and `seq` integers, `value` anything marshal keeps (the JSON
    types, tuples). Records that share (key, number, seq) come back in no set order."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self._conn = conn
        self._name = name
        self._pending: list[tuple[str, int, int, bytes]] = []
        try:
            conn.execute(f"CREATE TABLE {name} (k TEXT NOT NULL, n INTEGER NOT NULL, "
                         "s INTEGER NOT NULL, v BLOB NOT NULL)")
        except sqlite3.Error as exc:
            raise _failed(exc) from exc

    def add(self, key: str, number: int, seq: int, value: Any) -> None:
        self._pending.append((key, number, seq, marshal.dumps(value)))
        if len(self._pending) >= WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        try:
            self._conn.execute("BEGIN")  # one transaction per batch
            self._conn.executemany(f"INSERT INTO {self._name} VALUES (?, ?, ?, ?)",
                                   self._pending)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _failed(exc) from exc
        self._pending.clear()

    def __iter__(self) -> Iterator[tuple[str, int, int, Any]]:
        """Every record, sorted; the table is emptied afterwards (its pages reused)."""
        self._flush()
        loads = marshal.loads
        try:
            cursor = self._conn.execute(f"SELECT k, n, s, v FROM {self._name} ORDER BY k, n, s")
            try:
                for key, number, seq, value in cursor:
                    yield key, number, seq, loads(value)
            finally:
                cursor.close()
            self._conn.execute(f"DELETE FROM {self._name}")
        except sqlite3.Error as exc:
            raise _failed(exc) from exc
