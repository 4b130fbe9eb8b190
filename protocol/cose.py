"""COSE_Sign1 (RFC 9052 §4.2) with EdDSA / Ed25519 only. Runs on MicroPython and CPython.

    COSE_Sign1 = 18([protected: bstr .cbor {1: -8}, unprotected: {4: kid}, payload: bstr,
                     signature: bstr .size 64])

The signature covers Sig_structure ["Signature1", protected, h'', payload] built from the bytes
as *received*, so a verifier never re-encodes what the signer sent. Signers and verifiers are
duck-typed: `signer.sign(msg) -> 64 bytes`, `verifier.verify(msg, sig) -> bool` (protocol.ed25519
on the board, onestop.host.keys on the host).
"""

from . import cbor
from .errors import (
    BAD_SIGNATURE,
    COSE_BAD_ALG,
    COSE_BAD_KID,
    COSE_MALFORMED,
    ProtocolError,
)

TAG_SIGN1 = 18
ALG_EDDSA = -8
HEADER_ALG = 1
HEADER_KID = 4
MAX_KID = 64  # bytes of UTF-8
SIGNATURE_SIZE = 64
PROTECTED_EDDSA = b"\xa1\x01\x27"  # cbor.dumps({1: -8}), the only protected header we send


class Sign1:
    """A decoded (not yet verified) COSE_Sign1."""

    def __init__(self, protected, kid, payload, signature):
        self.protected = protected  # bytes exactly as received
        self.kid = kid  # str
        self.payload = payload  # bytes exactly as received
        self.signature = signature  # 64 bytes

    def to_be_signed(self):
        """The Sig_structure bytes the signature covers."""
        return _sig_structure(self.protected, self.payload)

    def __repr__(self):
        return "Sign1(kid=%r, payload=%d bytes)" % (self.kid, len(self.payload))


def _sig_structure(protected, payload):
    return cbor.dumps(["Signature1", protected, b"", payload])


def sign1(payload, kid, signer):
    """The tag-18 COSE_Sign1 bytes carrying `payload`, signed by `signer` under `kid` (text)."""
    kid_bytes = _kid_bytes(kid)
    signature = signer.sign(_sig_structure(PROTECTED_EDDSA, payload))
    if len(signature) != SIGNATURE_SIZE:
        raise ProtocolError(COSE_MALFORMED, "signer returned %d bytes" % len(signature))
    return cbor.dumps(
        cbor.Tag(TAG_SIGN1, [PROTECTED_EDDSA, {HEADER_KID: kid_bytes}, payload, signature]))


def _kid_bytes(kid):
    if not isinstance(kid, str):
        raise ProtocolError(COSE_BAD_KID, "kid must be text")
    raw = kid.encode("utf-8")
    if not 0 < len(raw) <= MAX_KID:
        raise ProtocolError(COSE_BAD_KID, "kid must be 1..%d bytes" % MAX_KID)
    return raw


def decode1(data):
    """Parse a COSE_Sign1; CBOR faults keep their cbor_* code, structure faults are cose_*."""
    outer = cbor.loads(data)
    if not isinstance(outer, cbor.Tag) or outer.tag != TAG_SIGN1:
        raise ProtocolError(COSE_MALFORMED, "not a COSE_Sign1 (tag 18)")
    parts = outer.value
    if not isinstance(parts, list) or len(parts) != 4:
        raise ProtocolError(COSE_MALFORMED, "COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes):
        raise ProtocolError(COSE_MALFORMED, "protected header must be a byte string")
    _check_protected(protected)
    if not isinstance(unprotected, dict):
        raise ProtocolError(COSE_MALFORMED, "unprotected header must be a map")
    kid = _check_unprotected(unprotected)
    if not isinstance(payload, bytes):
        raise ProtocolError(COSE_MALFORMED, "payload must be a byte string (not detached)")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise ProtocolError(COSE_MALFORMED, "signature must be %d bytes" % SIGNATURE_SIZE)
    return Sign1(protected, kid, payload, signature)


def _check_protected(protected):
    if not protected:  # RFC 9052 §3: h'' is an empty protected header, so no alg
        raise ProtocolError(COSE_BAD_ALG, "alg must be EdDSA (-8), protected header is empty")
    try:
        header = cbor.loads(protected)
    except ProtocolError as exc:
        raise ProtocolError(COSE_MALFORMED, "protected header: " + str(exc)) from None
    if not isinstance(header, dict):
        raise ProtocolError(COSE_MALFORMED, "protected header must encode a map")
    if header.get(HEADER_ALG) != ALG_EDDSA:
        raise ProtocolError(COSE_BAD_ALG, "alg must be EdDSA (-8), got %r" % (header.get(1),))
    if len(header) != 1:  # e.g. crit: a header we would have to understand
        raise ProtocolError(COSE_MALFORMED, "unexpected protected header parameters")


def _check_unprotected(unprotected):
    if HEADER_KID not in unprotected:
        raise ProtocolError(COSE_BAD_KID, "kid missing")
    if len(unprotected) != 1:
        raise ProtocolError(COSE_MALFORMED, "unexpected unprotected header parameters")
    raw = unprotected[HEADER_KID]
    if not isinstance(raw, bytes) or not 0 < len(raw) <= MAX_KID:
        raise ProtocolError(COSE_BAD_KID, "kid must be 1..%d bytes" % MAX_KID)
    try:
        return cbor.utf8_text(raw)
    except ProtocolError:
        raise ProtocolError(COSE_BAD_KID, "kid is not UTF-8") from None


def verify1(sign1, verifier):
    """Check the signature over the received bytes; returns the payload, or raises bad_signature."""
    if not verifier.verify(sign1.to_be_signed(), sign1.signature):
        raise ProtocolError(BAD_SIGNATURE, "signature does not verify for kid " + sign1.kid)
    return sign1.payload
