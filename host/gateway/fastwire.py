"""The host's fast path for signed frames: the same bytes and the same verdicts as
onestop.protocol (cbor, cose, messages, framing), at a fraction of the CPU.

The board's protocol modules are pure Python written for a 64 KB heap; on the gateway they were
over a third of the CPU per request. Here the work is done by C code where it is exact:

- CBOR: `cbor2` (C) decodes; a frame is accepted only if re-encoding the decoded value
  deterministically (`cbor2.dumps(x, canonical=True)`, byte-identical to protocol.cbor for our
  subset) gives back exactly the bytes received, and the value passed the message checks below
  (which admit only text, unsigned integers, byte strings, booleans, arrays and maps: no floats,
  undefined, tags or big keys). So non-shortest forms, unsorted or duplicate keys, indefinite
  lengths, floats and everything else protocol.cbor refuses never pass here.
- COSE_Sign1: the one layout we use (tag 18, protected {1: -8}, unprotected {4: kid}) is
  parsed and built directly from bytes.
- Messages: checkers compiled once from protocol/spec/frames.cddl (normative), the spec
  protocol.messages also follows; types are checked exactly (`type(x) is int`...).

Every check here only ever *accepts*. Anything unusual — a bad signature, a malformed or
non-canonical frame, a message the compiled checker does not pass, a kid that is not the
request's kiosk — is handed to the reference implementation (protocol.messages.open / validate,
protocol.cbor, protocol.framing), which raises its ProtocolError with its code, or accepts. So
the errors a peer sees are the reference's by construction, and the fast path cannot accept what
the reference refuses as long as its checks are at least as strict: tests/host/gateway/
test_fastwire.py checks that with hypothesis against the reference, value for value and code for
code.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import cbor2
from onestop.protocol import cose, framing, messages
from onestop.protocol.errors import ProtocolError

UINT64_MAX = 0xFFFFFFFFFFFFFFFF
PROTECTED_EDDSA = b"\xa1\x01\x27"  # {1: -8}: alg EdDSA, the only protected header we send
MAX_KID = 64  # bytes of UTF-8, as protocol.cose
SIGNATURE_SIZE = 64
# tag 18, array of 4, bstr(3) {1: -8}, map of 1, key 4
_SIGN1_PREFIX = b"\xd2\x84\x43" + PROTECTED_EDDSA + b"\xa1\x04"
_SIGNATURE_HEAD = b"\x58\x40"
# Sig_structure = ["Signature1", protected, h'', payload]
_TBS_PREFIX = b"\x84\x6aSignature1\x43" + PROTECTED_EDDSA + b"\x40"


# ---------------------------------------------------------------- frames.cddl, compiled


class _Spec:
    """The subset of CDDL (RFC 8610) that frames.cddl uses, compiled into checkers.

    Rules are `name = type` or `name = ( group )`; types are tstr, uint, bytes, bool, literal
    texts and integers, rule names, choices `a / b`, `tstr .regexp "..."`, `bytes .size n`,
    maps `{ group }` and arrays `[ group ]`; group entries are `? key: type`, `key: type`,
    `* type` or a group rule's name. Anything else raises ValueError (the spec grew past what
    this compiler knows: extend it, do not guess).
    """

    _TOKEN = re.compile(
        r'\s+|;[^\n]*|(?P<str>"[^"]*")|(?P<num>\d+)|(?P<ctl>\.[a-z]+)'
        r"|(?P<id>[A-Za-z_][A-Za-z0-9_\-]*)|(?P<p>[=,:/?*{}\[\]()])"
    )

    def __init__(self, text: str) -> None:
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.rules: dict[str, Any] = {}
        while self.pos < len(self.tokens):
            kind, name = self._next()
            if kind != "id" or self._next() != ("p", "="):
                raise ValueError(f"frames.cddl: expected `name =` at {name!r}")
            self.rules[name] = self._type()

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            match = self._TOKEN.match(text, pos)
            if match is None:
                raise ValueError(f"frames.cddl: cannot read {text[pos:pos + 20]!r}")
            pos = match.end()
            if match.lastgroup:
                tokens.append((match.lastgroup, match.group(match.lastgroup)))
        return tokens

    def _peek(self, ahead: int = 0) -> tuple[str, str]:
        at = self.pos + ahead
        return self.tokens[at] if at < len(self.tokens) else ("end", "")

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        self.pos += 1
        return token

    def _type(self) -> Any:
        options = [self._type1()]
        while self._peek() == ("p", "/"):
            self._next()
            options.append(self._type1())
        return options[0] if len(options) == 1 else ("choice", options)

    def _type1(self) -> Any:
        base = self._type2()
        if self._peek()[0] == "ctl":
            _, op = self._next()
            kind, arg = self._next()
            if op == ".regexp" and base == ("ref", "tstr") and kind == "str":
                return ("regexp", arg[1:-1])
            if op == ".size" and base == ("ref", "bytes") and kind == "num":
                return ("bytes_size", int(arg))
            raise ValueError(f"frames.cddl: control {op} on {base} is not supported")
        return base

    def _type2(self) -> Any:
        kind, value = self._next()
        if kind == "str":
            return ("text", value[1:-1])
        if kind == "num":
            return ("int", int(value))
        if kind == "id":
            return ("ref", value)
        if (kind, value) == ("p", "{"):
            return ("map", self._group("}"))
        if (kind, value) == ("p", "["):
            return ("array", self._group("]"))
        if (kind, value) == ("p", "("):
            return ("group", self._group(")"))
        raise ValueError(f"frames.cddl: unexpected {value!r}")

    def _group(self, close: str) -> list[tuple[str, str | None, Any]]:
        entries: list[tuple[str, str | None, Any]] = []
        while self._peek() != ("p", close):
            occurrence = ""
            if self._peek() in (("p", "?"), ("p", "*")):
                occurrence = self._next()[1]
            key = None
            if self._peek()[0] in ("id", "str") and self._peek(1) == ("p", ":"):
                key = self._next()[1].strip('"')
                self._next()
            entries.append((occurrence, key, self._type()))
            if self._peek() == ("p", ","):
                self._next()
        self._next()
        return entries


def _uint(value: Any) -> bool:
    return type(value) is int and 0 <= value <= UINT64_MAX


_PRELUDE: dict[str, Callable[[Any], bool]] = {
    "uint": _uint,
    "tstr": lambda value: type(value) is str,
    "bytes": lambda value: type(value) is bytes,
    "bool": lambda value: value is True or value is False,
}


class Checkers:
    """Predicates compiled from frames.cddl: `message(msg)` and `settlement(record)` are True
    only for values the spec allows, with exact Python types (what cbor2 decodes to)."""

    def __init__(self, text: str) -> None:
        spec = _Spec(text)
        self._rules = spec.rules
        self._compiled: dict[str, Callable[[Any], bool]] = {}
        self.by_type: dict[str, list[Callable[[Any], bool]]] = {}
        self.requests = frozenset(self._message_types("request"))
        self.replies = frozenset(self._message_types("reply"))
        for t in self.requests | self.replies:
            self.by_type.setdefault(t, [])
        for name in self._alternatives("frame"):
            for t, check in self._maps_of(name):
                self.by_type[t].append(check)
        self.settlement = self._rule("settlement_record")
        self.kiosk_id = self._rule("kiosk_id_text")  # the text a request's kiosk (its kid) is
        self.txn_id = self._rule("txn_id_text")

    # ---- which rules are messages
    def _alternatives(self, name: str) -> list[str]:
        node = self._rules[name]
        options = node[1] if node[0] == "choice" else [node]
        names = []
        for option in options:
            if option[0] != "ref":
                raise ValueError(f"frames.cddl: {name} must be a choice of rule names")
            names.append(option[1])
        return names

    def _message_types(self, name: str) -> list[str]:
        return [t for rule in self._alternatives(name) for t, _ in self._maps_of(rule)]

    def _maps_of(self, name: str) -> list[tuple[str, Callable[[Any], bool]]]:
        """(t, checker) for each map a message rule may be (settlement_query_reply is two)."""
        node = self._rules[name]
        if node[0] == "map":
            entries = self._flatten(node[1])
            ts = [typ for _, key, typ in entries if key == "t"]
            if len(ts) != 1 or ts[0][0] != "text":
                raise ValueError(f"frames.cddl: message {name} needs one literal t")
            return [(ts[0][1], self._rule(name))]
        if node[0] == "choice":
            return [pair for option in node[1] for pair in self._maps_of(option[1])]
        raise ValueError(f"frames.cddl: {name} is not a message map")

    # ---- compilation
    def _rule(self, name: str) -> Callable[[Any], bool]:
        if name in _PRELUDE:
            return _PRELUDE[name]
        if name not in self._compiled:
            self._compiled[name] = self._compile(self._rules[name])
        return self._compiled[name]

    def _flatten(self, entries: list[Any]) -> list[Any]:
        """Group entries with group references expanded in place."""
        flat = []
        for occurrence, key, typ in entries:
            if key is None and typ[0] == "ref" and self._rules.get(typ[1], ("",))[0] == "group":
                if occurrence:
                    raise ValueError(f"frames.cddl: occurrence on group {typ[1]}")
                flat.extend(self._flatten(self._rules[typ[1]][1]))
            elif key is None and typ[0] == "group":
                flat.extend(self._flatten(typ[1]))
            else:
                flat.append((occurrence, key, typ))
        return flat

    def _compile(self, node: Any) -> Callable[[Any], bool]:
        kind = node[0]
        if kind == "ref":
            return self._rule(node[1])
        if kind == "text":
            text = node[1]
            return lambda value: type(value) is str and value == text
        if kind == "int":
            number = node[1]
            return lambda value: type(value) is int and value == number
        if kind == "regexp":
            fullmatch = re.compile(node[1]).fullmatch
            return lambda value: type(value) is str and fullmatch(value) is not None
        if kind == "bytes_size":
            size = node[1]
            return lambda value: type(value) is bytes and len(value) == size
        if kind == "choice":
            options = [self._compile(option) for option in node[1]]
            return lambda value: any(check(value) for check in options)
        if kind == "map":
            return self._compile_map(self._flatten(node[1]))
        if kind == "array":
            return self._compile_array(self._flatten(node[1]))
        raise ValueError(f"frames.cddl: cannot check {node}")

    def _compile_map(self, entries: list[Any]) -> Callable[[Any], bool]:
        fields = []
        for occurrence, key, typ in entries:
            if key is None or occurrence not in ("", "?"):
                raise ValueError("frames.cddl: map entries must be `key: type` or `? key: type`")
            fields.append((key, occurrence == "?", self._compile(typ)))
        missing = object()

        def check_map(value: Any) -> bool:
            if type(value) is not dict:
                return False
            present = 0
            for key, optional, check in fields:
                item = value.get(key, missing)
                if item is missing:
                    if not optional:
                        return False
                elif check(item):
                    present += 1
                else:
                    return False
            return present == len(value)  # closed map: nothing else

        return check_map

    def _compile_array(self, entries: list[Any]) -> Callable[[Any], bool]:
        if len(entries) == 1 and entries[0][0] == "*":
            each = self._compile(entries[0][2])
            return lambda value: type(value) is list and all(each(item) for item in value)
        if any(occurrence for occurrence, _, _ in entries):
            raise ValueError("frames.cddl: only [* type] or fixed arrays are supported")
        checks = [self._compile(typ) for _, _, typ in entries]
        size = len(checks)

        def check_array(value: Any) -> bool:
            return type(value) is list and len(value) == size and all(
                check(item) for check, item in zip(checks, value, strict=True))

        return check_array

    # ---- the entry points
    def message(self, msg: Any) -> bool:
        if type(msg) is not dict:
            return False
        t = msg.get("t")
        if type(t) is not str:
            return False
        for check in self.by_type.get(t, ()):
            if check(msg):
                return True
        return False


def _load_checkers() -> Checkers:
    text = resources.files("onestop.protocol").joinpath("spec/frames.cddl").read_text("utf-8")
    return Checkers(text)


CHECKS = _load_checkers()
REQUESTS = CHECKS.requests


# ---------------------------------------------------------------- CBOR
# Deterministic CBOR orders map keys bytewise by their encoding: for text keys under 24 bytes
# (all our maps have only such keys, the checkers see to it) that is shorter first, then by
# UTF-8 bytes. cbor2 writes a dict in its own order and every other item in shortest form, so
# a dict whose keys are already in that order encodes exactly as protocol.cbor does; putting
# them in order here is cheaper than cbor2's canonical mode (which sorts by encoding each key).

_ORDERED: set[tuple[str, ...]] = set()  # key tuples known to be in deterministic order
_REORDER: dict[tuple[str, ...], tuple[str, ...]] = {}  # insertion order -> deterministic
_CACHE_LIMIT = 4096


def _sorted_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(keys, key=lambda key: (len(key.encode("utf-8")), key.encode("utf-8"))))


def _in_order(value: Any) -> bool:
    """Every map in `value` (text keys only) has its keys in deterministic order."""
    kind = type(value)
    if kind is dict:
        keys = tuple(value)
        if keys not in _ORDERED:
            if _sorted_keys(keys) != keys:
                return False
            if len(_ORDERED) < _CACHE_LIMIT:
                _ORDERED.add(keys)
        for item in value.values():
            if (type(item) is dict or type(item) is list) and not _in_order(item):
                return False
    elif kind is list:
        for item in value:
            if (type(item) is dict or type(item) is list) and not _in_order(item):
                return False
    return True


def _ordered(value: Any) -> Any:
    """`value` with every map's keys (text) in deterministic order."""
    kind = type(value)
    if kind is dict:
        keys = tuple(value)
        order = _REORDER.get(keys)
        if order is None:
            order = _sorted_keys(keys)
            if len(_REORDER) >= _CACHE_LIMIT:
                _REORDER.clear()
            _REORDER[keys] = order
        result = {}
        for key in order:
            item = value[key]
            result[key] = _ordered(item) if type(item) is dict or type(item) is list else item
        return result
    if kind is list:
        return [_ordered(item) if type(item) is dict or type(item) is list else item
                for item in value]
    return value


