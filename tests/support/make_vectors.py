"""Build protocol/vectors/*.json from reference implementations, not from protocol/ itself.

CBOR bytes come from cbor2 (canonical=True), signatures from `cryptography`, frames from the
textbook COBS below, so the vectors check protocol/ against independent code. Run

    .venv/bin/python tests/support/make_vectors.py

after changing a case; tests/protocol/test_vectors.py fails while the files are out of date.
CPython only.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.path.insert(0, str(Path(__file__).parent))
from edn import diag, diag_hex  # noqa: E402

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors"
MAX_FRAME = 4096


# ---------------------------------------------------------------- reference helpers
def dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def published_seed(name: str) -> bytes:
    """A published test key: never provision it on a real kiosk."""
    return hashlib.sha256(b"onestop test key " + name.encode()).digest()


def public_key(seed: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign1(payload: bytes, kid: str, seed: bytes, protected: bytes = b"\xa1\x01\x27") -> bytes:
    tbs = dumps(["Signature1", protected, b"", payload])
    sig = Ed25519PrivateKey.from_private_bytes(seed).sign(tbs)
    return dumps(cbor2.CBORTag(18, [protected, {4: kid.encode()}, payload, sig]))


def cobs(data: bytes) -> bytes:
    """Textbook COBS (Cheshire & Baker): blocks of up to 254 non-zero bytes."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(byte)
            if len(block) == 254:
                out += b"\xff" + block
                block = bytearray()
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def frame(payload: bytes) -> bytes:
    return cobs(payload + struct.pack("<I", binascii.crc32(payload))) + b"\x00"


# ---------------------------------------------------------------- keys and example values
KIOSK = "HALL-0101"
GATEWAY_KID = "gw-2026-01"
KIOSK_SEED = published_seed(KIOSK)
GATEWAY_SEED = published_seed(GATEWAY_KID)
OTHER_SEED = published_seed("HALL-0102")
TS = 1767228000  # 2026-01-01 08:40 +08:00
RID = bytes.fromhex("5c1e0a93d2774b08")
TXN = "T-HALL0101-000041-7Q2X"
PSN = "430000110000001234"
BILL = "B2026-000731"
SETL = "S20260101000731"

BREAKDOWN = {  # an inpatient stay at a county hospital, resident on minimum subsistence (dibao)
    "medfee_sumamt": 1286000, "fulamt_ownpay_amt": 52000, "preselfpay_amt": 61000,
    "inscp_scp_amt": 1173000, "act_pay_dedc": 50000, "hifp_pay": 842250, "hifmi_pay": 0,
    "maf_pay": 250000, "fund_pay_sumamt": 1092250, "psn_cash_pay": 193750,
}
TOTALS = {"count": 17, "medfee_sumamt": 9204500, "hifp_pay": 5910300, "hifmi_pay": 412000,
          "maf_pay": 1204000, "fund_pay_sumamt": 7526300, "psn_cash_pay": 1678200}
CARD = {"ssn": "43012219560714002X", "card_no": "K43012256", "card_id": "430122D15600000E",
        "name": "张秀英", "issue": "2019-03-12", "expiry": "2029-03-12"}
BILLS = [
    {"bill_id": BILL, "fixmedins_name": "长沙县人民医院", "mdtrtarea_admvs": "430121",
     "med_type": "inpatient", "hosp_lv": 2, "referral": True, "date": "2025-12-28",
     "medfee_sumamt": 1286000},
    {"bill_id": "B2026-000802", "fixmedins_name": "黄兴镇卫生院", "mdtrtarea_admvs": "430121",
     "med_type": "outpatient_chronic", "hosp_lv": 1, "referral": False, "date": "2025-12-30",
     "medfee_sumamt": 18600},
]
RECORD = {"setl_id": SETL, "txn_id": TXN, "kiosk": KIOSK, "psn_no": PSN, "bill_id": BILL,
          "setl_time": TS + 2, "result": BREAKDOWN}
SETTLEMENT = sign1(dumps(RECORD), GATEWAY_KID, GATEWAY_SEED)
# A gateway_cert for the test gateway key, signed by a test authority key (key rotation).
AUTHORITY_KID = "auth-2026"
AUTHORITY_SEED = published_seed(AUTHORITY_KID)
CERT_RECORD = {"kid": GATEWAY_KID, "key": public_key(GATEWAY_SEED), "serial": 2}
CERT = sign1(dumps(CERT_RECORD), AUTHORITY_KID, AUTHORITY_SEED)


