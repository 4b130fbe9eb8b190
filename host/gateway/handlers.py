"""Request handlers: one authenticated, replay-checked request in, one reply message out.

Sans-I/O: no sockets, no clock of their own (`now` is passed in), and the ledger is a parameter,
so the server can run a handler in a worker thread with that thread's ledger connection.
A refusal is raised as `ProtocolError(code, msg)` with a frames.cddl error code; the caller turns
it into an `error` reply. `LedgerError` (storage failed) passes through untouched: nothing was
written, and the caller answers `unavailable`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from onestop.host.gateway import fastwire
from onestop.host.gateway.ledger.base import (
    Bill,
    BillUnavailable,
    Ledger,
    Person,
    Settlement,
    TxnConflict,
    UnknownTxn,
)
from onestop.host.gateway.masking import mask_id
from onestop.host.gateway.reconcile import totals_for
from onestop.host.keys import SigningKey
from onestop.host.settlement import (
    Claim,
    Outcome,
    Policy,
    load_policy_set,
    policy_digest,
    settle,
)
from onestop.host.settlement.vocabulary import SETTLED_INSURANCE_TYPES
from onestop.protocol import messages
from onestop.protocol.errors import ProtocolError
from onestop.protocol.framing import MAX_FRAME

TOTALS_FIELDS = (
    "count", "medfee_sumamt", "hifp_pay", "hifmi_pay", "maf_pay", "fund_pay_sumamt",
    "psn_cash_pay",
)


# Bytes the CBOR heads of a reply grow by as bills are added to its list: the list's head from
# 1 to at most 3 bytes, the frame's payload head from 2 to 3 (a frame is at most 4096 bytes).
HEAD_GROWTH = 3
# More bills than one frame can hold (each takes well over MAX_FRAME / this many bytes).
BILLS_READ_AT_MOST = 64
# A card read answers for its resident this long: a visit from card to settle takes minutes
# (its pages time out after one); a kiosk's key must not open the last resident's bills for
# ever after.
CARD_READ_VALID_S = 30 * 60


def calendar_day(text: str, what: str) -> date:
    """A frame's date_text as a day; ProtocolError invalid if no calendar has it (the frame's
    pattern admits any digits)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ProtocolError("invalid", f"{what} {text} is no day of the calendar") from None


@dataclass
class Handled:
    """A handler's reply, plus what the server should log and count about it."""

    reply: dict[str, Any]
    event: str | None = None  # a notable event to log at info level ("settled", ...)
    fields: dict[str, Any] = field(default_factory=dict)
    settlement: str | None = None  # "new" | "retry" for settle replies
    warn: bool = False  # the operator must look at it (a reconciliation mismatch)


@dataclass(frozen=True, slots=True)
class Priced:
    """A kiosk's pre_settle, kept until its settle: the engine's outcome and everything it was
    computed from. The engine is pure, so the settle that follows (same resident, same bill,
    nothing changed) takes this outcome instead of computing it again inside the ledger's
    write turn, where every other request of the batch, and the other gateway processes,
    wait."""

    person: Person
    bill: Bill
    accumulations: dict[str, int]  # the year's, as the engine was given them
    claim: Claim  # its setl_date: the day it was priced for
    policy: Policy
    outcome: Outcome

    def holds(self, person: Person, bill: Bill, day: str,
              accumulations: dict[str, int]) -> bool:
        """Whether these are the very inputs the outcome was computed from."""
        return (self.claim.setl_date == day and self.accumulations == accumulations
                and self.bill == bill and self.person == person)


@dataclass(frozen=True, slots=True)
class Presigned:
    """A settle's record signed before its ledger turn, from the kiosk's `Priced`: used only if
    the ledger, inside the turn, finds the same inputs (Priced.holds); otherwise discarded."""

    priced: Priced
    record: dict[str, Any]
    signed: bytes


# Kiosks whose pre_settle is kept until their settle (one each, a few kilobytes: a bill of
# more than PRICED_ITEMS_AT_MOST items is not kept); past this many, all are forgotten (a
# settle then only computes its outcome again).
PRICED_AT_MOST = 2_000
PRICED_ITEMS_AT_MOST = 100


