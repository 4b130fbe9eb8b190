"""Kiosk <-> gateway messages: build, validate, seal and open. Runs on MicroPython and CPython.

protocol/spec/frames.cddl is normative; this module enforces the same constraints from one
spec string per map (the fields and their kinds, regexps copied from frames.cddl), so the board
checks every frame without a CDDL engine. A message is a dict with text keys; arrays may be
lists or tuples when built, and are lists when decoded.

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

# ---------------------------------------------------------------- field specs
# Each map is one string of "name:kind" fields separated by spaces, in frames.cddl's order. A
# name starting with "?" is optional. Kinds: uint, fen (uint of money), tstr, bytes, bool,
# rid (8 bytes), version; "[...]..." a frames.cddl .regexp (whole text must match); "=a|b" one
# of these texts; "#1|2" one of these integers; "@name" a map of _MAPS; "*name" an array of them.
# Strings, not tuples, because on the board every tuple and table entry costs heap, and a
# string costs one object: the checker reads the spec in place, without slicing it.

_KIOSK_ID = "[A-Za-z0-9_-]{1,32}"
_TXN_ID = "[A-Za-z0-9_-]{8,40}"
_PSN_NO = "[A-Za-z0-9]{1,30}"
_ADMDVS = "[0-9]{6}"
_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"

_HEADER = "v:version kiosk:" + _KIOSK_ID + " ctr:uint rid:rid ts:uint"
# An error about a frame that could not be authenticated carries kiosk "" (cddl:
# kiosk_id_text / ""), which is what {0,32} allows over {1,32}.
_ERROR_HEADER = "v:version kiosk:[A-Za-z0-9_-]{0,32} ctr:uint rid:rid ts:uint"

_MAPS = {
    "card_data": "ssn:[0-9]{17}[0-9X] card_no:[A-Z0-9]{9} card_id:[0-9A-Za-z]{16} name:tstr"
                 " issue:" + _DATE + " expiry:" + _DATE,
    "bill_record": "bill_id:tstr fixmedins_name:tstr mdtrtarea_admvs:" + _ADMDVS
                   + " med_type:=inpatient|outpatient_chronic hosp_lv:#1|2|3 referral:bool date:"
                   + _DATE + " medfee_sumamt:fen",
    "breakdown": "medfee_sumamt:fen fulamt_ownpay_amt:fen preselfpay_amt:fen inscp_scp_amt:fen"
                 " act_pay_dedc:fen hifp_pay:fen hifmi_pay:fen maf_pay:fen fund_pay_sumamt:fen"
                 " psn_cash_pay:fen",
    "totals_record": "count:uint medfee_sumamt:fen hifp_pay:fen hifmi_pay:fen maf_pay:fen"
                     " fund_pay_sumamt:fen psn_cash_pay:fen",
    "settlement_record": "setl_id:tstr txn_id:" + _TXN_ID + " kiosk:" + _KIOSK_ID + " psn_no:"
                         + _PSN_NO + " bill_id:tstr setl_time:uint result:@breakdown",
}

_TXN_SETL = "txn_id:" + _TXN_ID + " setl_id:tstr"

# Message bodies after the header and t, by t.
_BODIES = {
    "sign_in": "fw:tstr board:tstr",
    "sign_in_reply": "sign_no:tstr now:uint gateway:tstr policy:tstr",
    "person_info": "card:@card_data",
    "person_info_reply": "psn_no:" + _PSN_NO + " name:tstr ssn_masked:tstr insutype:uint"
                         " insu_admdvs:" + _ADMDVS
                         + " assistance:=none|tekun|dibao|low_income|illness_poor",
    "pending_bills": "psn_no:" + _PSN_NO,
    "pending_bills_reply": "psn_no:" + _PSN_NO + " bills:*bill_record",
    "pre_settle": "psn_no:" + _PSN_NO + " bill_id:tstr",
    "pre_settle_reply": "bill_id:tstr result:@breakdown",
    "settle": "psn_no:" + _PSN_NO + " bill_id:tstr txn_id:" + _TXN_ID + " confirmed_cash:fen",
    "settle_reply": "txn_id:" + _TXN_ID + " settlement:bytes",
    "cancel": _TXN_SETL,
    "cancel_reply": _TXN_SETL,
    "settlement_query": "txn_id:" + _TXN_ID,
    # settlement is present unless status is not_found (checked in validate)
    "settlement_query_reply": "txn_id:" + _TXN_ID
                              + " status:=settled|not_found|cancelled ?settlement:bytes",
    "receipt_printed": _TXN_SETL,
    "receipt_printed_reply": "txn_id:" + _TXN_ID,
    "reconcile": "date:" + _DATE + " totals:@totals_record",
    "reconcile_reply": "date:" + _DATE + " stmt_rslt:#0|1 totals:@totals_record",
    "error": "code:=" + "|".join(WIRE_CODES) + " msg:tstr ?now:uint",
}

REQUESTS = ("sign_in", "person_info", "pending_bills", "pre_settle", "settle", "cancel",
            "settlement_query", "receipt_printed", "reconcile")
REPLIES = tuple([t + "_reply" for t in REQUESTS]) + ("error",)


# ---------------------------------------------------------------- validation
def _fail(path, reason):
    raise ProtocolError(INVALID, path + ": " + reason)


def _is_uint(value):
    return isinstance(value, int) and value is not True and value is not False \
        and 0 <= value <= _UINT64_MAX


def _is(spec, k, end, word):
    return end - k == len(word) and spec.startswith(word, k)


def _number(text, start, end):
    n = 0
    for i in range(start, end):
        n = n * 10 + ord(text[i]) - 48
    return n


def _in_class(ch, rx, start, end):
    """Whether ch is in the character class rx[start:end] (ranges like A-Z, single chars)."""
    i = start
    while i < end:
        if i + 2 < end and rx[i + 1] == "-":
            if rx[i] <= ch <= rx[i + 2]:
                return True
            i += 3
        else:
            if rx[i] == ch:
                return True
            i += 1
    return False


def _matches(text, rx, r, rend):
    """Whole-text match of the regexp rx[r:rend]: a sequence of [class] or literal characters,
    each with an optional {n} or {m,n}. Each piece takes all it may (greedy): exact for
    frames.cddl's patterns, where every piece is either the only one or of fixed length."""
    t = 0
    n = len(text)
    while r < rend:
        if rx[r] == "[":
            cls = r + 1
            r = rx.find("]", cls)
            cls_end = r
        else:
            cls = r
            cls_end = r + 1
        r += 1
        least = most = 1
        if r < rend and rx[r] == "{":
            close = rx.find("}", r)
            comma = rx.find(",", r, close)
            least = _number(rx, r + 1, close if comma < 0 else comma)
            most = least if comma < 0 else _number(rx, comma + 1, close)
            r = close + 1
        count = 0
        while count < most and t < n and _in_class(text[t], rx, cls, cls_end):
            t += 1
            count += 1
        if count < least:
            return False
    return t == n


