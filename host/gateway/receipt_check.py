"""`kiosk gateway verify-receipt`: is a printed receipt genuine, and does the ledger agree?

A receipt's QR code holds the gateway-signed settlement (the COSE_Sign1 of the ledger's `signed`
column) as unpadded base64url text (firmware/app/receipt.py Base64url). A clerk scans it; this
module decodes the text, verifies the signature with the gateway keys the ledger holds (as the
audit does: audit.open_signed_settlement) and compares the record with the ledger's settlement.

Genuine means: signed by a gateway key of this ledger (revoked only after it signed), the same
settlement in the ledger, field for field, and not cancelled since. The ledger's own rows are
trusted here; `kiosk gateway audit` is what checks them against the audit chain and signatures.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from onestop.host.settlement.money import format_yuan
from onestop.protocol import cbor, cose, messages
from onestop.protocol.errors import ProtocolError

from .audit import SignedSettlementError, open_signed_settlement, record_differences
from .bills import UNSHOWABLE
from .config import SETTLEMENT_TIMEZONE
from .ledger.base import KeyRecord, Ledger, Settlement
from .masking import mask_id

# Either alphabet: a phone app may hand over standard base64 (+/) after "helpfully" converting.
NOT_BASE64 = re.compile(r"[^A-Za-z0-9_+/-]")
SETL_ID_DAY = re.compile(r"S([0-9]{4})([0-9]{2})([0-9]{2})")  # handlers.py: "S" + YYYYMMDD + id

# The receipt's money lines in its order (firmware/app/receipt.py SHARES, then what is paid).
SHARES: tuple[tuple[str, str, str], ...] = (
    ("medfee_sumamt", "费用总额", "total"),
    # how the funds' shares were worked out: what no fund covers, the class-B share paid
    # first, what is in scope, the deductible (a clerk asked "why do I pay so much?")
    ("fulamt_ownpay_amt", "全自费", "not covered"),
    ("preselfpay_amt", "先行自付", "class-B share"),
    ("inscp_scp_amt", "范围内", "in scope"),
    ("act_pay_dedc", "起付线", "deductible"),
    ("hifp_pay", "医保统筹", "basic insurance"),
    ("hifmi_pay", "大病保险", "serious illness"),
    ("maf_pay", "医疗救助", "medical assistance"),
    ("fund_pay_sumamt", "基金支付", "all funds"),
    ("psn_cash_pay", "个人支付", "resident pays"),
)


GENUINE = "GENUINE 真实有效: "
NOT_VALID = "NOT VALID 无效: "
MAX_TEXT_CHARS = 16_384  # a QR code holds under 3 KB: anything longer is no receipt's text
SHOWN_CHARS = 60  # of any one text field the receipt claims, when printed


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A field of the receipt as safe to print on a clerk's terminal: control and invisible
    characters escaped (a forged text could carry newlines and terminal escapes that draw a
    fake GENUINE report and hide the real verdict) and cut to `limit` characters."""
    text = str(value)
    out = []
    for char in text[:limit]:
        if unicodedata.category(char) in UNSHOWABLE:  # what import-bills refuses too
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    if len(text) > limit:
        out.append(f"…({len(text) - limit} more characters)")
    return "".join(out)


class ReceiptTextError(ValueError):
    """Text that is not a settlement receipt's QR code; the message says what it is instead."""


@dataclass
class Check:
    """What verify-receipt found out; `reasons` empty means genuine."""

    record: dict[str, Any]  # the settlement_record the receipt carries
    kid: str
    key_status: str | None = None  # "active" | "revoked"; None: not a gateway key of ours
    revoked_at: int | None = None  # Unix seconds, when the ledger revoked the key
    signature_ok: bool = False
    ledger: str | None = None  # "matches" | "not_found" | "differs" | "cancelled"
    differences: list[str] = field(default_factory=list)
    name: str | None = None
    ssn_masked: str | None = None
    clinic: str | None = None
    policy: dict[str, Any] | None = None  # what the ledger's settled event says settled it
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def genuine(self) -> bool:
        return not self.reasons