def header(**over: Any) -> dict:
    msg = {"v": [1, 0], "kiosk": KIOSK, "ctr": 41, "rid": RID, "ts": TS}
    msg.update(over)
    return msg


def message(t: str, **body: Any) -> dict:
    msg = header(t=t)
    msg.update(body)
    return msg


VALID_MESSAGES: list[tuple[str, dict]] = [
    ("sign_in", message("sign_in", fw="onestop-fw 0.1.0", board="esp32-s3 kiosk rev B")),
    ("sign_in_reply", message("sign_in_reply", sign_no="SN20260101000041", now=TS,
                              gateway="gw-county-01", policy="2026 Changsha county residents")),
    ("sign_in_reply with the gateway key's cert",
     message("sign_in_reply", sign_no="SN20260101000041", now=TS, gateway=GATEWAY_KID,
             policy="2026 Changsha county residents", cert=CERT)),
    ("person_info", message("person_info", card=CARD)),
    ("person_info_reply", message("person_info_reply", psn_no=PSN, name="张秀英",
                                  ssn_masked="430122********002X", insutype=390,
                                  insu_admdvs="430121", assistance="dibao")),
    ("pending_bills", message("pending_bills", psn_no=PSN)),
    ("pending_bills_reply", message("pending_bills_reply", psn_no=PSN, bills=BILLS)),
    ("pending_bills_reply none waiting", message("pending_bills_reply", psn_no=PSN, bills=[])),
    ("pre_settle", message("pre_settle", psn_no=PSN, bill_id=BILL)),
    ("pre_settle_reply", message("pre_settle_reply", bill_id=BILL, result=BREAKDOWN)),
    ("settle", message("settle", psn_no=PSN, bill_id=BILL, txn_id=TXN, confirmed_cash=193750)),
    ("settle_reply", message("settle_reply", txn_id=TXN, settlement=SETTLEMENT)),
    ("cancel", message("cancel", txn_id=TXN, setl_id=SETL)),
    ("cancel_reply", message("cancel_reply", txn_id=TXN, setl_id=SETL)),
    ("settlement_query", message("settlement_query", txn_id=TXN)),
    ("settlement_query_reply", message("settlement_query_reply", txn_id=TXN, status="settled",
                                       settlement=SETTLEMENT)),
    ("settlement_query_reply cancelled", message("settlement_query_reply", txn_id=TXN,
                                                 status="cancelled", settlement=SETTLEMENT)),
    ("settlement_query_reply not_found", message("settlement_query_reply", txn_id=TXN,
                                                 status="not_found")),
    ("receipt_printed", message("receipt_printed", txn_id=TXN, setl_id=SETL)),
    ("receipt_printed_reply", message("receipt_printed_reply", txn_id=TXN)),
    ("reconcile", message("reconcile", date="2026-01-01", totals=TOTALS)),
    ("reconcile_reply", message("reconcile_reply", date="2026-01-01", stmt_rslt=0,
                                totals=TOTALS)),
    ("error", message("error", code="replay", msg="counter 41 already used", now=TS)),
    ("error for an unauthenticated frame", header(kiosk="", ctr=0, rid=bytes(8), t="error",
                                                  code="bad_signature",
                                                  msg="signature does not verify")),
    ("sign_in at a later minor version", header(v=[1, 3], t="sign_in", fw="onestop-fw 0.2.0",
                                                board="esp32-s3 kiosk rev B")),
    ("sign_in at the largest counter", message("sign_in", ctr=2**64 - 1, fw="f", board="b")),
]


def _changed(base: dict, path: str, value: Any) -> dict:
    """A deep copy of `base` with the field at dotted `path` set (or removed if value is DROP)."""
    msg = cbor2.loads(dumps(base))
    parts = path.split(".")
    target = msg
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last: Any = int(parts[-1]) if parts[-1].lstrip("-").isdigit() else parts[-1]
    if value is DROP:
        del target[last]
    else:
        target[last] = value
    return msg


DROP = object()
_BY_NAME = dict(VALID_MESSAGES)

