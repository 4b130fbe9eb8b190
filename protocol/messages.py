"""Kiosk <-> gateway messages: build, validate, seal and open. Runs on MicroPython and CPython.

protocol/spec/frames.cddl is normative; this module enforces the same constraints from one spec
string (the fields and their kinds, regexps copied from frames.cddl), so the board checks every
frame without a CDDL engine. A message is a dict with text keys; arrays may be lists or tuples
when built, and are lists when decoded.

    msg = request("settle", "KIOSK-01", ctr, rid, now, psn_no=..., bill_id=..., txn_id=...,
                  confirmed_cash=1250)
    data = seal(msg, "KIOSK-01", signing_key)            # COSE_Sign1 bytes, not yet framed
    kid, msg = open(data, key_for)                      # key_for(kid) -> verifier

Every fault raises ProtocolError: "unsupported_version" for a major version other than ours,
"invalid" with "<t>.<field>: reason" for anything else wrong with the content.

REQUESTS and REPLIES (the message types, in frames.cddl's order), PROTOCOL_VERSION (1, 0) and
RID_SIZE (8) are module attributes made when asked for, from the spec string.
"""

from . import cbor, cose
from .errors import CODES, ProtocolError, fault, wire_code

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


# Fault numbers (errors.fault): the code's index in errors.CODES * 32 + the text's number in
# texts.py.
_NO_KEY = const(20 * 32)  # unknown_kiosk
_OTHER_MAJOR = const(24 * 32)  # unsupported_version
_INVALID = const(25 * 32)  # invalid
_MISSING = const(_INVALID + 0)
_TEXT = const(_INVALID + 1)
_MATCH = const(_INVALID + 2)
_ONE_OF = const(_INVALID + 3)
_ARRAY = const(_INVALID + 4)
_NEGATIVE = const(_INVALID + 5)
_UINT = const(_INVALID + 6)
_BYTES = const(_INVALID + 7)
_RID = const(_INVALID + 8)
_BOOL = const(_INVALID + 9)
_VERSION = const(_INVALID + 10)
_UNEXPECTED = const(_INVALID + 11)
_MAP = const(_INVALID + 12)
_UNKNOWN_TYPE = const(_INVALID + 13)
_HEADER_FIELD = const(_INVALID + 14)
_NOT_ALLOWED = const(_INVALID + 15)
_REQUIRED = const(_INVALID + 16)
_NOT_SIGNER = const(_INVALID + 17)
_KEY_SIZE = const(_INVALID + 18)
_BAD_CERT_SIGNER = const(19 * 32 + 1)  # bad_signature


