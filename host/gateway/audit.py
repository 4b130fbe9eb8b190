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
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from onestop.host.keys import VerifyingKey
from onestop.host.settlement import delta_of
from onestop.protocol import cose, messages
from onestop.protocol.errors import ProtocolError

from .ledger import events as ev
from .ledger.base import AuditSnapshot, Ledger, Settlement
from .ledger.chain import GENESIS_HASH, canonical_json, event_hash
from .ledger.checks import amounts_problems, breakdown_problems, plus, same_amounts
from .ledger.rows import bill_content


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
        snapshot = ledger.audit_snapshot()
    except (TypeError, ValueError) as exc:  # a column holds what the ledger never writes
        return AuditReport(read=False, problems=[
            f"the ledger's tables cannot be read as the ledger writes them ({exc}): changed "
            "behind the ledger"])
    return verify(snapshot)


def verify(snapshot: AuditSnapshot) -> AuditReport:
    report = AuditReport(events=len(snapshot.events))
    bodies = _check_chain(snapshot, report)
    replayed = _Replay()
    for seq, body in bodies:
        replayed.apply(seq, body, report.problems)
    _check_keys(snapshot, replayed, report.problems)
    _check_persons(snapshot, replayed, report.problems)
    _check_settlements(snapshot, replayed, report)
    _check_bills(snapshot, replayed, report.problems)
    _check_accumulations(snapshot, replayed, report)
    return report


# ---------------------------------------------------------------------------- the chain
def _check_chain(snapshot: AuditSnapshot, report: AuditReport) -> list[tuple[int, dict]]:
    """Chain problems into `report`; the parsed bodies of events whose own text is intact."""
    problems = report.problems
    bodies: list[tuple[int, dict]] = []
    prev_hash = GENESIS_HASH
    for expected_seq, event in enumerate(snapshot.events, start=1):
        seq = event["seq"]
        if seq != expected_seq:
            problems.append(f"audit chain: event {seq} where event {expected_seq} should be")
        if event["prev_hash"] != prev_hash:
            problems.append(f"audit chain: event {seq} does not link to the event before it")
        if event_hash(event["prev_hash"], event["body"]) != event["hash"]:
            problems.append(f"audit chain: event {seq}'s hash does not match its body (edited)")
        prev_hash = event["hash"]
        body = _parse(event, problems)
        if body is not None:
            bodies.append((seq, body))
    report.head_hash = prev_hash
    last = (len(snapshot.events), prev_hash) if snapshot.events else (0, GENESIS_HASH)
    if snapshot.head is None:
        problems.append("audit chain: the ledger's record of its last event is missing")
    elif tuple(snapshot.head) != last:
        problems.append(
            f"audit chain: the ledger's head is event {snapshot.head[0]} but the log ends at "
            f"event {last[0]} (events removed or added behind the ledger)"
        )
    return bodies


def _parse(event: dict[str, Any], problems: list[str]) -> dict[str, Any] | None:
    seq = event["seq"]
    try:
        body = json.loads(event["body"])
    except ValueError:
        problems.append(f"audit chain: event {seq}'s body is not JSON")
        return None
    if not isinstance(body, dict) or canonical_json(body) != event["body"]:
        problems.append(f"audit chain: event {seq}'s body is not canonical JSON")
        return None
    columns = (event["seq"], event["kind"], event["txn_id"])
    if (body.get("seq"), body.get("kind"), body.get("txn_id")) != columns:
        problems.append(f"audit chain: event {seq}'s seq, kind or txn_id column was changed")
    return body