# (name, base message, field path, new value or DROP, expected code, error path, cddl rule)
INVALID_MESSAGES: list[tuple[str, str, str, Any, str, str | None, str]] = [
    ("major version 2", "sign_in", "v", [2, 0], "unsupported_version", None, "sign_in"),
    ("version missing", "sign_in", "v", DROP, "invalid", "sign_in.v", "sign_in"),
    ("version not an array", "sign_in", "v", 1, "invalid", "sign_in.v", "sign_in"),
    ("version with three parts", "sign_in", "v", [1, 0, 0], "invalid", "sign_in.v", "sign_in"),
    ("unknown message type", "sign_in", "t", "sign_out", "invalid", "message.t", "frame"),
    ("message type missing", "sign_in", "t", DROP, "invalid", "message.t", "frame"),
    ("field missing", "settle", "confirmed_cash", DROP, "invalid", "settle.confirmed_cash",
     "settle"),
    ("unexpected field", "settle", "amount", 193750, "invalid", "settle.amount", "settle"),
    ("field of another message type", "settle_reply", "fw", "x", "invalid", "settle_reply.fw",
     "settle_reply"),
    ("integer map key", "settle", "7", 1, "invalid", "settle.7", "settle"),
    ("negative fen", "settle", "confirmed_cash", -1, "invalid", "settle.confirmed_cash",
     "settle"),
    ("money as text", "settle", "confirmed_cash", "1937.50", "invalid", "settle.confirmed_cash",
     "settle"),
    ("counter as boolean", "sign_in", "ctr", True, "invalid", "sign_in.ctr", "sign_in"),
    ("negative counter", "sign_in", "ctr", -41, "invalid", "sign_in.ctr", "sign_in"),
    ("request id of 7 bytes", "sign_in", "rid", RID[:7], "invalid", "sign_in.rid", "sign_in"),
    ("request id as text", "sign_in", "rid", RID.hex()[:8], "invalid", "sign_in.rid", "sign_in"),
    ("kiosk id of 33 characters", "sign_in", "kiosk", "K" * 33, "invalid", "sign_in.kiosk",
     "sign_in"),
    ("kiosk id with a space", "sign_in", "kiosk", "HALL 0101", "invalid", "sign_in.kiosk",
     "sign_in"),
    ("kiosk id empty outside an error", "sign_in", "kiosk", "", "invalid", "sign_in.kiosk",
     "sign_in"),
    ("kiosk id with a trailing newline", "sign_in", "kiosk", KIOSK + "\n", "invalid",
     "sign_in.kiosk", "sign_in"),
    ("txn id of 7 characters", "settle", "txn_id", "T-00041", "invalid", "settle.txn_id",
     "settle"),
    ("txn id of 41 characters", "settle", "txn_id", "T" * 41, "invalid", "settle.txn_id",
     "settle"),
    ("date without leading zero", "reconcile", "date", "2026-1-01", "invalid", "reconcile.date",
     "reconcile"),
    ("date with a time", "reconcile", "date", "2026-01-01T00:00", "invalid", "reconcile.date",
     "reconcile"),
    ("ssn with lower-case check letter", "person_info", "card.ssn", "43012219560714002x",
     "invalid", "person_info.card.ssn", "person_info"),
    ("ssn of 17 characters", "person_info", "card.ssn", "4301221956071400X", "invalid",
     "person_info.card.ssn", "person_info"),
    ("card number in lower case", "person_info", "card.card_no", "k43012256", "invalid",
     "person_info.card.card_no", "person_info"),
    ("card data missing the name", "person_info", "card.name", DROP, "invalid",
     "person_info.card.name", "person_info"),
    ("card data not a map", "person_info", "card", [CARD["ssn"]], "invalid", "person_info.card",
     "person_info"),
    ("enrolment region of 5 digits", "person_info_reply", "insu_admdvs", "43012", "invalid",
     "person_info_reply.insu_admdvs", "person_info_reply"),
    ("unknown assistance category", "person_info_reply", "assistance", "poor", "invalid",
     "person_info_reply.assistance", "person_info_reply"),
    ("person number with a dash", "pending_bills", "psn_no", "4300-0011", "invalid",
     "pending_bills.psn_no", "pending_bills"),
    ("hospital level 4", "pending_bills_reply", "bills.0.hosp_lv", 4, "invalid",
     "pending_bills_reply.bills[0].hosp_lv", "pending_bills_reply"),
    ("referral as 1", "pending_bills_reply", "bills.1.referral", 1, "invalid",
     "pending_bills_reply.bills[1].referral", "pending_bills_reply"),
    ("bills not an array", "pending_bills_reply", "bills", BILLS[0], "invalid",
     "pending_bills_reply.bills", "pending_bills_reply"),
    ("breakdown missing a fund", "pre_settle_reply", "result.hifp_pay", DROP, "invalid",
     "pre_settle_reply.result.hifp_pay", "pre_settle_reply"),
    ("breakdown with negative assistance", "pre_settle_reply", "result.maf_pay", -5, "invalid",
     "pre_settle_reply.result.maf_pay", "pre_settle_reply"),
    ("breakdown with an extra fund", "pre_settle_reply", "result.acct_pay", 0, "invalid",
     "pre_settle_reply.result.acct_pay", "pre_settle_reply"),
    ("settlement as text", "settle_reply", "settlement", "signed", "invalid",
     "settle_reply.settlement", "settle_reply"),
    ("settled query without the settlement", "settlement_query_reply", "settlement", DROP,
     "invalid", "settlement_query_reply.settlement", "settlement_query_reply"),
    ("not_found query with a settlement", "settlement_query_reply not_found", "settlement",
     SETTLEMENT, "invalid", "settlement_query_reply.settlement", "settlement_query_reply"),
    ("unknown query status", "settlement_query_reply", "status", "pending", "invalid",
     "settlement_query_reply.status", "settlement_query_reply"),
    ("reconcile result 2", "reconcile_reply", "stmt_rslt", 2, "invalid",
     "reconcile_reply.stmt_rslt", "reconcile_reply"),
    ("reconcile result as boolean", "reconcile_reply", "stmt_rslt", False, "invalid",
     "reconcile_reply.stmt_rslt", "reconcile_reply"),
    ("totals missing the count", "reconcile", "totals.count", DROP, "invalid",
     "reconcile.totals.count", "reconcile"),
    ("unknown error code", "error", "code", "oops", "invalid", "error.code", "error"),
    ("internal error code on the wire", "error", "code", "cbor_truncated", "invalid",
     "error.code", "error"),
    ("error with negative clock", "error", "now", -1, "invalid", "error.now", "error"),
    ("error without a message", "error", "msg", DROP, "invalid", "error.msg", "error"),
    ("negative timestamp", "sign_in", "ts", -(2**63), "invalid", "sign_in.ts",
     "sign_in"),
]