# ---------------------------------------------------------------- the spec
# One string, read in place (no slicing, no tables): on the board each table entry, tuple and
# string object costs heap, one string costs one object. Entries start on a new line:
#   "%name regexp"    a named text pattern
#   "@name fields"    a map (card_data ..., and the two message headers)
#   ">t fields"       the body of message type t, after the header and t; requests are the types
#                     not ending in "_reply", except "error"
# Fields are "name:kind" separated by spaces, in frames.cddl's order; a name starting with "?" is
# optional. Kinds: uint, fen (uint of money), tstr, bytes, bool, rid (8 bytes), version
# ([1, minor]), wire (an error code of errors.py); "[...]..." a frames.cddl .regexp (the whole
# text must match); "%name" a named pattern; "=a|b" one of these texts; "#1|2" one of these
# integers; "@name" a map; "*name" an array of them.
_SPEC = (
    "\n%kiosk [A-Za-z0-9_-]{1,32}"
    "\n%txn [A-Za-z0-9_-]{8,40}"
    "\n%psn [A-Za-z0-9]{1,30}"
    "\n%admdvs [0-9]{6}"
    "\n%date [0-9]{4}-[0-9]{2}-[0-9]{2}"
    "\n@header v:version kiosk:%kiosk ctr:uint rid:rid ts:uint"
    # An error about a frame that could not be authenticated carries kiosk "" (cddl:
    # kiosk_id_text / ""), which is what {0,32} allows over {1,32}.
    "\n@error_header v:version kiosk:[A-Za-z0-9_-]{0,32} ctr:uint rid:rid ts:uint"
    "\n@card_data ssn:[0-9]{17}[0-9X] card_no:[A-Z0-9]{9} card_id:[0-9A-Za-z]{16} name:tstr"
    " issue:%date expiry:%date"
    "\n@bill_record bill_id:tstr fixmedins_name:tstr mdtrtarea_admvs:%admdvs"
    " med_type:=inpatient|outpatient_chronic hosp_lv:#1|2|3 referral:bool date:%date"
    " medfee_sumamt:fen"
    "\n@breakdown medfee_sumamt:fen fulamt_ownpay_amt:fen preselfpay_amt:fen inscp_scp_amt:fen"
    " act_pay_dedc:fen hifp_pay:fen hifmi_pay:fen maf_pay:fen fund_pay_sumamt:fen"
    " psn_cash_pay:fen"
    "\n@totals_record count:uint medfee_sumamt:fen hifp_pay:fen hifmi_pay:fen maf_pay:fen"
    " fund_pay_sumamt:fen psn_cash_pay:fen"
    "\n@settlement_record setl_id:tstr txn_id:%txn kiosk:%kiosk psn_no:%psn bill_id:tstr"
    " setl_time:uint result:@breakdown"
    "\n@gateway_cert kid:%kiosk key:bytes serial:uint"
    "\n>sign_in fw:tstr board:tstr"
    "\n>sign_in_reply sign_no:tstr now:uint gateway:tstr policy:tstr ?cert:bytes"
    "\n>person_info card:@card_data"
    "\n>person_info_reply psn_no:%psn name:tstr ssn_masked:tstr insutype:uint"
    " insu_admdvs:%admdvs assistance:=none|tekun|dibao|low_income|illness_poor"
    "\n>pending_bills psn_no:%psn"
    "\n>pending_bills_reply psn_no:%psn bills:*bill_record"
    "\n>pre_settle psn_no:%psn bill_id:tstr"
    "\n>pre_settle_reply bill_id:tstr result:@breakdown"
    "\n>settle psn_no:%psn bill_id:tstr txn_id:%txn confirmed_cash:fen"
    "\n>settle_reply txn_id:%txn settlement:bytes"
    "\n>cancel txn_id:%txn setl_id:tstr"
    "\n>cancel_reply txn_id:%txn setl_id:tstr"
    "\n>settlement_query txn_id:%txn"
    # settlement is present unless status is not_found (checked in validate)
    "\n>settlement_query_reply txn_id:%txn status:=settled|not_found|cancelled ?settlement:bytes"
    "\n>receipt_printed txn_id:%txn setl_id:tstr"
    "\n>receipt_printed_reply txn_id:%txn"
    "\n>reconcile date:%date totals:@totals_record"
    "\n>reconcile_reply date:%date stmt_rslt:#0|1 totals:@totals_record"
    "\n>error code:wire msg:tstr ?now:uint"
    "\n"
)


def __getattr__(name):
    if name == "REQUESTS" or name == "REPLIES":
        found = []
        at = _SPEC.find("\n>")
        while at >= 0:
            t = _SPEC[at + 2:_SPEC.find(" ", at)]
            if (name == "REPLIES") == (t.endswith("_reply") or t == "error"):
                found.append(t)
            at = _SPEC.find("\n>", at + 2)
        return tuple(found)
    if name == "PROTOCOL_VERSION":
        return (1, 0)
    if name == "RID_SIZE":
        return 8
    raise AttributeError(name)


# ---------------------------------------------------------------- validation
def _find(name, start, end, mark):
    """Where the body of the _SPEC entry `mark` + name[start:end] begins, or -1 (compared in
    place: no slice or needle is made). The name is the entry's whole name, up to its first
    space: "sign_in fw:tstr" names no entry."""
    size = len(_SPEC)
    at = _SPEC.find(mark)
    while at >= 0:
        i = at + 2
        k = start
        while k < end and i < size and _SPEC[i] == name[k]:
            i += 1
            k += 1
        if k == end and _SPEC.find(" ", at + 2, i + 1) == i:
            return i + 1
        at = _SPEC.find(mark, at + 2)
    return -1