# ---------------------------------------------------------------------------- the text
def decode_text(text: str) -> bytes:
    """The bytes a receipt's QR text stands for. Whitespace anywhere is dropped (a scanner may
    end with a newline, a paste may wrap); padding and the +/ alphabet are accepted."""
    if len(text) > MAX_TEXT_CHARS:
        raise ReceiptTextError(f"{len(text)} characters is far too long for a receipt's QR "
                               "code (it holds under 3,000)")
    compact = "".join(text.split())
    if not compact:
        raise ReceiptTextError("no text: scan the receipt's QR code, or paste its text")
    body = compact.rstrip("=")
    padding = len(compact) - len(body)
    bad = NOT_BASE64.search(body)
    if bad:
        raise ReceiptTextError(f"the text is not base64url: it holds {shown(bad.group())!r}")
    letters = [char for char in body if char.isalpha()]
    if len(letters) > 40 and (body.upper() == body or body.lower() == body):
        # hundreds of random base64 letters are never all one case: a scanner typed it so
        raise ReceiptTextError("all its letters are in one case, which a receipt's QR text "
                               "never is: was Caps Lock on when it was scanned?")
    if len(body) % 4 == 1 or padding > 2 or (padding and len(compact) % 4):
        raise ReceiptTextError(f"the text is not base64url: {len(body)} characters cannot be "
                               "whole bytes (cut short when scanned?)")
    urlsafe = body.replace("+", "-").replace("/", "_")
    try:
        data = base64.urlsafe_b64decode(urlsafe + "=" * (-len(urlsafe) % 4))
    except binascii.Error as exc:  # not expected after the checks above
        raise ReceiptTextError(f"the text is not base64url: {exc}") from None
    # The decoder ignores the unused low bits of the last character: a changed last character
    # would decode to the same bytes. A kiosk never prints that, so it is no receipt's text;
    # which it is told only of a receipt's text (random text is told it is none).
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != urlsafe:
        settlement_of(data)  # its ReceiptTextError if the bytes are no signed settlement
        raise ReceiptTextError("the text is not base64url as a receipt prints it: its last "
                               "character was changed")
    return data


def settlement_of(data: bytes) -> tuple[str, dict[str, Any]]:
    """(kid, settlement_record) the bytes claim, not yet verified; ReceiptTextError if they are
    no signed settlement at all."""
    try:
        sign1 = cose.decode1(data)
    except ProtocolError as exc:
        raise ReceiptTextError("not a receipt's QR code: no signed settlement (COSE_Sign1) in "
                               f"it, or cut short ({exc})") from None
    try:
        record = messages.validate_settlement(cbor.loads(sign1.payload))
    except ProtocolError as exc:
        raise ReceiptTextError("not a receipt's QR code: what it carries is no settlement, or "
                               f"was altered ({exc})") from None
    # The gateway never numbers a settlement or stores a bill with NUL in its text (and
    # PostgreSQL could not even look one up): no receipt carries one.
    if any("\x00" in value for value in record.values() if isinstance(value, str)):
        raise ReceiptTextError("not a receipt's QR code: its settlement holds a NUL character")
    return sign1.kid, record


# ---------------------------------------------------------------------------- the check
def check(ledger: Ledger, data: bytes) -> Check:
    """Verify signed settlement bytes against `ledger`'s gateway keys and settlements."""
    kid, record = settlement_of(data)
    result = Check(record=record, kid=kid)
    keys = {k.kid: k for k in ledger.list_keys()}
    gateway_keys = {k.kid: k.public_key for k in keys.values() if k.role == "gateway"}
    try:
        _, record = open_signed_settlement(data, gateway_keys)
    except SignedSettlementError as exc:
        result.reasons.append(_key_problem(exc, keys.get(kid)))
    else:
        result.signature_ok = True
        result.key_status = keys[kid].status
        # Who the resident is only for a receipt the gateway signed: anyone can type a psn_no
        # into a text, and a lookup of a resident is recorded (`kiosk gateway lookup`).
        _describe_person(ledger, record, result)
    stored = find_settlement(ledger, record)
    event = None if stored is None else ledger.settled_event(stored.txn_id)
    if result.signature_ok and result.key_status != "active":
        _check_revocation(ledger, keys[kid], record, result, event)
    if stored is None:
        result.ledger = "not_found"
        if result.signature_ok:  # else it is not ours anyway: one reason is enough
            result.reasons.append(f"settlement {shown(record['setl_id'])} is signed but not in "
                                  "this ledger (another site's ledger, or lost from this one)")
        return result
    result.differences = _differences(stored.record(), record)
    if event is not None and isinstance(event.get("policy"), dict):
        result.policy = event["policy"]
    # Unsigned claims are judged by their signature alone; what the ledger says is a note.
    found = result.reasons if result.signature_ok else result.notes
    if result.differences:
        result.ledger = "differs"
        found.append(("it differs from the ledger in " if result.signature_ok
                      else f"the ledger's {stored.setl_id} differs in ")
                     + ", ".join(_described(d, stored, record) for d in result.differences))
    elif stored.status == "cancelled":
        result.ledger = "cancelled"
    else:
        result.ledger = "matches"
    if stored.status == "cancelled":
        found.append(f"settlement {stored.setl_id} was cancelled: the ledger shows it "
                     "reversed, so the receipt is no longer valid")
    return result