VALID_RECORDS = [("settlement_record", RECORD), ("gateway_cert", CERT_RECORD)]
RECORD_RULES = ("settlement_record", "gateway_cert")  # payloads signed inside messages
INVALID_RECORDS: list[tuple[str, str, Any, str, str]] = [
    ("record missing the settlement time", "setl_time", DROP, "invalid",
     "settlement_record.setl_time"),
    ("record with a bad kiosk id", "kiosk", "HALL/0101", "invalid", "settlement_record.kiosk"),
    ("record with negative pooling fund", "result.hifp_pay", -842250, "invalid",
     "settlement_record.result.hifp_pay"),
    ("record with an extra field", "note", "x", "invalid", "settlement_record.note"),
]
INVALID_CERTS: list[tuple[str, str, Any, str, str]] = [
    ("cert with a key of 31 bytes", "key", bytes(31), "invalid", "gateway_cert.key"),
    ("cert with a negative serial", "serial", -1, "invalid", "gateway_cert.serial"),
    ("cert without a kid", "kid", DROP, "invalid", "gateway_cert.kid"),
]


def message_vectors() -> tuple[dict, dict]:
    valid = [{"name": name, "rule": name if name in RECORD_RULES else msg["t"],
              "hex": dumps(msg).hex(), "diag": diag(msg)}
             for name, msg in VALID_MESSAGES + VALID_RECORDS]
    invalid = []
    for name, base, path, value, code, err_path, rule in INVALID_MESSAGES:
        msg = _changed(_BY_NAME[base], path, value)
        invalid.append({"name": name, "rule": rule, "hex": dumps(msg).hex(), "diag": diag(msg),
                        "code": code, "path": err_path})
    for name, path, value, code, err_path in INVALID_RECORDS:
        msg = _changed(RECORD, path, value)
        invalid.append({"name": name, "rule": "settlement_record", "hex": dumps(msg).hex(),
                        "diag": diag(msg), "code": code, "path": err_path})
    for name, path, value, code, err_path in INVALID_CERTS:
        msg = _changed(CERT_RECORD, path, value)
        invalid.append({"name": name, "rule": "gateway_cert", "hex": dumps(msg).hex(),
                        "diag": diag(msg), "code": code, "path": err_path})
    invalid.append({"name": "message not a map", "rule": "frame", "hex": dumps([1, 0]).hex(),
                    "diag": "[1, 0]", "code": "invalid", "path": "message"})
    note = ("One example of every message type (frames.cddl rule `rule`) as deterministic CBOR. "
            "settle_reply.settlement is a COSE_Sign1 of the settlement_record vector signed "
            "with the test gateway key (cose.json); sign_in_reply.cert is a COSE_Sign1 of the "
            "gateway_cert vector signed with the test authority key (kid auth-2026, its seed "
            "made as the other test keys').")
    return (
        {"description": note, "vectors": valid},
        {"description": "Messages both frames.cddl and messages.validate reject; `path` is the "
                        "field the error names (message text starts with it).",
         "vectors": invalid},
    )