def _uint(value):
    return isinstance(value, int) and value is not True and value is not False \
        and 0 <= value <= 0xFFFFFFFFFFFFFFFF


def _number(text, start, end):
    n = 0
    for i in range(start, end):
        n = n * 10 + ord(text[i]) - 48
    return n


def _kind(value, spec, k, end):
    """Check value against the kind spec[k:end]. A fault raises "invalid" with ": <reason>",
    for the caller to put the field's name in front (a nested one with its own path)."""
    first = spec[k]
    fail = -1  # the fault text, if any
    args = ()
    if first == "%":  # a named pattern
        k = _find(spec, k + 1, end, "\n%")
        spec = _SPEC
        end = spec.find("\n", k)
        first = "["
    if first == "[":
        # Whole-text match of the regexp: a sequence of [class] or literal characters, each
        # with an optional {n} or {m,n}; a class holds ranges like A-Z and single characters.
        # Each piece takes all it may (greedy): exact for frames.cddl's patterns, where every
        # piece is either the only one or of fixed length.
        if not isinstance(value, str):
            fail = _TEXT
        t = 0
        r = k
        while fail < 0 and r < end:
            if spec[r] == "[":
                cls = r + 1
                r = spec.find("]", cls)
                cls_end = r
            else:
                cls = r
                cls_end = r + 1
            r += 1
            least = most = 1
            if r < end and spec[r] == "{":
                close = spec.find("}", r)
                comma = spec.find(",", r, close)
                least = _number(spec, r + 1, close if comma < 0 else comma)
                most = least if comma < 0 else _number(spec, comma + 1, close)
                r = close + 1
            count = 0
            while count < most and t < len(value):
                ch = value[t]
                i = cls
                while i < cls_end:
                    if i + 2 < cls_end and spec[i + 1] == "-":
                        if spec[i] <= ch <= spec[i + 2]:
                            break
                        i += 3
                    elif spec[i] == ch:
                        break
                    else:
                        i += 1
                if i >= cls_end:  # ch is not in the class
                    break
                t += 1
                count += 1
            if count < least:
                fail = _MATCH
        if fail < 0 and t != len(value):
            fail = _MATCH
        if fail == _MATCH:
            args = (spec[k:end],)
    elif first == "=" or first == "#":  # one of the "|"-separated texts or integers
        as_int = first == "#"
        fail = _ONE_OF
        i = k + 1
        while fail >= 0 and i <= end and (_uint(value) if as_int else isinstance(value, str)):
            stop = spec.find("|", i, end)
            if stop < 0:
                stop = end
            if (value == _number(spec, i, stop)) if as_int else (
                    stop - i == len(value) and spec.startswith(value, i)):
                fail = -1
            i = stop + 1
        args = (spec[k + 1:end],)
    elif first == "@" or first == "*":
        at = _find(spec, k + 1, end, "\n@")
        if first == "@":
            _map(value, at, -1)
        elif not isinstance(value, (list, tuple)):
            fail = _ARRAY
        else:
            for i in range(len(value)):
                try:
                    _map(value[i], at, -1)
                except ProtocolError as exc:
                    msg = exc.msg
                    raise ProtocolError(
                        "invalid", "[%d]" % i + (msg if msg[0] in "[:" else "." + msg)) from None
    elif spec.startswith("uint", k) or spec.startswith("fen", k):
        if not _uint(value):
            fail = _NEGATIVE if first == "f" and isinstance(value, int) and value is not True \
                and value is not False and value < 0 else _UINT
    elif spec.startswith("tstr", k):
        if not isinstance(value, str):
            fail = _TEXT
    elif spec.startswith("bytes", k):
        if not isinstance(value, (bytes, bytearray)):
            fail = _BYTES
    elif spec.startswith("rid", k):
        if not isinstance(value, (bytes, bytearray)) or len(value) != 8:
            fail = _RID
    elif spec.startswith("bool", k):
        if value is not True and value is not False:
            fail = _BOOL
    elif spec.startswith("version", k):
        if not isinstance(value, (list, tuple)) or len(value) != 2 \
                or not _uint(value[0]) or not _uint(value[1]):
            fail = _VERSION
        elif value[0] != 1:  # another major version may differ in anything: its own code
            fault(_OTHER_MAJOR, (value[0], value[1]))
    elif spec.startswith("wire", k):
        if not isinstance(value, str) or wire_code(value) != value:
            fail = _ONE_OF
            args = (CODES[CODES.index(" malformed ") + 1:].replace(" ", "|"),)
    else:  # a typo in the spec, not a peer's fault
        raise ValueError("unknown field kind " + spec[k:end])
    if fail >= 0:
        fault(fail, args, ": ")


