"""The ledger API: what the gateway's request handlers need from durable storage.

One contract, two backends (`sqlite.py`, embedded default; `postgres.py`, shared by many gateway
processes). Every method that writes commits durably before it returns. Money is integer fen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# The highest replay counter a ledger keeps: both store it as a signed 64-bit integer (frames.cddl
# allows any uint; a board counting a request a millisecond would take 292 million years).
MAX_COUNTER = 2**63 - 1


class LedgerError(Exception):
    """Storage failed (disk full, database gone...). Nothing was half-written."""

    # True when it failed while committing a write: the write may or may not have been stored
    # (settlement_query tells), so it must not simply be run again.
    at_commit: bool = False
    # True when it failed before any statement ran (no connection, BEGIN refused).
    at_begin: bool = False
    # True when another session held a lock past the wait allowed: the request that waited
    # fails, the rest of its batch runs once more together (SqlLedger._run_batch), never each
    # alone into the same wait.
    busy: bool = False
    # True when the gateway broke the connection of a transaction the database left
    # unanswered (stallwatch): nothing was stored, and the rest of its batch fails with it
    # rather than wait again, request by request.
    interrupted: bool = False


class TxnConflict(Exception):
    """The txn_id is already settled with a different request."""


class UnknownTxn(LookupError):
    """No settlement has this txn_id (cancel of something never settled)."""


class BillUnavailable(Exception):
    """The bill is unknown, not this person's, or already settled by another txn."""

    def __init__(self, code: str, msg: str) -> None:  # code: "unknown_bill" | "bill_settled"
        super().__init__(msg)
        self.code = code


@dataclass(frozen=True)
class KeyRecord:
    kid: str  # text id; its UTF-8 bytes are the COSE kid
    role: str  # "gateway" | "kiosk"
    public_key: bytes  # 32 bytes, Ed25519
    status: str  # "active" | "revoked"
    alg: str = "EdDSA"


@dataclass(frozen=True)
class CertRecord:
    """What the ledger keeps of a gateway key's cert (`kiosk gateway certify --db`): its
    serial and the authority that signed it, so that the next rotation's serial is checked
    against every key's, and `serve` can check the cert file beside its key."""

    kid: str  # the gateway key's
    serial: int
    authority: str  # the authority's kid
    authority_public_key: bytes  # 32 bytes, Ed25519


@dataclass(frozen=True)
class Person:
    psn_no: str
    name: str
    ssn: str  # full; only ever shown masked (first 6, last 4)
    card_no: str
    insu_admdvs: str
    assistance: str  # none | tekun | dibao | low_income | illness_poor
    insutype: int = 390


@dataclass(frozen=True)
class Bill:
    bill_id: str
    psn_no: str
    fixmedins_name: str
    mdtrtarea_admvs: str
    med_type: str  # inpatient | outpatient_chronic
    hosp_lv: int
    referral: bool
    date: str  # YYYY-MM-DD
    items: tuple[dict[str, Any], ...]  # ({"amount": fen, "class": "A"|"B"|"C", "name": str}, ...)
    status: str = "pending"  # pending | settled

    @property
    def medfee_sumamt(self) -> int:
        return sum(int(item["amount"]) for item in self.items)


@dataclass(frozen=True)
class Settlement:
    txn_id: str
    setl_id: str
    kiosk_id: str
    psn_no: str
    bill_id: str
    setl_time: int
    setl_date: str  # YYYY-MM-DD (accumulation year and reconciliation day)
    result: dict[str, int]  # the breakdown, field names as in frames.cddl
    signed: bytes  # the gateway-signed settlement record (COSE_Sign1), returned byte-identical
    request_digest: bytes  # what the settle request asked, to tell a retry from a conflict
    status: str = "settled"  # settled | cancelled
    receipt_printed: bool = False
    delta: dict[str, int] = field(default_factory=dict)  # contributions to the accumulations
    acc_year: int | None = None  # the year whose accumulations took `delta`; set by the ledger
    # The rules it was settled by ({"name", "digest"}: settlement.policy_digest), kept in its
    # `settled` audit event (chained, so not changeable behind the ledger), not in its row:
    # None on a settlement read back from the table.
    policy: dict[str, str] | None = None

    def record(self) -> dict[str, Any]:
        """The settlement_record (frames.cddl) that `signed` must carry: what the gateway
        vouches for."""
        return {"setl_id": self.setl_id, "txn_id": self.txn_id, "kiosk": self.kiosk_id,
                "psn_no": self.psn_no, "bill_id": self.bill_id, "setl_time": self.setl_time,
                "result": self.result}


