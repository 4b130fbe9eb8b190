"""Kiosk <-> gateway messages: build, validate, seal and open. Runs on MicroPython and CPython.

protocol/spec/frames.cddl is normative; this module enforces the same constraints from small
tables (one row per field), so the board can check every frame without a CDDL engine. A message
is a dict with text keys; arrays may be lists or tuples when built, and are lists when decoded.

    msg = request("settle", "KIOSK-01", ctr, rid, now, psn_no=..., bill_id=..., txn_id=...,
                  confirmed_cash=1250)
    data = seal(msg, "KIOSK-01", signing_key)            # COSE_Sign1 bytes, not yet framed
    kid, msg = open(data, key_for)                      # key_for(kid) -> verifier

Every fault raises ProtocolError: "unsupported_version" for a major version other than ours,
"invalid" with "<t>.<field>: reason" for anything else wrong with the content.
"""

from . import cbor, cose
from .errors import (
    INVALID,
    UNKNOWN_KIOSK,
    UNSUPPORTED_VERSION,
    WIRE_CODES,
    ProtocolError,
    wire_code,
)

PROTOCOL_VERSION = (1, 0)
RID_SIZE = 8
_UINT64_MAX = 0xFFFFFFFFFFFFFFFF

# ---------------------------------------------------------------- field kinds
# A kind is a scalar name ("uint", "fen", "tstr", "bytes", "bool", "rid"), a pattern name (below),
# a tuple of allowed literal values, "@map" (a map from _MAPS) or "*map" (an array of them).
# A field name starting with "?" is optional.

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"
_ALNUM = _UPPER + "abcdefghijklmnopqrstuvwxyz" + _DIGITS
_ID = _ALNUM + "_-"

# The .regexp patterns of frames.cddl as segments (allowed characters, min, max), matched
# left to right over the whole text. Each segment is either the only one or of fixed length,
# so greedy matching is exact for these patterns.
_PATTERNS = {
    "kiosk_id": ("[A-Za-z0-9_-]{1,32}", ((_ID, 1, 32),)),
    "txn_id": ("[A-Za-z0-9_-]{8,40}", ((_ID, 8, 40),)),
    "psn_no": ("[A-Za-z0-9]{1,30}", ((_ALNUM, 1, 30),)),
    "admdvs": ("[0-9]{6}", ((_DIGITS, 6, 6),)),
    "date": ("[0-9]{4}-[0-9]{2}-[0-9]{2}",
             ((_DIGITS, 4, 4), ("-", 1, 1), (_DIGITS, 2, 2), ("-", 1, 1), (_DIGITS, 2, 2))),
    "ssn": ("[0-9]{17}[0-9X]", ((_DIGITS, 17, 17), (_DIGITS + "X", 1, 1))),
    "card_no": ("[A-Z0-9]{9}", ((_UPPER + _DIGITS, 9, 9),)),
    "card_id": ("[0-9A-Za-z]{16}", ((_ALNUM, 16, 16),)),
}

_HEADER = (("v", "version"), ("kiosk", "kiosk_id"), ("ctr", "uint"), ("rid", "rid"),
           ("ts", "uint"))
# An error for a frame that could not be authenticated carries kiosk "".
_ERROR_HEADER = (("v", "version"), ("kiosk", "kiosk_id_or_empty"), ("ctr", "uint"),
                 ("rid", "rid"), ("ts", "uint"))