# ---------------------------------------------------------------------------- replay
class _Replay:
    """The ledger's state as its events tell it."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}
        self.persons: dict[str, dict[str, Any]] = {}
        self.bills: dict[str, dict[str, Any]] = {}
        self.seeds: dict[tuple[str, int], dict[str, int]] = {}
        self.settled: dict[str, dict[str, Any]] = {}
        # each settlement's bill as it stood when settled (cancelled, a bill may be corrected)
        self.bill_when_settled: dict[str, dict[str, Any]] = {}
        self.cancelled: dict[str, dict[str, Any]] = {}
        self.printed: set[str] = set()

    def apply(self, seq: int, body: dict[str, Any], problems: list[str]) -> None:
        try:
            self._apply(seq, body, problems)
        except (KeyError, TypeError, AttributeError):
            problems.append(f"audit event {seq}: its body lacks what a {body.get('kind')} has")

    def _apply(self, seq: int, body: dict[str, Any], problems: list[str]) -> None:
        kind, data = body["kind"], ev.data_of(body)
        where = f"audit event {seq} ({kind})"
        if kind == ev.KEY_ADDED:
            self.keys[data["kid"]] = data
        elif kind in (ev.KEY_REVOKED, ev.KEY_RESTORED):
            if data["kid"] not in self.keys:
                problems.append(f"{where}: key {data['kid']} was never added")
            else:
                self.keys[data["kid"]] = {**self.keys[data["kid"]], "status": data["status"]}
        elif kind in (ev.PERSON_ADDED, ev.PERSON_UPDATED):
            self.persons[data["psn_no"]] = data
        elif kind in (ev.BILL_IMPORTED, ev.BILL_UPDATED):
            self.bills[data["bill_id"]] = data
        elif kind == ev.ACCUMULATIONS_SEEDED:
            self.seeds[(data["psn_no"], data["year"])] = data["amounts"]
        elif kind == ev.SETTLED:
            if data["txn_id"] in self.settled:
                problems.append(f"{where}: txn {data['txn_id']} settled twice")
            self.settled[data["txn_id"]] = data
            bill = self.bills.get(data["bill_id"])
            if bill is not None:
                self.bill_when_settled[data["txn_id"]] = bill
        elif kind == ev.CANCELLED:
            self._cancel(data, where, problems)
        elif kind == ev.RECEIPT_PRINTED:
            self.printed.add(data["txn_id"])
        else:
            problems.append(f"{where}: unknown kind of event")

    def _cancel(self, data: dict[str, Any], where: str, problems: list[str]) -> None:
        settled = self.settled.get(data["txn_id"])
        if settled is None:
            problems.append(f"{where}: txn {data['txn_id']} cancelled but never settled")
        elif settled["delta"] != data["delta"] or settled["acc_year"] != data["acc_year"]:
            problems.append(f"{where}: txn {data['txn_id']} cancelled with another delta")
        else:
            self.cancelled[data["txn_id"]] = data

    def live(self) -> Iterable[dict[str, Any]]:
        """Settled events not cancelled since."""
        return (d for txn, d in self.settled.items() if txn not in self.cancelled)


# ---------------------------------------------------------------------------- tables vs events
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
    return not _same_record({"value": a}, {"value": b})


def _same_record(row: dict[str, Any], replayed: dict[str, Any]) -> bool:
    """Equal as ledger records. A value canonical JSON refuses (a float where fen belong) makes
    them differ: the log never holds one, so the table was written behind the ledger."""
    try:
        return canonical_json(row) == canonical_json(replayed)
    except (TypeError, ValueError):
        return False


def _check_keys(snapshot: AuditSnapshot, replayed: _Replay, problems: list[str]) -> None:
    rows = {k.kid: ev.key_data(k) for k in snapshot.keys}
    _compare("key", rows, replayed.keys, problems)


def _check_persons(snapshot: AuditSnapshot, replayed: _Replay, problems: list[str]) -> None:
    rows = {p.psn_no: ev.person_data(p) for p in snapshot.persons}
    _compare("person", rows, replayed.persons, problems)


def _check_bills(snapshot: AuditSnapshot, replayed: _Replay, problems: list[str]) -> None:
    rows = {b.bill_id: bill_content(b) for b in snapshot.bills}
    _compare("bill", rows, replayed.bills, problems)
    live_by_bill: dict[str, list[str]] = {}
    for data in replayed.live():
        live_by_bill.setdefault(data["bill_id"], []).append(data["txn_id"])
    for bill in snapshot.bills:
        live = live_by_bill.get(bill.bill_id, [])
        if len(live) > 1:
            problems.append(f"bill {bill.bill_id} is settled {len(live)} times: {', '.join(live)}")
        expected = "settled" if live else "pending"
        if bill.status != expected:
            problems.append(
                f"bill {bill.bill_id} is {bill.status} but the audit log says {expected}"
            )
        for txn_id in live:
            medfee = replayed.settled[txn_id]["result"].get("medfee_sumamt")
            if medfee != bill.medfee_sumamt:
                problems.append(
                    f"settlement {txn_id}: medfee_sumamt {medfee} is not bill {bill.bill_id}'s "
                    f"total {bill.medfee_sumamt}"
                )


def _check_settlements(snapshot: AuditSnapshot, replayed: _Replay, report: AuditReport) -> None:
    problems = report.problems
    rows = {s.txn_id: s for s in snapshot.settlements}
    gateway_keys = {k.kid: k.public_key for k in snapshot.keys if k.role == "gateway"}
    stored: dict[str, Any] = {}
    for txn_id, settlement in rows.items():
        if not isinstance(settlement.result, dict) or not isinstance(settlement.delta, dict):
            problems.append(f"settlement {txn_id}: its result or delta is not a record "
                            "(written behind the ledger)")
            continue
        stored[txn_id] = ev.settled_row_data(settlement)
        for problem in breakdown_problems(settlement.result):
            problems.append(f"settlement {txn_id}: {problem}")
        signed_problem = _signed_record_problem(settlement, gateway_keys)
        if signed_problem:
            problems.append(f"settlement {txn_id}: {signed_problem}")
        day_problem = _setl_date_problem(settlement)
        if day_problem:
            problems.append(f"settlement {txn_id}: {day_problem}")
        # from the signed breakdown: a row whose result differs from it is named above
        accumulated_problem = None if signed_problem else _delta_problem(
            settlement, replayed.bill_when_settled.get(txn_id))
        if accumulated_problem:
            problems.append(f"settlement {txn_id}: {accumulated_problem}")
        _check_flags(settlement, replayed, problems)
    malformed = set(rows) - set(stored)  # reported above; not "missing" as well
    # What only the event keeps (the policy) has no row to differ from: the chain guards it.
    _compare("settlement", stored,
             {t: {k: v for k, v in d.items() if k not in ev.SETTLED_EVENT_ONLY}
              for t, d in replayed.settled.items() if t not in malformed}, problems)
    report.settlements = len(rows)
    report.cancelled = sum(1 for s in rows.values() if s.status == "cancelled")


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


def _delta_problem(settlement: Settlement, bill: dict[str, Any] | None) -> str | None:
    """The row's accumulation change (delta, year) must follow from its breakdown (which the
    signature vouches for), its bill as it was when settled, and its day: neither is signed,
    and a delta or year edited behind the ledger (with the chain re-hashed around it) would
    let later claims past the caps."""
    if (bill is None or not isinstance(bill.get("med_type"), str)
            or breakdown_problems(settlement.result)):
        return None  # no bill (or a malformed one), a broken breakdown: reported elsewhere
    should = delta_of(settlement.result, bill["med_type"])
    if not same_amounts(settlement.delta, should):
        return ("its accumulation change does not follow from its signed amounts: "
                + _difference(settlement.delta, should))
    # The gateway counts it in its settlement day's year; Ledger.settle without a year, in
    # its bill's (the treatment's).
    years = {text[:4] for text in (settlement.setl_date, bill.get("date"))
             if isinstance(text, str)}
    if settlement.acc_year is not None and years and str(settlement.acc_year) not in years:
        return (f"it counts in the accumulations of {settlement.acc_year}, not of its "
                f"settlement day's year ({settlement.setl_date}) or its bill's "
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


def _check_flags(settlement: Settlement, replayed: _Replay, problems: list[str]) -> None:
    txn_id = settlement.txn_id
    expected_status = "cancelled" if txn_id in replayed.cancelled else "settled"
    if settlement.status != expected_status:
        problems.append(
            f"settlement {txn_id} is {settlement.status} but the audit log says {expected_status}"
        )
    if settlement.receipt_printed != (txn_id in replayed.printed):
        problems.append(f"settlement {txn_id}: receipt_printed differs from the audit log")


def _check_accumulations(snapshot: AuditSnapshot, replayed: _Replay, report: AuditReport) -> None:
    expected: dict[tuple[str, int], dict[str, int]] = {
        key: dict(amounts) for key, amounts in replayed.seeds.items()
    }
    for data in replayed.live():
        key = (data["psn_no"], data["acc_year"])
        expected[key] = plus(expected.get(key, {}), data["delta"])
    report.person_years = len(set(expected) | set(snapshot.accumulations))
    for key in sorted(set(expected) | set(snapshot.accumulations)):
        stored = snapshot.accumulations.get(key, {})
        should = expected.get(key, {})
        psn_no, year = key
        if not isinstance(stored, dict):
            report.problems.append(f"accumulations of {psn_no} for {year} are not a record")
            continue
        malformed = amounts_problems(stored, "accumulation")
        if malformed:  # a float equals its integer, yet the engine refuses it: no settle then
            report.problems.append(f"accumulations of {psn_no} for {year}: "
                                   + "; ".join(malformed))
            continue
        if not same_amounts(stored, should):
            off = _difference(stored, should)
            report.problems.append(
                f"accumulations of {psn_no} for {year} are not the seeded start plus the live "
                f"settlements: {off}"
            )


def _difference(stored: dict[str, int], should: dict[str, int]) -> str:
    keys = sorted(k for k in set(stored) | set(should) if stored.get(k, 0) != should.get(k, 0))
    return "; ".join(f"{k} is {stored.get(k, 0)}, should be {should.get(k, 0)}" for k in keys)