@dataclass(frozen=True)
class SettlementSums:
    """A day's settlements of one kiosk in one status, counted and summed by the database."""

    kiosk_id: str
    status: str  # "settled" | "cancelled"
    count: int
    sums: dict[str, int]  # result field -> its total over these settlements, integer fen


@dataclass(frozen=True)
class SignIn:
    """A kiosk's last sign_in: when (Unix seconds, the gateway's clock), and what it runs."""

    at: int
    fw: str
    board: str


@dataclass(slots=True)
class RequestJob:
    """One authenticated request for `Ledger.run_requests`: its replay check and its work, run
    as one transaction.

    `work(ledger)` runs inside that transaction: the ledger calls it makes join it. If it
    raises (a refusal), the counter advance stays (a refused frame is spent too) and, if
    `undo_refused`, what it wrote is undone (a settle refused halfway leaves nothing); otherwise
    its writes stand (person_info, refusing a card, forgets the card read before it).
    `durable`: the answer must wait for the disk — the work writes what the kiosk relies on
    (settle, cancel, receipt_printed, person_info's card read), or its answer vouches for
    stored settlements (settlement_query, reconcile); otherwise only the counter advance is
    written and the commit need not wait for the disk (see SqlLedger.run_requests for what
    that allows).
    """

    kiosk_id: str
    ctr: int
    public_key: bytes  # the key the frame's signature was verified with
    work: Callable[[Any], Any]
    durable: bool = True
    undo_refused: bool = True


@dataclass(slots=True)
class RequestOutcome:
    """What became of a RequestJob.

    status: "done" (value is what work returned; committed), "refused" (work raised `error`;
    its writes undone, the counter advance committed), "replay" (the counter was not above the
    last one seen from this kiosk; nothing done), "key" (the kiosk's key is no longer the active
    one the frame was signed with — revoked meanwhile; nothing done; `value` is the key's
    status or None), "failed" (`error` is the LedgerError; nothing written, or, if
    error.at_commit, maybe written).
    """

    status: str
    value: Any = None
    error: BaseException | None = None


class UnreadableRecord(ValueError):
    """A row the ledger cannot read back as it writes it (text where a number belongs, JSON
    that is not JSON...): written behind the ledger. Raised by an AuditReader."""


class AuditReader(Protocol):
    """What `kiosk gateway audit` reads, from one consistent snapshot of the ledger, a row at a
    time: nothing here holds a whole table in memory. Each key-ordered iterator orders its keys
    by code point (Python's order of str), so that two of them can be merged by key. A row
    that cannot be converted raises UnreadableRecord."""

    def head(self) -> tuple[int, str] | None: ...  # the (seq, hash) the ledger says is last
    # the audit log in seq order: (seq, kind, txn_id, body, prev_hash, hash)
    def events(self) -> Iterator[tuple[int, str, str | None, str, str, str]]: ...
    def event_body(self, seq: int) -> str | None: ...  # one event's body text (by its seq)
    def keys(self) -> list[KeyRecord]: ...  # all of them (a few per kiosk)
    def ssn_key(self) -> bytes | None: ...  # the key of person events' ssn_digest (events.py)
    def certs(self) -> list[CertRecord]: ...  # the gateway keys' certs (a few)
    def persons(self) -> Iterator[Person]: ...  # by psn_no
    def bills(self) -> Iterator[Bill]: ...  # by bill_id
    def settlements(self) -> Iterator[Settlement]: ...  # by txn_id, cancelled ones included
    # ((psn_no, year), amounts) by psn_no, then year
    def accumulations(self) -> Iterator[tuple[tuple[str, int], Any]]: ...


