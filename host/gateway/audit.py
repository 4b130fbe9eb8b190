"""`kiosk gateway audit`: is the ledger what its hash-chained audit log says it is?

1. The chain: events numbered 1, 2, 3... with no gap, each body canonical JSON agreeing with its
   columns, each hash = sha256(prev_hash || body), prev_hash = the previous event's hash, and
   the ledger's recorded head = the last event (a truncated tail shows).
2. The tables against the events replayed: keys, persons, bills, settlements (every field, the
   signed record by its sha256), cancellations and printed receipts.
2b. Each settlement's signed record: a COSE_Sign1 by a gateway key the ledger holds, saying what
   the row says. Whoever can write the database but not read the gateway's key file cannot
   forge or alter a settlement, even with the chain re-hashed around it.
3. The money: every breakdown adds up (fund_pay_sumamt = hifp + hifmi + maf, psn_cash_pay =
   medfee - fund, nothing negative, medfee = the bill's total); a bill has at most one live
   settlement; each person-year's accumulations = seeded start + deltas of live settlements;
   and each delta (not signed) is what the signed breakdown adds, in its settlement day's year.

A chain rewritten from scratch by someone with write access, who also slips in a gateway key of
his own to sign his settlements, verifies; to catch that too, keep the head hash printed here
(and the gateway keys of `kiosk keys list`) somewhere the ledger's writers cannot reach, and
compare.

What it costs. Everything is read in one consistent snapshot of the ledger (Ledger.audit_read:
on PostgreSQL one REPEATABLE READ transaction for the whole run), a batch of rows at a time:
its memory does not grow with the ledger (about 50 MB, whatever its size). The audit log is
read once, in seq order, checking the chain as it goes; what each event says of a resident, a
bill, a settlement or a person-year goes to a scratch sort (external_sort.py: a private
temporary SQLite file in TMPDIR, deleted at the end; about 1.4 KB of disk per settlement at
its largest). Then each table is read in key order beside its events sorted by the same key (a
merge join), and the person-years' totals are added up as integers, one person-year at a time.
Only a row whose event says otherwise is looked at again (its event read back by seq, to name
the fields that differ). The time is linear in the ledger's size: about 0.3 ms of one core per
settlement, nearly half of it checking its signature.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, TypeVar

from onestop.host.keys import VerifyingKey
from onestop.host.settlement import delta_of
from onestop.protocol import cose, messages
from onestop.protocol.errors import ProtocolError

from .external_sort import Scratch, SortedRecords
from .ledger import events as ev
from .ledger.base import AuditReader, Bill, Ledger, LedgerError, Settlement, UnreadableRecord
from .ledger.chain import GENESIS_HASH, canonical_json
from .ledger.checks import (
    BREAKDOWN_FIELDS,
    amounts_problems,
    breakdown_problems,
    plus,
    same_amounts,
)
from .ledger.rows import bill_content

K = TypeVar("K")
R = TypeVar("R")


@dataclass
class AuditReport:
    problems: list[str] = field(default_factory=list)
    events: int = 0
    head_hash: str = GENESIS_HASH
    settlements: int = 0
    cancelled: int = 0
    person_years: int = 0
    read: bool = True  # False: the tables could not be read, so nothing was counted

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "events": self.events,
            "head_hash": self.head_hash,
            "settlements": self.settlements,
            "cancelled": self.cancelled,
            "person_years": self.person_years,
            "read": self.read,
        }


def audit(ledger: Ledger) -> AuditReport:
    """Verify the ledger from one consistent snapshot of it."""
    try:
        return ledger.audit_read(verify)
    except UnreadableRecord as exc:  # a column holds what the ledger never writes
        return AuditReport(read=False, problems=[
            f"the ledger's tables cannot be read as the ledger writes them ({exc}): changed "
            "behind the ledger"])


def verify(reader: AuditReader) -> AuditReport:
    """The audit of what `reader` reads (one snapshot); raises UnreadableRecord if a row
    cannot be read as the ledger writes it."""
    with Scratch() as scratch:
        return _Audit(reader, scratch).run()


# What the first pass keeps of each event, to be read back sorted by key (all marshal-able):
#   persons:      psn_no         -> (envelope, body sha256)
#   txns:         txn_id         -> ("s", envelope + event-only fields, body sha256, bill_id,
#                                     psn_no, acc_year, delta, medfee_sumamt)   settled
#                                   ("c", has delta, delta, has acc_year, acc_year)  cancelled
#                                   ("p",)                                      receipt printed
#   bills:        bill_id        -> ("b", envelope, body sha256, med_type, date)  imported/updated
#                                   ("t", txn_id, first settled seq, live, medfee_sumamt,
#                                     delta check or None)   each settlement, at its last
#                                     settled seq (the check: its row's setl_time, breakdown
#                                     values, delta, setl_date, acc_year)
#   person-years: (psn_no, year) -> ("seed", amounts) | ("delta", delta of a live settlement)
# A row is the same as its event when canonical JSON of the row's record with the event's
# envelope (kind, seq, at) and event-only fields (a settlement's policy) added is the event's
# body, byte for byte: compared by sha256, so no event body is kept.
SETTLED, CANCELLED, PRINTED, BILL, TXN, SEED, DELTA = "s", "c", "p", "b", "t", "seed", "delta"
# A settlement row's problems in the order the audit names them (after its setl_time, txn_id).
BREAKDOWN, SIGNED, DAY, ACCUMULATED, FLAGS = range(5)


class _Audit:
    def __init__(self, reader: AuditReader, scratch: Scratch) -> None:
        self.reader = reader
        self.report = AuditReport()
        self.persons = scratch.table()
        self.txns = scratch.table()
        self.bills = scratch.table()
        self.person_years = scratch.table()
        self.keys: dict[str, dict[str, Any]] = {}  # replayed: a few per kiosk
        self.certs: dict[str, dict[str, Any]] = {}  # replayed: a gateway key's latest cert
        # The problems by section, each put in the order the report names them at the end.
        self.chain: list[str] = []
        self.replay: list[tuple[int, str]] = []  # by seq
        self.key_problems: list[str] = []
        self.person_problems: list[str] = []
        self.settlement_rows: list[tuple[tuple[Any, ...], str]] = []  # by (setl_time, txn_id)
        self.settlement_log: list[str] = []
        self.bill_log: list[str] = []
        self.bill_rows: list[str] = []
        self.accumulations: list[str] = []

    def run(self) -> AuditReport:
        self._read_log()
        key_rows = self.reader.keys()
        self._check_keys(key_rows)
        _compare("gateway cert", {c.kid: ev.cert_data(c) for c in self.reader.certs()},
                 self.certs, self.key_problems)
        self._check_persons()
        self._check_settlements({k.kid: k.public_key for k in key_rows if k.role == "gateway"})
        self._check_bills()
        self._check_accumulations()
        self.report.problems = [
            *self.chain,
            *(problem for _, problem in sorted(self.replay, key=lambda item: item[0])),
            *self.key_problems,
            *self.person_problems,
            *(problem for _, problem in sorted(self.settlement_rows, key=lambda i: i[0])),
            *self.settlement_log,
            *self.bill_log,
            *self.bill_rows,
            *self.accumulations,
        ]
        return self.report

    # ------------------------------------------------------------------------ the chain
    def _read_log(self) -> None:
        """The chain's problems, and each intact event replayed (see _apply)."""
        problems = self.chain
        sha256 = hashlib.sha256
        prev_hash = GENESIS_HASH
        count = 0
        for seq, kind, txn_id, body, event_prev, digest in self.reader.events():
            count += 1
            if seq != count:
                problems.append(f"audit chain: event {seq} where event {count} should be")
            if event_prev != prev_hash:
                problems.append(f"audit chain: event {seq} does not link to the event before it")
            raw = body.encode("utf-8") if isinstance(body, str) else None
            try:
                linked = raw is not None and sha256(
                    bytes.fromhex(event_prev) + raw).hexdigest() == digest
            except (TypeError, ValueError):  # a prev_hash that is no hex: edited too
                linked = False
            if not linked:
                problems.append(f"audit chain: event {seq}'s hash does not match its body (edited)")
            prev_hash = digest
            parsed = self._parse(seq, kind, txn_id, body)
            if parsed is not None and raw is not None:
                self._apply(seq, parsed, sha256(raw).digest())
        self.report.events = count
        self.report.head_hash = prev_hash
        last = (count, prev_hash) if count else (0, GENESIS_HASH)
        head = self.reader.head()
        if head is None:
            problems.append("audit chain: the ledger's record of its last event is missing")
        elif head[0] != last[0]:
            problems.append(
                f"audit chain: the ledger's head is event {head[0]} but the log ends at "
                f"event {last[0]} (events removed or added behind the ledger)"
            )
        elif head[1] != last[1]:
            problems.append(
                f"audit chain: the ledger's head names event {head[0]} with a hash that is "
                f"not that event's (the head, or the event, was changed behind the ledger)"
            )

    def _parse(self, seq: int, kind: str, txn_id: str | None, text: str) -> dict[str, Any] | None:
        problems = self.chain
        try:
            body = json.loads(text)
        except (TypeError, ValueError):
            problems.append(f"audit chain: event {seq}'s body is not JSON")
            return None
        try:
            canonical = isinstance(body, dict) and canonical_json(body) == text
        except (TypeError, ValueError):  # a float: never in a body the ledger writes
            canonical = False
        if not canonical:
            problems.append(f"audit chain: event {seq}'s body is not canonical JSON")
            return None
        if (body.get("seq"), body.get("kind"), body.get("txn_id")) != (seq, kind, txn_id):
            problems.append(f"audit chain: event {seq}'s seq, kind or txn_id column was changed")
        return body

    # ------------------------------------------------------------------------ replay
    def _apply(self, seq: int, body: dict[str, Any], body_sha256: bytes) -> None:
        try:
            self._apply_kind(seq, body, body_sha256)
        except (KeyError, TypeError, AttributeError):
            self.replay.append((seq, f"audit event {seq}: its body lacks what a "
                                     f"{body.get('kind')} has"))

    def _apply_kind(self, seq: int, body: dict[str, Any], body_sha256: bytes) -> None:
        """What the event says, kept by key for the comparisons to come (the keys replayed
        here, in memory: there are few). An event without what its kind has (a field, of its
        type) changes nothing: KeyError or TypeError."""
        kind, data = body["kind"], ev.data_of(body)
        where = f"audit event {seq} ({kind})"
        if kind == ev.KEY_ADDED:
            self.keys[data["kid"]] = data
        elif kind in (ev.KEY_REVOKED, ev.KEY_RESTORED):
            if data["kid"] not in self.keys:
                self.replay.append((seq, f"{where}: key {data['kid']} was never added"))
            else:
                self.keys[data["kid"]] = {**self.keys[data["kid"]], "status": data["status"]}
        elif kind == ev.KEY_CERTIFIED:
            if self.keys.get(data["kid"], {}).get("role") != "gateway":
                self.replay.append((seq, f"{where}: {data['kid']} is no gateway key"))
            self.certs[data["kid"]] = data
        elif kind == ev.LOOKED_UP:  # a read, recorded: nothing in the tables to compare
            _text(data["operator"])
        elif kind in (ev.PERSON_ADDED, ev.PERSON_UPDATED):
            self.persons.add(_text(data["psn_no"]), 0, seq,
                             (_envelope(body), body_sha256, "ssn_digest" in data))
        elif kind in (ev.BILL_IMPORTED, ev.BILL_UPDATED):
            self.bills.add(_text(data["bill_id"]), 0, seq, (
                BILL, _envelope(body), body_sha256, data.get("med_type"), data.get("date")))
        elif kind == ev.ACCUMULATIONS_SEEDED:
            self.person_years.add(_text(data["psn_no"]), _year(data["year"]), seq,
                                  (SEED, _amounts(data["amounts"])))
        elif kind == ev.SETTLED:
            result = data["result"]
            if not isinstance(result, dict):
                raise TypeError("result")
            rebuilt = _envelope(body)
            rebuilt.update((k, data[k]) for k in ev.SETTLED_EVENT_ONLY if k in data)
            self.txns.add(_text(data["txn_id"]), 0, seq, (
                SETTLED, rebuilt, body_sha256, _text(data["bill_id"]), _text(data["psn_no"]),
                _year(data["acc_year"]), _amounts(data["delta"]), result.get("medfee_sumamt")))
        elif kind == ev.CANCELLED:
            self.txns.add(_text(data["txn_id"]), 0, seq, (
                CANCELLED, "delta" in data, data.get("delta"), "acc_year" in data,
                data.get("acc_year")))
        elif kind == ev.RECEIPT_PRINTED:
            self.txns.add(_text(data["txn_id"]), 0, seq, (PRINTED,))
        else:
            self.replay.append((seq, f"{where}: unknown kind of event"))

    # ------------------------------------------------------------------------ tables vs events
    def _check_keys(self, key_rows: list[Any]) -> None:
        rows = {k.kid: ev.key_data(k) for k in key_rows}
        _compare("key", rows, self.keys, self.key_problems)

    def _check_persons(self) -> None:
        key = self.reader.ssn_key()
        for psn_no, person, facts in _merge(self.reader.persons(), _psn_no, _groups(self.persons)):
            events = list(facts)  # a resident's: added, updated now and then
            last = (events[-1][0], *events[-1][1][:2]) if events else None
            # A resident last recorded before the ledger had its ssn_key: no digest to compare
            # (the hidden digits are checked from their next update on).
            digest = key if not events or events[-1][1][2] else None
            row = None if person is None else ev.person_data(person, digest)
            self._compare_one("person", psn_no, row, last, self.person_problems)

    def _compare_one(self, what: str, name: str, row: dict[str, Any] | None,
                     event: tuple[int, dict[str, Any], bytes] | None, problems: list[str],
                     event_only: Iterable[str] = ()) -> None:
        """The row (its record as the event tells it) against the last event of its key:
        (seq, envelope and event-only fields, body sha256)."""
        if event is None:
            if row is not None:
                problems.append(f"{what} {name} is in the ledger but not in the audit log")
            return
        if row is None:
            problems.append(f"{what} {name} is in the audit log but missing from the ledger")
            return
        seq, rebuilt, body_sha256 = event
        try:
            same = hashlib.sha256(
                canonical_json({**row, **rebuilt}).encode("utf-8")).digest() == body_sha256
        except (TypeError, ValueError):  # a value canonical JSON refuses: the row differs
            same = False
        if not same:
            text = self.reader.event_body(seq)
            replayed = ev.data_of(json.loads(text)) if text is not None else {}
            for key in event_only:
                replayed.pop(key, None)
            _compare(what, {name: row}, {name: replayed}, problems)

    def _check_settlements(self, gateway_keys: dict[str, bytes]) -> None:
        report = self.report
        rows = self.reader.settlements()
        for txn_id, settlement, facts in _merge(rows, _txn_id, _groups(self.txns)):
            told = self._replay_settlement(txn_id, facts)
            malformed = False
            check = None
            if settlement is not None:
                report.settlements += 1
                if settlement.status == "cancelled":
                    report.cancelled += 1
                malformed, check = self._check_settlement(settlement, told, gateway_keys)
            if told.fact is None:
                if not malformed:
                    self._compare_one("settlement", txn_id, None if settlement is None else
                                      ev.settled_row_data(settlement), None, self.settlement_log)
                continue
            if not malformed:
                self._compare_one(
                    "settlement", txn_id,
                    None if settlement is None else ev.settled_row_data(settlement),
                    (told.seq, told.fact[1], told.fact[2]), self.settlement_log,
                    ev.SETTLED_EVENT_ONLY)
            bill_id, psn_no, year, delta, medfee = told.fact[3:]
            live = not told.cancelled
            self.bills.add(bill_id, 0, told.seq, (TXN, txn_id, told.first, live, medfee, check))
            if live:
                self.person_years.add(psn_no, year, told.seq, (DELTA, delta))

    def _replay_settlement(self, txn_id: str, facts: Iterable[tuple[int, Any]]) -> _Told:
        """What the events of txn_id (in seq order) say of it."""
        told = _Told()
        for seq, fact in facts:
            tag = fact[0]
            if tag == SETTLED:
                if told.fact is not None:
                    self.replay.append((seq, f"audit event {seq} ({ev.SETTLED}): txn {txn_id} "
                                             "settled twice"))
                else:
                    told.first = seq
                told.seq, told.fact = seq, fact
            elif tag == CANCELLED:
                problem = _cancel_problem(seq, txn_id, told, fact)
                if problem:
                    self.replay.append((seq, problem))
                else:
                    told.cancelled = True
            else:
                told.printed = True
        return told

    def _check_settlement(self, settlement: Settlement, told: _Told,
                          gateway_keys: dict[str, bytes]) -> tuple[bool, Any]:
        """The row's own problems; (malformed, what its delta's check needs of it, or None)."""
        txn_id = settlement.txn_id
        order = (settlement.setl_time, txn_id)

        def problem(rank: int, text: str) -> None:
            self.settlement_rows.append(((*order, rank), f"settlement {txn_id}: {text}"))

        if not isinstance(settlement.result, dict) or not isinstance(settlement.delta, dict):
            problem(BREAKDOWN, "its result or delta is not a record (written behind the ledger)")
            return True, None
        broken_breakdown = breakdown_problems(settlement.result)
        for broken in broken_breakdown:
            problem(BREAKDOWN, broken)
        signed_problem = _signed_record_problem(settlement, gateway_keys)
        if signed_problem:
            problem(SIGNED, signed_problem)
        day_problem = _setl_date_problem(settlement)
        if day_problem:
            problem(DAY, day_problem)
        expected_status = "cancelled" if told.cancelled else "settled"
        if settlement.status != expected_status:
            self.settlement_rows.append((
                (*order, FLAGS),
                f"settlement {txn_id} is {settlement.status} but the audit log says "
                f"{expected_status}"))
        if settlement.receipt_printed != told.printed:
            problem(FLAGS, "receipt_printed differs from the audit log")
        # The delta follows from the signed breakdown (a row whose result differs from it is
        # named above) and the bill as it stood when settled: checked with the bills. (A
        # breakdown that does not add up is named above; its delta is not checked.) The
        # breakdown goes as its values, in BREAKDOWN_FIELDS order: it has those and no other.
        if signed_problem or broken_breakdown or told.fact is None:
            return False, None
        return False, (settlement.setl_time,
                       tuple(settlement.result[name] for name in BREAKDOWN_FIELDS),
                       settlement.delta, settlement.setl_date, settlement.acc_year)

    def _check_bills(self) -> None:
        for bill_id, bill, facts in _merge(self.reader.bills(), _bill_id, _groups(self.bills)):
            current: tuple[int, Any] | None = None  # the last bill event so far
            live: list[tuple[int, str, Any]] = []  # (first settled seq, txn_id, medfee_sumamt)
            for seq, fact in facts:
                if fact[0] == BILL:
                    current = (seq, fact)
                    continue
                _, txn_id, first, is_live, medfee, check = fact
                if check is not None and current is not None:
                    self._check_delta(txn_id, check, current[1])
                if is_live:
                    live.append((first, txn_id, medfee))
            self._compare_one(
                "bill", bill_id, None if bill is None else bill_content(bill),
                None if current is None else (current[0], current[1][1], current[1][2]),
                self.bill_log)
            if bill is not None:
                self._check_bill(bill, [(txn, medfee) for _, txn, medfee in sorted(live)])

    def _check_delta(self, txn_id: str, check: Any, bill_event: Any) -> None:
        setl_time, amounts, delta, setl_date, acc_year = check
        result = dict(zip(BREAKDOWN_FIELDS, amounts, strict=True))
        _, _, _, med_type, date = bill_event
        problem = _delta_problem(result, delta, setl_date, acc_year,
                                 {"med_type": med_type, "date": date})
        if problem:
            self.settlement_rows.append(((setl_time, txn_id, ACCUMULATED),
                                         f"settlement {txn_id}: {problem}"))

    def _check_bill(self, bill: Bill, live: list[tuple[str, Any]]) -> None:
        problems = self.bill_rows
        if len(live) > 1:
            problems.append(f"bill {bill.bill_id} is settled {len(live)} times: "
                            f"{', '.join(txn for txn, _ in live)}")
        expected = "settled" if live else "pending"
        if bill.status != expected:
            problems.append(
                f"bill {bill.bill_id} is {bill.status} but the audit log says {expected}"
            )
        for txn_id, medfee in live:
            if medfee != bill.medfee_sumamt:
                problems.append(
                    f"settlement {txn_id}: medfee_sumamt {medfee} is not bill {bill.bill_id}'s "
                    f"total {bill.medfee_sumamt}"
                )

    def _check_accumulations(self) -> None:
        problems = self.accumulations
        rows = self.reader.accumulations()
        for key, row, facts in _merge(rows, _person_year, _groups(self.person_years, True)):
            self.report.person_years += 1
            seed: dict[str, int] = {}
            settled: dict[str, int] = {}
            for _, (tag, amounts) in facts:
                if tag == SEED:
                    seed = amounts  # the last seeding counts
                else:
                    for name, value in amounts.items():
                        settled[name] = settled.get(name, 0) + value
            should = plus(seed, settled)
            stored = {} if row is None else row[1]
            psn_no, year = key
            if not isinstance(stored, dict):
                problems.append(f"accumulations of {psn_no} for {year} are not a record")
                continue
            malformed = amounts_problems(stored, "accumulation")
            if malformed:  # a float equals its integer, yet the engine refuses it: no settle then
                problems.append(f"accumulations of {psn_no} for {year}: " + "; ".join(malformed))
                continue
            if not same_amounts(stored, should):
                off = _difference(stored, should)
                problems.append(
                    f"accumulations of {psn_no} for {year} are not the seeded start plus the "
                    f"live settlements: {off}"
                )