def _dumps(value: Any) -> bytes:
    """Deterministic CBOR of a value the checkers passed (text-keyed maps, plain types)."""
    return cbor2.dumps(_ordered(value))


def canonical_dumps(value: Any) -> bytes:
    """Deterministic CBOR of any value in protocol.cbor's subset (cbor2's canonical mode)."""
    return cbor2.dumps(value, canonical=True)


def _decoded(data: bytes, check: Callable[[Any], bool]) -> Any:
    """The value `data` encodes if it is the deterministic encoding of a value `check` passes;
    else None (the caller asks the reference for its verdict).

    cbor2 accepts more than protocol.cbor (non-shortest heads, indefinite lengths, duplicate
    or unsorted keys...); re-encoding the value gives back the very bytes only if none of that
    was there: keys in deterministic order (checked), everything else in the one form cbor2
    writes (shortest, definite), and a duplicate key would have left one entry fewer.
    """
    try:
        value = cbor2.loads(data)
    except Exception:  # cbor2 has many ways to refuse; the reference names the fault
        return None
    if not check(value) or not _in_order(value):
        return None
    try:
        if cbor2.dumps(value) != data:
            return None
    except Exception:
        return None
    return value


# ---------------------------------------------------------------- messages


def validate(msg: Any) -> Any:
    """messages.validate, fast when the message is plainly valid."""
    if CHECKS.message(msg):
        return msg
    return messages.validate(msg)


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + n.to_bytes(8, "big")


