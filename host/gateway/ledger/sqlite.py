"""The embedded ledger: one SQLite file in WAL mode with synchronous=FULL, so a commit is on disk
(fsync) before the call returns. `BEGIN IMMEDIATE` takes the write lock up front: writers queue
(up to the busy timeout) instead of failing half-way, which also serialises settlements for the
same person. Each thread has its own connection.

Writers queue on a lock file beside the database (`<file>-writer.lock`, flock) before they ask
SQLite for its write lock, so threads and gateway processes sharing the file take turns at once,
in the order the kernel wakes them, instead of SQLite's busy handler sleeping 1, 2, 5... 100 ms
between tries (which stretched the slowest replies several-fold). Writers that do not use the
lock file (other tools) still meet SQLite's own lock and busy timeout.

A write transaction marked `durable=False` (only read-only requests' replay counters, see
SqlLedger.run_requests) commits with synchronous=NORMAL: appended to the WAL without an fsync.
The WAL is one sequential file, so the next durable commit's fsync makes it durable too; and a
background thread fsyncs the WAL at most FLUSH_AFTER_S after such a commit if nothing else has.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from .base import LedgerError
from .sqlcore import SqlLedger

BUSY_TIMEOUT_S = 30.0
FLUSH_AFTER_S = 0.05  # a commit that did not wait for the disk is on it this soon after


class SqliteLedger(SqlLedger):
    blob_type: ClassVar[str] = "BLOB"
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error,)

    def __init__(self, path: Path | str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._writers = threading.Lock()  # threads of this process take turns here first
        self._lock_fd: int | None = None
        self._lock_fd_guard = threading.Lock()
        self._flusher: _WalFlusher | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # we say BEGIN and COMMIT ourselves
            check_same_thread=False,  # used by one thread; closed by whichever calls close()
            cached_statements=256,
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
        self._local.durable = True
        return conn

    def _begin(self, conn: Any, write: bool, durable: bool = True) -> None:
        if write and getattr(self._local, "durable", True) != durable:
            conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._local.durable = durable
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _end(self, conn: Any, commit: bool) -> None:
        conn.execute("COMMIT" if commit else "ROLLBACK")

    def _translate(self, sql: str) -> str:
        return sql.replace("{lock}", "")  # BEGIN IMMEDIATE already holds the only write lock

    # ------------------------------------------------------------------ writers' queue
    def _lock_file(self) -> int | None:
        with self._lock_fd_guard:
            if self._lock_fd is None:
                try:
                    self._lock_fd = os.open(f"{self.path}-writer.lock",
                                            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError:
                    return None  # a read-only folder: SQLite's own lock still orders writers
            return self._lock_fd

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        with self._writers:
            fd = self._lock_file()
            if fd is None:
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _committed(self, durable: bool) -> None:
        flusher = self._flusher
        if durable:
            if flusher is not None:
                flusher.flushed()
            return
        if flusher is None:
            with self._lock_fd_guard:
                if self._flusher is None:
                    self._flusher = _WalFlusher(Path(f"{self.path}-wal"))
                flusher = self._flusher
        flusher.pending()

    def close(self) -> None:
        super().close()
        if self._flusher is not None:
            self._flusher.stop()
        with self._lock_fd_guard:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

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


class _WalFlusher:
    """Puts commits made without an fsync on disk within FLUSH_AFTER_S: fsync of the WAL file
    (the file those commits were appended to), unless a durable commit did it first."""

    def __init__(self, wal: Path) -> None:
        self._wal = wal
        self._wake = threading.Condition()
        self._due: float | None = None  # when the oldest unflushed commit must be on disk
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="ledger-wal-flush", daemon=True)
        self._thread.start()

    def pending(self) -> None:
        with self._wake:
            if self._due is None:
                self._due = time.monotonic() + FLUSH_AFTER_S
                self._wake.notify()

    def flushed(self) -> None:
        with self._wake:
            self._due = None  # a durable commit's fsync covered everything before it

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=5)
        self._fsync()  # whatever is left, before the ledger is let go

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (self._due is None
                                              or self._due > time.monotonic()):
                    wait = None if self._due is None else self._due - time.monotonic()
                    self._wake.wait(wait)
                if self._stopping:
                    return
                self._due = None
            self._fsync()

    def _fsync(self) -> None:
        try:
            fd = os.open(self._wal, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # no WAL: everything was checkpointed into the database file
        try:
            os.fsync(fd)
        except OSError:
            pass  # the next durable commit's own fsync reports a failing disk
        finally:
            os.close(fd)