class _Told:
    """A settlement as its events tell it: its last `settled` event (seq, fact; None if it
    has none), its first one's seq, whether it was cancelled since and its receipt printed."""

    __slots__ = ("seq", "first", "fact", "cancelled", "printed")

    def __init__(self) -> None:
        self.seq = self.first = 0
        self.fact: Any = None
        self.cancelled = self.printed = False


def _cancel_problem(seq: int, txn_id: str, told: _Told, fact: Any) -> str | None:
    """Why a `cancelled` event cancels nothing, None if it cancels."""
    where = f"audit event {seq} ({ev.CANCELLED})"
    if told.fact is None:
        return f"{where}: txn {txn_id} cancelled but never settled"
    _, has_delta, delta, has_year, year = fact
    settled_year, settled_delta = told.fact[5], told.fact[6]
    if not has_delta or (settled_delta == delta and not has_year):
        return f"audit event {seq}: its body lacks what a {ev.CANCELLED} has"
    if settled_delta != delta or settled_year != year:
        return f"{where}: txn {txn_id} cancelled with another delta"
    return None


# ---------------------------------------------------------------------------- merging by key
def _merge(rows: Iterable[R], key_of: Callable[[R], K],
           groups: Iterator[tuple[K, Iterable[tuple[int, Any]]]]
           ) -> Iterator[tuple[K, R | None, Iterable[tuple[int, Any]]]]:
    """Rows and groups of events, both ordered by key, side by side: (key, its row or None,
    its events in seq order, or none), for every key either has, in key order. A key's events
    are to be iterated before the next key is asked for (see _groups)."""
    row_iter = iter(rows)
    row, row_key = _next_row(row_iter, key_of, None)
    group = next(groups, None)
    while row is not None or group is not None:
        if group is None or (row is not None and row_key < group[0]):  # type: ignore[operator]
            yield row_key, row, []
            row, row_key = _next_row(row_iter, key_of, row_key)
        elif row is None or group[0] < row_key:  # type: ignore[operator]
            yield group[0], None, group[1]
            group = next(groups, None)
        else:
            yield row_key, row, group[1]
            row, row_key = _next_row(row_iter, key_of, row_key)
            group = next(groups, None)