def _to_be_signed(payload: bytes) -> bytes:
    return _TBS_PREFIX + _head(2, len(payload)) + payload


def sign1(payload: bytes, kid: str, signer: Any) -> bytes:
    """protocol.cose.sign1 for our layout: the same bytes."""
    try:
        raw = kid.encode("utf-8") if type(kid) is str else b""
    except UnicodeEncodeError:
        raw = b""
    if not 0 < len(raw) <= MAX_KID:
        return cose.sign1(payload, kid, signer)  # raises its cose_bad_kid
    signature = signer.sign(_to_be_signed(payload))
    if len(signature) != SIGNATURE_SIZE:
        return cose.sign1(payload, kid, signer)  # raises its cose_malformed
    return (_SIGN1_PREFIX + _head(2, len(raw)) + raw + _head(2, len(payload)) + payload
            + _SIGNATURE_HEAD + signature)


def sealed_size(msg: dict[str, Any], kid: str) -> int:
    """The length of seal(msg, kid, key)'s bytes, without signing (a valid message)."""
    payload, raw = _dumps(msg), kid.encode("utf-8")
    return (len(_SIGN1_PREFIX) + len(_head(2, len(raw))) + len(raw) + len(_head(2, len(payload)))
            + len(payload) + len(_SIGNATURE_HEAD) + SIGNATURE_SIZE)