class SignerRevoked(ProtocolError):
    """The key this gateway signs with is no longer active in the ledger (revoked by an
    operator: a leaked key): it must not sign another settlement. Refused as "unavailable":
    nothing was written, and the kiosk holds the settle in doubt until a gateway (one with a
    new key, once the kiosk is provisioned with it) answers its settlement_query. The server
    stops."""

    def __init__(self, kid: str, status: str) -> None:
        super().__init__("unavailable", f"this gateway's key {kid} is {status}: it signs no "
                         "more settlements")
        self.status = status


class AmountChanged(Exception):
    """The computed cash share differs from what the resident confirmed: settle nothing."""

    def __init__(self, computed: int, confirmed: int) -> None:
        super().__init__(
            f"the amount to pay is now {computed} fen, the resident confirmed {confirmed} fen"
        )


def settle_digest(request: dict[str, Any]) -> bytes:
    """What a settle request asked for: tells a retry (same digest) from a conflict."""
    asked = {key: request[key] for key in ("kiosk", "psn_no", "bill_id", "confirmed_cash",
                                             "txn_id")}
    # deterministic CBOR: cbor2's canonical form is protocol.cbor's bytes for these values
    return hashlib.sha256(fastwire.canonical_dumps(asked)).digest()


class Handlers:
    # Requests whose handler writes settlements: a refusal undoes what it wrote. The others
    # only read (their replay counter aside, see Ledger.run_requests) but for person_info's
    # card read, which stands though the card is refused.
    WRITES = frozenset({"settle", "cancel", "receipt_printed"})
    # Requests whose reply must wait for the disk: the writes, the reads that vouch for stored
    # settlements (a settlement_query's answer, a reconcile's totals), and person_info, whose
    # card read the resident's next requests stand on (lost in a power cut, an insured resident
    # would be told at the next step that there is no record of them).
    DURABLE = WRITES | {"settlement_query", "reconcile", "person_info"}

    def __init__(
        self,
        signer: SigningKey,
        gateway_kid: str,
        policies: str | Sequence[str],  # shipped names or .toml paths; PolicyError if they clash
        tz: tzinfo | None = None,  # None: the gateway host's local time zone
        new_id: Callable[[], str] = lambda: secrets.token_hex(5).upper(),
        *,
        cert: bytes | None = None,  # the key's cert (certs.py), sent with each sign_in_reply
    ) -> None:
        self.signer = signer
        self.gateway_kid = gateway_kid
        self.cert = cert
        names = (policies,) if isinstance(policies, str) else tuple(policies)
        # Each resident is settled under their enrolment region's policy, with the catalogue of
        # the region treated in (异地就医).
        self.policies = load_policy_set(names)
        # What sign-in and the start-up log name: the policies' names, in the order given (not
        # the paths they were read from, which are this host's business).
        self.policy_name = ", ".join(policy.name for policy in self.policies.policies)
        # Each policy's digest by name: recorded with each settlement, and (rules.py) in the
        # ledger's record of what this gateway settles by.
        self.policy_digests = {policy.name: policy_digest(policy)
                               for policy in self.policies.policies}
        self.tz = tz
        self._new_id = new_id
        self._day_of: tuple[int, date] | None = None  # (now, its date): asked 2-3 times a request
        self._priced: dict[str, Priced] = {}  # by kiosk: its pre_settle, until its settle
        self._table: dict[str, Callable[[Ledger, dict[str, Any], int], Handled]] = {
            "sign_in": self.sign_in,
            "person_info": self.person_info,
            "pending_bills": self.pending_bills,
            "pre_settle": self.pre_settle,
            "settle": self.settle,
            "cancel": self.cancel,
            "settlement_query": self.settlement_query,
            "receipt_printed": self.receipt_printed,
            "reconcile": self.reconcile,
        }

    def handle(self, ledger: Ledger, request: dict[str, Any], now: int,
               ahead: Presigned | None = None) -> Handled:
        """The request's reply, inside the ledger's transaction; `ahead` is what
        `self.ahead(request, now)` did before it."""
        if ahead is not None:  # a settle's
            return self.settle(ledger, request, now, ahead)
        handler = self._table.get(request["t"])
        if handler is None:
            raise ProtocolError("invalid", f"{request['t']} is not a request")
        return handler(ledger, request, now)

    def ahead(self, request: dict[str, Any], now: int) -> Presigned | None:
        """What of an authenticated request can be done before its ledger turn, without the
        ledger: a settle of the bill its kiosk just priced has its record signed now, for the
        outcome the pre_settle computed (the ledger then checks that nothing changed since)."""
        if request["t"] != "settle":
            return None
        priced = self._priced.get(request["kiosk"])
        if (priced is None or priced.person.psn_no != request["psn_no"]
                or priced.bill.bill_id != request["bill_id"]
                or priced.outcome.breakdown["psn_cash_pay"] != request["confirmed_cash"]
                or priced.claim.setl_date != self.today(now).isoformat()):
            return None
        record = self._record(request, priced.person.psn_no, priced.bill.bill_id,
                              dict(priced.outcome.breakdown), now)
        return Presigned(priced, record,
                         fastwire.seal_settlement(record, self.gateway_kid, self.signer))

    def today(self, now: int) -> date:
        known = self._day_of
        if known is None or known[0] != now:
            known = self._day_of = (now, datetime.fromtimestamp(now, self.tz).date())
        return known[1]

    # ------------------------------------------------------------ 9001 sign-in
    def sign_in(self, ledger: Ledger, request: dict[str, Any], now: int) -> Handled:
        # At boot and every few minutes after: the operator's sign that the kiosk is alive
        ledger.record_sign_in(request["kiosk"], request["fw"], request["board"], now)
        stamp = datetime.fromtimestamp(now, self.tz).strftime("%Y%m%d%H%M%S")
        reply = messages.reply(
            request, "sign_in_reply", now, sign_no=stamp + self._new_id(), now=now,
            gateway=self.gateway_kid, policy=self.policy_name,
        )
        if self.cert is not None:  # how a kiosk learns a rotated key (app/link.py)
            reply["cert"] = self.cert
        return Handled(reply, "signed_in", {"fw": request["fw"], "board": request["board"]})

    # ------------------------------------------------------------ 1101 person info
    def person_info(self, ledger: Ledger, request: dict[str, Any], now: int) -> Handled:
        card = request["card"]
        self._forget_priced(request["kiosk"])  # another visit: the last resident's is over
        try:
            person = ledger.find_person(card["ssn"], card["card_no"])
            if person is None:
                raise ProtocolError("unknown_person", "no insured person holds this card")
            # 9999-99-99 matches the frame's pattern and sorted after every real day
            if calendar_day(card["expiry"], "the card's expiry") < self.today(now):
                raise ProtocolError("card_expired", f"the card expired on {card['expiry']}")
        except ProtocolError:
            # Another card is in: the last resident's visit is over (not a WRITES request:
            # its writes stand though it is refused, RequestJob.undo_refused)
            ledger.forget_card_read(request["kiosk"])
            raise
        # Last, after every refusal: this resident is the one this kiosk may now ask about.
        ledger.record_card_read(request["kiosk"], person.psn_no, now)
        reply = messages.reply(
            request, "person_info_reply", now, psn_no=person.psn_no, name=person.name,
            ssn_masked=mask_id(person.ssn), insutype=person.insutype,
            insu_admdvs=person.insu_admdvs, assistance=person.assistance,
        )
        return Handled(reply)

    # ------------------------------------------------------------ bills
    def pending_bills(self, ledger: Ledger, request: dict[str, Any], now: int) -> Handled:
        person = self._card_holder(ledger, request, now)
        # Never more than a frame can hold: a resident with a backlog of thousands must not
        # cost every kiosk on the gateway a read of them all.
        today = self.today(now).isoformat()
        # A bill dated after today cannot be priced (_claim): not offered to the resident.
        bills = [_bill_record(bill)
                 for bill in ledger.pending_bills(person.psn_no, limit=BILLS_READ_AT_MOST)
                 if bill.date <= today]
        listed = self._bills_that_fit(request, person.psn_no, bills, now)
        reply = messages.reply(request, "pending_bills_reply", now, psn_no=person.psn_no,
                               bills=bills[:listed])
        if listed == len(bills) < BILLS_READ_AT_MOST:
            return Handled(reply)
        # A frame holds a few dozen bills; the kiosk shows four and leaves the rest to the
        # counter. The oldest are listed; the operator hears of the resident's backlog.
        return Handled(reply, "bills_not_all_listed", {
            "psn_no": person.psn_no, "listed": listed,
            "pending": ledger.count_pending_bills(person.psn_no)}, warn=True)

    def _bills_that_fit(self, request: dict[str, Any], psn_no: str,
                        bills: list[dict[str, Any]], now: int) -> int:
        """How many of `bills` (from the first) fit in one signed frame."""
        empty = messages.reply(request, "pending_bills_reply", now, psn_no=psn_no, bills=[])
        room = MAX_FRAME - fastwire.sealed_size(empty, self.gateway_kid) - HEAD_GROWTH
        listed = 0
        for bill in bills:
            room -= len(fastwire.canonical_dumps(bill))
            if room < 0:
                break
            listed += 1
        return listed

    # ------------------------------------------------------------ 2206 pre-settle
    def pre_settle(self, ledger: Ledger, request: dict[str, Any], now: int) -> Handled:
        # the claim's year is the settlement date's: today's
        found = ledger.pricing_inputs(request["kiosk"], request["psn_no"],
                                      now - CARD_READ_VALID_S, request["bill_id"],
                                      self.today(now).year)
        if found is None:
            raise self._not_card_holder(request)
        person, bill, accumulations = found
        bill = self._checked_bill(person, bill, request["bill_id"])
        claim = self._claim(person, bill, now)
        policy = self._policy_for(claim)
        outcome = settle(policy, claim, accumulations)
        self._forget_priced(request["kiosk"])
        if len(bill.items) <= PRICED_ITEMS_AT_MOST:
            if len(self._priced) >= PRICED_AT_MOST:
                self._priced.clear()
            self._priced[request["kiosk"]] = Priced(person, bill, accumulations, claim,
                                                    policy, outcome)
        return Handled(messages.reply(request, "pre_settle_reply", now,
                                      bill_id=bill.bill_id, result=dict(outcome.breakdown)))

    # ------------------------------------------------------------ 2207 settle
    def settle(self, ledger: Ledger, request: dict[str, Any], now: int,
               ahead: Presigned | None = None) -> Handled:
        confirmed = request["confirmed_cash"]
        digest = settle_digest(request)
        try:
            person: Person | None = self._card_holder(ledger, request, now)
        except ProtocolError:
            # A retry of a settle the ledger holds (same kiosk, same request) is answered with
            # it whatever card the kiosk read since, as a settlement_query is: refused (the
            # card read lapsed between the attempts), the kiosk would journal a settlement the
            # ledger holds as aborted. Looked up only then: the usual settle reads nothing more.
            held = ledger.get_settlement(request["txn_id"])
            if held is None or held.kiosk_id != request["kiosk"] \
                    or held.request_digest != digest:
                raise
            person = None  # ledger.settle finds it stored and answers with it
        psn_no = request["psn_no"]  # the held one's too: the digest covers it
        setl_date = self.today(now)
        used: list[Policy] = []  # the policy build settled with, for the log
        unused = [] if ahead is None else [ahead]

        def build(accumulations: dict[str, int], bill: Bill,
                  person: Person | None = person) -> Settlement:
            if person is None:  # the settlement held above is gone: never, but not unchecked
                person = self._card_holder(ledger, request, now)
            # In the settlement's own transaction: once a revocation has committed, no
            # settlement signed with the key can (the server's periodic check only stops it).
            key = ledger.key_for_this_commit(self.gateway_kid)
            if key is None or key.status != "active":
                raise SignerRevoked(self.gateway_kid, "gone" if key is None else key.status)
            # Chosen here, not before: a retry returns the stored settlement whatever the
            # policies loaded now.
            day = setl_date.isoformat()
            priced = self._priced.get(request["kiosk"])
            if priced is not None and not priced.holds(person, bill, day, accumulations):
                priced = None  # something changed since: computed afresh
            if priced is not None:
                claim, policy, outcome = priced.claim, priced.policy, priced.outcome
            else:
                claim = self._claim(person, bill, now)
                policy = self._policy_for(claim)
                outcome = settle(policy, claim, accumulations)
            used.append(policy)
            breakdown = dict(outcome.breakdown)
            if breakdown["psn_cash_pay"] != confirmed:
                raise AmountChanged(breakdown["psn_cash_pay"], confirmed)
            presigned = unused.pop() if unused else None  # once: a rebuild needs a new number
            if presigned is not None and presigned.priced is priced:  # this very outcome's
                record, signed = presigned.record, presigned.signed
            else:
                record = self._record(request, person.psn_no, bill.bill_id, breakdown, now)
                signed = fastwire.seal_settlement(record, self.gateway_kid, self.signer)
            return Settlement(
                txn_id=record["txn_id"], setl_id=record["setl_id"], kiosk_id=record["kiosk"],
                psn_no=person.psn_no, bill_id=bill.bill_id, setl_time=now,
                setl_date=day, result=breakdown, signed=signed,
                request_digest=digest, delta=dict(outcome.delta),
                policy=self._settled_by(claim),
            )

        try:
            try:
                # The accumulation year is the settlement date's, as the engine counts it.
                stored, created = ledger.settle(
                    request["txn_id"], digest, request["kiosk"], psn_no, request["bill_id"],
                    build, year=setl_date.year,
                )
            finally:  # used or not, the pre_settle is spent (a new price needs a new one)
                self._forget_priced(request["kiosk"])
        except TxnConflict:
            raise ProtocolError(
                "txn_conflict", f"txn_id {request['txn_id']} was already used for another request"
            ) from None
        except BillUnavailable as exc:
            raise ProtocolError(exc.code, str(exc)) from None
        except AmountChanged as exc:
            raise ProtocolError("amount_changed", str(exc)) from None
        if stored.status == "cancelled":  # a retry must not look like a live settlement
            raise ProtocolError(
                "txn_conflict",
                f"txn_id {stored.txn_id} was settled and then cancelled; settling the bill "
                "again needs a new txn_id",
            )
        reply = messages.reply(request, "settle_reply", now, txn_id=stored.txn_id,
                               settlement=stored.signed)
        kind = "new" if created else "retry"
        fields: dict[str, Any] = {"txn_id": stored.txn_id, "setl_id": stored.setl_id,
                                  "psn_cash_pay": stored.result["psn_cash_pay"]}
        if created:  # the log says under which region's policy it was settled
            fields["policy"] = used[-1].name
        return Handled(reply, "settled" if created else "settle_retry", fields, settlement=kind)

    def _forget_priced(self, kiosk: str) -> None:
        """The kiosk's kept pre_settle (its resident's data), dropped."""
        self._priced.pop(kiosk, None)

    def _record(self, request: dict[str, Any], psn_no: str, bill_id: str,
                breakdown: dict[str, int], now: int) -> dict[str, Any]:
        """The settlement_record the gateway signs, under a new settlement number (the ledger
        asks for another build if a settlement already has it)."""
        return {
            "setl_id": "S" + self.today(now).strftime("%Y%m%d") + self._new_id(),
            "txn_id": request["txn_id"],
            "kiosk": request["kiosk"],
            "psn_no": psn_no,
            "bill_id": bill_id,
            "setl_time": now,
            "result": breakdown,
        }

    # ------------------------------------------------------------ 2208 cancel
    def cancel(self, ledger: Ledger, request: dict[str, Any], now: int) -> Handled:
        stored = self._own_settlement(ledger, request)  # another kiosk is told nothing of it
        self._check_setl_id(stored, request)
        # Another day's settlement, or one with later settlements of the same resident on top:
        # the ledger refuses and says why.
        try:
            ledger.cancel(stored.txn_id, request["kiosk"], self.today(now).isoformat())
        except UnknownTxn:
            raise ProtocolError("not_found", f"no settlement {stored.txn_id}") from None
        except PermissionError as exc:
            raise ProtocolError("cancel_refused", str(exc)) from None
        reply = messages.reply(request, "cancel_reply", now, txn_id=stored.txn_id,
                               setl_id=stored.setl_id)
        return Handled(reply, "cancelled", {"txn_id": stored.txn_id, "setl_id": stored.setl_id})

    # ------------------------------------------------------------ 5203 settlement query
    def settlement_query(self, ledger: Ledger, request: dict[str, Any], now: int) -> Handled:
        stored = ledger.get_settlement(request["txn_id"])
        if stored is None or stored.kiosk_id != request["kiosk"]:
            reply = messages.reply(request, "settlement_query_reply", now,
                                   txn_id=request["txn_id"], status="not_found")
        else:
            status = "cancelled" if stored.status == "cancelled" else "settled"
            reply = messages.reply(request, "settlement_query_reply", now,
                                   txn_id=stored.txn_id, status=status, settlement=stored.signed)
        return Handled(reply)

    # ------------------------------------------------------------ receipt printed
    def receipt_printed(self, ledger: Ledger, request: dict[str, Any], now: int) -> Handled:
        # The usual case in one statement: this kiosk's settlement, under this setl_id.
        if not ledger.mark_receipt_printed(request["txn_id"], kiosk_id=request["kiosk"],
                                           setl_id=request["setl_id"]):
            stored = self._own_settlement(ledger, request)  # which of the two it is not
            self._check_setl_id(stored, request)
            ledger.mark_receipt_printed(stored.txn_id)
        return Handled(messages.reply(request, "receipt_printed_reply", now,
                                      txn_id=request["txn_id"]))

    # ------------------------------------------------------------ 3201 reconcile
    def reconcile(self, ledger: Ledger, request: dict[str, Any], now: int) -> Handled:
        day = calendar_day(request["date"], "the day")  # 2026-02-30 matches the pattern
        if day > self.today(now):  # no settlement yet: "balanced" would vouch for nothing
            raise ProtocolError("invalid", f"the day {request['date']} has not come yet "
                                f"(today is {self.today(now).isoformat()})")
        ours = {key: int(value) for key, value in
                totals_for(ledger, request["date"], kiosk_id=request["kiosk"]).items()
                if key in TOTALS_FIELDS}
        theirs = request["totals"]
        mismatched = sorted(key for key in TOTALS_FIELDS if ours.get(key) != theirs.get(key))
        reply = messages.reply(request, "reconcile_reply", now, date=request["date"],
                               stmt_rslt=1 if mismatched else 0, totals=ours)
        if not mismatched:
            return Handled(reply, "reconciled", {"date": request["date"]})
        return Handled(reply, "reconcile_mismatch", {
            "date": request["date"], "mismatched": mismatched,
            "kiosk_totals": theirs, "gateway_totals": ours,
        }, warn=True)

    # ------------------------------------------------------------ helpers
    def _card_holder(self, ledger: Ledger, request: dict[str, Any], now: int) -> Person:
        """The person the request names, if theirs is the card its kiosk read last: a kiosk
        serves the resident at it, and its key alone (a stolen board's) opens no one's bills.
        Not read there and not insured are one answer, so it learns nothing of who exists."""
        person = ledger.card_holder(request["kiosk"], request["psn_no"],
                                    now - CARD_READ_VALID_S)
        if person is None:
            raise self._not_card_holder(request)
        return person

    @staticmethod
    def _not_card_holder(request: dict[str, Any]) -> ProtocolError:
        return ProtocolError("unknown_person", f"{request['psn_no']} is not the insured "
                             "person whose card this kiosk read last")

    @staticmethod
    def _checked_bill(person: Person, bill: Bill | None, bill_id: str) -> Bill:
        """`bill` (as read for `bill_id`), if it is the person's and still to be settled."""
        if bill is None or bill.psn_no != person.psn_no:
            raise ProtocolError("unknown_bill", f"no bill {bill_id} for this person")
        if bill.status != "pending":
            raise ProtocolError("bill_settled", f"bill {bill_id} is already settled")
        return bill

    def _policy_for(self, claim: Claim) -> Policy:
        """The policy of the resident's enrolment region with the catalogue of the region
        treated in (PolicySet.for_claim), or a refusal naming the enrolment region."""
        policy = self.policies.for_claim(claim.insu_admdvs, claim.mdtrtarea_admvs)
        if policy is None:  # "invalid", as for an uncovered insurance type: the counter's job
            raise ProtocolError("invalid", f"{claim.psn_no} is insured in region "
                                f"{claim.insu_admdvs}, which no policy of this gateway "
                                "covers: the counter settles it")
        return policy

    def _settled_by(self, claim: Claim) -> dict[str, str]:
        """What a settlement records of the rules it was settled by: the enrolment region's
        policy (name, digest) and, when the treatment region's policy gave the catalogue, that
        one's too. The digests are `kiosk policy show`'s, and the serving records' (rules.py)."""
        sources = self.policies.sources(claim.insu_admdvs, claim.mdtrtarea_admvs)
        assert sources is not None  # _policy_for refused the claim otherwise
        enrolment, treatment = sources
        settled_by = {"name": enrolment.name, "digest": self.policy_digests[enrolment.name]}
        if treatment is not enrolment:
            settled_by["catalogue"] = treatment.name
            settled_by["catalogue_digest"] = self.policy_digests[treatment.name]
        return settled_by

    def _claim(self, person: Person, bill: Bill, now: int) -> Claim:
        if person.insutype not in SETTLED_INSURANCE_TYPES:  # a record from before the check
            raise ProtocolError("invalid", f"{person.psn_no} has insurance type "
                                f"{person.insutype}, which this gateway's policy does not "
                                "settle: the counter settles it")
        today = self.today(now)
        if bill.date > today.isoformat():
            # Treatment cannot come after its settlement: this gateway's clock is behind (a
            # host without its time: it would settle into that year's accumulations, with
            # that year's caps) or the bill's date is wrong. The counter settles it.
            raise ProtocolError("invalid", f"bill {bill.bill_id} is dated {bill.date}, after "
                                f"today ({today.isoformat()}) by the gateway's clock: the "
                                "clock or the bill's date is wrong")
        return Claim.from_bill(person, bill, today.isoformat())

    def _own_settlement(self, ledger: Ledger, request: dict[str, Any]) -> Settlement:
        stored = ledger.get_settlement(request["txn_id"])
        if stored is None or stored.kiosk_id != request["kiosk"]:
            raise ProtocolError("not_found", f"no settlement {request['txn_id']} from this kiosk")
        return stored

    @staticmethod
    def _check_setl_id(stored: Settlement, request: dict[str, Any]) -> None:
        if stored.setl_id != request["setl_id"]:
            raise ProtocolError(
                "invalid",
                f"txn_id {stored.txn_id} was settled as {stored.setl_id}, "
                f"not {request['setl_id']}",
            )


def _bill_record(bill: Bill) -> dict[str, Any]:
    return {
        "bill_id": bill.bill_id,
        "fixmedins_name": bill.fixmedins_name,
        "mdtrtarea_admvs": bill.mdtrtarea_admvs,
        "med_type": bill.med_type,
        "hosp_lv": bill.hosp_lv,
        "referral": bill.referral,
        "date": bill.date,
        "medfee_sumamt": bill.medfee_sumamt,
    }