_MAPS = {
    "card_data": (("ssn", "ssn"), ("card_no", "card_no"), ("card_id", "card_id"),
                  ("name", "tstr"), ("issue", "date"), ("expiry", "date")),
    "bill_record": (("bill_id", "tstr"), ("fixmedins_name", "tstr"),
                    ("mdtrtarea_admvs", "admdvs"),
                    ("med_type", ("inpatient", "outpatient_chronic")),
                    ("hosp_lv", (1, 2, 3)), ("referral", "bool"), ("date", "date"),
                    ("medfee_sumamt", "fen")),
    "breakdown": (("medfee_sumamt", "fen"), ("fulamt_ownpay_amt", "fen"),
                  ("preselfpay_amt", "fen"), ("inscp_scp_amt", "fen"), ("act_pay_dedc", "fen"),
                  ("hifp_pay", "fen"), ("hifmi_pay", "fen"), ("maf_pay", "fen"),
                  ("fund_pay_sumamt", "fen"), ("psn_cash_pay", "fen")),
    "totals_record": (("count", "uint"), ("medfee_sumamt", "fen"), ("hifp_pay", "fen"),
                      ("hifmi_pay", "fen"), ("maf_pay", "fen"), ("fund_pay_sumamt", "fen"),
                      ("psn_cash_pay", "fen")),
    "settlement_record": (("setl_id", "tstr"), ("txn_id", "txn_id"), ("kiosk", "kiosk_id"),
                          ("psn_no", "psn_no"), ("bill_id", "tstr"), ("setl_time", "uint"),
                          ("result", "@breakdown")),
}

_TXN_SETL = (("txn_id", "txn_id"), ("setl_id", "tstr"))

# Message bodies after the header and t, by t.
_BODIES = {
    "sign_in": (("fw", "tstr"), ("board", "tstr")),
    "sign_in_reply": (("sign_no", "tstr"), ("now", "uint"), ("gateway", "tstr"),
                      ("policy", "tstr")),
    "person_info": (("card", "@card_data"),),
    "person_info_reply": (("psn_no", "psn_no"), ("name", "tstr"), ("ssn_masked", "tstr"),
                          ("insutype", "uint"), ("insu_admdvs", "admdvs"),
                          ("assistance", ("none", "tekun", "dibao", "low_income",
                                          "illness_poor"))),
    "pending_bills": (("psn_no", "psn_no"),),
    "pending_bills_reply": (("psn_no", "psn_no"), ("bills", "*bill_record")),
    "pre_settle": (("psn_no", "psn_no"), ("bill_id", "tstr")),
    "pre_settle_reply": (("bill_id", "tstr"), ("result", "@breakdown")),
    "settle": (("psn_no", "psn_no"), ("bill_id", "tstr"), ("txn_id", "txn_id"),
               ("confirmed_cash", "fen")),
    "settle_reply": (("txn_id", "txn_id"), ("settlement", "bytes")),
    "cancel": _TXN_SETL,
    "cancel_reply": _TXN_SETL,
    "settlement_query": (("txn_id", "txn_id"),),
    "settlement_query_reply": (("txn_id", "txn_id"),
                               ("status", ("settled", "not_found", "cancelled")),
                               ("?settlement", "bytes")),
    "receipt_printed": _TXN_SETL,
    "receipt_printed_reply": (("txn_id", "txn_id"),),
    "reconcile": (("date", "date"), ("totals", "@totals_record")),
    "reconcile_reply": (("date", "date"), ("stmt_rslt", (0, 1)), ("totals", "@totals_record")),
    "error": (("code", WIRE_CODES), ("msg", "tstr"), ("?now", "uint")),
}

# Optional fields that frames.cddl ties to another field: t -> (field, other, value): the field
# is absent exactly when `other` equals `value`.
_ABSENT_WHEN = {"settlement_query_reply": ("settlement", "status", "not_found")}

REQUESTS = ("sign_in", "person_info", "pending_bills", "pre_settle", "settle", "cancel",
            "settlement_query", "receipt_printed", "reconcile")
REPLIES = tuple([t + "_reply" for t in REQUESTS]) + ("error",)


# ---------------------------------------------------------------- validation
def _fail(path, reason):
    raise ProtocolError(INVALID, path + ": " + reason)


def _is_uint(value):
    return isinstance(value, int) and value is not True and value is not False \
        and 0 <= value <= _UINT64_MAX


def _matches(text, segments):
    pos = 0
    end = len(text)
    for chars, least, most in segments:
        start = pos
        while pos < end and pos - start < most and text[pos] in chars:
            pos += 1
        if pos - start < least:
            return False
    return pos == end


def _check_version(value, path):
    if not isinstance(value, (list, tuple)) or len(value) != 2 \
            or not _is_uint(value[0]) or not _is_uint(value[1]):
        _fail(path, "expected [major, minor]")
    if value[0] != PROTOCOL_VERSION[0]:
        raise ProtocolError(
            UNSUPPORTED_VERSION,
            "version %d.%d not supported; this side speaks %d.x"
            % (value[0], value[1], PROTOCOL_VERSION[0]))