def _one_of(value, spec, k, end, as_int):
    """Whether value is one of the "|"-separated options spec[k:end]."""
    while k <= end:
        stop = spec.find("|", k, end)
        if stop < 0:
            stop = end
        if as_int:
            if value == _number(spec, k, stop):
                return True
        elif stop - k == len(value) and spec.startswith(value, k):
            return True
        k = stop + 1
    return False


def _find_key(mapping, spec, start, end):
    """The text key of `mapping` spelled spec[start:end], or None (no slicing, no allocation)."""
    for key in mapping:
        if isinstance(key, str) and len(key) == end - start and spec.startswith(key, start):
            return key
    return None


def _version_fault(value):
    """None for our major version, a reason for a malformed one; another major raises."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 \
            or not _is_uint(value[0]) or not _is_uint(value[1]):
        return "expected [major, minor]"
    if value[0] != PROTOCOL_VERSION[0]:
        raise ProtocolError(
            UNSUPPORTED_VERSION,
            "version %d.%d not supported; this side speaks %d.x"
            % (value[0], value[1], PROTOCOL_VERSION[0]))
    return None


def _check(value, spec, k, end):
    """None if value is of kind spec[k:end], else the reason; nested faults raise."""
    first = spec[k]
    if first == "[":
        if not isinstance(value, str):
            return "expected text"
        if not _matches(value, spec, k, end):
            return "must match " + spec[k:end]
    elif first == "=" or first == "#":
        as_int = first == "#"
        if not (_is_uint(value) if as_int else isinstance(value, str)) \
                or not _one_of(value, spec, k + 1, end, as_int):
            return "must be one of " + spec[k + 1:end]
    elif first == "@" or first == "*":
        fields = _MAPS[_find_key(_MAPS, spec, k + 1, end)]
        if first == "@":
            _check_map(value, fields, "")
        elif not isinstance(value, (list, tuple)):
            return "expected an array"
        else:
            for i in range(len(value)):
                _check_map(value[i], fields, "[%d]" % i)
    elif _is(spec, k, end, "uint") or _is(spec, k, end, "fen"):
        if not _is_uint(value):
            if _is(spec, k, end, "fen") and isinstance(value, int) and value is not True \
                    and value is not False and value < 0:
                return "negative fen"
            return "expected an unsigned integer"
    elif _is(spec, k, end, "tstr"):
        if not isinstance(value, str):
            return "expected text"
    elif _is(spec, k, end, "bytes"):
        if not isinstance(value, (bytes, bytearray)):
            return "expected bytes"
    elif _is(spec, k, end, "rid"):
        if not isinstance(value, (bytes, bytearray)) or len(value) != RID_SIZE:
            return "expected 8 bytes"
    elif _is(spec, k, end, "bool"):
        if value is not True and value is not False:
            return "expected true or false"
    elif _is(spec, k, end, "version"):
        return _version_fault(value)
    else:  # a typo in the specs above, not a peer's fault
        raise ValueError("unknown field kind " + spec[k:end])
    return None


def _check_fields(value, spec):
    """Check map `value` against the fields of `spec`; returns how many of them are present."""
    present = 0
    i = 0
    size = len(spec)
    while i < size:
        colon = spec.find(":", i)
        end = spec.find(" ", colon)
        if end < 0:
            end = size
        optional = spec[i] == "?"
        if optional:
            i += 1
        key = _find_key(value, spec, i, colon)
        if key is None:
            if not optional:
                _fail(spec[i:colon], "missing")
        else:
            try:
                reason = _check(value[key], spec, colon + 1, end)
            except ProtocolError as exc:
                if exc.code != INVALID:
                    raise
                raise ProtocolError(INVALID, key + _nested(exc.msg)) from None
            if reason is not None:
                _fail(key, reason)
            present += 1
        i = end + 1
    return present


def _nested(msg):
    """How a nested fault's text follows its parent's name: "[0]...", ": reason" or ".name"."""
    return msg if msg[0] == "[" or msg[0] == ":" else "." + msg


def _reject_extra(value, specs):
    """Raise for the first (sorted) key of `value` that no spec names."""
    names = []
    for key in value:
        known = False
        if isinstance(key, str) and key and " " not in key and ":" not in key:
            for spec in specs:
                at = spec.find(key)
                while at >= 0 and not known:
                    known = (at == 0 or spec[at - 1] in " ?") \
                        and spec.startswith(":", at + len(key))
                    at = spec.find(key, at + 1)
        if not known:
            names.append(str(key))
    names.sort()
    _fail(names[0], "unexpected field")


def _check_map(value, spec, path):
    try:
        if not isinstance(value, dict):
            _fail("", "expected a map")
        if _check_fields(value, spec) != len(value):
            _reject_extra(value, (spec,))
    except ProtocolError as exc:
        if exc.code != INVALID or not path:
            raise
        raise ProtocolError(INVALID, path + _nested(exc.msg)) from None


def validate(msg):
    """Check a message against frames.cddl; returns it unchanged, or raises ProtocolError."""
    if not isinstance(msg, dict):
        _fail("message", "expected a map")
    t = msg.get("t")
    known = isinstance(t, str) and t in _BODIES
    # The version first: another major version may differ in anything else.
    reason = _version_fault(msg["v"]) if "v" in msg else "missing"
    if reason is not None:
        _fail((t if known else "message") + ".v", reason)
    if t is None:
        _fail("message.t", "missing")
    if not isinstance(t, str):
        _fail("message.t", "expected text")
    if not known:
        _fail("message.t", "unknown message type '%s'" % t[:40])
    header = _ERROR_HEADER if t == "error" else _HEADER
    body = _BODIES[t]
    try:
        present = 1 + _check_fields(msg, header) + _check_fields(msg, body)
        if present != len(msg):
            _reject_extra(msg, (header, body, "t:"))
        if t == "settlement_query_reply" and (msg["status"] == "not_found") == (
                "settlement" in msg):
            if "settlement" in msg:
                _fail("settlement", "not allowed when status is not_found")
            _fail("settlement", "missing (required unless status is not_found)")
    except ProtocolError as exc:
        if exc.code != INVALID:
            raise
        raise ProtocolError(INVALID, t + "." + exc.msg) from None
    return msg


def validate_settlement(record):
    """Check a settlement_record (the payload the gateway signs); returns it unchanged."""
    try:
        _check_map(record, _MAPS["settlement_record"], "")
    except ProtocolError as exc:
        raise ProtocolError(INVALID, "settlement_record" + _nested(exc.msg)) from None
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
        if _valid(req.get("kiosk"), _KIOSK_ID):
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


def _valid(value, spec):
    try:
        return _check(value, spec, 0, len(spec)) is None
    except ProtocolError:
        return False


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
