"""The shared ledger: PostgreSQL through psycopg 3, so several gateway processes use one ledger.

Each thread has its own connection. Writes run in READ COMMITTED with explicit row locks: the
bill (a settle's `UPDATE ... RETURNING` that marks it settled), then the person's accumulation
row (`SELECT ... FOR UPDATE`, inserted first if absent), then the audit chain's head; a unique
txn_id backs up exactly-once. Commits use the server's default (synchronous_commit on: flushed
to the WAL before COMMIT returns), except a transaction marked durable=False (only read-only
requests' replay counters, see SqlLedger.run_requests), which commits with synchronous_commit
off: visible at once, on disk when the next commit flushes the WAL or the WAL writer does
(within 3 x wal_writer_delay).
Reads that must agree with each other (the audit snapshot) run in one REPEATABLE READ
transaction.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from ..config import LedgerLocation, describe
from .base import LedgerError
from .sqlcore import SqlLedger
from .transactions import TransientConflict, Tx

# A server that takes the TCP connection and never answers holds the gateway's loop this long
# per attempt (libpq's minimum is 2 s); a LAN connects in milliseconds.
CONNECT_TIMEOUT_S = 5
# A server that vanishes without closing the link (a failover, a cable, a NAT that forgot us)
# is noticed within about a minute instead of the kernel's two hours (keepalives) or fifteen
# minutes of retransmissions (tcp_user_timeout, ms). A URL that sets its own values keeps them.
LINK_CHECKS = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
               "keepalives_count": 3, "tcp_user_timeout": 30_000}
INIT_LOCK = 0x0E57_0901  # advisory lock: two `init`s at once create the tables once
# A lock held elsewhere (an operator's psql session, a stuck job) is waited for this long, then
# the request is answered `unavailable` and the operator told: a gateway runs its ledger work on
# its event loop, so an unbounded wait would freeze every kiosk it serves, silently. Far above
# what settlements hold each other up (milliseconds), below a kiosk's 10 s reply timeout.
LOCK_WAIT_MS = 3000
# The rest of a batch, run again after one of its requests ran out of LOCK_WAIT_MS, waits this
# long (SqlLedger._run_batch): a row lock spares it, a table lock fails it soon.
RERUN_LOCK_WAIT_MS = 500
_SETS_LOCK_TIMEOUT = re.compile(r"(^|\s)(-c\s*|--)lock[_-]timeout=")  # not deadlock_timeout
# A serving gateway's session that stops talking inside a transaction (its gateway frozen by a
# paused VM, a swap storm, a partition) is ended by the server after this long, and its row
# locks with it: every write takes the audit chain's head, so one such session stopped every
# gateway on the ledger until TCP gave up on it (hours). A gateway's transactions pause between
# statements for milliseconds; an operator's audit of a large ledger converts rows for longer
# between its reads, so the operator's commands are not limited.
IDLE_IN_TRANSACTION_MS = 5000
# Rows a server-side cursor (Tx.stream: the audit's reads) fetches per round trip: a few MB
# at most, whatever the table's size.
STREAM_BATCH_ROWS = 1000
_SETS_IDLE_TIMEOUT = re.compile(r"(^|\s)(-c\s*|--)idle[_-]in[_-]transaction[_-]session[_-]"
                                r"timeout=")


class PostgresLedger(SqlLedger):
    blob_type: ClassVar[str] = "BYTEA"
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (psycopg.Error,)
    pipelined: ClassVar[bool] = True

    def __init__(self, location: LedgerLocation) -> None:
        if location.dsn is None:
            raise ValueError("a PostgreSQL ledger needs a connection URL")
        where = describe(location.dsn) + (f" (schema {location.schema})" if location.schema else "")
        super().__init__(where)
        self.location = location
        self._serving = False  # tune_for_serving: the idle-in-transaction limit applies

    def _settings(self) -> str:
        """The server settings of the URL, else of PGOPTIONS (libpq reads it only when no
        options are given, and we always give some): kept, and added to."""
        given = conninfo_to_dict(self.location.dsn or "")
        return str(given.get("options", os.environ.get("PGOPTIONS", "")))

    def _connect(self) -> psycopg.Connection[Any]:
        options: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S}
        given = conninfo_to_dict(self.location.dsn or "")
        options.update({k: v for k, v in LINK_CHECKS.items() if k not in given})
        if "application_name" not in given:
            # pg_stat_activity then says which gateway (host, process) holds a lock or a
            # transaction: the one to look at when the others report locks held elsewhere
            options["application_name"] = f"onestop {socket.gethostname()}/{os.getpid()}"
        settings = self._settings()
        if self.location.schema:
            settings += f" -c search_path={self.location.schema}"
        if not _SETS_LOCK_TIMEOUT.search(settings):
            settings += f" -c lock_timeout={LOCK_WAIT_MS}"
        if self._serving and not _SETS_IDLE_TIMEOUT.search(settings):
            settings += f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
        options["options"] = settings.strip()
        return psycopg.connect(self.location.dsn or "", **options)

    def _stream_cursor(self, conn: Any) -> Any:
        # A named cursor is a server-side one (DECLARE ... inside the transaction begun here):
        # the server keeps the result and hands it over STREAM_BATCH_ROWS at a time.
        cursor = conn.cursor(name=f"onestop_stream_{next(_STREAM_NAMES)}")
        cursor.itersize = STREAM_BATCH_ROWS
        return cursor

    def _order_key(self, column: str) -> str:
        return f'{column} COLLATE "C"'

    def _begin(self, conn: Any, write: bool, durable: bool = True) -> None:
        if not write:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        elif durable:
            conn.execute("BEGIN")
        else:  # only replay counters: visible at once, flushed by the WAL writer (one trip)
            conn.execute("BEGIN; SET LOCAL synchronous_commit TO off")

    def _end(self, conn: Any, commit: bool) -> None:
        conn.execute("COMMIT" if commit else "ROLLBACK")

    def _translate(self, sql: str) -> str:
        return _to_psycopg(sql)

    def _shorten_lock_wait(self, tx: Tx) -> None:
        tx.run(f"SET LOCAL lock_timeout = {int(RERUN_LOCK_WAIT_MS)}")

    def tune_for_serving(self) -> None:
        self._serving = True
        conn = getattr(self._local, "conn", None)  # opened at start-up, before: limited too
        if conn is not None and not _SETS_IDLE_TIMEOUT.search(self._settings()):
            conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")

    def _break(self, conn: Any) -> bool:
        # Shut the socket down under the waiting call: it returns with an error at once (the
        # server, which keeps the link up and answers nothing, never would).
        try:
            fd = conn.pgconn.socket
            link = socket.socket(fileno=os.dup(fd))
        except (OSError, psycopg.Error):
            return False  # closed meanwhile: nothing to break
        try:
            link.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        finally:
            link.close()
        return True

    def _connection_unusable(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def _result_integers(self, fields: Sequence[str]) -> tuple[str, list[str]]:
        # Each row's JSON parsed once, into typed columns (->> per field parsed it once per
        # field, and as jsonb: 5 times slower over a day's settlements).
        columns = ", ".join(f'"{name}" bigint' for name in fields)
        return (f", json_to_record(s.result::json) AS r({columns})",
                [f'r."{name}"' for name in fields])

    def _table_names(self, tx: Tx) -> set[str]:
        return {name for (name,) in tx.all(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()")}

    def _prepare_schema(self, tx: Tx) -> None:
        tx.one("SELECT pg_advisory_xact_lock(?)", (INIT_LOCK,))
        if self.location.schema:  # validated by config: lower-case letters, digits, _
            tx.run(f'CREATE SCHEMA IF NOT EXISTS "{self.location.schema}"')

    def _storage_error(self, exc: BaseException, committing: bool) -> LedgerError:
        if isinstance(exc, pg_errors.DeadlockDetected | pg_errors.SerializationFailure):
            return TransientConflict(f"ledger {self.where}: {exc}")
        if isinstance(exc, pg_errors.UndefinedTable):
            # Also what a role sees once it may no longer use the ledger's schema (its tables
            # drop out of the search path): the operator must hear of both.
            return LedgerError(
                f"ledger {self.where} has no ledger tables this database role can see: it is "
                "not initialised (run `kiosk gateway init`), or the role lacks USAGE on its "
                f"schema ({_first_line(exc)})")
        if isinstance(exc, pg_errors.LockNotAvailable):
            error = LedgerError(
                f"ledger {self.where}: another session held a lock it needs for over "
                f"{LOCK_WAIT_MS / 1000:g} s ({_first_line(exc)}); nothing was written. "
                "pg_stat_activity names the sessions in a transaction (gateways as "
                "'onestop HOST/PID')"
            )
            error.busy = True
            return error
        if isinstance(exc, pg_errors.DiskFull):
            return LedgerError(
                f"ledger {self.where}: the database's disk is full; nothing was written"
            )
        if isinstance(exc, psycopg.OperationalError):
            if committing:
                return LedgerError(
                    f"ledger {self.where} went away while committing ({_first_line(exc)}); the "
                    "last write may or may not have been stored — settlement_query tells"
                )
            return LedgerError(
                f"ledger {self.where} is unavailable ({_first_line(exc)}); nothing was written"
            )
        return LedgerError(f"ledger {self.where}: {_first_line(exc)}; nothing was written")


_STREAM_NAMES = itertools.count(1)


@functools.lru_cache(maxsize=256)
def _to_psycopg(sql: str) -> str:
    # Our statements hold no literal '?' or '%', so the placeholder swap is exact.
    return sql.replace("{lock}", " FOR UPDATE").replace("?", "%s")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