# ---------------------------------------------------------------- CBOR
VALID_CBOR: list[tuple[str, Any]] = [
    ("zero", 0), ("one", 1), ("ten", 10), ("23, largest immediate", 23),
    ("24, first one-byte argument", 24), ("100", 100), ("1000", 1000), ("1000000", 1000000),
    ("1000000000000", 1000000000000), ("2**64-1", 2**64 - 1), ("-1", -1), ("-10", -10),
    ("-100", -100), ("-1000", -1000), ("-2**64", -(2**64)), ("false", False), ("true", True),
    ("null", None), ("empty bytes", b""), ("bytes", b"\x01\x02\x03\x04"), ("empty text", ""),
    ("text", "IETF"), ("escapes", '"\\'), ("two-byte UTF-8", "ü"), ("three-byte UTF-8", "水"),
    ("four-byte UTF-8", "𐅑"), ("Chinese name", "张秀英"), ("empty array", []),
    ("array", [1, 2, 3]), ("nested arrays", [1, [2, 3], [4, 5]]),
    ("array of 25", list(range(1, 26))), ("empty map", {}), ("int-keyed map", {1: 2, 3: 4}),
    ("text-keyed map", {"a": 1, "b": [2, 3]}), ("map in array", ["a", {"b": "c"}]),
    ("keys sorted by encoding", {10: 1, -1: 2, "z": 3, "aa": 4, 0: 5, -24: 6, 23: 7}),
    ("longest text key", {"k" * 23: 0}),
    ("COSE_Sign1 shape", cbor2.CBORTag(18, [b"\xa1\x01\x27", {4: b"k"}, b"", b"\x00" * 4])),
    ("16 nested arrays, the depth limit", [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]),
    ("bytes of 300", bytes(range(256)) + bytes(44)),
]