def _bstr(data: bytes, pos: int) -> tuple[int, int] | None:
    """(length, position after the head) of a byte string head in shortest form at `pos`."""
    if pos >= len(data):
        return None
    initial = data[pos]
    if initial >> 5 != 2:
        return None
    info = initial & 31
    if info < 24:
        return info, pos + 1
    if info > 27:
        return None
    size = 1 << (info - 24)
    if pos + 1 + size > len(data):
        return None
    n = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
    if n < (24, 0x100, 0x10000, 0x100000000)[info - 24]:
        return None  # not shortest: the reference names it
    return n, pos + 1 + size


def split_sign1(data: bytes) -> tuple[str, bytes, bytes] | None:
    """(kid, payload, signature) of a COSE_Sign1 in exactly our deterministic layout, or None."""
    if not data.startswith(_SIGN1_PREFIX):
        return None
    head = _bstr(data, len(_SIGN1_PREFIX))
    if head is None:
        return None
    kid_len, pos = head
    if not 0 < kid_len <= MAX_KID:
        return None
    raw_kid = data[pos:pos + kid_len]
    head = _bstr(data, pos + kid_len)
    if head is None:
        return None
    payload_len, pos = head
    end = pos + payload_len
    if len(data) != end + 2 + SIGNATURE_SIZE or data[end:end + 2] != _SIGNATURE_HEAD:
        return None
    try:
        kid = raw_kid.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return kid, data[pos:end], data[end + 2:]