def _next_row(rows: Iterator[R], key_of: Callable[[R], K], before: Any) -> tuple[Any, Any]:
    row = next(rows, None)
    if row is None:
        return None, None
    key = key_of(row)
    if not _is_key(key):
        raise UnreadableRecord(f"a key that is not text: {key!r}")
    if before is not None and not before < key:
        # the database sorted by another order than Python's: the merge would be wrong
        raise LedgerError(f"the ledger returned {key!r} after {before!r}: its rows are not in "
                          "the order the audit merges them in (text by code point)")
    return row, key


def _is_key(key: Any) -> bool:
    if type(key) is tuple:  # (psn_no, year)
        return len(key) == 2 and type(key[0]) is str and type(key[1]) is int
    return type(key) is str


def _groups(records: SortedRecords, numbered: bool = False
            ) -> Iterator[tuple[Any, Iterator[tuple[int, Any]]]]:
    """The sorted records by key ((key, number) if `numbered`): (key, its (seq, value)s). Each
    key's records are read as they are iterated (a person-year may have thousands): iterate
    them before asking for the next key."""
    if numbered:
        for (key, number), same in groupby(records, key=lambda r: (r[0], r[1])):
            yield (key, number), ((seq, value) for _, _, seq, value in same)
    else:
        for key, same in groupby(records, key=lambda r: r[0]):
            yield key, ((seq, value) for _, _, seq, value in same)


