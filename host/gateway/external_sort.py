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
from collections.abc import Iterator
from typing import Any

CACHE_KIB = 8 * 1024  # the scratch database's page cache (and its sorter's memory), in KiB
WRITE_BATCH = 1000  # records kept in Python (per table) before they go to the scratch database


class Scratch:
    """A private, temporary SQLite database holding sorted tables of records; close() (or the
    `with` block's end) deletes it."""

    def __init__(self) -> None:
        # "": a private temporary database, in memory until its cache fills, then on disk
        self._conn = sqlite3.connect("", isolation_level=None)
        for pragma in (f"cache_size = -{CACHE_KIB}", "journal_mode = OFF", "synchronous = OFF",
                       "temp_store = FILE"):
            self._conn.execute(f"PRAGMA {pragma}")
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
        conn.execute(f"CREATE TABLE {name} (k TEXT NOT NULL, n INTEGER NOT NULL, "
                     "s INTEGER NOT NULL, v BLOB NOT NULL)")

    def add(self, key: str, number: int, seq: int, value: Any) -> None:
        self._pending.append((key, number, seq, marshal.dumps(value)))
        if len(self._pending) >= WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._conn.execute("BEGIN")  # one transaction per batch
            self._conn.executemany(f"INSERT INTO {self._name} VALUES (?, ?, ?, ?)",
                                   self._pending)
            self._conn.execute("COMMIT")
            self._pending.clear()

    def __iter__(self) -> Iterator[tuple[str, int, int, Any]]:
        """Every record, sorted; the table is emptied afterwards (its pages reused)."""
        self._flush()
        loads = marshal.loads
        cursor = self._conn.execute(f"SELECT k, n, s, v FROM {self._name} ORDER BY k, n, s")
        try:
            for key, number, seq, value in cursor:
                yield key, number, seq, loads(value)
        finally:
            cursor.close()
        self._conn.execute(f"DELETE FROM {self._name}")