def _key_problem(exc: SignedSettlementError, known: KeyRecord | None) -> str:
    if exc.kind == "unknown_key":
        if known is not None:  # a kiosk's key: it never vouches for a settlement
            return f"signed by {known.role} key '{shown(exc.kid)}', not by a gateway"
        return (f"signed by '{shown(exc.kid)}', which is not a gateway key this ledger holds "
                "(forged, or another site's gateway)")
    if exc.kind == "bad_signature":
        return (f"the signature does not verify under gateway key {shown(exc.kid)} (forged, or the "
                "text was altered)")
    return f"not a gateway-signed settlement ({shown(exc.detail or exc.kind, 200)})"


def _check_revocation(ledger: Ledger, key: KeyRecord, record: dict[str, Any],
                      result: Check, settled: dict[str, Any] | None) -> None:
    """A revoked key still vouches for what it signed before its revocation, not after. The
    ledger's order tells (the settlement's `settled` event before the key's revocation), even
    within one second; the times only for a settlement the ledger does not hold."""
    revocation = last_revocation(ledger, key.kid)
    result.revoked_at = None if revocation is None else revocation["at"]
    if revocation is None:
        result.notes.append(f"gateway key {key.kid} is revoked; the audit log does not say "
                            "when (run `kiosk gateway audit`)")
        return
    if settled is not None and isinstance(settled.get("seq"), int):
        before = settled["seq"] < revocation["seq"]
    else:
        before = record["setl_time"] < revocation["at"]
    if before:
        result.notes.append(f"gateway key {key.kid} was revoked on "
                            f"{china_time(revocation['at'])}, after it signed this settlement")
    else:
        result.reasons.append(f"signed with gateway key {key.kid} after it was revoked (on "
                              f"{china_time(revocation['at'])})")


def last_revocation(ledger: Ledger, kid: str) -> dict[str, Any] | None:
    """The audit log's last key_revoked event of `kid` (its body: at, seq...), None if none
    (the revocations alone are read, by their index: not the whole log)."""
    found = None
    for event in ledger.key_revocations():
        body = json.loads(event["body"])
        if body.get("kid") == kid and isinstance(body.get("at"), int) \
                and isinstance(body.get("seq"), int):
            found = body
    return found


def find_settlement(ledger: Ledger, record: dict[str, Any]) -> Settlement | None:
    """The ledger's settlement numbered record's setl_id; failing that, the one with its txn_id
    (whose differing setl_id is then reported)."""
    by_txn = ledger.get_settlement(record["txn_id"])
    if by_txn is not None and by_txn.setl_id == record["setl_id"]:
        return by_txn
    # The one numbered so (by the index of setl_id, not the whole day's settlements), if it
    # was booked on a day the receipt may be: the gateway's (the date in the setl_id) or
    # China's for setl_time.
    numbered = ledger.settlement_numbered(record["setl_id"])
    if numbered is not None and numbered.setl_date in _days(record):
        return numbered
    return by_txn


def _days(record: dict[str, Any]) -> list[str]:
    """The days the settlement may be booked on, each once."""
    days = []
    when = china_datetime(record["setl_time"])
    if when is not None:
        days.append(when.date().isoformat())
    numbered = SETL_ID_DAY.match(record["setl_id"])
    if numbered:
        try:
            day = date(*(int(part) for part in numbered.groups())).isoformat()
        except ValueError:  # not a date after all
            day = None
        if day is not None and day not in days:
            days.append(day)
    return days