def _check(value, kind, path):
    if isinstance(kind, tuple):
        for option in kind:
            if value == option and type(value) is type(option):  # 1 is not True
                return
        _fail(path, "must be one of " + ", ".join([_show(o) for o in kind]))
    elif kind == "uint" or kind == "fen":
        if not _is_uint(value):
            if kind == "fen" and isinstance(value, int) and value is not True \
                    and value is not False and value < 0:
                _fail(path, "negative fen")
            _fail(path, "expected an unsigned integer" + (" of fen" if kind == "fen" else ""))
    elif kind == "tstr":
        if not isinstance(value, str):
            _fail(path, "expected text")
    elif kind == "bytes":
        if not isinstance(value, (bytes, bytearray)):
            _fail(path, "expected bytes")
    elif kind == "rid":
        if not isinstance(value, (bytes, bytearray)) or len(value) != RID_SIZE:
            _fail(path, "expected %d bytes" % RID_SIZE)
    elif kind == "bool":
        if value is not True and value is not False:
            _fail(path, "expected true or false")
    elif kind == "version":
        _check_version(value, path)
    elif kind == "kiosk_id_or_empty":
        if value != "":
            _check(value, "kiosk_id", path)
    elif kind in _PATTERNS:
        regexp, segments = _PATTERNS[kind]
        if not isinstance(value, str):
            _fail(path, "expected text")
        if not _matches(value, segments):
            _fail(path, "must match " + regexp)
    elif kind[0] == "@":
        _check_map(value, _MAPS[kind[1:]], path)
    elif kind[0] == "*":
        if not isinstance(value, (list, tuple)):
            _fail(path, "expected an array")
        fields = _MAPS[kind[1:]]
        for i in range(len(value)):
            _check_map(value[i], fields, "%s[%d]" % (path, i))
    else:  # a typo in the tables above, not a peer's fault
        raise ValueError("unknown field kind " + kind)


def _show(option):
    return '"' + option + '"' if isinstance(option, str) else str(option)


def _check_fields(value, fields, path):
    """Check the listed fields of map `value`; returns how many of them are present."""
    present = 0
    for name, kind in fields:
        if name[0] == "?":
            name = name[1:]
            if name not in value:
                continue
        elif name not in value:
            _fail(path + "." + name, "missing")
        _check(value[name], kind, path + "." + name)
        present += 1
    return present


def _reject_extra(value, field_lists, path):
    allowed = []
    for fields in field_lists:
        for name, _ in fields:
            allowed.append(name[1:] if name[0] == "?" else name)
    extra = sorted([str(k) for k in value if k not in allowed])
    _fail(path + "." + extra[0], "unexpected field")


def _check_map(value, fields, path):
    if not isinstance(value, dict):
        _fail(path, "expected a map")
    if _check_fields(value, fields, path) != len(value):
        _reject_extra(value, (fields,), path)


def validate(msg):
    """Check a message against frames.cddl; returns it unchanged, or raises ProtocolError."""
    if not isinstance(msg, dict):
        _fail("message", "expected a map")
    t = msg.get("t")
    known = isinstance(t, str) and t in _BODIES
    path = t if known else "message"
    if "v" not in msg:
        _fail(path + ".v", "missing")
    _check_version(msg["v"], path + ".v")  # first: another major version may differ in anything
    if t is None:
        _fail("message.t", "missing")
    if not isinstance(t, str):
        _fail("message.t", "expected text")
    if not known:
        _fail("message.t", "unknown message type '%s'" % t[:40])
    header = _ERROR_HEADER if t == "error" else _HEADER
    body = _BODIES[t]
    present = 1 + _check_fields(msg, header, t) + _check_fields(msg, body, t)
    if present != len(msg):
        _reject_extra(msg, (header, (("t", ""),), body), t)
    rule = _ABSENT_WHEN.get(t)
    if rule is not None:
        field, other, value = rule
        if (msg[other] == value) == (field in msg):
            if field in msg:
                _fail(t + "." + field, "not allowed when %s is %s" % (other, value))
            _fail(t + "." + field, "missing (required unless %s is %s)" % (other, value))
    return msg


