"""COSE_Sign1 (RFC 9052 §4.2) with EdDSA / Ed25519 only. Runs on MicroPython and CPython.

    COSE_Sign1 = 18([protected: bstr .cbor {1: -8}, unprotected: {4: kid}, payload: bstr,
                     signature: bstr .size 64])

The protected header we send is always h'a10127' (cbor.dumps({1: -8})); the kid is 1..64 bytes
of UTF-8. The signature covers Sig_structure ["Signature1", protected, h'', payload] built from
the bytes as *received*, so a verifier never re-encodes what the signer sent. Signers and
verifiers are duck-typed: `signer.sign(msg) -> 64 bytes`, `verifier.verify(msg, sig) -> bool`
(protocol.ed25519 on the board, onestop.host.keys on the host).
"""

from . import cbor
from .errors import ProtocolError, fault

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


# Fault numbers (errors.fault): the code's index in errors.CODES * 32 + the text's number in
# texts.py.
_MALFORMED = const(11 * 32)  # cose_malformed
_SIGNER = const(_MALFORMED + 0)
_NOT_TAG = const(_MALFORMED + 1)
_NOT_ARRAY = const(_MALFORMED + 2)
_PROTECTED_TYPE = const(_MALFORMED + 3)
_PROTECTED_CBOR = const(_MALFORMED + 4)
_PROTECTED_MAP = const(_MALFORMED + 5)
_PROTECTED_EXTRA = const(_MALFORMED + 6)
_UNPROTECTED_MAP = const(_MALFORMED + 7)
_UNPROTECTED_EXTRA = const(_MALFORMED + 8)
_PAYLOAD = const(_MALFORMED + 9)
_SIGNATURE = const(_MALFORMED + 10)
_NO_ALG = const(12 * 32)  # cose_bad_alg
_ALG = const(12 * 32 + 1)
_KID = const(13 * 32)  # cose_bad_kid
_KID_TYPE = const(_KID + 0)
_KID_SIZE = const(_KID + 1)
_NO_KID = const(_KID + 2)
_KID_UTF8 = const(_KID + 3)
_BAD_SIGNATURE = const(19 * 32)  # bad_signature


class Sign1:
    """A decoded (not yet verified) COSE_Sign1."""

    def __init__(self, protected, kid, payload, signature):
        self.protected = protected  # bytes exactly as received
        self.kid = kid  # str
        self.payload = payload  # bytes exactly as received
        self.signature = signature  # 64 bytes

    def to_be_signed(self):
        """The Sig_structure bytes the signature covers, cbor.dumps(["Signature1", protected,
        b"", payload]) made in one piece: the board has no heap to spare for a growing buffer
        and its copy, next to a payload as large as the frame."""
        payload = self.payload  # bytes, or any bytes-like given to sign1
        return b"".join((b"\x84\x6aSignature1", _head(self.protected), self.protected, b"\x40",
                         _head(payload), payload if isinstance(payload, bytes) else bytes(payload)))

    def __repr__(self):
        return "Sign1(kid=%r, payload=%d bytes)" % (self.kid, len(self.payload))


def _head(data):
    """The CBOR head of a byte string as long as `data`."""
    head = bytearray(cbor.dumps(len(data)))  # an unsigned int's head: major type 0
    head[0] |= 0x40  # major type 2
    return head


def sign1(payload, kid, signer):
    """The tag-18 COSE_Sign1 bytes carrying `payload`, signed by `signer` under `kid` (text)."""
    if not isinstance(kid, str):
        fault(_KID_TYPE)
    raw = kid.encode("utf-8")
    if not 0 < len(raw) <= 64:
        fault(_KID_SIZE)
    signature = signer.sign(Sign1(b"\xa1\x01\x27", kid, payload, None).to_be_signed())
    if len(signature) != 64:
        fault(_SIGNER, (len(signature),))
    return cbor.dumps(cbor.Tag(18, [b"\xa1\x01\x27", {4: raw}, payload, signature]))


def decode1(data):
    """Parse a COSE_Sign1; CBOR faults keep their cbor_* code, structure faults are cose_*."""
    outer = cbor.loads(data)
    if not isinstance(outer, cbor.Tag) or outer.tag != 18:
        fault(_NOT_TAG)
    parts = outer.value
    if not isinstance(parts, list) or len(parts) != 4:
        fault(_NOT_ARRAY)
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes):
        fault(_PROTECTED_TYPE)
    if not protected:  # RFC 9052 §3: h'' is an empty protected header, so no alg
        fault(_NO_ALG)
    try:
        header = cbor.loads(protected)
        reason = None
    except ProtocolError as exc:
        header = None
        reason = str(exc)  # raised below, outside this handler: no exception context
    if reason is not None:
        fault(_PROTECTED_CBOR, (reason,))
    if not isinstance(header, dict):
        fault(_PROTECTED_MAP)
    if header.get(1) != -8:
        fault(_ALG, (header.get(1),))
    if len(header) != 1:  # e.g. crit: a header we would have to understand
        fault(_PROTECTED_EXTRA)
    if not isinstance(unprotected, dict):
        fault(_UNPROTECTED_MAP)
    if 4 not in unprotected:
        fault(_NO_KID)
    if len(unprotected) != 1:
        fault(_UNPROTECTED_EXTRA)
    kid = unprotected[4]
    if not isinstance(kid, bytes) or not 0 < len(kid) <= 64:
        fault(_KID_SIZE)
    try:
        kid = cbor.utf8_text(kid)
    except ProtocolError:
        kid = None  # raised below, outside this handler: no exception context
    if kid is None:
        fault(_KID_UTF8)
    if not isinstance(payload, bytes):
        fault(_PAYLOAD)
    if not isinstance(signature, bytes) or len(signature) != 64:
        fault(_SIGNATURE)
    return Sign1(protected, kid, payload, signature)


def verify1(sign1, verifier):
    """Check the signature over the received bytes; returns the payload, or raises bad_signature."""
    if not verifier.verify(sign1.to_be_signed(), sign1.signature):
        fault(_BAD_SIGNATURE, (sign1.kid,))
    return sign1.payload