def _psn_no(person: Any) -> str:
    return person.psn_no  # type: ignore[no-any-return]


def _txn_id(settlement: Settlement) -> str:
    return settlement.txn_id


def _bill_id(bill: Bill) -> str:
    return bill.bill_id


def _person_year(row: tuple[tuple[str, int], Any]) -> tuple[str, int]:
    return row[0]


def _envelope(body: dict[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in ev.ENVELOPE if key in body}


def _text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(value)
    return value


def _year(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(value)
    return value


def _amounts(value: Any) -> dict[str, int]:
    """Accumulations or a delta as an event holds them: they are added up."""
    if not isinstance(value, dict) or not all(isinstance(v, int) for v in value.values()):
        raise TypeError(value)
    return value


# ---------------------------------------------------------------------------- records compared
def _compare(
    what: str, rows: dict[str, Any], replayed: dict[str, Any], problems: list[str]
) -> None:
    for name in sorted(set(rows) | set(replayed)):
        if name not in replayed:
            problems.append(f"{what} {name} is in the ledger but not in the audit log")
        elif name not in rows:
            problems.append(f"{what} {name} is in the audit log but missing from the ledger")
        elif not _same_record(rows[name], replayed[name]):
            fields = sorted(
                k for k in set(rows[name]) | set(replayed[name])
                if _differs(rows[name].get(k), replayed[name].get(k))
            )  # fmt: skip
            problems.append(
                f"{what} {name}: {', '.join(fields)} changed behind the ledger (the audit log "
                "says otherwise)"
            )


def _differs(a: Any, b: Any) -> bool:
    """Not the same ledger value, at any depth (11576.0 == 11576, yet is no fen)."""
    return not (_plainly_same(a, b) or _same_record({"value": a}, {"value": b}))


def _plainly_same(a: Any, b: Any) -> bool:
    """True when a and b are surely the same ledger value: of the same JSON types all the way
    down (no float, text keys) and equal. False says nothing: canonical JSON decides then."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return len(a) == len(b) and all(
            type(k) is str and k in b and _plainly_same(v, b[k]) for k, v in a.items())
    if kind is list:
        return len(a) == len(b) and all(_plainly_same(x, y) for x, y in zip(a, b, strict=True))
    return (kind is str or kind is int or kind is bool or a is None) and a == b


def _same_record(row: dict[str, Any], replayed: dict[str, Any]) -> bool:
    """Equal as ledger records. A value canonical JSON refuses (a float where fen belong) makes
    them differ: the log never holds one, so the table was written behind the ledger."""
    try:
        return canonical_json(row) == canonical_json(replayed)
    except (TypeError, ValueError):
        return False


# The gateway books a settlement on the day of its signed setl_time in its own time zone (China's
# unless serve was told another): whatever the zone, that day lies within these hours of UTC.
EARLIEST_ZONE, LATEST_ZONE = timedelta(hours=-12), timedelta(hours=14)


def _setl_date_problem(settlement: Settlement) -> str | None:
    """setl_date (the day reconciliation counts it on) is not signed; it must be the day of the
    signed setl_time somewhere on Earth, or it was moved to another day behind the ledger."""
    if not isinstance(settlement.setl_time, int) or not isinstance(settlement.setl_date, str):
        return None  # reported as a malformed record elsewhere
    try:
        moment = datetime.fromtimestamp(settlement.setl_time, UTC)
    except (OverflowError, OSError, ValueError):
        return None  # the signature check names a setl_time no calendar holds
    earliest = (moment + EARLIEST_ZONE).date().isoformat()
    latest = (moment + LATEST_ZONE).date().isoformat()
    if earliest <= settlement.setl_date <= latest:
        return None
    return (f"setl_date {settlement.setl_date} is not the day of its signed setl_time "
            f"({moment:%Y-%m-%d %H:%M} UTC): moved to another day behind the ledger")


def _delta_problem(result: dict[str, Any], delta: dict[str, Any], setl_date: Any,
                   acc_year: Any, bill: dict[str, Any]) -> str | None:
    """A settlement row's accumulation change (delta, year) must follow from its breakdown
    (which the signature vouches for), its bill as it was when settled (`bill`: its med_type
    and date), and its day: neither is signed, and a delta or year edited behind the ledger
    (with the chain re-hashed around it) would let later claims past the caps."""
    if not isinstance(bill.get("med_type"), str) or breakdown_problems(result):
        return None  # a malformed bill, a broken breakdown: reported elsewhere
    should = delta_of(result, bill["med_type"])
    if not same_amounts(delta, should):
        return ("its accumulation change does not follow from its signed amounts: "
                + _difference(delta, should))
    # The gateway counts it in its settlement day's year; Ledger.settle without a year, in
    # its bill's (the treatment's).
    years = {text[:4] for text in (setl_date, bill.get("date")) if isinstance(text, str)}
    if acc_year is not None and years and str(acc_year) not in years:
        return (f"it counts in the accumulations of {acc_year}, not of its "
                f"settlement day's year ({setl_date}) or its bill's "
                f"({bill.get('date')})")
    return None


def _signed_record_problem(settlement: Settlement, gateway_keys: dict[str, bytes]) -> str | None:
    """Why the row's signed record does not vouch for the row, or None if it does."""
    try:
        _, record = open_signed_settlement(settlement.signed, gateway_keys)
    except SignedSettlementError as exc:
        if exc.kind == "not_cose":
            return "its signed record is not a gateway's COSE_Sign1 (written behind the ledger)"
        if exc.kind == "unknown_key":
            return (f"its signed record is by {exc.kid!r}, which is not a gateway key the "
                    "ledger holds")
        return (f"its signed record does not verify under gateway key {exc.kid} (forged, or "
                "altered behind the ledger)")
    fields = record_differences(settlement.record(), record)
    if fields:
        verb = "differs" if len(fields) == 1 else "differ"
        return (f"{', '.join(fields)} {verb} from what the gateway signed (changed behind the "
                "ledger)")
    return None


# ---------------------------------------------------------------------------- signed settlements
# Shared with `kiosk gateway verify-receipt` (receipt_check.py): a receipt's QR code carries the
# same signed bytes as the ledger's `signed` column, so both are opened and compared alike.
class SignedSettlementError(Exception):
    """Signed bytes that do not vouch for a settlement. `kind`: "not_cose" (no COSE_Sign1),
    "unknown_key" (`kid` is no gateway key given), "bad_signature" (does not verify under
    `kid`'s key) or "not_settlement" (verifies, but the payload is no settlement_record)."""

    def __init__(self, kind: str, kid: str | None, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.kid = kid
        self.detail = detail


def open_signed_settlement(
    signed: bytes, gateway_keys: Mapping[str, bytes]
) -> tuple[str, dict[str, Any]]:
    """(kid, settlement_record) of a COSE_Sign1 made by one of `gateway_keys` (kid -> public
    key); raises SignedSettlementError saying what it is not."""
    try:
        kid = cose.decode1(signed).kid
    except ProtocolError as exc:
        raise SignedSettlementError("not_cose", None, str(exc)) from None
    if kid not in gateway_keys:
        raise SignedSettlementError("unknown_key", kid)
    try:
        record = messages.open_settlement(signed, VerifyingKey(gateway_keys[kid]))
    except ProtocolError as exc:
        kind = "bad_signature" if exc.code == "bad_signature" else "not_settlement"
        raise SignedSettlementError(kind, kid, str(exc)) from None
    except ValueError as exc:  # a stored public key of the wrong size verifies nothing
        raise SignedSettlementError("bad_signature", kid, str(exc)) from None
    return kid, record


def record_differences(row: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """The fields (sorted) in which two settlement_records differ as ledger values."""
    return sorted(k for k in set(row) | set(record) if _differs(row.get(k), record.get(k)))


def _difference(stored: Mapping[str, int], should: Mapping[str, int]) -> str:
    keys = sorted(k for k in set(stored) | set(should) if stored.get(k, 0) != should.get(k, 0))
    return "; ".join(f"{k} is {stored.get(k, 0)}, should be {should.get(k, 0)}" for k in keys)
