"""The embedded ledger: one SQLite file in WAL mode; a durable commit is on disk (the WAL
flushed) before the call returns. `BEGIN IMMEDIATE` takes the write lock up front: writers queue
instead of failing half-way, which also serialises settlements for the same person. Each thread
has its own connection.

Writers queue on a lock file beside the database (`<file>-writer.lock`, flock) before they ask
SQLite for its write lock, so threads and gateway processes sharing the file take turns at once,
in the order the kernel wakes them, instead of SQLite's busy handler sleeping 1, 2, 5... 100 ms
between tries (which stretched the slowest replies several-fold). Writers that do not use the
lock file (other tools) still meet SQLite's own lock and busy timeout.

Durability. SQLite's synchronous=FULL flushes the WAL inside COMMIT, while it holds the write
lock, so commits of several gateway processes queue behind each other's disk flushes. Here the
connection runs at synchronous=NORMAL (COMMIT appends to the WAL without a flush) and a durable
write flushes the WAL itself right after COMMIT, once the write lock is released, before the
call returns: the same flush of the same file that FULL does (fdatasync, as SQLite uses on
Linux), so what the caller was told is stored is on disk; and flushes of several processes
overlap, one covering every commit appended before it (group commit across processes). The WAL
is one file appended in commit order, so after a power cut the ledger holds a prefix of its
commits: a flushed commit and everything committed before it. The price: for the length of
that flush, other connections already see the commit. Nothing a kiosk is told rests on that: a
reply is written only after the flush covering its own transaction (which covers every earlier
commit too); the replies that report stored settlements (settle, cancel, receipt_printed,
settlement_query, reconcile) are durable requests themselves. A read-only request's counter
(see SqlLedger.run_requests) is not flushed by its request: the next durable commit flushes it,
or a background thread within FLUSH_AFTER_S. If the flush fails, the call raises LedgerError
with at_commit set ("may or may not have been stored").

The serving gateway's event loop waits for neither itself (SqlStore.take_writers_queue,
durable_later): a worker thread waits for the writers' queue and for the flush while the loop
checks the next frames; a batch's replies still go out only after the flush covering it. A
flush that began after a commit was appended covers it, so one flush answers several batches.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from .base import LedgerError, OwedFlush
from .sqlcore import SqlLedger
from .transactions import Tx

BUSY_TIMEOUT_S = 30.0
TURN_CHECK_S = 0.05  # a writer waiting for its turn looks this often for one taken for it
FLUSH_AFTER_S = 0.05  # a commit that did not wait for the disk is on it this soon after
# Serving: copy the WAL into the database file this often... (a page rewritten by every commit
# — a kiosk's counter, the audit head — is copied once per checkpoint, not once per commit:
# at 0.1 s the copying was 3.6 % of a busy gateway's CPU)
CHECKPOINT_EVERY_S = 0.5
SERVING_AUTOCHECKPOINT = 20_000  # ...and only past this many WAL pages inside a commit
# Under steady load the WAL grows to tens of MB; when it starts over (all of it copied, a quiet
# moment), it is cut back to this size instead of keeping its largest size for good.
WAL_KEPT_BYTES = 4 * 1024 * 1024


class SqliteLedger(SqlLedger):
    blob_type: ClassVar[str] = "BLOB"
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error,)

    def __init__(self, path: Path | str, *, busy_timeout_s: float = BUSY_TIMEOUT_S,
                 existing: bool = False) -> None:
        super().__init__(str(path))
        # existing: the file must already be a ledger (else: a ledger or nothing yet); a file
        # that is not is left as it is (a mistyped --db naming another program's database must
        # not be switched to WAL)
        self._existing = existing
        self._checked = False  # _check_is_ledger ran (once: not at every thread's connection)
        # The file itself, through any symbolic link: it is made private (a dangling link was
        # followed by SQLite and made with the umask's mode), and SQLite keeps its -wal file
        # beside the target, where the durable flush must find it.
        self.path = Path(os.path.realpath(path))
        self._busy_timeout_s = busy_timeout_s
        self._writers = threading.Lock()  # threads of this process take turns here first
        self._lock_fd: int | None = None
        self._lock_fd_guard = threading.Lock()
        self._flusher: _WalFlusher | None = None
        self._serving = False
        self._wal: int | None = None
        self._commits = 0  # write commits so far (numbered under the writers' queue)
        self._flushed = 0  # every commit up to this number is known to be on disk
        self._queue_holder: int | None = None  # the thread given the turn (take_writers_queue)
        # a worker thread taking the turn for this thread (take_writers_queue, wait=True), and
        # set when it is done: a write that thread makes meanwhile waits for it and uses it
        self._taking: tuple[int, threading.Event] | None = None

    def _connect(self) -> sqlite3.Connection:
        _create_private(self.path)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # we say BEGIN and COMMIT ourselves
            check_same_thread=False,  # used by one thread; closed by whichever calls close()
            cached_statements=256,
        )
        try:
            self._check_once()
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(mode).lower() != "wal":
                raise LedgerError(f"{self.path}: cannot switch the ledger to WAL (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable writes fsync the WAL after COMMIT
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")
            if self._serving:
                conn.execute(f"PRAGMA wal_autocheckpoint={SERVING_AUTOCHECKPOINT}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_once(self) -> None:
        if not self._checked:
            self._check_is_ledger()
            self._checked = True

    def _check_is_ledger(self) -> None:
        """LedgerError, having written nothing, unless the file holds a ledger's tables, or
        is new or empty for a ledger about to be made. Read on a read-only connection of its
        own: an ordinary one, closing last, would fold another program's WAL into its file."""
        if self.path.is_dir():  # a --db that names the ledger's folder, not its file
            raise LedgerError(f"ledger {self.path} is a folder: name a file in it "
                              f"(sqlite:///{self.path / 'ledger.sqlite'}, say); "
                              "nothing was written")
        if not self._existing and (not self.path.exists() or self.path.stat().st_size == 0):
            return
        try:
            with contextlib.closing(sqlite3.connect(f"{self.path.as_uri()}?mode=ro",
                                                    uri=True)) as probe:
                tables = [name for (name,) in probe.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'")]
        except sqlite3.OperationalError:
            return  # unreadable, locked...: the ledger's own connection says why, as before
        except sqlite3.DatabaseError as exc:  # "file is not a database"
            raise LedgerError(f"ledger {self.path}: {exc} (not an SQLite database); "
                              "nothing was written") from None
        if "ledger_meta" in tables or not tables and not self._existing:
            return
        if tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise LedgerError(f"{self.path} already holds another database's tables ({shown}); "
                              "a ledger needs a file of its own; nothing was written")
        raise LedgerError(f"ledger {self.path}: it is not initialised: run `kiosk gateway "
                          "init`; nothing was written")

    def _begin(self, conn: Any, write: bool, durable: bool = True) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _end(self, conn: Any, commit: bool) -> None:
        conn.execute("COMMIT" if commit else "ROLLBACK")

    def _translate(self, sql: str) -> str:
        return _to_sqlite(sql)

    def _table_names(self, tx: Tx) -> set[str]:
        rows = tx.all("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}

    # ------------------------------------------------------------------ writers' queue
    def _lock_file(self) -> int | None:
        with self._lock_fd_guard:
            if self._lock_fd is None:
                # The file checked first: a write refused because it is no ledger (a mistyped
                # --db) must not leave a lock file of ours beside it.
                self._check_once()
                try:
                    self._lock_fd = os.open(f"{self.path}-writer.lock",
                                            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except OSError:
                    return None  # a read-only folder: SQLite's own lock still orders writers
            return self._lock_fd

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        if self._my_turn_taken():
            yield  # its turn was taken for it (take_writers_queue)
            return
        self._lock_the_file(wait=True)
        try:
            yield
        finally:
            self._end_turn()

    def _my_turn_taken(self) -> bool:
        """True if this thread's turn was taken for it (take_writers_queue); else False, with
        self._writers acquired. While a worker thread takes this thread's turn it holds
        self._writers, which only this thread lets go (after its batch): this thread waits for
        that turn and writes in it, instead of waiting on the lock for ever."""
        me = threading.get_ident()
        while True:
            taking = self._taking
            if taking is not None and taking[0] == me:
                taking[1].wait()
            if self._queue_holder == me:
                return True
            # a short wait at a time: a take for this thread may begin meanwhile
            if self._writers.acquire(timeout=TURN_CHECK_S):
                return False

    def _lock_the_file(self, wait: bool) -> bool:
        """With self._writers held: the lock file's turn too (True), or neither (False: another
        process has it and wait is False)."""
        try:
            fd = self._lock_file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._writers.release()
            return False
        except BaseException:
            self._writers.release()
            raise
        return True

    def _end_turn(self) -> None:
        fd = self._lock_file()
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._writers.release()

    def take_writers_queue(self, holder: int, wait: bool) -> bool:
        if not wait:
            return self._take_for(holder, wait=False)
        done = threading.Event()
        self._taking = (holder, done)  # a write `holder` makes meanwhile waits for this turn
        try:
            return self._take_for(holder, wait=True)
        finally:
            self._taking = None
            done.set()

    def _take_for(self, holder: int, wait: bool) -> bool:
        if not self._writers.acquire(blocking=wait) or not self._lock_the_file(wait):
            return False
        self._queue_holder = holder
        return True

    def leave_writers_queue(self) -> None:
        self._queue_holder = None
        self._end_turn()

    @contextlib.contextmanager
    def durable_later(self) -> Iterator[OwedFlush]:
        owed = OwedFlush(self._flush_upto)
        self._local.owed = owed
        try:
            yield owed
        finally:
            self._local.owed = None

    def exposure(self) -> str | None:
        try:
            mode = self.path.stat().st_mode & 0o777
        except OSError:
            return None
        if not mode & 0o077:
            return None
        return (f"{self.path} is readable by other users (mode {mode:o}) and holds residents' "
                f"names and ID numbers: chmod 600 {self.path}")

    def tune_for_serving(self) -> None:
        """For a long-running gateway: checkpoints (copying the WAL into the database file,
        two fsyncs and megabytes of copying) move out of the commits — where SQLite runs them
        every 1000 WAL pages, holding the write lock, so every writer waited — into a
        background thread (PASSIVE: writers carry on meanwhile)."""
        self._serving = True
        self._keeper().checkpoints(self.path)

    def _keeper(self) -> _WalFlusher:
        with self._lock_fd_guard:
            if self._flusher is None:
                self._flusher = _WalFlusher(self._wal_fd)
            return self._flusher

    def _committed(self, durable: bool) -> None:
        self._commits += 1  # writers' queue held: commits are numbered in their WAL order
        if durable:
            self._local.commit = self._commits  # _make_durable flushes up to here
            return
        self._keeper().pending(self._commits)

    def _wal_fd(self) -> int | None:
        """A descriptor of the WAL file, kept open; opened again if the file was replaced (the
        last connection to close deletes it, the next to open makes a new one)."""
        path = f"{self.path}-wal"
        with self._lock_fd_guard:
            try:
                current = os.stat(path).st_ino
            except OSError:
                current = None
            if self._wal is not None and os.fstat(self._wal).st_ino != current:
                os.close(self._wal)
                self._wal = None
            if self._wal is None:
                try:
                    self._wal = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return None
            return self._wal

    def _make_durable(self, durable: bool) -> None:
        if not durable:
            return
        upto = getattr(self._local, "commit", 0)
        owed = getattr(self._local, "owed", None)
        if owed is not None:
            owed.note(upto)
            return
        self._flush_upto(upto)

    def _flush_upto(self, upto: int) -> None:
        """Every commit up to number `upto` on disk (any thread)."""
        if upto and self._flushed >= upto:
            return  # a flush that began after it was appended has already returned
        covers = self._commits  # each commit so far is in the WAL file: this flush covers it
        fd = self._wal_fd()
        try:
            if fd is None:
                raise OSError("the ledger's WAL file cannot be opened")
            os.fdatasync(fd)
        except OSError as exc:
            error = LedgerError(
                f"ledger {self.path}: flushing the WAL failed ({exc}); the last write may or may "
                "not have been stored — settlement_query tells"
            )
            error.at_commit = True
            raise error from exc
        self._flushed = max(self._flushed, covers)  # (a race keeps the lower: one more flush)
        if self._flusher is not None:
            self._flusher.flushed(covers)

    def close(self) -> None:
        super().close()
        if self._flusher is not None:
            self._flusher.stop()
        with self._lock_fd_guard:
            for fd in (self._lock_fd, self._wal):
                if fd is not None:
                    os.close(fd)
            self._lock_fd = self._wal = None

    def _storage_error(self, exc: BaseException, committing: bool) -> LedgerError:
        text = str(exc)
        if "database or disk is full" in text:
            reason = "the disk is full (database or disk is full)"
        elif "no such table" in text:
            reason = (f"it is not initialised: run `kiosk gateway init` ({text}; a ledger that "
                      "was in use and lost a table is damaged: restore it from a backup)")
        elif "database is locked" in text:
            error = LedgerError(f"ledger {self.path}: another writer held it for over "
                                f"{self._busy_timeout_s:g} s; nothing was written")
            error.busy = True
            return error
        elif "unable to open database file" in text or "readonly database" in text:
            reason = self._why_not_writable()
        else:
            reason = text
            if committing:
                # An I/O error inside COMMIT may come after the commit record reached the disk.
                return LedgerError(
                    f"ledger {self.path}: {reason} while committing; the last write may or may "
                    "not have been stored — settlement_query tells"
                )
        return LedgerError(f"ledger {self.path}: {reason}; nothing was written")


    def _why_not_writable(self) -> str:
        folder = self.path.parent
        if not folder.is_dir():
            return f"its folder {folder} does not exist"
        if not os.access(folder, os.W_OK):
            # SQLite writes its -wal and -shm files beside the ledger, even to read it
            return (f"its folder {folder} is read-only (SQLite writes its -wal and -shm files "
                    "beside the ledger, even to read it; copy a read-only ledger somewhere "
                    "writable first)")
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            return "the file is not readable and writable by this user"
        return "the file cannot be opened"


def _create_private(path: Path) -> None:
    """A new ledger file is readable by its owner only: it holds residents' names and ID
    numbers. (SQLite gives the -wal and -shm files the database file's permissions.)"""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError:
        pass  # it exists (kept as it is), or SQLite reports why it cannot be opened


@functools.lru_cache(maxsize=256)
def _to_sqlite(sql: str) -> str:
    return sql.replace("{lock}", "")  # BEGIN IMMEDIATE already holds the only write lock


class _WalFlusher:
    """Puts commits made without an fsync on disk within FLUSH_AFTER_S: fsync of the WAL file
    (the file those commits were appended to), unless a durable commit did it first. When the
    ledger serves, also checkpoints the WAL every CHECKPOINT_EVERY_S."""

    def __init__(self, wal_fd: Callable[[], int | None]) -> None:
        self._wal_fd = wal_fd
        self._wake = threading.Condition()
        self._due: float | None = None  # when the oldest unflushed commit must be on disk
        self._newest = 0  # number of the newest commit not known to be on disk
        self._database: Path | None = None  # checkpoint this database (serving)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="ledger-wal", daemon=True)
        self._thread.start()

    def checkpoints(self, database: Path) -> None:
        with self._wake:
            self._database = database
            self._wake.notify()

    def pending(self, number: int) -> None:
        with self._wake:
            self._newest = number
            if self._due is None:
                self._due = time.monotonic() + FLUSH_AFTER_S
                self._wake.notify()

    def flushed(self, upto: int) -> None:
        """A durable commit's fsync covered every commit up to number `upto` (earlier in the
        WAL); commits after it, if any, still wait for their flush."""
        with self._wake:
            if self._newest <= upto:
                self._due = None

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=5)
        self._fsync()  # whatever is left, before the ledger is let go

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        next_checkpoint = time.monotonic()
        try:
            while True:
                with self._wake:
                    while not self._stopping:
                        now = time.monotonic()
                        due = [at for at in (
                            self._due,
                            next_checkpoint if self._database is not None else None,
                        ) if at is not None]
                        if due and min(due) <= now:
                            break
                        self._wake.wait(min(due) - now if due else None)
                    if self._stopping:
                        return
                    flush = self._due is not None and self._due <= time.monotonic()
                    if flush:
                        self._due = None
                    database = self._database
                if flush:
                    self._fsync()
                if database is not None and time.monotonic() >= next_checkpoint:
                    next_checkpoint = time.monotonic() + CHECKPOINT_EVERY_S
                    connection = self._checkpoint(connection, database)
        finally:
            if connection is not None:
                connection.close()

    def _checkpoint(self, connection: sqlite3.Connection | None,
                    database: Path) -> sqlite3.Connection | None:
        try:
            if connection is None:
                connection = sqlite3.connect(database, timeout=0, isolation_level=None,
                                             check_same_thread=False)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass  # busy (another process checkpoints) or a disk fault commits will report
        return connection

    def _fsync(self) -> None:
        fd = self._wal_fd()
        if fd is None:
            return
        try:
            os.fdatasync(fd)
        except OSError:
            pass  # the next durable commit's own fsync reports a failing disk
