"""The social-security card (SSSE) application, sans-I/O: the APDUs the kiosk sends and the
checks on what the card answers. The byte-level reader protocol lives in drivers.cardreader.

Record layout and status words: hardware/card-reader.md.
"""

# SELECT by DF name: "sx1.sh." + GBK "社会保障" (15 bytes).
SSSE_AID = b"sx1.sh.\xc9\xe7\xbb\xe1\xb1\xa3\xd5\xcf"
SELECT_SSSE = b"\x00\xa4\x04\x00\x0f" + SSSE_AID

# What the kiosk reads, in order: (file id, ((record id, value size, result key), ...)).
READ_PLAN = (
    (0xEF05, ((0x01, 16, "card_id"), (0x05, 4, "issue"), (0x06, 4, "expiry"),
              (0x07, 9, "card_no"))),
    (0xEF06, ((0x08, 18, "ssn"), (0x09, 30, "name_gbk"))),
)

_DIGITS = b"0123456789"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = b"abcdefghijklmnopqrstuvwxyz"


class CardError(Exception):
    """A card read that failed; `code` is one of the codes in drivers.cardreader's docstring."""

    def __init__(self, code, msg=""):
        super().__init__(code, msg)
        self.code = code
        self.msg = msg

    def __str__(self):
        return self.code + ": " + self.msg if self.msg else self.code


def select_ef(fid):
    return bytes((0x00, 0xA4, 0x02, 0x00, 0x02, fid >> 8, fid & 0xFF))


def read_record(record_id, size):
    # P2 = 0x00: P1 is the record identifier (the TLV tag), first occurrence, current EF.
    return bytes((0x00, 0xB2, record_id, 0x00, size + 2))


def sw_ok(rapdu):
    return rapdu[-2] == 0x90 and rapdu[-1] == 0x00


def sw_text(rapdu):
    return "SW %02X%02X" % (rapdu[-2], rapdu[-1])


def record_value(rapdu, record_id, size):
    """The value of a READ RECORD answer `tag len value SW1 SW2`, checked against the plan."""
    if not sw_ok(rapdu):
        raise CardError("bad_status", "READ RECORD %02X: %s" % (record_id, sw_text(rapdu)))
    if len(rapdu) != size + 4 or rapdu[0] != record_id or rapdu[1] != size:
        raise CardError("bad_record", "record %02X: malformed TLV" % record_id)
    return memoryview(rapdu)[2:2 + size]


def decode_field(key, value, record_id):
    """A record value as the driver returns it, or CardError("bad_record")."""
    if key == "name_gbk":
        end = len(value)
        while end and value[end - 1] in (0x00, 0x20):  # GBK trail bytes are never 00 or 20
            end -= 1
        if end:
            return bytes(value[:end])
    elif key == "issue" or key == "expiry":
        text = _bcd_date(value)
        if text:
            return text
    elif key == "ssn":
        if _all_in(value[:17], _DIGITS) and _all_in(value[17:], _DIGITS + b"X"):
            return bytes(value).decode()
    elif key == "card_no":
        if _all_in(value, _DIGITS + _UPPER):
            return bytes(value).decode()
    elif _all_in(value, _DIGITS + _UPPER + _LOWER):  # card_id
        return bytes(value).decode()
    raise CardError("bad_record", "record %02X: bad %s" % (record_id, key))


def _all_in(value, allowed):
    for b in value:
        if b not in allowed:
            return False
    return True


def _bcd_date(value):
    """4 BCD bytes YYYYMMDD as "YYYY-MM-DD", or None if not a plausible date."""
    digits = ""
    for b in value:
        if b >> 4 > 9 or b & 0x0F > 9:
            return None
        digits += "%02X" % b
    month = int(digits[4:6])
    day = int(digits[6:8])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return digits[0:4] + "-" + digits[4:6] + "-" + digits[6:8]


def atr_ok(atr):
    """True if `atr` is a structurally complete ISO 7816-3 ATR (TS, T0, interface bytes,
    historical bytes, and TCK when a protocol other than T=0 is offered)."""
    n = len(atr)
    if n < 2 or atr[0] not in (0x3B, 0x3F):
        return False
    y = atr[1] >> 4
    historical = atr[1] & 0x0F
    i = 2
    needs_tck = False
    while True:
        i += (y & 1) + (y >> 1 & 1) + (y >> 2 & 1)  # TAi, TBi, TCi
        if not y & 8:
            break
        if i >= n:
            return False
        td = atr[i]
        i += 1
        if td & 0x0F:
            needs_tck = True
        y = td >> 4
    if i + historical + needs_tck != n:
        return False
    if needs_tck:
        check = 0
        for b in memoryview(atr)[1:]:
            check ^= b
        return check == 0
    return True
