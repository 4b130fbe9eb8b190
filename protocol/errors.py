"""The one exception a peer's violation raises, with a stable machine-readable code.

Runs on MicroPython and CPython. Codes are short text so they can travel in an `error` frame.
Internal codes (cbor_*, cose_*, frame_*) say exactly what was wrong with the bytes; `wire_code`
folds them into the `error_code` set of frames.cddl for the reply a peer sees.
"""


class ProtocolError(Exception):
    def __init__(self, code, msg=""):
        super().__init__(code, msg)
        self.code = code
        self.msg = msg

    def __str__(self):
        return self.code + (": " + self.msg if self.msg else "")


# ---------------------------------------------------------------- CBOR decoder / encoder
CBOR_TRUNCATED = "cbor_truncated"  # input ends inside an item, or a length exceeds the input
CBOR_NON_CANONICAL = "cbor_non_canonical"  # an integer or length not in its shortest form
CBOR_INDEFINITE = "cbor_indefinite"  # indefinite-length string, array or map
CBOR_FLOAT = "cbor_float"  # floating-point value (money is integer fen)
CBOR_DUPLICATE_KEY = "cbor_duplicate_key"
CBOR_UNSORTED_MAP = "cbor_unsorted_map"  # map keys not in bytewise order of their encoding
CBOR_TOO_DEEP = "cbor_too_deep"  # more than cbor.MAX_DEPTH nested arrays / maps / tags
CBOR_TRAILING = "cbor_trailing"  # bytes left after the one top-level item
CBOR_BAD_UTF8 = "cbor_bad_utf8"  # text string that is not strict UTF-8
CBOR_UNSUPPORTED = "cbor_unsupported"  # well-formed but outside the subset (undefined, big keys)
CBOR_MALFORMED = "cbor_malformed"  # not well-formed: reserved additional info, stray break

# ---------------------------------------------------------------- COSE_Sign1
COSE_MALFORMED = "cose_malformed"  # not a tag-18 [protected, unprotected, payload, signature]
COSE_BAD_ALG = "cose_bad_alg"  # protected header does not say EdDSA (-8)
COSE_BAD_KID = "cose_bad_kid"  # kid missing, empty, too long or not UTF-8

# ---------------------------------------------------------------- framing
FRAME_COBS = "frame_cobs"  # COBS code bytes point past the end of the frame
FRAME_CRC = "frame_crc"  # CRC-32 missing or wrong
FRAME_EMPTY = "frame_empty"  # two delimiters in a row

# ---------------------------------------------------------------- wire error codes (frames.cddl)
MALFORMED = "malformed"
TOO_LARGE = "too_large"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KIOSK = "unknown_kiosk"
REVOKED = "revoked"
REPLAY = "replay"
STALE = "stale"
UNSUPPORTED_VERSION = "unsupported_version"
INVALID = "invalid"
UNKNOWN_PERSON = "unknown_person"
CARD_EXPIRED = "card_expired"
UNKNOWN_BILL = "unknown_bill"
BILL_SETTLED = "bill_settled"
AMOUNT_CHANGED = "amount_changed"
TXN_CONFLICT = "txn_conflict"
NOT_FOUND = "not_found"
CANCEL_REFUSED = "cancel_refused"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"

# The error_code choice of frames.cddl, in its order (messages.py validates against this).
WIRE_CODES = (
    MALFORMED, TOO_LARGE, BAD_SIGNATURE, UNKNOWN_KIOSK, REVOKED, REPLAY, STALE,
    UNSUPPORTED_VERSION, INVALID, UNKNOWN_PERSON, CARD_EXPIRED, UNKNOWN_BILL, BILL_SETTLED,
    AMOUNT_CHANGED, TXN_CONFLICT, NOT_FOUND, CANCEL_REFUSED, UNAVAILABLE, INTERNAL,
)


def wire_code(code):
    """The frames.cddl error_code to send for a ProtocolError code.

    Anything wrong with the bytes themselves (CBOR, COSE structure, framing) is "malformed";
    codes that already are wire codes pass through; anything else is "internal".
    """
    if code in WIRE_CODES:
        return code
    if code.startswith("cbor_") or code.startswith("cose_") or code.startswith("frame_"):
        return MALFORMED
    return INTERNAL