class OwedFlush:
    """What durable commits made under SqlStore.durable_later() still owe the disk."""

    __slots__ = ("upto", "_flush")

    def __init__(self, flush: Callable[[int], None] | None) -> None:
        self._flush = flush  # None: the backend's commits are durable by themselves
        self.upto = 0  # the newest such commit (the backend's numbering); 0: none

    @property
    def owed(self) -> bool:
        return self.upto > 0 and self._flush is not None

    def note(self, upto: int) -> None:
        self.upto = max(self.upto, upto)

    def wait(self) -> None:
        """Blocks until every noted commit is on disk (for a worker thread, not the event
        loop's); raises LedgerError (at_commit) if they cannot be put there."""
        if self.owed and self._flush is not None:
            self._flush(self.upto)


class Ledger(Protocol):
    # ---- lifecycle
    def init(self) -> None: ...  # create the schema if absent (idempotent)
    # LedgerError unless made by `init` of this version (complete: and holding all its tables)
    def check_schema(self, complete: bool = False) -> None: ...
    def schema_version(self) -> str | None: ...  # as stored (None: none); LedgerError: no ledger
    def close(self) -> None: ...
    # a ledger of an earlier schema brought up to date: the version it had, None if current
    def upgrade(self) -> str | None: ...
    def tune_for_serving(self) -> None: ...  # extension: settings for a long-running gateway
    def exposure(self) -> str | None: ...  # who else can read the stored data, if anyone
    # break the connection of thread `thread_id`'s transaction, if it has run older_than_s
    # and is not committing (a database that stopped answering): its call fails with
    # LedgerError(interrupted) at once; False if there is none such, or it cannot
    def interrupt(self, thread_id: int, older_than_s: float) -> bool: ...
    # atomically: work() (calls on this ledger) as one durable write transaction, all or
    # nothing; work may run more than once (a conflict retries it whole)
    def atomically(self, work: Callable[[], T]) -> T: ...
    # an event loop's waits moved to worker threads (see SqlStore): its turn among writers
    # (take_writers_queue(loop_thread, wait=False) first, wait=True on a worker thread), and
    # durable commits whose flush its worker thread waits for (OwedFlush.wait)
    def take_writers_queue(self, holder: int, wait: bool) -> bool: ...
    def leave_writers_queue(self) -> None: ...
    def durable_later(self) -> AbstractContextManager[OwedFlush]: ...

    # ---- keys (public keys only)
    def add_key(self, record: KeyRecord) -> None: ...  # replaces status if kid exists
    # add_key raises ValueError if the kid exists with another public key or role: a key is
    # never swapped silently.
    def get_key(self, kid: str) -> KeyRecord | None: ...
    # get_key, read once per write transaction (a batch's requests share one commit): for the
    # gateway's own key, which every settlement of a batch checks
    def key_for_this_commit(self, kid: str) -> KeyRecord | None: ...
    # the key holding `public_key` (add_key never enrols one under two kids), if any
    def key_with_public_key(self, public_key: bytes) -> KeyRecord | None: ...
    def set_key_status(self, kid: str, status: str) -> bool: ...  # False: unknown kid
    def list_keys(self) -> list[KeyRecord]: ...
    # the key_revoked events of audit_events(), in order: read by an index, not the whole log
    def key_revocations(self) -> list[dict[str, Any]]: ...
    # The cert of gateway key record.kid, recorded (key_certified) before its file is written.
    # ValueError, nothing written, if the key is no active gateway key here, if another
    # authority certified this ledger's keys (kiosks trust one), or if the serial is not above
    # every other key's (kiosks move only to a higher one) nor the same as this key's last.
    # False if this very cert was recorded already. replace_authority: the newest cert's
    # authority may differ (its key was lost, and the kiosks provisioned with the new one).
    def record_cert(self, record: CertRecord, replace_authority: bool = False) -> bool: ...
    def gateway_certs(self) -> dict[str, CertRecord]: ...  # by gateway kid
    # A counter's lookup of residents (events.lookup_data), in the audit chain, durably.
    def record_lookup(self, data: dict[str, Any]) -> None: ...
    def lookups(self) -> list[dict[str, Any]]: ...  # their events' bodies, oldest first
    # What each serving gateway settles by (its policies' digests, its time zone), as JSON
    # text under a name of its own, with when it last said so (Unix seconds).
    def record_serving(self, name: str, value: str, now: int) -> None: ...
    def serving_records(self) -> dict[str, tuple[str, int]]: ...
    def forget_serving(self, names: list[str]) -> None: ...  # records of gateways long gone

    # ---- replay guard: atomically store ctr if it is above the last seen; False = replay
    def advance_counter(self, kiosk_id: str, ctr: int) -> bool: ...
    def last_counters(self) -> dict[str, int]: ...  # kiosk id -> the highest counter seen

    # ---- authenticated requests, each one transaction (replay check + work), several per
    # commit when given together (group commit); outcomes in the order of `jobs`
    def run_requests(self, jobs: list[RequestJob]) -> list[RequestOutcome]: ...

    # ---- residents and bills
    def upsert_person(self, person: Person) -> str: ...  # "added" | "updated" | "unchanged"
    def find_person(self, ssn: str, card_no: str) -> Person | None: ...
    def person_with_ssn(self, ssn: str) -> Person | None: ...  # whichever card they hold
    def get_person(self, psn_no: str) -> Person | None: ...
    # the card a kiosk read last (person_info): its resident is the one it may ask about
    def record_card_read(self, kiosk_id: str, psn_no: str, now: int) -> None: ...
    # a card refused at kiosk_id: no resident is its to ask about
    def forget_card_read(self, kiosk_id: str) -> None: ...
    # the person psn_no if theirs is the card kiosk_id read last, at read_since or later
    def card_holder(self, kiosk_id: str, psn_no: str, read_since: int) -> Person | None: ...
    # a kiosk's sign_in (it is alive, with this firmware), and each kiosk's last one
    def record_sign_in(self, kiosk_id: str, fw: str, board: str, now: int) -> None: ...
    def sign_ins(self) -> dict[str, SignIn]: ...
    def upsert_bill(self, bill: Bill) -> str: ...  # "added" | "updated" | "unchanged"
    # upsert_bill: idempotent import; never un-settles (bill.status is ignored). A pending bill
    # may be corrected; changing a settled bill raises BillUnavailable("bill_settled", ...); a
    # bill of an unknown person raises ValueError.
    def get_bill(self, bill_id: str) -> Bill | None: ...
    # the oldest first (bill date, then id); `limit`: at most that many
    def pending_bills(self, psn_no: str, limit: int | None = None) -> list[Bill]: ...
    def count_pending_bills(self, psn_no: str) -> int: ...
    def accumulations(self, psn_no: str, year: int) -> dict[str, int]: ...
    # A price's inputs in one read: card_holder's person (None: not theirs to ask about, and
    # nothing else is read), get_bill(bill_id) as it is (None: no such bill), and the person's
    # accumulations for `year`
    def pricing_inputs(self, kiosk_id: str, psn_no: str, read_since: int, bill_id: str,
                       year: int) -> tuple[Person, Bill | None, dict[str, int]] | None: ...
    def seed_accumulations(self, psn_no: str, year: int, amounts: dict[str, int]) -> bool: ...

    # seed_accumulations: a person's starting values for a year (what was accumulated before
    # this ledger), audited. True: stored; False: already seeded with these very values. Raises
    # ValueError if that year already has other values (seeded or settled).

    # ---- exactly-once settlement
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
        """Settle once. In one durable transaction, serialised per person:
        - txn_id already present: same digest -> (stored, False); else raise TxnConflict.
        - bill not pending for psn_no -> raise BillUnavailable.
        - else call build(accumulations of the bill's year, bill) -> Settlement (which carries
          `delta`), store it, add delta to the accumulations, mark the bill settled, append an
          audit event; commit (fsync); return (settlement, True).
        `build` may raise to abort (nothing is written). It is called again, in the same
        transaction, when the settlement number (setl_id) it chose is another settlement's:
        each call must choose a new one (at the third number taken, LedgerError: nothing is
        written). A txn_id stored meanwhile by another transaction is answered as above.
        `year` (extension): the accumulation year when it is not the bill's, e.g. the
        settlement date's year as the settlement engine counts it (Claim.year).
        The built settlement must match the request (txn_id, kiosk_id, psn_no, bill_id,
        request_digest), its breakdown must add up (fund = hifp + hifmi + maf, cash = medfee -
        fund, medfee = the bill's total, nothing negative) and its delta must be non-negative
        integer fen per accumulation key; otherwise ValueError and nothing is written."""
        ...

    def get_settlement(self, txn_id: str) -> Settlement | None: ...
    def settlement_numbered(self, setl_id: str) -> Settlement | None: ...  # by its setl_id
    # a person's settlements dated `since` (YYYY-MM-DD) or later, cancelled ones included,
    # newest first
    def settlements_of(self, psn_no: str, since: str) -> list[Settlement]: ...
    # txn_id's `settled` audit event's body (events.settled_data with its kind, seq and at),
    # None if it has none: what only the event keeps (the policy it was settled by), and where
    # in the ledger's order it came.
    def settled_event(self, txn_id: str) -> dict[str, Any] | None: ...
    def cancel(self, txn_id: str, kiosk_id: str, today: str) -> Settlement: ...
    # cancel: same day and same kiosk only (else raise PermissionError with the reason); takes
    # `delta` back out of the accumulations, re-opens the bill, audits; idempotent. Unknown
    # txn_id: raise UnknownTxn.
    def mark_receipt_printed(self, txn_id: str, *, kiosk_id: str | None = None,
                             setl_id: str | None = None) -> bool: ...
    # True if settlement txn_id (made at kiosk_id, numbered setl_id, when given) is now marked
    # printed, whether by this call or an earlier one; False if there is no such settlement.

    # ---- audit and reconciliation
    # in order, each with prev hash and hash: the whole log in memory (tests, small ledgers;
    # `kiosk gateway audit` streams it through audit_read)
    def audit_events(self) -> list[dict[str, Any]]: ...
    # each event: {"seq": int, "kind": str, "txn_id": str | None, "body": canonical JSON text,
    #              "prev_hash": hex, "hash": hex}; hash = sha256(prev_hash bytes + body UTF-8)
    # by setl_date (of one kiosk, if given), all statuses, oldest first
    def settlements_on(self, date: str, kiosk_id: str | None = None) -> list[Settlement]: ...
    # The day's settlements (setl_date), of one kiosk and in one status if given, counted and
    # their result's integer `fields` summed, one SettlementSums per kiosk and status (none
    # for a kiosk and status without settlements), in no particular order: computed by the
    # database, which reads only the kiosk's rows when given one.
    def settlement_sums(self, date: str, fields: Sequence[str], *, kiosk_id: str | None = None,
                        status: str | None = None) -> list[SettlementSums]: ...
    # the latest setl_time (of the latest setl_date: gateways in other --timezones may
    # order a few hours differently); None if no settlement
    def latest_settlement_time(self) -> int | None: ...
    # extension, for `kiosk gateway audit`: work(reader) inside one consistent read snapshot,
    # the reader streaming the tables (whatever their size, a batch of rows in memory at once)
    def audit_read(self, work: Callable[[AuditReader], T]) -> T: ...
