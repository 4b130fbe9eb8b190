"""The SQLite ledger's files: a write-ahead log that does not keep the largest size it ever
reached, and a clear word when the file cannot be opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from onestop.host.gateway.ledger import open_ledger, sqlite


def test_the_wal_is_cut_back_once_it_has_been_copied_into_the_ledger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kit) -> None:
    monkeypatch.setattr(sqlite, "WAL_KEPT_BYTES", 64 * 1024)
    path = tmp_path / "ledger.sqlite"
    ledger = open_ledger(f"sqlite:///{path}")
    try:
        ledger.init()
        for serial in range(1, 1500):  # a busy spell: the WAL grows well past the limit
            ledger.upsert_person(kit.person(f"P{serial:05d}", serial))
        wal = Path(f"{path}-wal")
        grown = wal.stat().st_size
        assert grown > 4 * 64 * 1024
        with sqlite3.connect(path) as checkpointer:  # as the gateway's background thread does
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        ledger.upsert_person(kit.person("P99999", 99_999))  # the WAL starts over here

        assert wal.stat().st_size <= 64 * 1024
        assert ledger.get_person("P00042") is not None
    finally:
        ledger.close()



def test_a_ledger_whose_folder_is_missing_says_so(tmp_path: Path) -> None:
    from onestop.host.gateway.ledger import LedgerError

    missing = open_ledger(f"sqlite:///{tmp_path / 'absent' / 'ledger.sqlite'}")
    try:
        with pytest.raises(LedgerError, match=r"its folder .*absent does not exist"):
            missing.check_schema()
    finally:
        missing.close()