def validate_settlement(record):
    """Check a settlement_record (the payload the gateway signs); returns it unchanged."""
    _check_map(record, _MAPS["settlement_record"], "settlement_record")
    return record


# ---------------------------------------------------------------- building
def _version():
    return [PROTOCOL_VERSION[0], PROTOCOL_VERSION[1]]


def _with_body(msg, body):
    for name in body:
        if name in msg:
            _fail(msg["t"] + "." + name, "is a header field, set by the protocol")
        msg[name] = body[name]
    return msg


def request(t, kiosk, ctr, rid, ts, **body):
    """A request from `kiosk` (not validated until sealed)."""
    msg = {"v": _version(), "t": t, "kiosk": kiosk, "ctr": ctr, "rid": rid, "ts": ts}
    return _with_body(msg, body)


def reply(req, t, ts, **body):
    """A reply to `req`: echoes its kiosk, ctr and rid so the kiosk can match it."""
    msg = {"v": _version(), "t": t, "kiosk": req["kiosk"], "ctr": req["ctr"],
           "rid": req["rid"], "ts": ts}
    return _with_body(msg, body)


def error_reply(req, code, msg, ts, now=None):
    """An `error` in answer to `req`, or to an unauthenticated frame when `req` is None.

    `code` may be any ProtocolError code: it is folded into frames.cddl's error_code by
    errors.wire_code. Header fields of `req` that are themselves invalid are sent as zero/empty,
    so an error can always be sent, even about a malformed request.
    """
    kiosk, ctr, rid = "", 0, bytes(RID_SIZE)
    if isinstance(req, dict):
        if _valid(req.get("kiosk"), "kiosk_id"):
            kiosk = req["kiosk"]
        if _valid(req.get("ctr"), "uint"):
            ctr = req["ctr"]
        if _valid(req.get("rid"), "rid"):
            rid = req["rid"]
    out = {"v": _version(), "t": "error", "kiosk": kiosk, "ctr": ctr, "rid": rid, "ts": ts,
           "code": wire_code(code), "msg": msg}
    if now is not None:
        out["now"] = now
    return out


def _valid(value, kind):
    try:
        _check(value, kind, "")
    except ProtocolError:
        return False
    return True


def is_reply_to(rep, req):
    """True if `rep` answers `req`: same kiosk, ctr and rid, and the matching type or error."""
    return rep.get("kiosk") == req["kiosk"] and rep.get("ctr") == req["ctr"] \
        and rep.get("rid") == req["rid"] and rep.get("t") in (req["t"] + "_reply", "error")


# ---------------------------------------------------------------- signed messages
def seal(msg, kid, signer):
    """validate + deterministic CBOR + COSE_Sign1: the bytes to frame and send."""
    return cose.sign1(cbor.dumps(validate(msg)), kid, signer)


def open(data, key_for):
    """Verify and decode sealed bytes; returns (kid, msg).

    `key_for(kid)` returns the verifier for that signer; it may raise ProtocolError itself
    (unknown_kiosk, revoked); returning None means unknown_kiosk. A request must be signed by
    the kiosk it names.
    """
    sign1 = cose.decode1(data)
    verifier = key_for(sign1.kid)
    if verifier is None:
        raise ProtocolError(UNKNOWN_KIOSK, "no key for kid " + sign1.kid)
    cose.verify1(sign1, verifier)
    msg = validate(cbor.loads(sign1.payload))
    if msg["t"] in REQUESTS and msg["kiosk"] != sign1.kid:
        _fail(msg["t"] + ".kiosk", "differs from the signer's kid")
    return sign1.kid, msg


def seal_settlement(record, kid, signer):
    """The gateway's signed settlement (settle_reply.settlement) for a settlement_record."""
    return cose.sign1(cbor.dumps(validate_settlement(record)), kid, signer)


def open_settlement(data, verifier):
    """Verify a signed settlement with the pinned gateway key; returns the settlement_record."""
    sign1 = cose.decode1(data)
    cose.verify1(sign1, verifier)
    return validate_settlement(cbor.loads(sign1.payload))