def _map(value, at, body):
    """Check map `value` against the fields of the _SPEC entry whose body starts at `at`, then,
    for a message (body >= 0), against those of the entry at `body`; a message's "t" is known
    too. Fields are found in the map without slicing the spec."""
    if not isinstance(value, dict):
        fault(_MAP, (), ": ")
    present = 1 if body >= 0 else 0
    for i in (at, body):
        size = _SPEC.find("\n", i) if i >= 0 else i
        while i < size:
            colon = _SPEC.find(":", i)
            end = _SPEC.find(" ", colon, size)
            if end < 0:
                end = size
            optional = _SPEC.startswith("?", i)
            if optional:
                i += 1
            key = None
            for name in value:  # the key spelled _SPEC[i:colon]
                if isinstance(name, str) and len(name) == colon - i and _SPEC.startswith(name, i):
                    key = name
                    break
            if key is not None:
                try:
                    _kind(value[key], _SPEC, colon + 1, end)
                except ProtocolError as exc:
                    if exc.code != "invalid":
                        raise
                    msg = exc.msg  # ": reason", "[0]..." or "name: reason" of a nested map
                    raise ProtocolError(
                        "invalid", key + (msg if msg[0] in "[:" else "." + msg)) from None
                present += 1
            elif not optional:
                fault(_MISSING, (), _SPEC[i:colon] + ": ")
            i = end + 1
    if present != len(value):  # the first (sorted) key no field names is unexpected
        names = []
        for key in value:
            known = body >= 0 and key == "t"
            if isinstance(key, str) and key and " " not in key and ":" not in key:
                for start in (at, body):
                    end = _SPEC.find("\n", start)
                    found = _SPEC.find(key, start, end) if start >= 0 else -1
                    while found >= 0 and not known:
                        known = _SPEC[found - 1] in " ?" and _SPEC.startswith(":", found + len(key))
                        found = _SPEC.find(key, found + 1, end)
            if not known:
                names.append(str(key))
        names.sort()
        fault(_UNEXPECTED, (), names[0] + ": ")


def validate(msg):
    """Check a message against frames.cddl; returns it unchanged, or raises ProtocolError."""
    if not isinstance(msg, dict):
        fault(_MAP, (), "message: ")
    t = msg.get("t")
    body = _find(t, 0, len(t), "\n>") if isinstance(t, str) else -1
    # The version first: another major version may differ in anything else.
    try:
        if "v" not in msg:
            fault(_MISSING, (), ": ")
        _kind(msg["v"], "version", 0, 7)
    except ProtocolError as exc:
        if exc.code != "invalid":
            raise
        raise ProtocolError("invalid", (t if body >= 0 else "message") + ".v" + exc.msg) from None
    if t is None:
        fault(_MISSING, (), "message.t: ")
    if not isinstance(t, str):
        fault(_TEXT, (), "message.t: ")
    if body < 0:
        fault(_UNKNOWN_TYPE, (t[:40],), "message.t: ")
    header = "error_header" if t == "error" else "header"
    try:
        _map(msg, _find(header, 0, len(header), "\n@"), body)
        if t == "settlement_query_reply" and (msg["status"] == "not_found") == (
                "settlement" in msg):
            fault(_NOT_ALLOWED if "settlement" in msg else _REQUIRED, (), "settlement: ")
    except ProtocolError as exc:
        if exc.code != "invalid":
            raise
        raise ProtocolError("invalid", t + "." + exc.msg) from None
    return msg


def validate_settlement(record):
    """Check a settlement_record (the payload the gateway signs); returns it unchanged."""
    try:
        _map(record, _find("settlement_record", 0, 17, "\n@"), -1)
    except ProtocolError as exc:
        msg = exc.msg
        raise ProtocolError(
            "invalid", "settlement_record" + (msg if msg[0] in "[:" else "." + msg)) from None
    return record


