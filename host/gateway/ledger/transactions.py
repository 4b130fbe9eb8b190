"""Connections and transactions for the SQL ledger backends.

Each thread gets its own connection (the gateway may call the ledger from several threads). A
transaction either commits whole or is rolled back whole; driver errors come out as LedgerError
with the backend's explanation, and a connection that broke is dropped so the next call opens a
fresh one. Writes that the database undid to break a deadlock are run again.

Ledger calls made while a transaction is open on the same thread (inside `work`) join it instead
of opening their own: that is how the gateway runs a request's replay check, its reads and its
writes as one transaction (sqlcore.SqlLedger.run_requests). A call that joins never retries on
its own; the outermost transaction does.

`durable=False` marks a write transaction whose commit need not wait for the disk (the backend
decides how: SQLite does not flush its WAL for it, PostgreSQL commits it with
synchronous_commit=off). It is visible to every connection at once and becomes durable with the
next durable commit, or the backend's background flush.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from .base import LedgerError, OwedFlush

T = TypeVar("T")
WRITE_ATTEMPTS = 5  # a write the database undid to break a deadlock is run again


class TransientConflict(LedgerError):
    """The database undid this transaction to resolve a conflict; running it again is safe."""


class Tx:
    """One open transaction on one connection (one cursor, reused for every statement)."""

    def __init__(self, conn: Any, translate: Callable[[str], str], pipelined: bool,
                 stream_cursor: Callable[[Any], Any]) -> None:
        self._conn = conn
        self._cursor = conn.cursor()
        self._translate = translate
        self._pipelined = pipelined  # the driver can send statements without waiting (psycopg)
        # a cursor that fetches a query's rows a batch at a time (see `stream`)
        self._stream_cursor = stream_cursor
        self.events: list[Any] = []  # audit events to link to the chain before the commit
        self.keys_read: dict[str, Any] = {}  # SqlLedger.key_for_this_commit's, by kid

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(self._translate(sql), tuple(params)).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._cursor.execute(self._translate(sql), tuple(params)).fetchall())

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of a query one by one, never all of them held at once: SQLite steps its own
        cursor; PostgreSQL reads a server-side cursor a batch at a time. Other statements may
        run on this transaction between two rows (on their own cursor)."""
        cursor = self._stream_cursor(self._conn)
        try:
            cursor.execute(self._translate(sql), tuple(params))
            yield from cursor
        finally:
            cursor.close()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows it changed."""
        return self._cursor.execute(self._translate(sql), tuple(params)).rowcount

    def run_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Execute once per row of parameters, in order; the number of rows each changed.

        Over a network (PostgreSQL) the statements go in one pipeline: one round trip for all
        of them instead of one each. A failing statement raises, as `run` would."""
        if not self._pipelined or len(rows) < 2:
            return [self.run(sql, row) for row in rows]
        sql = self._translate(sql)
        cursors = [self._conn.cursor() for _ in rows]
        with self._conn.pipeline():
            for cursor, row in zip(cursors, rows, strict=True):
                cursor.execute(sql, tuple(row))
        return [cursor.rowcount for cursor in cursors]

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Execute once per row of parameters (one round trip where the driver can)."""
        self._cursor.executemany(self._translate(sql), [tuple(row) for row in rows])


class _InUse:
    """A thread's transaction under way, as interrupt() sees it."""

    __slots__ = ("conn", "since", "committing", "broken")

    def __init__(self, conn: Any, since: float) -> None:
        self.conn = conn
        self.since = since  # monotonic: when it began
        self.committing = False  # its COMMIT is on its way: never broken then
        self.broken = False  # by interrupt()