# (name, hex, code, note)
INVALID_CBOR: list[tuple[str, str, str, str]] = [
    ("empty input", "", "cbor_truncated", "no item at all"),
    ("argument missing", "18", "cbor_truncated", "uint with one-byte argument, no byte"),
    ("byte string longer than input", "4261", "cbor_truncated", "h'61' declared as 2 bytes"),
    ("huge byte string length", "5bffffffffffffffff", "cbor_truncated",
     "2**64-1 bytes declared: rejected before allocating"),
    ("huge array count", "9b0000000100000000", "cbor_truncated",
     "2**32 elements declared in 9 bytes"),
    ("huge map count", "bb7fffffffffffffff", "cbor_truncated", "2**63-1 entries declared"),
    ("array missing an element", "8201", "cbor_truncated", "[1, ...]"),
    ("map missing a value", "a101", "cbor_truncated", "{1: ...}"),
    ("map entries outrun the input", "a201626161", "cbor_truncated",
     "{1: \"aa\", ...}: the count fits the input, the entries do not"),
    ("tag without content", "d2", "cbor_truncated", "18(...)"),
    ("23 in one byte", "1817", "cbor_non_canonical", "must be 17"),
    ("255 in two bytes", "1900ff", "cbor_non_canonical", "must be 18ff"),
    ("65535 in four bytes", "1a0000ffff", "cbor_non_canonical", "must be 19ffff"),
    ("2**32-1 in eight bytes", "1b00000000ffffffff", "cbor_non_canonical",
     "must be 1affffffff"),
    ("-24 in one byte", "3817", "cbor_non_canonical", "must be 37"),
    ("text length in one byte", "780161", "cbor_non_canonical", "\"a\" must be 6161"),
    ("array count in one byte", "980101", "cbor_non_canonical", "[1] must be 8101"),
    ("tag number in one byte", "d81200", "cbor_non_canonical", "18(0) must be d200"),
    ("indefinite byte string", "5f4100ff", "cbor_indefinite", "(_ h'00')"),
    ("indefinite text", "7f6161ff", "cbor_indefinite", "(_ \"a\")"),
    ("indefinite array", "9f01ff", "cbor_indefinite", "[_ 1]"),
    ("indefinite map", "bf616101ff", "cbor_indefinite", "{_ \"a\": 1}"),
    ("half float", "f93c00", "cbor_float", "1.0"),
    ("single float", "fa3f800000", "cbor_float", "1.0"),
    ("double float", "fb3ff0000000000000", "cbor_float", "1.0"),
    ("float in a map", "a16161fb3ff0000000000000", "cbor_float", "{\"a\": 1.0}"),
    ("undefined", "f7", "cbor_unsupported", "undefined"),
    ("simple(16)", "f0", "cbor_unsupported", "unassigned simple value"),
    ("simple(32)", "f820", "cbor_unsupported", "one-byte simple value"),
    ("stray break", "ff", "cbor_malformed", "break outside an indefinite item"),
    ("reserved additional info 28", "1c", "cbor_malformed", "not well-formed"),
    ("reserved additional info 30 on a tag", "de", "cbor_malformed", "not well-formed"),
    ("additional info 31 on an integer", "1f", "cbor_malformed", "not well-formed"),
    ("duplicate text key", "a2616101616102", "cbor_duplicate_key", "{\"a\": 1, \"a\": 2}"),
    ("duplicate int key", "a2010101f6", "cbor_duplicate_key", "{1: 1, 1: null}"),
    ("text keys out of order", "a2616201616101", "cbor_unsorted_map", "{\"b\": 1, \"a\": 1}"),
    ("int keys out of order", "a202010101", "cbor_unsorted_map", "{2: 1, 1: 1}"),
    ("negative before positive", "a220010101", "cbor_unsorted_map",
     "{-1: 1, 1: 1}: 0x20 sorts after 0x01"),
    ("text before int", "a2616101 0101".replace(" ", ""), "cbor_unsorted_map",
     "{\"a\": 1, 1: 1}"),
    ("longer text before shorter", "a2626161016162 01".replace(" ", ""), "cbor_unsorted_map",
     "{\"aa\": 1, \"b\": 1}: bytewise order puts shorter first"),
    ("int key 24", "a1181801", "cbor_unsupported", "map keys are ints -24..23"),
    ("byte string key", "a1416101", "cbor_unsupported", "map keys are ints or text"),
    ("boolean key", "a1f501", "cbor_unsupported", "map keys are ints or text"),
    ("text key of 24 bytes", "a17818" + "6b" * 24 + "00", "cbor_unsupported",
     "text keys are shorter than 24 bytes"),
    ("17 nested arrays", "81" * 17 + "00", "cbor_too_deep", "depth limit is 16"),
    ("17 nested tags", "d2" * 17 + "00", "cbor_too_deep", "tags count toward depth"),
    ("17 nested maps", "a16161" * 17 + "00", "cbor_too_deep", "{\"a\": {\"a\": ...}}"),
    ("trailing byte", "0000", "cbor_trailing", "0 followed by 0"),
    ("two maps", "a0a0", "cbor_trailing", "one item per input"),
    ("bad continuation byte", "62c328", "cbor_bad_utf8", "\\xc3 then '('"),
    ("surrogate", "63eda080", "cbor_bad_utf8", "U+D800 is not a scalar value"),
    ("overlong NUL", "62c080", "cbor_bad_utf8", "overlong form"),
    ("overlong three-byte", "63e08080", "cbor_bad_utf8", "overlong form"),
    ("beyond U+10FFFF", "64f4908080", "cbor_bad_utf8", "U+110000"),
    ("lone 0xff", "61ff", "cbor_bad_utf8", "never valid in UTF-8"),
    ("truncated sequence", "62e4b8", "cbor_bad_utf8", "three-byte sequence cut short"),
    ("bad UTF-8 in a key", "a162c32801", "cbor_bad_utf8", "map key"),
]


def cbor_vectors() -> tuple[dict, dict]:
    valid = []
    for name, value in VALID_CBOR:
        data = dumps(value)
        valid.append({"name": name, "hex": data.hex(), "diag": diag_hex(data)})
    invalid = [{"name": n, "hex": h, "code": c, "note": note} for n, h, c, note in INVALID_CBOR]
    return (
        {"description": "Deterministic CBOR (RFC 8949 §4.2.1): loads(hex) then dumps gives hex "
                        "back; the value is the diagnostic notation.", "vectors": valid},
        {"description": "Input the strict decoder rejects, with the ProtocolError code.",
         "vectors": invalid},
    )


