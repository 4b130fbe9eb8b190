"""The one exception a peer's violation raises, with a stable machine-readable code.

Runs on MicroPython and CPython. Codes are short text so they can travel in an `error` frame.
CODES lists every code, space-separated: first the internal ones, which say exactly what was
wrong with the bytes, then WIRE_CODES, the `error_code` choice of frames.cddl in its order.
`wire_code` folds any code into a wire code for the reply a peer sees.

    cbor_truncated      input ends inside an item, or a length exceeds the input
    cbor_non_canonical  an integer or length not in its shortest form
    cbor_indefinite     indefinite-length string, array or map
    cbor_float          floating-point value (money is integer fen)
    cbor_duplicate_key  a map key twice
    cbor_unsorted_map   map keys not in bytewise order of their encoding
    cbor_too_deep       more than cbor.MAX_DEPTH nested arrays / maps / tags
    cbor_trailing       bytes left after the one top-level item
    cbor_bad_utf8       text string that is not strict UTF-8
    cbor_unsupported    well-formed but outside the subset (undefined, big keys)
    cbor_malformed      not well-formed: reserved additional info, stray break
    cose_malformed      not a tag-18 [protected, unprotected, payload, signature]
    cose_bad_alg        protected header does not say EdDSA (-8)
    cose_bad_kid        kid missing, empty, too long or not UTF-8
    frame_cobs          COBS code bytes point past the end of the frame
    frame_crc           CRC-32 missing or wrong
    frame_empty         two delimiters in a row
    malformed ... internal   the wire codes; the protocol raises too_large (framing),
                        bad_signature (cose), unknown_kiosk, unsupported_version and invalid
                        (messages), the gateway the others.

The protocol's modules raise with `fault(n, ...)`: n is a fault number, the index of the code
in CODES * 32 + the number of the text among that code's texts. The texts are in texts.py,
imported only while a fault is raised, and dropped again on MicroPython: on the board they would
otherwise take heap for good, for the rare moment one is needed. (A module-level name per code,
or a string object per text, costs the board heap too.)
"""

import sys

CODES = "cbor_truncated cbor_non_canonical cbor_indefinite cbor_float cbor_duplicate_key " \
        "cbor_unsorted_map cbor_too_deep cbor_trailing cbor_bad_utf8 cbor_unsupported " \
        "cbor_malformed cose_malformed cose_bad_alg cose_bad_kid frame_cobs frame_crc " \
        "frame_empty malformed too_large bad_signature unknown_kiosk revoked replay stale " \
        "unsupported_version invalid unknown_person card_expired unknown_bill bill_settled " \
        "amount_changed txn_conflict not_found cancel_refused unavailable internal"


class ProtocolError(Exception):
    def __init__(self, code, msg=""):
        super().__init__(code, msg)
        self.code = code
        self.msg = msg

    def __str__(self):
        return self.code + (": " + self.msg if self.msg else "")


def code_of(n):
    """The code of fault number n (see fault)."""
    start = 0
    for _ in range(n >> 5):
        start = CODES.index(" ", start) + 1
    end = CODES.find(" ", start)
    return CODES[start:end if end > 0 else len(CODES)]


def fault(n, args=(), before="", after=""):
    """Raise the ProtocolError of fault number n: its code, and its text from texts.py
    %-formatted with `args` and put between `before` and `after`."""
    try:
        from . import texts

        at = texts.TEXTS.index("\n%d " % n)  # "\n<n> <code> <text>"
        at = texts.TEXTS.index(" ", texts.TEXTS.index(" ", at) + 1) + 1
        end = texts.TEXTS.find("\n", at)
        text = texts.TEXTS[at:end if end > 0 else len(texts.TEXTS)] % args
        if sys.implementation.name == "micropython":  # free its heap again
            del sys.modules[texts.__name__]
            del sys.modules[__name__[:-7]].__dict__["texts"]  # the package's attribute
    except (MemoryError, ImportError):  # no heap for the texts, or a board deployed without
        text = "(fault %d)" % n  # them: the code alone still says what was wrong
    raise ProtocolError(code_of(n), before + text + after)


def wire_code(code):
    """The frames.cddl error_code to send for a ProtocolError code.

    Anything wrong with the bytes themselves (CBOR, COSE structure, framing) is "malformed";
    codes that already are wire codes pass through; anything else is "internal".
    """
    wire = CODES.index(" malformed ")
    at = CODES.find(code, wire) if isinstance(code, str) and code and " " not in code else -1
    while at >= 0:  # a whole word, not part of one
        end = at + len(code)
        if CODES.startswith(" ", at - 1) and (end == len(CODES) or CODES.startswith(" ", end)):
            return code
        at = CODES.find(code, at + 1)
    if code.startswith("cbor_") or code.startswith("cose_") or code.startswith("frame_"):
        return "malformed"
    return "internal"


def __getattr__(name):
    # WIRE_CODES is made when asked for (a new tuple each time), so it takes no heap at import.
    if name == "WIRE_CODES":
        return tuple(CODES[CODES.index(" malformed ") + 1:].split(" "))
    raise AttributeError(name)