class SqlStore:
    """Per-thread connections and all-or-nothing transactions; subclasses supply the driver."""

    blob_type: ClassVar[str]
    driver_errors: ClassVar[tuple[type[BaseException], ...]]
    pipelined: ClassVar[bool] = False  # Tx.run_each may pipeline (a driver that supports it)

    def __init__(self, where: str) -> None:
        self.where = where  # for messages: the file or the URL without its password
        self._local = threading.local()
        self._connections: list[Any] = []
        self._connections_guard = threading.Lock()
        self._closed = False
        # thread id -> its transaction under way (for interrupt(), from another thread)
        self._in_use: dict[int, _InUse] = {}
        self._in_use_guard = threading.Lock()

    # ------------------------------------------------------------------ backend hooks
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, conn: Any, write: bool, durable: bool = True) -> None:
        raise NotImplementedError

    def _writer(self) -> Any:
        """A context manager held around each write transaction (a fair queue for writers);
        none by default: the database's own locks order them."""
        return contextlib.nullcontext()

    def _committed(self, durable: bool) -> None:
        """Called after each write commit, writers' queue still held."""

    def _before_commit(self, tx: Tx) -> None:
        """The last statements of every write transaction (the SQL ledger links its audit
        events here)."""

    def _make_durable(self, durable: bool) -> None:
        """Called after each write commit, writers' queue released: a durable commit must be on
        disk when this returns (SQLite flushes its WAL here, see sqlite.py) — or, under
        durable_later(), noted in its OwedFlush; raise LedgerError (at_commit) if it cannot be."""

    # ------------------------------------------------------------------ serving from an event loop
    # An event loop must not block on the writers' queue or on a disk flush: while it waits, it
    # could be checking the next frames' signatures. These let it wait on a worker thread.
    def take_writers_queue(self, holder: int, wait: bool) -> bool:
        """Take this process's turn at writing for thread `holder` (its write transactions then
        skip the queue) until leave_writers_queue(). wait=False: False at once if another writer
        has the turn; wait=True blocks (call it from a worker thread). Default: there is no queue
        of our own (the database's locks order writers)."""
        return True

    def leave_writers_queue(self) -> None:
        """The turn taken by take_writers_queue ends."""

    @contextlib.contextmanager
    def durable_later(self) -> Iterator[OwedFlush]:
        """Durable commits made within, on this thread, return before their disk flush: they
        note it in the OwedFlush, and nothing they did may be reported to anyone until its
        wait() has returned. Default: commits are durable by themselves (PostgreSQL)."""
        yield OwedFlush(None)

    def _end(self, conn: Any, commit: bool) -> None:
        raise NotImplementedError

    def _translate(self, sql: str) -> str:
        raise NotImplementedError

    def _stream_cursor(self, conn: Any) -> Any:
        """A cursor for Tx.stream: one that holds a batch of rows at a time, not all of them
        (the driver's plain cursor does, for SQLite)."""
        return conn.cursor()

    def _storage_error(self, exc: BaseException, committing: bool) -> LedgerError:
        """A LedgerError that says what went wrong in words an operator can act on."""
        raise NotImplementedError

    def _connection_unusable(self, conn: Any) -> bool:
        return False

    def interrupt(self, thread_id: int, older_than_s: float) -> bool:
        """Break the connection thread `thread_id`'s transaction waits on (called from another
        thread), if that transaction has run `older_than_s` and has not sent its COMMIT: the
        wait ends in a LedgerError (`interrupted`, nothing stored) and the connection is
        replaced. Never a COMMIT: cut off, it may still complete on the server after the kiosk
        was told to ask, and a query made meanwhile would hear not_found. False if there is
        no such transaction or the backend cannot break one."""
        with self._in_use_guard:
            use = self._in_use.get(thread_id)
            if use is None or use.committing or use.broken or \
                    time.monotonic() - use.since < older_than_s:
                return False
            # Marked before the break: the waiting thread's error, which the break causes, must
            # find it so (else it is taken for a lost connection and the batch run again, job by
            # job, each connecting to the silent server: seen under load).
            use.broken = True
            if not self._break(use.conn):
                use.broken = False
            return use.broken

    def _shorten_lock_wait(self, tx: Tx) -> None:
        """For the rest of `tx`: a lock held elsewhere is waited for only briefly."""

    def _break(self, conn: Any) -> bool:
        """Make `conn`'s pending call fail now (from another thread); False if impossible."""
        return False

    def tune_for_serving(self) -> None:
        """Settings for a long-running gateway process (none by default)."""

    def exposure(self) -> str | None:
        """Why the stored data may be readable by others than the gateway, or None (a database
        server keeps its own files)."""
        return None

    # ------------------------------------------------------------------ connections
    def _connection(self) -> Any:
        if self._closed:
            raise LedgerError(f"the ledger at {self.where} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except self.driver_errors as exc:
                raise self._storage_error(exc, committing=False) from exc
            with self._connections_guard:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _discard(self, conn: Any) -> None:
        with self._connections_guard:
            if conn in self._connections:
                self._connections.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        try:
            conn.close()
        except self.driver_errors:
            pass

    def close(self) -> None:
        self._closed = True
        with self._connections_guard:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except self.driver_errors:
                pass

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    def _transaction(self, work: Callable[[Tx], T], write: bool, durable: bool = True) -> T:
        joined = getattr(self._local, "tx", None)
        if joined is not None:
            return work(joined)
        if not write:
            return self._run(work, write, durable)
        with self._writer():
            result = self._run(work, write, durable)
            self._committed(durable)
        self._make_durable(durable)
        return result

    def _run(self, work: Callable[[Tx], T], write: bool, durable: bool) -> T:
        thread = threading.get_ident()
        try:
            return self._run_on(thread, work, write, durable)
        finally:
            with self._in_use_guard:
                self._in_use.pop(thread, None)

    def _run_on(self, thread: int, work: Callable[[Tx], T], write: bool, durable: bool) -> T:
        conn = self._begun(thread, write, durable)
        tx = Tx(conn, self._translate, self.pipelined, self._stream_cursor)
        self._local.tx = tx
        try:
            result = work(tx)
            if write:
                self._before_commit(tx)
        except BaseException as exc:
            self._local.tx = None
            self._rollback_quietly(conn)
            if isinstance(exc, self.driver_errors):
                raise self._failure(conn, exc, committing=False) from exc
            raise
        self._local.tx = None
        with self._in_use_guard:  # from here on interrupt() leaves it alone
            use = self._in_use[thread]
            use.committing = not use.broken
        try:
            self._end(conn, commit=True)
        except self.driver_errors as exc:
            self._rollback_quietly(conn)
            # broken before the COMMIT went out: nothing was stored
            raise self._failure(conn, exc, committing=write and not use.broken) from exc
        return result

    def _begun(self, thread: int, write: bool, durable: bool) -> Any:
        """A connection with a transaction begun. A kept connection that turns out dead at
        BEGIN (the server restarted, failed over, or closed it as idle) is replaced once:
        nothing has run yet, so a kiosk is not told `unavailable` for a database that is up."""
        while True:
            kept = getattr(self._local, "conn", None) is not None
            try:
                conn = self._connection()
            except LedgerError as exc:
                exc.at_begin = True
                raise
            with self._in_use_guard:
                self._in_use[thread] = _InUse(conn, time.monotonic())
            try:
                self._begin(conn, write, durable)
                return conn
            except self.driver_errors as exc:
                error = self._failure(conn, exc, committing=False)
                error.at_begin = True  # nothing ran
                if kept and not error.interrupted and getattr(self._local, "conn", None) is None:
                    continue  # it was discarded as dead: the next try opens a new one
                raise error from exc

    def _rollback_quietly(self, conn: Any) -> None:
        try:
            self._end(conn, commit=False)
        except self.driver_errors:
            pass  # the transaction is gone either way; the connection is checked below

    def _failure(self, conn: Any, exc: BaseException, committing: bool) -> LedgerError:
        use = self._in_use.get(threading.get_ident())
        if use is not None and use.broken:  # by interrupt(): the database answered nothing
            self._discard(conn)
            error = LedgerError(
                f"ledger {self.where}: the database answered nothing for "
                f"{time.monotonic() - use.since:.0f} s; the gateway broke the connection "
                "(nothing was stored)")
            error.interrupted = True
            return error
        if self._connection_unusable(conn):
            self._discard(conn)  # the next call opens a fresh one
        error = self._storage_error(exc, committing)
        error.at_commit = committing  # the write may have been stored: never run it again
        return error

    def _read(self, work: Callable[[Tx], T]) -> T:
        return self._transaction(work, write=False)

    def _in_transaction(self) -> bool:
        return getattr(self._local, "tx", None) is not None

    def atomically(self, work: Callable[[], T]) -> T:
        """work() as one durable write transaction: every ledger call it makes joins it."""
        return self._write(lambda _tx: work())

    def _write(self, work: Callable[[Tx], T], durable: bool = True) -> T:
        if self._in_transaction():
            return work(self._local.tx)  # joined: the outermost transaction retries
        for _ in range(WRITE_ATTEMPTS - 1):
            try:
                return self._transaction(work, write=True, durable=durable)
            except TransientConflict:
                continue  # rolled back whole; the next attempt sees the winner's commit
        return self._transaction(work, write=True, durable=durable)