# ---------------------------------------------------------------- framing
def framing_vectors() -> dict:
    payloads = [
        ("empty payload", b""),
        ("text", b"hello"),
        ("zeros", b"\x00\x00\x00"),
        ("254 non-zero bytes, one full COBS block", bytes(range(1, 255))),
        ("600 bytes, several blocks", bytes((i * 7 + 1) % 256 or 1 for i in range(600))),
        ("sealed settle request", sign1(dumps(_BY_NAME["settle"]), KIOSK, KIOSK_SEED)),
    ]
    valid = [{"name": n, "payload_hex": p.hex(), "frame_hex": frame(p).hex()}
             for n, p in payloads]
    good = frame(b"hello")
    flipped = bytearray(good)
    flipped[3] ^= 0x01
    too_long = cobs(bytes(MAX_FRAME + 1) + struct.pack("<I", binascii.crc32(bytes(MAX_FRAME + 1))))
    invalid = [
        {"name": "empty frame", "frame_hex": "", "code": "frame_empty"},
        {"name": "block runs past the end", "frame_hex": "056162", "code": "frame_cobs"},
        {"name": "zero byte inside", "frame_hex": "010001", "code": "frame_cobs"},
        {"name": "corrupted byte", "frame_hex": bytes(flipped[:-1]).hex(), "code": "frame_crc"},
        {"name": "too short for a CRC", "frame_hex": "026101", "code": "frame_crc"},
        {"name": "payload of MAX_FRAME + 1 bytes", "frame_hex": too_long.hex(),
         "code": "too_large"},
    ]
    noise = bytes.fromhex("1b5b324a0d0a")
    streams = [
        {"name": "frame between line noise", "stream_hex": (noise + b"\x00" + good + noise).hex(),
         "payloads_hex": ["68656c6c6f"], "stats": {"cobs": 1, "crc": 0, "too_large": 0,
                                                   "empty": 0}},
        {"name": "leading delimiters and a corrupted frame",
         "stream_hex": (b"\x00\x00" + bytes(flipped) + good + good).hex(),
         "payloads_hex": ["68656c6c6f", "68656c6c6f"],
         "stats": {"cobs": 0, "crc": 1, "too_large": 0, "empty": 2}},
        {"name": "over-long run dropped, next frame kept",
         "stream_hex": (b"\x01" * 5000 + b"\x00" + good).hex(),
         "payloads_hex": ["68656c6c6f"], "stats": {"cobs": 0, "crc": 0, "too_large": 1,
                                                   "empty": 0}},
    ]
    return {"description": "COBS(payload + CRC-32 LE) + 0x00. `valid`: encode(payload) == frame. "
                           "`invalid`: decode(frame without its delimiter) raises `code`. "
                           "`streams`: a Deframer fed the stream yields the payloads and stats.",
            "max_frame": MAX_FRAME, "valid": valid, "invalid": invalid, "streams": streams}


# ---------------------------------------------------------------- COSE
def _cose(parts: list, tag: int = 18) -> bytes:
    return dumps(cbor2.CBORTag(tag, parts))