def _differences(row: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """The differing fields, a result's by name (result.psn_cash_pay): what the clerk checks."""
    found = []
    for name in record_differences(row, record):
        if name == "result" and isinstance(row.get(name), dict):
            found += [f"result.{k}" for k in record_differences(row[name], record[name])]
        else:
            found.append(name)
    return found


def _described(name: str, stored: Settlement, record: dict[str, Any]) -> str:
    """`name` with the receipt's value and the ledger's, money in yuan."""
    if name.startswith("result."):
        key = name.split(".", 1)[1]
        mine, theirs = record["result"].get(key), stored.result.get(key)
        if isinstance(mine, int) and isinstance(theirs, int):
            return f"{name} (receipt {format_yuan(mine)}, ledger {format_yuan(theirs)} yuan)"
        return name
    return (f"{name} (receipt {shown(record.get(name))}, ledger "
            f"{shown(stored.record().get(name))})")


def _describe_person(ledger: Ledger, record: dict[str, Any], result: Check) -> None:
    person = ledger.get_person(record["psn_no"])
    if person is not None:
        result.name = person.name
        result.ssn_masked = mask_id(person.ssn)  # never the full ID number
    bill = ledger.get_bill(record["bill_id"])
    if bill is not None and bill.psn_no == record["psn_no"]:
        result.clinic = f"{bill.fixmedins_name}, {bill.date}"


# ---------------------------------------------------------------------------- time
def _china() -> tzinfo:
    try:
        return ZoneInfo(SETTLEMENT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):  # no tz database: China keeps UTC+8 all year
        return timezone(timedelta(hours=8))


def china_datetime(seconds: int) -> datetime | None:
    """None for a time no calendar holds (a signed uint may be up to 2**64 - 1)."""
    try:
        return datetime.fromtimestamp(seconds, UTC).astimezone(_china())
    except (OverflowError, OSError, ValueError):
        return None


def china_time(seconds: int) -> str:
    """As the receipt shows it (firmware/app/clock.py show): YYYY-MM-DD HH:MM, China time."""
    when = china_datetime(seconds)
    return when.strftime("%Y-%m-%d %H:%M") if when else f"{seconds} (no date)"


# ---------------------------------------------------------------------------- output
def verdict(result: Check) -> str:
    if result.reasons:
        return NOT_VALID + "; ".join(result.reasons)
    note = "; ".join(result.notes)
    return (GENUINE + "signed by this ledger's gateway (key "
            f"{result.kid}, {result.key_status}) and matches the ledger"
            + (f"; {note}" if note else ""))


def format_check(result: Check) -> str:
    """For a person at a counter: who, what, when, the money in yuan, then the verdict."""
    record = result.record
    money = record["result"]
    signer = (f"gateway key {shown(result.kid)} ({result.key_status})" if result.signature_ok
              else f"'{shown(result.kid)}': NOT verified")
    ledger = {"matches": "matches", "not_found": "not in this ledger",
              "differs": "differs", "cancelled": "cancelled (reversed)"}.get(result.ledger or "",
                                                                           "-")
    if not result.signature_ok and result.ledger == "matches":  # a copy is not a receipt
        ledger += " (but the receipt's signature does not check)"
    resident = ("not in this ledger" if result.signature_ok
                else "not looked up: the signature does not check")
    if result.name is not None:
        resident = f"{shown(result.name)}  ID {result.ssn_masked}"
    lines = [
        # the answer first, where a clerk looks, and again last
        verdict(result),
        f"settlement  {shown(record['setl_id'])}  (kiosk transaction {shown(record['txn_id'])})",
        f"kiosk       {shown(record['kiosk'])}",
        f"time        {china_time(record['setl_time'])} China time",
        f"resident    {resident}  ({shown(record['psn_no'])})",
        f"bill        {shown(record['bill_id'])}"
        + (f"  ({shown(result.clinic, 120)})" if result.clinic else ""),
        f"signed by   {signer}",
        f"ledger      {ledger}",
        *([f"policy      {policy_line(result.policy)}"] if result.policy else []),
        # unsigned amounts are only what the text claims: never let them read as the ledger's
        "amounts (yuan):" if result.signature_ok else "amounts (yuan) the text claims, unverified:",
    ]
    lines += amount_lines(money, "  ")
    lines += [f"note: {note}" for note in result.notes if result.reasons]
    lines.append(verdict(result))
    return "\n".join(lines)


def amount_lines(money: dict[str, Any], indent: str) -> list[str]:
    """A settlement's money, one share a line in the receipt's order, in yuan, aligned."""
    width = max(len(en) for _, _, en in SHARES)
    amount_width = max(len(format_yuan(money[key])) for key, _, _ in SHARES)
    # The Chinese name last: its double-width characters would skew later columns.
    return [f"{indent}{en:<{width}}  {format_yuan(money[key]):>{amount_width}}  {zh}"
            for key, zh, en in SHARES]


def policy_line(policy: dict[str, Any]) -> str:
    """The rules a settlement was settled by, as `kiosk policy show` names and digests them."""
    line = f"{shown(policy.get('name'))} (digest {shown(policy.get('digest'))})"
    if policy.get("catalogue"):
        line += (f", catalogue of {shown(policy['catalogue'])} "
                 f"(digest {shown(policy.get('catalogue_digest'))})")
    return line


def check_json(result: Check) -> dict[str, Any]:
    """The check as plain data; money in integer fen, as in the ledger."""
    record = result.record
    return {
        "genuine": result.genuine,
        "verdict": verdict(result),
        "reasons": result.reasons,
        "notes": result.notes,
        "setl_id": record["setl_id"],
        "txn_id": record["txn_id"],
        "kiosk": record["kiosk"],
        "setl_time": record["setl_time"],
        "setl_time_china": china_time(record["setl_time"]),
        "psn_no": record["psn_no"],
        "name": result.name,
        "ssn_masked": result.ssn_masked,
        "bill_id": record["bill_id"],
        "result": record["result"],
        "kid": result.kid,
        "signature_ok": result.signature_ok,
        "key_status": result.key_status,
        "revoked_at": result.revoked_at,
        "ledger": result.ledger,
        "differences": result.differences,
        "policy": result.policy,
    }
