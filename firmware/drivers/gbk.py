# GBK <-> unicode for MicroPython, from sorted tables in flash (no codec, no big table in RAM).
"""Chinese text encoding for the printer (GB18030), the display (GB2312) and the card (GBK).

API:
    set_table_dir(path)   directory holding gbk_u2g.bin and gbk_g2u.bin (written on the host by
                          onestop.host.fwtables.build_gbk_tables); the board passes its flash dir.
    encode(text) -> bytes ASCII passes through; each other character becomes its two GBK bytes,
                          or b"?" when GBK has no such character.
    decode(data) -> str   GBK bytes to text. Like CPython's `data.decode("gbk", "replace")`:
                          a byte that does not start a valid pair becomes U+FFFD.
    code_of(char) -> int  the GBK code (0x8140..0xFEFE) of one non-ASCII character, or -1.
    close()               release the two open table files.

Each lookup is a binary search over fixed 4-byte records using seek + readinto into one
preallocated buffer (~15 seeks for 21,791 records); a small cache per direction catches the
characters a receipt or screen repeats. Two file handles stay open between calls.

The caches are direct-mapped: a slot per (code & mask) in arrays made at import, so a lookup
never allocates (a dict cache grew, and was cleared and grew again, in the middle of a session's
steps: each new table a long-lived block among the step's garbage, splitting the heap).
"""

from array import array

try:
    from micropython import const
except ImportError:  # CPython runs this module too, in the host-side property tests
    def const(value):
        return value

_U2G = "gbk_u2g.bin"
_G2U = "gbk_g2u.bin"
_MAGICS = (b"GBU1", b"GBD1")
_HEADER = const(8)
_SLOTS = (128, 32)  # cache slots per direction (powers of two): screens and receipts encode
_REPLACEMENT = const(0xFFFD)

_dir = "."
_files = [None, None]  # 0: unicode -> GBK, 1: GBK -> unicode
_counts = [0, 0]
# Per direction: the key cached in each slot (0: none; no key is 0) and its value (0: the key
# has no counterpart; no value is 0 either).
_keys = (array("H", bytes(2 * _SLOTS[0])), array("H", bytes(2 * _SLOTS[1])))
_values = (array("H", bytes(2 * _SLOTS[0])), array("H", bytes(2 * _SLOTS[1])))
_record = bytearray(4)  # one buffer for every probe: no allocation per lookup


def set_table_dir(path):
    global _dir
    close()
    _dir = path


def close():
    for i in (0, 1):
        f = _files[i]
        if f is not None:
            f.close()
            _files[i] = None
        keys = _keys[i]
        for slot in range(len(keys)):
            keys[slot] = 0


def _table(which):
    f = _files[which]
    if f is None:
        f = open(_dir + "/" + (_U2G, _G2U)[which], "rb")
        header = f.read(_HEADER)
        if len(header) != _HEADER or header[0:4] != _MAGICS[which]:
            f.close()
            raise ValueError("not a GBK table: " + (_U2G, _G2U)[which])
        count = (header[4] << 24) | (header[5] << 16) | (header[6] << 8) | header[7]
        if f.seek(0, 2) != _HEADER + 4 * count:
            f.close()
            raise ValueError("truncated GBK table: " + (_U2G, _G2U)[which])
        _counts[which] = count
        _files[which] = f
    return f


def _lookup(which, key):
    slot = key & (_SLOTS[which] - 1)
    if _keys[which][slot] == key:
        value = _values[which][slot]
        return value if value else -1
    f = _table(which)
    record = _record
    value = -1
    lo = 0
    hi = _counts[which] - 1
    while lo <= hi:
        mid = (lo + hi) >> 1
        f.seek(_HEADER + 4 * mid)
        f.readinto(record)
        found = (record[0] << 8) | record[1]
        if found < key:
            lo = mid + 1
        elif found > key:
            hi = mid - 1
        else:
            value = (record[2] << 8) | record[3]
            break
    _keys[which][slot] = key
    _values[which][slot] = value if value > 0 else 0
    return value


def code_of(char):
    cp = ord(char)
    if cp < 0x80 or cp > 0xFFFF:
        return -1
    return _lookup(0, cp)


def encode(text):
    out = bytearray()
    for char in text:
        cp = ord(char)
        if cp < 0x80:
            out.append(cp)
            continue
        code = _lookup(0, cp) if cp <= 0xFFFF else -1
        if code < 0:
            out.append(0x3F)  # "?": what the resident sees instead of a wrong glyph
        else:
            out.append(code >> 8)
            out.append(code & 0xFF)
    return bytes(out)


def _put_utf8(out, cp):
    if cp < 0x80:
        out.append(cp)
    elif cp < 0x800:
        out.append(0xC0 | (cp >> 6))
        out.append(0x80 | (cp & 0x3F))
    else:
        out.append(0xE0 | (cp >> 12))
        out.append(0x80 | ((cp >> 6) & 0x3F))
        out.append(0x80 | (cp & 0x3F))


def decode(data):
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            out.append(b)
            i += 1
            continue
        cp = -1
        if 0x81 <= b <= 0xFE and i + 1 < n:
            trail = data[i + 1]
            if 0x40 <= trail <= 0xFE and trail != 0x7F:
                cp = _lookup(1, (b << 8) | trail)
        if cp < 0:
            _put_utf8(out, _REPLACEMENT)
            i += 1  # resynchronise on the next byte, as CPython's "replace" does
        else:
            _put_utf8(out, cp)
            i += 2
    return str(out, "utf-8")