def _payload(value: Any, check: Callable[[Any], bool]) -> bytes | None:
    """The deterministic CBOR of `value` if `check` passes it and cbor2 encodes it; else None
    (text that is not UTF-8, say: the reference names the fault)."""
    if not check(value):
        return None
    try:
        return _dumps(value)
    except Exception:
        return None


def seal(msg: dict[str, Any], kid: str, signer: Any) -> bytes:
    """messages.seal: validate, deterministic CBOR, COSE_Sign1."""
    payload = _payload(msg, CHECKS.message)
    if payload is None:
        return messages.seal(msg, kid, signer)
    return sign1(payload, kid, signer)


def open(data: bytes, key_for: Callable[[str], Any]) -> tuple[str, dict[str, Any]]:  # noqa: A001
    """messages.open: verify and decode sealed bytes; returns (kid, msg)."""
    parts = split_sign1(data)
    if parts is None:
        return messages.open(data, key_for)
    kid, payload, signature = parts
    verifier = key_for(kid)  # its ProtocolError (unknown_kiosk, revoked) is the reference's too
    if verifier is None or not verifier.verify(_to_be_signed(payload), signature):
        return messages.open(data, key_for)
    msg = _decoded(payload, CHECKS.message)
    if msg is None or (msg["t"] in REQUESTS and msg["kiosk"] != kid):
        return messages.open(data, key_for)
    return kid, msg


def seal_settlement(record: dict[str, Any], kid: str, signer: Any) -> bytes:
    """messages.seal_settlement: the gateway's signed settlement_record."""
    payload = _payload(record, CHECKS.settlement)
    if payload is None:
        return messages.seal_settlement(record, kid, signer)
    return sign1(payload, kid, signer)


def open_settlement(data: bytes, verifier: Any) -> dict[str, Any]:
    parts = split_sign1(data)
    if parts is not None:
        _kid, payload, signature = parts
        if verifier.verify(_to_be_signed(payload), signature):
            record = _decoded(payload, CHECKS.settlement)
            if record is not None:
                return record
    return messages.open_settlement(data, verifier)


# ---------------------------------------------------------------- framing


def encode_frame(payload: bytes) -> bytes:
    """framing.encode: COBS(payload + CRC-32 little-endian) + 0x00, the same bytes."""
    if len(payload) > framing.MAX_FRAME:
        return framing.encode(payload)  # raises its too_large
    data = bytes(payload) + (binascii.crc32(payload) & 0xFFFFFFFF).to_bytes(4, "little")
    out = bytearray()
    for chunk in data.split(b"\x00"):
        while len(chunk) >= 254:
            out.append(0xFF)
            out += chunk[:254]
            chunk = chunk[254:]
        out.append(len(chunk) + 1)
        out += chunk
    out.append(0)
    return bytes(out)


__all__ = [
    "CHECKS",
    "REQUESTS",
    "ProtocolError",
    "encode_frame",
    "open",
    "open_settlement",
    "seal",
    "seal_settlement",
    "sign1",
    "split_sign1",
    "validate",
]