def cose_vectors() -> dict:
    keys = [{"kid": kid, "seed_hex": seed.hex(), "public_hex": public_key(seed).hex()}
            for kid, seed in ((KIOSK, KIOSK_SEED), (GATEWAY_KID, GATEWAY_SEED),
                              ("HALL-0102", OTHER_SEED))]
    settle = dumps(_BY_NAME["settle"])
    valid_cases = [
        ("empty payload", b"", KIOSK, KIOSK_SEED),
        ("sealed settle request", settle, KIOSK, KIOSK_SEED),
        ("settlement record signed by the gateway", dumps(RECORD), GATEWAY_KID, GATEWAY_SEED),
    ]
    valid = []
    for name, payload, kid, seed in valid_cases:
        data = sign1(payload, kid, seed)
        valid.append({"name": name, "kid": kid, "payload_hex": payload.hex(), "hex": data.hex(),
                      "diag": diag_hex(data)})
    good = cbor2.loads(sign1(settle, KIOSK, KIOSK_SEED)).value
    protected, unprotected, payload, sig = good
    kid = KIOSK.encode()
    malformed = [
        ("untagged array", dumps(good), "cose_malformed"),
        ("COSE_Mac0 tag 17", _cose(good, 17), "cose_malformed"),
        ("three elements", _cose(good[:3]), "cose_malformed"),
        ("protected header as a map", _cose([{1: -8}, unprotected, payload, sig]),
         "cose_malformed"),
        ("protected header not CBOR", _cose([b"\xa1\x01", unprotected, payload, sig]),
         "cose_malformed"),
        ("protected header with crit", _cose([dumps({1: -8, 2: [99]}), unprotected, payload,
                                              sig]), "cose_malformed"),
        ("alg ES256", _cose([dumps({1: -7}), unprotected, payload, sig]), "cose_bad_alg"),
        ("empty protected header", _cose([b"", unprotected, payload, sig]), "cose_bad_alg"),
        ("alg only in the unprotected header", _cose([dumps({}), {1: -8, 4: kid}, payload, sig]),
         "cose_bad_alg"),
        ("kid missing", _cose([protected, {}, payload, sig]), "cose_bad_kid"),
        ("kid as text", _cose([protected, {4: KIOSK}, payload, sig]), "cose_bad_kid"),
        ("kid empty", _cose([protected, {4: b""}, payload, sig]), "cose_bad_kid"),
        ("kid of 65 bytes", _cose([protected, {4: b"k" * 65}, payload, sig]), "cose_bad_kid"),
        ("kid not UTF-8", _cose([protected, {4: b"\xff"}, payload, sig]), "cose_bad_kid"),
        ("unexpected unprotected header", _cose([protected, {4: kid, 5: b"iv"}, payload, sig]),
         "cose_malformed"),
        ("detached payload", _cose([protected, unprotected, None, sig]), "cose_malformed"),
        ("payload as text", _cose([protected, unprotected, "x", sig]), "cose_malformed"),
        ("signature of 63 bytes", _cose([protected, unprotected, payload, sig[:63]]),
         "cose_malformed"),
        ("trailing byte", sign1(settle, KIOSK, KIOSK_SEED) + b"\x00", "cbor_trailing"),
        ("truncated", sign1(settle, KIOSK, KIOSK_SEED)[:-1], "cbor_truncated"),
    ]
    tampered = bytearray(payload)
    tampered[-1] ^= 0x01
    other_sig = cbor2.loads(sign1(settle, KIOSK, OTHER_SEED)).value[3]
    bad_sig = [
        ("payload changed after signing", _cose([protected, unprotected, bytes(tampered), sig])),
        ("signed by another kiosk's key", _cose([protected, unprotected, payload, other_sig])),
        ("signature bytes flipped", _cose([protected, unprotected, payload,
                                           bytes([sig[0] ^ 0x80]) + sig[1:]])),
    ]
    invalid = [{"name": n, "hex": d.hex(), "code": c, "diag": _diag_or_note(d)}
               for n, d, c in malformed]
    invalid += [{"name": n, "hex": d.hex(), "code": "bad_signature", "diag": diag_hex(d)}
                for n, d in bad_sig]
    return {"description": "COSE_Sign1, EdDSA. Test keys from seeds (never use them on a real "
                           "kiosk). `valid`: decode1 gives kid and payload and the signature "
                           "verifies with the kid's key, and sign1 reproduces hex (Ed25519 is "
                           "deterministic). `invalid`: decode1, then verify1 with the kid's "
                           "key (" + KIOSK + "), raises `code`.",
            "keys": keys, "valid": valid, "invalid": invalid}


def _diag_or_note(data: bytes) -> str:
    try:
        return diag_hex(data)
    except Exception:  # not well-formed: no diagnostic notation exists
        return "(not well-formed CBOR)"


# ---------------------------------------------------------------- output
def build() -> dict[str, Any]:
    cbor_valid, cbor_invalid = cbor_vectors()
    msg_valid, msg_invalid = message_vectors()
    return {
        "cbor_valid.json": cbor_valid,
        "cbor_invalid.json": cbor_invalid,
        "framing.json": framing_vectors(),
        "cose.json": cose_vectors(),
        "messages_valid.json": msg_valid,
        "messages_invalid.json": msg_invalid,
    }


def render(doc: Any) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    VECTORS.mkdir(exist_ok=True)
    for name, doc in build().items():
        (VECTORS / name).write_text(render(doc), encoding="utf-8")
        print("wrote", VECTORS / name)


if __name__ == "__main__":
    main()