# ---------------------------------------------------------------- building
def _with_body(msg, body):
    for name in body:
        if name in msg:
            fault(_HEADER_FIELD, (), msg["t"] + "." + name + ": ")
        msg[name] = body[name]
    return msg


def request(t, kiosk, ctr, rid, ts, **body):
    """A request from `kiosk` (not validated until sealed)."""
    return _with_body({"v": [1, 0], "t": t, "kiosk": kiosk, "ctr": ctr, "rid": rid, "ts": ts},
                      body)


def reply(req, t, ts, **body):
    """A reply to `req`: echoes its kiosk, ctr and rid so the kiosk can match it."""
    return _with_body({"v": [1, 0], "t": t, "kiosk": req["kiosk"], "ctr": req["ctr"],
                       "rid": req["rid"], "ts": ts}, body)


def error_reply(req, code, msg, ts, now=None):
    """An `error` in answer to `req`, or to an unauthenticated frame when `req` is None.

    `code` may be any ProtocolError code: it is folded into frames.cddl's error_code by
    errors.wire_code. Header fields of `req` that are themselves invalid are sent as zero/empty,
    so an error can always be sent, even about a malformed request.
    """
    out = {"v": [1, 0], "t": "error", "kiosk": "", "ctr": 0, "rid": bytes(8), "ts": ts,
           "code": wire_code(code), "msg": msg}
    if isinstance(req, dict):
        for name, kind in (("kiosk", "%kiosk"), ("ctr", "uint"), ("rid", "rid")):
            try:
                _kind(req.get(name), kind, 0, len(kind))
                out[name] = req[name]
            except ProtocolError:
                pass
    if now is not None:
        out["now"] = now
    return out


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
        fault(_NO_KEY, (sign1.kid,))
    cose.verify1(sign1, verifier)
    msg = validate(cbor.loads(sign1.payload))
    t = msg["t"]
    if not t.endswith("_reply") and t != "error" and msg["kiosk"] != sign1.kid:
        fault(_NOT_SIGNER, (), t + ".kiosk: ")
    return sign1.kid, msg


def seal_settlement(record, kid, signer):
    """The gateway's signed settlement (settle_reply.settlement) for a settlement_record."""
    return cose.sign1(cbor.dumps(validate_settlement(record)), kid, signer)


def open_settlement(data, verifier):
    """Verify a signed settlement with the pinned gateway key; returns the settlement_record."""
    sign1 = cose.decode1(data)
    cose.verify1(sign1, verifier)
    return validate_settlement(cbor.loads(sign1.payload))


# ---------------------------------------------------------------- gateway key certificates
def seal_cert(record, kid, signer):
    """A gateway_cert (frames.cddl: the gateway key's kid, key and serial) signed by the
    operator's authority key `signer` under `kid`: the sign_in_reply's cert."""
    return cose.sign1(cbor.dumps(validate_cert(record)), kid, signer)


def validate_cert(record):
    """Check a gateway_cert record; returns it unchanged."""
    try:
        _map(record, _find("gateway_cert", 0, 12, "\n@"), -1)
        if len(record["key"]) != 32:
            fault(_KEY_SIZE, (), "key: ")
    except ProtocolError as exc:
        msg = exc.msg
        raise ProtocolError(
            "invalid", "gateway_cert" + (msg if msg[0] in "[:" else "." + msg)) from None
    return record


def read_cert(data):
    """(sign1, record) of a gateway cert, its record checked but its signature NOT: the kiosk
    reads the serial first, and verifies (cose.verify1 with the authority key, after checking
    sign1.kid) only a cert that would change something."""
    sign1 = cose.decode1(data)
    return sign1, validate_cert(cbor.loads(sign1.payload))


def open_cert(data, authority_kid, authority_key):
    """The gateway_cert record of `data`, verified under the authority's key; bad_signature if
    another key signed it."""
    sign1, record = read_cert(data)
    if sign1.kid != authority_kid:
        fault(_BAD_CERT_SIGNER, (sign1.kid,))
    cose.verify1(sign1, authority_key)
    return record
