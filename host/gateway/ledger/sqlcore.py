"""The ledger's logic in SQL, shared by both backends (sqlite.py, postgres.py).

Every public method is one transaction on the calling thread's own connection (or joins the
one open on that thread: `run_requests` runs many requests' calls in one transaction). Writes
take their row locks in one order — bill, then settlement's accumulations, then the audit
chain's head, last, just before the commit — so concurrent writers queue instead of
deadlocking; on SQLite, `BEGIN IMMEDIATE` serialises all writers anyway. (Two PostgreSQL
batches that settle the same two persons in opposite orders could still deadlock — the same
person at two kiosks at once; the database undoes one and it is run again.) A write either
commits whole (durably, before the method returns) or leaves nothing behind.

Statements are written with ``?`` placeholders and a ``{lock}`` marker where PostgreSQL needs
``FOR UPDATE``; each backend translates them.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from .. import jsontext
from . import events
from .base import (
    MAX_COUNTER,
    AuditReader,
    Bill,
    BillUnavailable,
    CertRecord,
    KeyRecord,
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
from .chain import GENESIS_HASH, canonical_json, event_hash
from .checks import amounts_problems, minus, plus, same_amounts
from .rows import (
    BILL_AS_TAKEN,
    BILL_COLUMNS,
    KEY_COLUMNS,
    PERSON_COLUMNS,
    PERSON_WIDTH,
    PRICING_COLUMNS,
    SETTLEMENT_COLUMNS,
    bill_content,
    bill_from_row,
    bill_values,
    key_from_row,
    person_from_row,
    person_values,
    settlement_from_row,
    settlement_values,
)
from .schema import SCHEMA_VERSION, TABLE_NAMES, UPGRADABLE_VERSIONS, statements
from .transactions import SqlStore, TransientConflict, Tx
from .validation import built_settlement_problems, key_problems

T = TypeVar("T")
KEY_ROLES = ("gateway", "kiosk")
# A request's replay check: store its counter if it is above the last one seen from the kiosk
# *and* the kiosk's key is still the active one its frame was verified with (a revocation that
# committed after the frame was opened still stops it). Many kiosks' at once (their ids
# distinct), in chunks of these sizes only, so the statement has few texts to cache and prepare.
COUNTER_CHUNKS = (64, 32, 16, 8, 4, 2, 1)


def _chunk_size(rows: int) -> int:
    return next(size for size in COUNTER_CHUNKS if size <= rows)


@functools.lru_cache(maxsize=len(COUNTER_CHUNKS))
def _advance_many_sql(rows: int) -> str:
    """The replay check of `rows` requests: RETURNING the kiosks whose counter moved."""
    # VALUES names its columns column1, column2... on SQLite and PostgreSQL alike; the CAST
    # gives the counters one type whatever size of integer the driver sent for each
    values = ", ".join(["(?, CAST(? AS BIGINT), ?)"] * rows)
    return (
        "INSERT INTO counters (kiosk_id, ctr) SELECT v.column1, v.column2 "
        f"FROM (VALUES {values}) AS v WHERE EXISTS ("
        "SELECT 1 FROM keys WHERE kid = v.column1 AND role = 'kiosk' AND status = 'active' "
        "AND public_key = v.column3) "
        "ON CONFLICT (kiosk_id) DO UPDATE SET ctr = excluded.ctr WHERE counters.ctr < excluded.ctr "
        "RETURNING kiosk_id"
    )


KEY_STATUSES = ("active", "revoked")
FIELD_NAME = re.compile(r"[a-z_]+")  # a settlement result's field (settlement_sums)
# A settlement whose number (setl_id) is taken is built again with a new one, this many times
# in all: two random 40-bit numbers of one day meet now and then, three in a row never do.
SETL_ID_ATTEMPTS = 3


def _check_counter(ctr: Any) -> None:
    if type(ctr) is not int or not 0 <= ctr <= MAX_COUNTER:
        raise ValueError(f"a counter is an integer from 0 to {MAX_COUNTER}, not {ctr!r}")


SERVING_PREFIX = "serving/"
CERT_PREFIX = "cert/"  # + a gateway kid: its cert's record (events.cert_data, canonical JSON)


class _NeedsSavepoint(Exception):
    """A writing request refused in a batch run without savepoints: run it again with them."""


class SqlLedger(SqlStore):
    """The Ledger contract (base.py) in SQL; sqlite.py and postgres.py supply the driver."""

    blob_type: ClassVar[str]

    def _prepare_schema(self, tx: Tx) -> None:
        """Anything init needs before the tables (PostgreSQL: the schema, an init lock)."""

    def _table_names(self, tx: Tx) -> set[str]:
        """The tables the ledger's database (its schema, on PostgreSQL) holds now."""
        raise NotImplementedError

    def _refuse_if_damaged(self, tx: Tx) -> None:
        """A ledger made by this version that lacks some of its tables lost them (dropped by
        hand, a bad restore): `init` must not make them again empty, the audit chain with
        them, as if nothing had happened."""
        tables = self._table_names(tx)
        if "ledger_meta" not in tables:
            return
        row = tx.one("SELECT value FROM ledger_meta WHERE name = 'schema_version'")
        if row is None or row[0] != SCHEMA_VERSION:
            return  # a new ledger, or an earlier one init brings up to date
        missing = [name for name in TABLE_NAMES if name not in tables]
        if missing:
            raise LedgerError(
                f"the ledger at {self.where} is damaged: it is a schema {SCHEMA_VERSION} "
                f"ledger without its table{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}; restore it from a backup (`kiosk gateway backup` "
                "makes them); nothing was written")

    def _order_key(self, column: str) -> str:
        """`column` as an ORDER BY term that sorts text by code point, as Python sorts str
        (SQLite's default BINARY collation does; PostgreSQL's may follow a locale)."""
        return column

    # ------------------------------------------------------------------ lifecycle
    def init(self) -> None:
        def create(tx: Tx) -> None:
            self._prepare_schema(tx)
            self._refuse_if_damaged(tx)
            for ddl in statements(self.blob_type):
                tx.run(ddl)
            tx.run(
                "INSERT INTO ledger_meta (name, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (name) DO NOTHING",
                (SCHEMA_VERSION,),
            )
            # An older ledger has just been given the tables and indexes it lacked: it is up
            # to date.
            row = tx.one("SELECT value FROM ledger_meta WHERE name = 'schema_version'")
            if row is not None and row[0] in UPGRADABLE_VERSIONS:
                tx.run("UPDATE ledger_meta SET value = ? WHERE name = 'schema_version'",
                       (SCHEMA_VERSION,))
            tx.run(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (GENESIS_HASH,),
            )
            _ssn_key(tx)
            self._check_schema(tx)

        self._write(create)

    def upgrade(self) -> str | None:
        """Bring a ledger of an upgradable earlier schema up to date (what init adds to it);
        the version it had, or None if it was up to date. LedgerError for anything else (no
        ledger here, or a version this code does not know)."""
        try:
            found = self.schema_version()
        except LedgerError as exc:
            raise LedgerError(f"no ledger at {self.where} to upgrade ({exc}): "
                              "`kiosk gateway init` makes one") from None
        if found == SCHEMA_VERSION:
            self._read(self._refuse_if_damaged)  # up to date only with all its tables
            return None
        if found not in UPGRADABLE_VERSIONS:
            self._read(self._check_schema)  # says which version it is, and what to do
        self.init()
        return found

    def schema_version(self) -> str | None:
        """The schema version the ledger says it has (None: none); LedgerError if no ledger."""
        row = self._read(lambda tx: tx.one(
            "SELECT value FROM ledger_meta WHERE name = 'schema_version'"))
        return None if row is None else str(row[0])

    def check_schema(self, complete: bool = False) -> None:
        def check(tx: Tx) -> None:
            self._check_schema(tx)
            if complete:  # a gateway uses every table; a command only those it reads
                self._refuse_if_damaged(tx)

        self._read(check)

    def _check_schema(self, tx: Tx) -> None:
        row = tx.one("SELECT value FROM ledger_meta WHERE name = 'schema_version'")
        version = None if row is None else row[0]
        if version in UPGRADABLE_VERSIONS:
            raise LedgerError(
                f"the ledger at {self.where} has schema version {version}, from an earlier "
                f"Onestop; this gateway needs version {SCHEMA_VERSION}: stop every gateway "
                "on it and run `kiosk gateway upgrade --db URL` to bring it up to date (it "
                "adds tables and indexes, drops one no longer used; nothing stored changes)"
            )
        if version != SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger at {self.where} has schema version {version}; this gateway "
                f"knows version {SCHEMA_VERSION}"
            )

    # ------------------------------------------------------------------ serving gateways
    # Kept in ledger_meta (no schema change): name "serving/" + the gateway's own name, value
    # "<seconds> <json>". Not part of the audit chain: it describes processes, not money.
    def record_serving(self, name: str, value: str, now: int) -> None:
        self._write(lambda tx: tx.run(
            "INSERT INTO ledger_meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (SERVING_PREFIX + name, f"{now} {value}")), durable=False)

    def forget_serving(self, names: list[str]) -> None:
        self._write(lambda tx: tx.run_each(
            "DELETE FROM ledger_meta WHERE name = ?",
            [(SERVING_PREFIX + name,) for name in names]), durable=False)

    def serving_records(self) -> dict[str, tuple[str, int]]:
        rows = self._read(lambda tx: tx.all(
            "SELECT name, value FROM ledger_meta WHERE name LIKE ?", (SERVING_PREFIX + "%",)))
        records = {}
        for name, stored in rows:
            seconds, _, value = str(stored).partition(" ")
            if seconds.isdigit():
                records[name[len(SERVING_PREFIX):]] = (value, int(seconds))
        return records

    # ------------------------------------------------------------------ audit chain
    def _append_event(self, tx: Tx, kind: str, data: dict[str, Any]) -> None:
        """Add one event to the chain at this transaction's commit (see _before_commit)."""
        tx.events.append((kind, data, int(time.time())))

    def _before_commit(self, tx: Tx) -> None:
        """Link the transaction's events to the chain, in the order they happened, just before
        it commits: the chain's head stays locked only from here to the commit (not for the
        whole transaction, which may hold many requests), and several events share one read
        and one write of the head."""
        if not tx.events:
            return
        seq, prev_hash = tx.one("SELECT seq, hash FROM audit_head WHERE id = 1{lock}")
        seq = int(seq)
        rows = []
        for kind, data, at in tx.events:
            seq += 1
            body = canonical_json({"kind": kind, "seq": seq, "at": at, **data})
            digest = event_hash(prev_hash, body)
            rows.append((seq, kind, data.get("txn_id"), body, prev_hash, digest))
            prev_hash = digest
        tx.many(
            "INSERT INTO audit_log (seq, kind, txn_id, body, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        tx.run("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, prev_hash))
        tx.events.clear()

    # ------------------------------------------------------------------ keys
    def add_key(self, record: KeyRecord) -> None:
        problems = key_problems(record, KEY_ROLES, KEY_STATUSES)
        if problems:
            raise ValueError(f"key {record.kid!r}: " + "; ".join(problems))

        def work(tx: Tx) -> None:
            other = tx.one("SELECT kid, role FROM keys WHERE public_key = ? AND kid <> ?",
                           (record.public_key, record.kid))
            if other is not None:
                # one key, one holder: else revoking one id would leave the device trusted under
                # the other, and a kiosk could sign as the gateway
                remedy = ("every kiosk makes its own key (kiosk fw provision prints it)"
                          if record.role == "kiosk" else
                          f"this gateway key keeps its id: run init without --gateway-id, or "
                          f"with --gateway-id {other[0]}")
                raise ValueError(f"this public key is already enrolled as {other[0]!r} "
                                 f"({other[1]}); {remedy}")
            added = tx.run(
                "INSERT INTO keys (kid, role, alg, public_key, status) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kid) DO NOTHING",
                (record.kid, record.role, record.alg, record.public_key, record.status),
            )
            if added:
                self._append_event(tx, events.KEY_ADDED, events.key_data(record))
                return
            existing = key_from_row(
                tx.one(f"SELECT {KEY_COLUMNS} FROM keys WHERE kid = ?{{lock}}", (record.kid,))
            )
            if existing.public_key == record.public_key and existing.role != record.role:
                raise ValueError(f"{record.kid!r} is already enrolled, as a {existing.role} key")
            if (existing.role, existing.alg, existing.public_key) != (
                record.role,
                record.alg,
                record.public_key,
            ):
                raise ValueError(
                    f"{record.kid!r} is already enrolled ({existing.role}) with another key; a "
                    "key is never replaced: enrol the new key under a new id"
                )
            self._change_key_status(tx, existing, record.status)

        self._write(work)

    def _change_key_status(self, tx: Tx, existing: KeyRecord, status: str) -> None:
        if existing.status == status:
            return
        tx.run("UPDATE keys SET status = ? WHERE kid = ?", (status, existing.kid))
        self._append_event(
            tx, events.KEY_STATUS_EVENTS[status], {"kid": existing.kid, "status": status}
        )

    def get_key(self, kid: str) -> KeyRecord | None:
        row = self._read(lambda tx: tx.one(f"SELECT {KEY_COLUMNS} FROM keys WHERE kid = ?", (kid,)))
        return None if row is None else key_from_row(row)

    def key_for_this_commit(self, kid: str) -> KeyRecord | None:
        # Read again for each settlement of a batch, it would say the same: on SQLite the
        # write turn keeps any revocation out until the commit; on PostgreSQL one can commit
        # during the batch as it can between any settlement's read and its commit.
        tx = getattr(self._local, "tx", None)
        if tx is None:
            return self.get_key(kid)
        if kid not in tx.keys_read:
            tx.keys_read[kid] = self.get_key(kid)
        return tx.keys_read[kid]

    def key_with_public_key(self, public_key: bytes) -> KeyRecord | None:
        row = self._read(lambda tx: tx.one(
            f"SELECT {KEY_COLUMNS} FROM keys WHERE public_key = ?", (public_key,)))
        return None if row is None else key_from_row(row)

    def set_key_status(self, kid: str, status: str) -> bool:
        if status not in KEY_STATUSES:
            raise ValueError(f"key status must be one of {', '.join(KEY_STATUSES)}, not {status!r}")

        def work(tx: Tx) -> bool:
            row = tx.one(f"SELECT {KEY_COLUMNS} FROM keys WHERE kid = ?{{lock}}", (kid,))
            if row is None:
                return False
            self._change_key_status(tx, key_from_row(row), status)
            return True

        return self._write(work)

    def list_keys(self) -> list[KeyRecord]:
        rows = self._read(lambda tx: tx.all(f"SELECT {KEY_COLUMNS} FROM keys ORDER BY role, kid"))
        return [key_from_row(row) for row in rows]

    # ------------------------------------------------------------------ gateway key certs
    # Kept in ledger_meta (no schema change), each one's history in the audit chain
    # (key_certified), which the audit compares with them.
    def record_cert(self, record: CertRecord, replace_authority: bool = False) -> bool:
        if type(record.serial) is not int or record.serial < 1:
            raise ValueError(f"a cert's serial is a whole number from 1, not {record.serial!r}")

        def work(tx: Tx) -> bool:
            tx.one("SELECT seq FROM audit_head WHERE id = 1{lock}")  # one certify at a time
            row = tx.one(f"SELECT {KEY_COLUMNS} FROM keys WHERE kid = ?{{lock}}", (record.kid,))
            key = None if row is None else key_from_row(row)
            if key is None or key.role != "gateway":
                raise ValueError(f"{record.kid} is not a gateway key of this ledger")
            if key.status != "active":
                raise ValueError(f"gateway key {record.kid} was revoked")
            certs = _certs(tx)
            if certs.get(record.kid) == record:
                return False
            _check_cert(record, certs, replace_authority)
            tx.run("INSERT INTO ledger_meta (name, value) VALUES (?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                   (CERT_PREFIX + record.kid, canonical_json(events.cert_data(record))))
            self._append_event(tx, events.KEY_CERTIFIED, events.cert_data(record))
            return True

        return self._write(work)

    def gateway_certs(self) -> dict[str, CertRecord]:
        return self._read(_certs)

    # ------------------------------------------------------------------ the counter's lookups
    def record_lookup(self, data: dict[str, Any]) -> None:
        self._write(lambda tx: self._append_event(tx, events.LOOKED_UP, data))

    def lookups(self) -> list[dict[str, Any]]:
        # By the partial index `lookups` (a literal kind, as for key_revocations below).
        return [jsontext.loads(e["body"]) for e in self._read(
            lambda tx: self._events(tx, f"WHERE kind = '{events.LOOKED_UP}'"))]

    def key_revocations(self) -> list[dict[str, Any]]:
        # By key_revocations, the partial index of these events: the kind is a literal, for the
        # planner to see that the index's condition holds (for a parameter it may not).
        return self._read(lambda tx: self._events(tx, f"WHERE kind = '{events.KEY_REVOKED}'"))

    # ------------------------------------------------------------------ replay guard
    def last_counters(self) -> dict[str, int]:
        rows = self._read(lambda tx: tx.all("SELECT kiosk_id, ctr FROM counters"))
        return {kiosk_id: int(ctr) for kiosk_id, ctr in rows}

    def advance_counter(self, kiosk_id: str, ctr: int) -> bool:
        _check_counter(ctr)
        return bool(
            self._write(
                lambda tx: tx.run(
                    "INSERT INTO counters (kiosk_id, ctr) VALUES (?, ?) "
                    "ON CONFLICT (kiosk_id) DO UPDATE SET ctr = excluded.ctr "
                    "WHERE counters.ctr < excluded.ctr",
                    (kiosk_id, ctr),
                )
            )
        )

    # ------------------------------------------------------------------ requests
    def run_requests(self, jobs: list[RequestJob]) -> list[RequestOutcome]:
        """Each job's replay check and work as its own transaction — and all of them in one
        commit (group commit): under load one disk flush answers many requests.

        A refusal of an `undo_refused` job undoes only its own request's writes (a savepoint;
        since refusals of writing requests are rare, a batch first runs without savepoints and,
        if one comes, runs again with them — nothing of the first attempt is kept); another
        job's writes stand though it is refused. The commit is durable (on disk before this
        returns) if any job is `durable`. A batch of read-only requests only (pending_bills,
        pre_settle, sign_in) writes only their counters and commits without waiting for
        the disk: visible at once to
        every connection
        and every gateway, so a replay is refused as long as the ledger runs, and on disk with
        the next durable commit (each settle, cancel, receipt...) or the backend's background
        flush (SQLite: within sqlite.FLUSH_AFTER_S; PostgreSQL: its WAL writer, within
        3 x wal_writer_delay). A power cut can therefore forget the last instants' counters of
        read-only requests: a frame of one of them, captured then and still fresh (ts within
        replay.STALE_AFTER_S), could be answered once more. It changes nothing and its answer
        repeats one already sent. It can never replay a settle, cancel or receipt (their
        counters commit durably with their effect), settle anything twice (txn_id is unique) or
        move a counter below a durable commit. A gateway killed with SIGKILL loses nothing: the
        commits are in the database (SQLite: the OS's page cache), not the process.

        If a statement fails mid-batch (or a job meets a bug outside its work), nothing of the
        batch was written and each job is run again alone, so one request's fault is its own.
        If the database cannot be reached, or the commit fails, every job's outcome is
        "failed" (with the LedgerError; at_commit set when the batch may have been stored).
        """
        if not jobs:
            return []
        try:  # first without savepoints: refusals of writing requests are rare...
            return self._run_batch(jobs, careful=False)
        except _NeedsSavepoint:  # ...and when one comes, the batch runs again with them
            return self._run_batch(jobs, careful=True)

    def _run_batch(self, jobs: list[RequestJob], careful: bool,
                   lock_retry: bool = True) -> list[RequestOutcome]:
        durable = any(job.durable for job in jobs)
        running = [0]  # the job under way, for a lock wait that ran out

        def work(tx: Tx) -> list[RequestOutcome]:
            if not lock_retry:
                # Run again after a lock wait ran out: every kiosk in the batch has waited
                # through it already, and a lock on a whole table would make them wait it
                # again (6 s of a kiosk's 10): a short wait this time.
                self._shorten_lock_wait(tx)
            # Every job's replay check first, in one go (one round trip on PostgreSQL); a
            # counter is the kiosk's own and no job's work touches one, so the order of the
            # checks and the works within the batch changes nothing.
            advanced = self._advance_counters(tx, jobs)
            outcomes = []
            for index, (job, counted) in enumerate(zip(jobs, advanced, strict=True)):
                running[0] = index
                outcomes.append(self._run_request(tx, job, careful, counted))
            return outcomes

        try:
            return self._write(work, durable=durable)
        except _NeedsSavepoint:
            raise
        except LedgerError as exc:
            if exc.busy and lock_retry and len(jobs) > 1:
                # A lock held elsewhere ran out the wait of the job under way: it fails, the
                # others run once more together (a row lock spares them; under a table lock
                # they fail after one more wait, not one wait each).
                stuck = running[0]
                others = self._run_batch(jobs[:stuck] + jobs[stuck + 1:], careful,
                                         lock_retry=False)
                return others[:stuck] + [RequestOutcome("failed", error=exc)] + others[stuck:]
            if exc.at_commit or exc.at_begin or exc.busy or exc.interrupted or len(jobs) == 1:
                return [RequestOutcome("failed", error=exc) for _ in jobs]
        except Exception as exc:  # a bug met by one job (nothing was written): only its own
            if len(jobs) == 1:
                return [RequestOutcome("refused", error=exc)]
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(self._write(
                    lambda tx, job=job: [self._run_request(tx, job, careful=True)],
                    durable=job.durable)[0])
            except LedgerError as exc:
                outcomes.append(RequestOutcome("failed", error=exc))
            except Exception as exc:
                outcomes.append(RequestOutcome("refused", error=exc))
        return outcomes

    @staticmethod
    def _advance_counters(tx: Tx, jobs: list[RequestJob]) -> list[int]:
        """Each job's replay check: its counter moved up (1), or not (0: a replay, or its key
        is no longer the active kiosk key).

        Each kiosk's first job of the batch is checked in statements of many rows (a statement
        costs the gateway more than a row: ~45 us of CPU each through psycopg). A statement
        may change a row once only, so a kiosk's later jobs (a replay sent with the original,
        say) are checked after, one at a time, in order: as if every job went alone."""
        for job in jobs:
            _check_counter(job.ctr)
        advanced = [0] * len(jobs)
        firsts: list[int] = []
        later: list[int] = []
        kiosks: set[str] = set()
        for index, job in enumerate(jobs):
            (later if job.kiosk_id in kiosks else firsts).append(index)
            kiosks.add(job.kiosk_id)
        chunks = []
        while firsts:
            size = _chunk_size(len(firsts))
            chunks.append(firsts[:size])
            del firsts[:size]
        for chunk in chunks + [[index] for index in later]:
            params: list[Any] = []
            for index in chunk:
                params += (jobs[index].kiosk_id, jobs[index].ctr, jobs[index].public_key)
            moved = {row[0] for row in tx.all(_advance_many_sql(len(chunk)), params)}
            for index in chunk:
                advanced[index] = int(jobs[index].kiosk_id in moved)
        return advanced

    def _run_request(self, tx: Tx, job: RequestJob, careful: bool = True,
                     counted: int | None = None) -> RequestOutcome:
        """One job inside the batch's transaction, its counter already advanced (`counted`)
        or not yet (None). An `undo_refused` job may write before it refuses: `careful` puts
        its work in a savepoint (undone alone on a refusal); otherwise such a refusal raises
        _NeedsSavepoint, and the caller runs the batch again carefully."""
        if counted is None:
            (counted,) = self._advance_counters(tx, [job])
        if not counted:
            row = tx.one("SELECT role, status, public_key FROM keys WHERE kid = ?",
                         (job.kiosk_id,))
            if row is None or (row[0], row[1], bytes(row[2])) != ("kiosk", "active",
                                                                  job.public_key):
                return RequestOutcome("key", value=None if row is None else row[1])
            return RequestOutcome("replay")
        savepoint = job.undo_refused and careful
        if savepoint:
            tx.run("SAVEPOINT request")
        events = len(tx.events)
        try:
            value = job.work(self)
        except (LedgerError, TransientConflict, *self.driver_errors):
            raise  # storage: the whole batch is undone (and run again, or answered failed)
        except Exception as exc:  # a refusal (or a bug): undo its writes, keep the counter
            if job.undo_refused and not careful:
                raise _NeedsSavepoint from exc
            if savepoint:
                tx.run("ROLLBACK TO SAVEPOINT request")
                tx.run("RELEASE SAVEPOINT request")
            del tx.events[events:]
            return RequestOutcome("refused", error=exc)
        if savepoint:
            tx.run("RELEASE SAVEPOINT request")
        return RequestOutcome("done", value=value)

    # ------------------------------------------------------------------ persons
    _stored_person_key: bytes | None = None

    def _person_key(self, tx: Tx) -> bytes:
        """The ledger's ssn_key (events.person_data), kept once read as stored: it never
        changes. (One made by this transaction is not kept: the transaction may roll back.)"""
        if self._stored_person_key is None:
            self._stored_person_key = _stored_ssn_key(tx)
        return self._stored_person_key or _ssn_key(tx)

    def upsert_person(self, person: Person) -> str:
        def work(tx: Tx) -> str:
            added = tx.run(
                f"INSERT INTO persons ({PERSON_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (psn_no) DO NOTHING",
                person_values(person),
            )
            if added:
                self._append_event(tx, events.PERSON_ADDED,
                                   events.person_data(person, self._person_key(tx)))
                return "added"
            row = tx.one(
                f"SELECT {PERSON_COLUMNS} FROM persons WHERE psn_no = ?{{lock}}", (person.psn_no,)
            )
            if person_from_row(row) == person:
                return "unchanged"
            tx.run(
                "UPDATE persons SET name = ?, ssn = ?, card_no = ?, insu_admdvs = ?, "
                "assistance = ?, insutype = ? WHERE psn_no = ?",
                (*person_values(person)[1:], person.psn_no),
            )
            self._append_event(tx, events.PERSON_UPDATED,
                               events.person_data(person, self._person_key(tx)))
            return "updated"

        return self._write(work)

    def find_person(self, ssn: str, card_no: str) -> Person | None:
        row = self._read(
            lambda tx: tx.one(
                f"SELECT {PERSON_COLUMNS} FROM persons WHERE ssn = ? AND card_no = ?",
                (ssn, card_no),
            )
        )
        return None if row is None else person_from_row(row)

    def person_with_ssn(self, ssn: str) -> Person | None:
        row = self._read(
            lambda tx: tx.one(
                f"SELECT {PERSON_COLUMNS} FROM persons WHERE ssn = ? ORDER BY psn_no", (ssn,)
            )
        )
        return None if row is None else person_from_row(row)

    def get_person(self, psn_no: str) -> Person | None:
        row = self._read(
            lambda tx: tx.one(f"SELECT {PERSON_COLUMNS} FROM persons WHERE psn_no = ?", (psn_no,))
        )
        return None if row is None else person_from_row(row)

    def record_card_read(self, kiosk_id: str, psn_no: str, now: int) -> None:
        self._write(lambda tx: tx.run(
            "INSERT INTO card_reads (kiosk_id, psn_no, read_at) VALUES (?, ?, ?) "
            "ON CONFLICT (kiosk_id) DO UPDATE SET psn_no = excluded.psn_no, "
            "read_at = excluded.read_at",
            (kiosk_id, psn_no, now),
        ))

    def forget_card_read(self, kiosk_id: str) -> None:
        self._write(lambda tx: tx.run("DELETE FROM card_reads WHERE kiosk_id = ?", (kiosk_id,)))

    def record_sign_in(self, kiosk_id: str, fw: str, board: str, now: int) -> None:
        self._write(lambda tx: tx.run(
            "INSERT INTO sign_ins (kiosk_id, signed_in_at, fw, board) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kiosk_id) DO UPDATE SET signed_in_at = excluded.signed_in_at, "
            "fw = excluded.fw, board = excluded.board",
            (kiosk_id, now, fw, board),
        ))

    def sign_ins(self) -> dict[str, SignIn]:
        rows = self._read(lambda tx: tx.all(
            "SELECT kiosk_id, signed_in_at, fw, board FROM sign_ins"))
        return {kiosk_id: SignIn(int(at), fw, board) for kiosk_id, at, fw, board in rows}

    def card_holder(self, kiosk_id: str, psn_no: str, read_since: int) -> Person | None:
        # One statement, as get_person was: a resident not read at this kiosk and one who does
        # not exist look alike to it.
        row = self._read(lambda tx: tx.one(
            f"SELECT {PERSON_COLUMNS} FROM persons WHERE psn_no = ? AND psn_no = ("
            "SELECT psn_no FROM card_reads WHERE kiosk_id = ? AND read_at >= ?)",
            (psn_no, kiosk_id, read_since),
        ))
        return None if row is None else person_from_row(row)

    # ------------------------------------------------------------------ bills
    def upsert_bill(self, bill: Bill) -> str:
        def work(tx: Tx) -> str:
            if tx.one("SELECT 1 FROM persons WHERE psn_no = ?", (bill.psn_no,)) is None:
                raise ValueError(f"bill {bill.bill_id}: unknown person {bill.psn_no!r}")
            added = tx.run(
                f"INSERT INTO bills ({BILL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (bill_id) DO NOTHING",
                bill_values(bill, "pending"),
            )
            if added:
                self._append_event(tx, events.BILL_IMPORTED, events.bill_data(bill))
                return "added"
            existing = bill_from_row(
                tx.one(
                    f"SELECT {BILL_COLUMNS} FROM bills WHERE bill_id = ?{{lock}}", (bill.bill_id,)
                )
            )
            if canonical_json(bill_content(existing)) == canonical_json(bill_content(bill)):
                return "unchanged"
            if existing.status != "pending":
                raise BillUnavailable(
                    "bill_settled",
                    f"bill {bill.bill_id} is already settled; its content cannot change",
                )
            tx.run(
                "UPDATE bills SET psn_no = ?, fixmedins_name = ?, mdtrtarea_admvs = ?, "
                "med_type = ?, hosp_lv = ?, referral = ?, bill_date = ?, items = ? "
                "WHERE bill_id = ?",
                (*bill_values(bill, "pending")[1:9], bill.bill_id),
            )
            self._append_event(tx, events.BILL_UPDATED, events.bill_data(bill))
            return "updated"

        return self._write(work)

    def get_bill(self, bill_id: str) -> Bill | None:
        row = self._read(
            lambda tx: tx.one(f"SELECT {BILL_COLUMNS} FROM bills WHERE bill_id = ?", (bill_id,))
        )
        return None if row is None else bill_from_row(row)

    def pending_bills(self, psn_no: str, limit: int | None = None) -> list[Bill]:
        rows = self._read(
            lambda tx: tx.all(
                f"SELECT {BILL_COLUMNS} FROM bills WHERE psn_no = ? AND status = 'pending' "
                "ORDER BY bill_date, bill_id" + ("" if limit is None else " LIMIT ?"),
                (psn_no,) if limit is None else (psn_no, limit),
            )
        )
        return [bill_from_row(row) for row in rows]

    def count_pending_bills(self, psn_no: str) -> int:
        row = self._read(lambda tx: tx.one(
            "SELECT COUNT(*) FROM bills WHERE psn_no = ? AND status = 'pending'", (psn_no,)))
        return int(row[0])

    # ------------------------------------------------------------------ accumulations
    def accumulations(self, psn_no: str, year: int) -> dict[str, int]:
        row = self._read(
            lambda tx: tx.one(
                "SELECT amounts FROM accumulations WHERE psn_no = ? AND year = ?", (psn_no, year)
            )
        )
        return {} if row is None else jsontext.loads(row[0])

    def pricing_inputs(self, kiosk_id: str, psn_no: str, read_since: int, bill_id: str,
                       year: int) -> tuple[Person, Bill | None, dict[str, int]] | None:
        # One statement instead of card_holder, get_bill and accumulations: a pre_settle is a
        # quarter of every visit, and on PostgreSQL each statement is a round trip.
        row = self._read(lambda tx: tx.one(
            f"SELECT {PRICING_COLUMNS} FROM persons p "
            "LEFT JOIN bills b ON b.bill_id = ? "
            "LEFT JOIN accumulations a ON a.psn_no = p.psn_no AND a.year = ? "
            "WHERE p.psn_no = ? AND p.psn_no = ("
            "SELECT psn_no FROM card_reads WHERE kiosk_id = ? AND read_at >= ?)",
            (bill_id, year, psn_no, kiosk_id, read_since),
        ))
        if row is None:
            return None
        person = person_from_row(row[:PERSON_WIDTH])
        bill_row = row[PERSON_WIDTH:-1]
        bill = None if bill_row[0] is None else bill_from_row(bill_row)
        amounts = row[-1]
        return person, bill, {} if amounts is None else jsontext.loads(amounts)

    def _lock_accumulations(self, tx: Tx, psn_no: str, year: int) -> dict[str, int]:
        """The person's accumulations for `year`, row-locked until commit (created if absent,
        so that even a person's first settlement of the year has a row to queue on)."""
        select = "SELECT amounts FROM accumulations WHERE psn_no = ? AND year = ?{lock}"
        row = tx.one(select, (psn_no, year))
        if row is None:
            tx.run(
                "INSERT INTO accumulations (psn_no, year, amounts) VALUES (?, ?, '{}') "
                "ON CONFLICT (psn_no, year) DO NOTHING",
                (psn_no, year),
            )
            row = tx.one(select, (psn_no, year))
        return jsontext.loads(row[0])

    def _store_accumulations(self, tx: Tx, psn_no: str, year: int, amounts: dict[str, int]) -> None:
        tx.run(
            "UPDATE accumulations SET amounts = ? WHERE psn_no = ? AND year = ?",
            (canonical_json(amounts), psn_no, year),
        )

    def seed_accumulations(self, psn_no: str, year: int, amounts: dict[str, int]) -> bool:
        problems = amounts_problems(amounts, "accumulation")
        if problems:
            raise ValueError(f"starting accumulations of {psn_no}: " + "; ".join(problems))

        def work(tx: Tx) -> bool:
            if tx.one("SELECT 1 FROM persons WHERE psn_no = ?", (psn_no,)) is None:
                raise ValueError(f"cannot seed accumulations of unknown person {psn_no!r}")
            current = self._lock_accumulations(tx, psn_no, year)
            if same_amounts(current, amounts) or same_amounts(
                    self._before_settlements(tx, psn_no, year, current), amounts):
                return False  # seeded with these values (before the year's settlements)
            if any(current.values()):
                raise ValueError(
                    f"{psn_no} already has accumulations for {year}; starting values can only "
                    "be seeded before any settlement of that year"
                )
            self._store_accumulations(tx, psn_no, year, dict(amounts))
            self._append_event(
                tx, events.ACCUMULATIONS_SEEDED, events.seed_data(psn_no, year, amounts)
            )
            return True

        return self._write(work)

    @staticmethod
    def _before_settlements(tx: Tx, psn_no: str, year: int,
                            current: dict[str, int]) -> dict[str, int]:
        """The person's accumulations for `year` without the settlements standing in it: the
        starting values (none on a consistent ledger's unseeded year)."""
        base = current
        for (delta,) in tx.all(
            "SELECT delta FROM settlements WHERE psn_no = ? AND acc_year = ? "
            "AND status = 'settled'", (psn_no, year)
        ):
            try:
                base = minus(base, jsontext.loads(delta))
            except ValueError:
                return current  # inconsistent: the audit reports it; nothing matches here
        return base

    # ------------------------------------------------------------------ settlement
    def settle(
        self,
        txn_id: str,
        request_digest: bytes,
        kiosk_id: str,
        psn_no: str,
        bill_id: str,
        build: Callable[[dict[str, int], Bill], Settlement],
        *,
        year: int | None = None,
    ) -> tuple[Settlement, bool]:
        def stored_settlement(tx: Tx) -> Settlement | None:
            """The settlement stored under txn_id, if it answers this very request; a
            TxnConflict if it answers another."""
            row = tx.one(
                f"SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE txn_id = ?", (txn_id,)
            )
            if row is None:
                return None
            stored = settlement_from_row(row)
            if stored.request_digest != request_digest:
                raise TxnConflict(
                    f"txn_id {txn_id} is already settled for another request "
                    f"(bill {stored.bill_id}, kiosk {stored.kiosk_id})"
                )
            return stored

        def give_back(tx: Tx) -> None:
            """The bill taken below, pending again: this request stores no settlement. (A
            refusal needs none of this: the request's savepoint undoes its writes.)"""
            tx.run("UPDATE bills SET status = 'pending' WHERE bill_id = ?", (bill_id,))

        def work(tx: Tx) -> tuple[Settlement, bool]:
            # The bill's row lock comes first, taken by marking the bill settled (one statement
            # for the lock and the change): a retry of this very txn_id waits here for the
            # first attempt to commit, then finds it below and answers with it.
            bill_row = tx.one(
                "UPDATE bills SET status = 'settled' WHERE bill_id = ? AND psn_no = ? "
                f"AND status = 'pending' RETURNING {BILL_AS_TAKEN}", (bill_id, psn_no)
            )
            if bill_row is None:
                bill_row = tx.one(
                    f"SELECT {BILL_COLUMNS} FROM bills WHERE bill_id = ?{{lock}}", (bill_id,)
                )
                bill = None if bill_row is None else bill_from_row(bill_row)
                if bill is None or bill.psn_no != psn_no or bill.status != "pending":
                    # A retry finds its bill settled (by itself): the stored settlement answers
                    # it. Asked only here, when a build refuses and when the insert below meets
                    # the txn_id: a new settlement of a pending bill reads nothing more.
                    stored = stored_settlement(tx)
                    if stored is not None:
                        return stored, False
                    if bill is None or bill.psn_no != psn_no:
                        raise BillUnavailable("unknown_bill",
                                              f"no bill {bill_id} for person {psn_no}")
                    raise BillUnavailable("bill_settled", f"bill {bill_id} is already settled")
                # Pending again between the two statements (PostgreSQL: cancelled and committed
                # meanwhile); locked now: taken as above.
                tx.run("UPDATE bills SET status = 'settled' WHERE bill_id = ?", (bill_id,))
            else:
                bill = bill_from_row(bill_row)
            acc_year = int(bill.date[:4]) if year is None else year
            before = self._lock_accumulations(tx, psn_no, acc_year)
            taken: list[str] = []  # settlement numbers built that another settlement has
            while True:
                try:
                    built = build(dict(before), bill)
                except (LedgerError, *self.driver_errors):
                    raise
                except Exception:
                    # Refused (the amount changed since, say), yet the ledger may hold this
                    # very request, settled and then cancelled (its bill pending again):
                    # answered with what it holds, as a retry always is.
                    stored = stored_settlement(tx)
                    if stored is not None:
                        give_back(tx)
                        return stored, False
                    raise
                problems = built_settlement_problems(
                    built, txn_id, request_digest, kiosk_id, psn_no, bill
                )
                if problems:
                    raise ValueError(f"refusing to store settlement {txn_id}: "
                                     + "; ".join(problems))
                settlement = replace(built, status="settled", receipt_printed=False,
                                     acc_year=acc_year)
                # No conflict target: a txn_id or a setl_id already stored inserts nothing
                # (no error, which on PostgreSQL would undo the whole batch), and says which.
                if tx.run(
                    f"INSERT INTO settlements ({SETTLEMENT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    settlement_values(settlement, acc_year),
                ):
                    break
                # The txn_id stored already (its bill pending again: cancelled; or another
                # bill's), or stored by another transaction meanwhile: answered as above.
                stored = stored_settlement(tx)
                if stored is not None:
                    give_back(tx)
                    return stored, False
                # Its setl_id is another settlement's: numbers are random (the gateway's have
                # 40 bits a day), so two of a busy day's meet now and then. Built again, it
                # gets a new one, in this same request.
                taken.append(settlement.setl_id)
                if len(taken) >= SETL_ID_ATTEMPTS:
                    raise LedgerError(
                        f"settlement {txn_id}: the settlement numbers built for it "
                        f"({', '.join(taken)}) were all taken already; the numbers are not "
                        "random enough; nothing was stored")
            after = plus(before, settlement.delta)
            self._store_accumulations(tx, psn_no, acc_year, after)
            self._append_event(tx, events.SETTLED, events.settled_data(settlement))
            return settlement, True

        return self._write(work)

    def get_settlement(self, txn_id: str) -> Settlement | None:
        row = self._read(
            lambda tx: tx.one(
                f"SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE txn_id = ?", (txn_id,)
            )
        )
        return None if row is None else settlement_from_row(row)

    def settlement_numbered(self, setl_id: str) -> Settlement | None:
        row = self._read(lambda tx: tx.one(  # setl_id is UNIQUE: its index finds the row
            f"SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE setl_id = ?", (setl_id,)))
        return None if row is None else settlement_from_row(row)

    def settlements_of(self, psn_no: str, since: str) -> list[Settlement]:
        rows = self._read(lambda tx: tx.all(  # settlements_by_person finds them
            f"SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE psn_no = ? AND setl_date >= ? "
            "ORDER BY setl_time DESC, txn_id DESC", (psn_no, since)))
        return [settlement_from_row(row) for row in rows]

    def settled_event(self, txn_id: str) -> dict[str, Any] | None:
        row = self._read(lambda tx: tx.one(
            f"SELECT body FROM audit_log WHERE txn_id = ? AND kind = '{events.SETTLED}' "
            "ORDER BY seq LIMIT 1", (txn_id,)))
        return None if row is None else jsontext.loads(row[0])

    def cancel(self, txn_id: str, kiosk_id: str, today: str) -> Settlement:
        def work(tx: Tx) -> Settlement:
            row = tx.one(
                f"SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE txn_id = ?{{lock}}", (txn_id,)
            )
            if row is None:
                raise UnknownTxn(f"no settlement with txn_id {txn_id}")
            settlement = settlement_from_row(row)
            if settlement.kiosk_id != kiosk_id:
                raise PermissionError(
                    f"settlement {txn_id} was made at kiosk {settlement.kiosk_id}; only that "
                    "kiosk may cancel it"
                )
            if settlement.setl_date != today:
                raise PermissionError(
                    f"settlement {txn_id} was made on {settlement.setl_date}; it can only be "
                    f"cancelled that day, not on {today}"
                )
            if settlement.status == "cancelled":
                return settlement
            assert settlement.acc_year is not None  # always set on stored rows
            tx.one("SELECT 1 FROM bills WHERE bill_id = ?{lock}", (settlement.bill_id,))
            before = self._lock_accumulations(tx, settlement.psn_no, settlement.acc_year)
            later = self._later_settlements(tx, settlement)  # the lock above keeps it true
            if later:
                raise PermissionError(
                    f"settlement {settlement.setl_id} cannot be cancelled while the resident's "
                    f"later settlement{'s' if len(later) > 1 else ''} {', '.join(later)} of "
                    f"{settlement.acc_year} stand{'' if len(later) > 1 else 's'}: they were "
                    "computed on the year's totals including it; cancel them first, latest first"
                )
            try:
                after = minus(before, settlement.delta)
            except ValueError as exc:
                raise LedgerError(
                    f"cannot cancel {txn_id}: {exc}; the ledger is inconsistent, run "
                    "`kiosk gateway audit`"
                ) from exc
            self._store_accumulations(tx, settlement.psn_no, settlement.acc_year, after)
            tx.run("UPDATE settlements SET status = 'cancelled' WHERE txn_id = ?", (txn_id,))
            tx.run("UPDATE bills SET status = 'pending' WHERE bill_id = ?", (settlement.bill_id,))
            self._append_event(tx, events.CANCELLED, events.cancelled_data(settlement, today))
            return replace(settlement, status="cancelled")

        return self._write(work)

    @staticmethod
    def _later_settlements(tx: Tx, settlement: Settlement) -> list[str]:
        """The setl_ids of the person's settlements of the same year, still standing, made
        after `settlement` (by their `settled` events' order, which is the order they locked
        the person's accumulations in).

        Each of those was computed on totals that include `settlement` (serious-illness bands,
        caps): cancelling it alone would leave them paying on a burden that no longer exists.
        So settlements are cancelled latest first, as a counter clerk would reverse them."""
        rows = tx.all(
            "SELECT s.setl_id, e.seq FROM settlements s JOIN audit_log e "
            f"ON e.txn_id = s.txn_id AND e.kind = '{events.SETTLED}' "
            "WHERE s.psn_no = ? AND s.acc_year = ? AND s.status = 'settled' AND s.txn_id <> ?",
            (settlement.psn_no, settlement.acc_year, settlement.txn_id),
        )
        if not rows:
            return []
        own = tx.one(
            f"SELECT seq FROM audit_log WHERE txn_id = ? AND kind = '{events.SETTLED}'",
            (settlement.txn_id,),
        )
        return sorted(setl_id for setl_id, seq in rows if int(seq) > int(own[0]))

    def mark_receipt_printed(self, txn_id: str, *, kiosk_id: str | None = None,
                             setl_id: str | None = None) -> bool:
        # kiosk_id and setl_id, when given, must match too: the gateway checks a kiosk's
        # receipt_printed against the settlement in the same statement that marks it.
        where, params = "txn_id = ?", [txn_id]
        for column, value in (("kiosk_id", kiosk_id), ("setl_id", setl_id)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)

        def work(tx: Tx) -> bool:
            # One statement when it is news (the usual case); the row stays locked to commit.
            marked = tx.one(
                f"UPDATE settlements SET receipt_printed = 1 "
                f"WHERE {where} AND receipt_printed = 0 RETURNING txn_id, setl_id",
                params,
            )
            if marked is not None:
                self._append_event(tx, events.RECEIPT_PRINTED,
                                   events.receipt_data_of(marked[0], marked[1]))
                return True
            return tx.one(f"SELECT 1 FROM settlements WHERE {where}", params) is not None

        return self._write(work)

    # ------------------------------------------------------------------ audit, reconciliation
    def audit_events(self) -> list[dict[str, Any]]:
        return self._read(self._events)

    @staticmethod
    def _events(tx: Tx, where: str = "") -> list[dict[str, Any]]:
        rows = tx.all("SELECT seq, kind, txn_id, body, prev_hash, hash FROM audit_log "
                      f"{where} ORDER BY seq")
        return [
            {
                "seq": int(seq),
                "kind": kind,
                "txn_id": txn_id,
                "body": body,
                "prev_hash": prev_hash,
                "hash": digest,
            }
            for seq, kind, txn_id, body, prev_hash, digest in rows
        ]

    def latest_settlement_time(self) -> int | None:
        # The latest day's first (settlements_by_date), so start-up reads one day's rows, not
        # the whole table.
        row = self._read(lambda tx: tx.one(
            "SELECT max(setl_time) FROM settlements WHERE setl_date = "
            "(SELECT max(setl_date) FROM settlements)"))
        return None if row is None or row[0] is None else int(row[0])

    def settlements_on(self, date: str, kiosk_id: str | None = None) -> list[Settlement]:
        where, params = "setl_date = ?", [date]
        if kiosk_id is not None:  # one kiosk's day (lookup --kiosk): read by the date's index
            where += " AND kiosk_id = ?"
            params.append(kiosk_id)
        rows = self._read(lambda tx: tx.all(
            f"SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE {where} "
            "ORDER BY setl_time, txn_id", params))
        return [settlement_from_row(row) for row in rows]

    def _result_integers(self, fields: Sequence[str]) -> tuple[str, list[str]]:
        """For a query of `settlements s`: what to join to it, and the SQL of each of `fields`
        (plain names) of its JSON `result` as an integer."""
        return "", [f"CAST(json_extract(s.result, '$.{name}') AS INTEGER)" for name in fields]

    def settlement_sums(self, date: str, fields: Sequence[str], *, kiosk_id: str | None = None,
                        status: str | None = None) -> list[SettlementSums]:
        for name in fields:
            if not FIELD_NAME.fullmatch(name):  # it is written into the statement
                raise ValueError(f"not a settlement result field: {name!r}")
        where, params = "s.setl_date = ?", [date]
        for column, value in (("kiosk_id", kiosk_id), ("status", status)):
            if value is not None:
                where += f" AND s.{column} = ?"
                params.append(value)
        joined, values = self._result_integers(fields)
        sums = "".join(f", SUM({value})" for value in values)
        # settlements_by_date: the day's rows, summed by the database (no signed copies, no
        # row per settlement into Python)
        rows = self._read(lambda tx: tx.all(
            f"SELECT s.kiosk_id, s.status, COUNT(*){sums} FROM settlements s{joined} "
            f"WHERE {where} GROUP BY s.kiosk_id, s.status", params))
        found = []
        for kiosk, state, count, *totals in rows:
            if any(total is None for total in totals):  # a result without the field
                raise LedgerError(f"settlements of {date} at {kiosk} lack a result field of "
                                  f"{', '.join(fields)}: run `kiosk gateway audit`")
            # exact integers: SQLite sums them as such, PostgreSQL as numeric (Decimal)
            found.append(SettlementSums(kiosk_id=kiosk, status=state, count=int(count),
                                        sums={name: int(total)
                                              for name, total in zip(fields, totals,
                                                                     strict=True)}))
        return found

    def audit_read(self, work: Callable[[AuditReader], T]) -> T:
        """work(reader) in one read transaction (PostgreSQL: REPEATABLE READ, so every read
        sees the same snapshot; SQLite: one read transaction on WAL, likewise)."""
        return self._read(lambda tx: work(_SqlAuditReader(tx, self._order_key)))


SSN_KEY = "ssn_key"  # ledger_meta: the key of the persons' events' ssn_digest (events.py)


def _ssn_key(tx: Tx) -> bytes:
    """The ledger's ssn_key, made the first time (by init, or by a write transaction of a
    ledger made before it had one)."""
    tx.run("INSERT INTO ledger_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
           (SSN_KEY, secrets.token_hex(32)))
    return _stored_ssn_key(tx) or b""


def _stored_ssn_key(tx: Tx) -> bytes | None:
    row = tx.one("SELECT value FROM ledger_meta WHERE name = ?", (SSN_KEY,))
    try:
        return None if row is None else bytes.fromhex(row[0])
    except (TypeError, ValueError):
        return None  # changed behind the ledger: every digest differs, and the audit says so


def _cert_rows(tx: Tx) -> list[tuple[str, str]]:
    return tx.all("SELECT name, value FROM ledger_meta WHERE name LIKE ? ORDER BY name",
                  (CERT_PREFIX + "%",))


def _cert_from_row(row: Sequence[Any]) -> CertRecord:
    name, value = row
    try:
        record = events.cert_from_data(jsontext.loads(value))
    except KeyError as exc:
        raise ValueError(f"{name} lacks {exc}") from None
    if CERT_PREFIX + record.kid != name:
        raise ValueError(f"{name} holds the cert of {record.kid}")
    return record


def _certs(tx: Tx) -> dict[str, CertRecord]:
    records = [_readable(_cert_from_row, row) for row in _cert_rows(tx)]
    return {record.kid: record for record in records}


def _check_cert(record: CertRecord, certs: dict[str, CertRecord],
                replace_authority: bool) -> None:
    """ValueError if kiosks that trust what `certs` says would refuse `record` (base.py)."""
    if not certs:
        return
    newest = max(certs.values(), key=lambda c: c.serial)
    if newest.authority_public_key != record.authority_public_key and not replace_authority:
        raise ValueError(
            f"this ledger's newest cert (gateway key {newest.kid}, serial {newest.serial}) is "
            f"by authority {newest.authority}, not {record.authority}: kiosks provisioned with "
            "that authority's public key refuse certs of another. Certify with that "
            "authority's file; if it is lost, provision every kiosk with the new authority "
            "(kiosk fw provision --authority-public-key) and certify with --new-authority")
    mine = certs.get(record.kid)
    if mine is not None and record.serial < mine.serial:
        raise ValueError(f"gateway key {record.kid} was certified with serial {mine.serial}: "
                         "kiosks that saw it refuse a lower one")
    rivals = [c for c in certs.values() if c.kid != record.kid and c.serial >= record.serial]
    if rivals:
        top = max(rivals, key=lambda c: c.serial)
        raise ValueError(
            f"gateway key {top.kid} was certified with serial {top.serial}: kiosks that moved "
            f"to it move only to a higher serial, so this key needs --serial {top.serial + 1} "
            "or more")


def _readable(convert: Callable[[Sequence[Any]], T], row: Sequence[Any]) -> T:
    try:
        return convert(row)
    except (TypeError, ValueError) as exc:  # a column holds what the ledger never writes
        raise UnreadableRecord(str(exc)) from exc


def _event_row(row: Sequence[Any]) -> tuple[int, str, str | None, str, str, str]:
    seq, kind, txn_id, body, prev_hash, digest = row
    return int(seq), kind, txn_id, body, prev_hash, digest


def _accumulation_row(row: Sequence[Any]) -> tuple[tuple[str, int], Any]:
    psn_no, year, amounts = row
    return (psn_no, int(year)), jsontext.loads(amounts)


class _SqlAuditReader:
    """The AuditReader of one read transaction: each table streamed in key order."""

    def __init__(self, tx: Tx, order_key: Callable[[str], str]) -> None:
        self._tx = tx
        self._key = order_key

    def _rows(self, sql: str, convert: Callable[[Sequence[Any]], T]) -> Iterator[T]:
        for row in self._tx.stream(sql):
            yield _readable(convert, row)

    def head(self) -> tuple[int, str] | None:
        row = self._tx.one("SELECT seq, hash FROM audit_head WHERE id = 1")
        return None if row is None else _readable(lambda r: (int(r[0]), r[1]), row)

    def events(self) -> Iterator[tuple[int, str, str | None, str, str, str]]:
        return self._rows("SELECT seq, kind, txn_id, body, prev_hash, hash FROM audit_log "
                          "ORDER BY seq", _event_row)

    def event_body(self, seq: int) -> str | None:
        row = self._tx.one("SELECT body FROM audit_log WHERE seq = ?", (seq,))
        return None if row is None else row[0]

    def ssn_key(self) -> bytes | None:
        return _stored_ssn_key(self._tx)

    def keys(self) -> list[KeyRecord]:
        return [_readable(key_from_row, row)
                for row in self._tx.all(f"SELECT {KEY_COLUMNS} FROM keys")]

    def certs(self) -> list[CertRecord]:
        return list(_certs(self._tx).values())

    def persons(self) -> Iterator[Person]:
        return self._rows(f"SELECT {PERSON_COLUMNS} FROM persons "
                          f"ORDER BY {self._key('psn_no')}", person_from_row)

    def bills(self) -> Iterator[Bill]:
        return self._rows(f"SELECT {BILL_COLUMNS} FROM bills ORDER BY {self._key('bill_id')}",
                          bill_from_row)

    def settlements(self) -> Iterator[Settlement]:
        return self._rows(f"SELECT {SETTLEMENT_COLUMNS} FROM settlements "
                          f"ORDER BY {self._key('txn_id')}", settlement_from_row)

    def accumulations(self) -> Iterator[tuple[tuple[str, int], Any]]:
        return self._rows("SELECT psn_no, year, amounts FROM accumulations "
                          f"ORDER BY {self._key('psn_no')}, year", _accumulation_row)
