"""Deterministic CBOR (RFC 8949 §4.2.1) for the protocol's subset. Runs on MicroPython and CPython.

Values: int (-2**64 .. 2**64-1), bytes, str, list/tuple (decoded as list), dict, True/False/None,
and `Tag(tag, value)`. Map keys are ints -24..23 or text shorter than 24 bytes: for those keys
bytewise order of the encoded keys equals length-first order, so `dumps` is byte-identical to
`cbor2.dumps(x, canonical=True)`.

The decoder is strict: anything that `dumps` would not have produced is rejected with a
ProtocolError whose code names the fault (see errors.py). It never allocates more than the input
could hold: every declared length or count is checked against the remaining bytes first.
"""

from .errors import (
    CBOR_BAD_UTF8,
    CBOR_DUPLICATE_KEY,
    CBOR_FLOAT,
    CBOR_INDEFINITE,
    CBOR_MALFORMED,
    CBOR_NON_CANONICAL,
    CBOR_TOO_DEEP,
    CBOR_TRAILING,
    CBOR_TRUNCATED,
    CBOR_UNSORTED_MAP,
    CBOR_UNSUPPORTED,
    ProtocolError,
)

MAX_DEPTH = 16  # nested arrays, maps and tags; a top-level scalar has depth 0
_UINT64_MAX = 0xFFFFFFFFFFFFFFFF
# Smallest value that needs 1, 2, 4, 8 argument bytes (additional info 24..27).
_SHORTEST = (24, 0x100, 0x10000, 0x100000000)


class Tag:
    """A CBOR tag: `Tag(18, [...])` is a COSE_Sign1."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None  # the value may be a list

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


# ---------------------------------------------------------------- encoding
def dumps(obj):
    """The deterministic encoding of `obj` as bytes."""
    out = bytearray()
    _encode(out, obj, 0)
    return bytes(out)


def _head(out, major, n):
    mt = major << 5
    if n < 24:
        out.append(mt | n)
        return
    # Argument bytes big-endian, written one by one: struct.pack would allocate every time.
    if n < 0x100:
        out.append(mt | 24)
        size = 1
    elif n < 0x10000:
        out.append(mt | 25)
        size = 2
    elif n < 0x100000000:
        out.append(mt | 26)
        size = 4
    else:
        out.append(mt | 27)
        size = 8
    for shift in range(8 * (size - 1), -1, -8):
        out.append((n >> shift) & 0xFF)


def _utf8(text):
    try:
        return text.encode("utf-8")
    except UnicodeError:  # lone surrogates (CPython only)
        raise ProtocolError(CBOR_BAD_UTF8, "text is not encodable as UTF-8") from None


def _encode(out, obj, depth):
    if obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif isinstance(obj, int):
        if obj >= 0:
            if obj > _UINT64_MAX:
                raise ProtocolError(CBOR_UNSUPPORTED, "integer above 2**64-1")
            _head(out, 0, obj)
        else:
            if obj < -1 - _UINT64_MAX:
                raise ProtocolError(CBOR_UNSUPPORTED, "integer below -2**64")
            _head(out, 1, -1 - obj)
    elif isinstance(obj, str):
        raw = _utf8(obj)
        _head(out, 3, len(raw))
        out.extend(raw)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(out, 2, len(obj))
        out.extend(obj)
    elif isinstance(obj, (list, tuple)):
        _enter(depth)
        _head(out, 4, len(obj))
        for item in obj:
            _encode(out, item, depth + 1)
    elif isinstance(obj, dict):
        _enter(depth)
        keys = list(obj)
        sort_keys = [_sort_key(k) for k in keys]
        _sort_together(sort_keys, keys)
        _head(out, 5, len(keys))
        for i in range(len(keys)):
            encoded = sort_keys[i]
            if isinstance(encoded, int):
                out.append(encoded)
            else:
                _head(out, 3, len(encoded))
                out.extend(encoded)
            _encode(out, obj[keys[i]], depth + 1)
    elif isinstance(obj, Tag):
        _enter(depth)
        if not isinstance(obj.tag, int) or obj.tag is True or obj.tag is False \
                or obj.tag < 0 or obj.tag > _UINT64_MAX:
            raise ProtocolError(CBOR_UNSUPPORTED, "tag number must be 0..2**64-1")
        _head(out, 6, obj.tag)
        _encode(out, obj.value, depth + 1)
    elif isinstance(obj, float):
        raise ProtocolError(CBOR_FLOAT, "floats are not allowed (money is integer fen)")
    else:
        raise ProtocolError(CBOR_UNSUPPORTED, "cannot encode " + type(obj).__name__)


def _enter(depth):
    if depth >= MAX_DEPTH:
        raise ProtocolError(CBOR_TOO_DEEP, "nesting deeper than %d" % MAX_DEPTH)


def _sort_key(key):
    """What orders a map key: its one-byte encoding for an int, its UTF-8 for a text."""
    if isinstance(key, int) and key is not True and key is not False and -24 <= key <= 23:
        return key if key >= 0 else 0x20 | (-1 - key)
    if isinstance(key, str):
        raw = _utf8(key)
        if len(raw) < 24:
            return raw
    raise ProtocolError(
        CBOR_UNSUPPORTED, "map key %r: must be an int -24..23 or text under 24 bytes" % (key,))


def _before(a, b):
    """Bytewise order of encoded keys: ints (one byte, below 0x38) before texts (0x60 + length),
    shorter texts first, then by their bytes."""
    if isinstance(a, int):
        return not isinstance(b, int) or a < b
    if isinstance(b, int):
        return False
    return len(a) < len(b) or (len(a) == len(b) and a < b)


def _sort_together(sort_keys, keys):
    """Insertion sort of both lists by sort_keys, in place: maps are small, and sorted() with
    a key would allocate a tuple per entry."""
    for i in range(1, len(sort_keys)):
        j = i
        while j > 0 and _before(sort_keys[j], sort_keys[j - 1]):
            sort_keys[j], sort_keys[j - 1] = sort_keys[j - 1], sort_keys[j]
            keys[j], keys[j - 1] = keys[j - 1], keys[j]
            j -= 1


# ---------------------------------------------------------------- decoding
def loads(data):
    """Decode exactly one item from `data` (bytes, bytearray or memoryview); nothing may follow."""
    reader = _Reader(data, 0)
    value = reader.item(0)
    if reader.pos != reader.end:
        raise ProtocolError(CBOR_TRAILING, "%d bytes after the item" % (reader.end - reader.pos))
    return value


def load_item(data, offset=0):
    """Decode one item starting at `offset`; returns (value, offset just past it).

    For reading one item out of a larger buffer without copying it: `data` may be a memoryview,
    and only byte and text strings are copied out of it.
    """
    reader = _Reader(data, offset)
    value = reader.item(0)
    return value, reader.pos


class _Reader:
    def __init__(self, data, offset):
        self.buf = data if isinstance(data, memoryview) else memoryview(data)
        self.pos = offset
        self.end = len(self.buf)
        if offset < 0 or offset > self.end:
            raise ProtocolError(CBOR_TRUNCATED, "offset outside the input")

    def _fail(self, code, what):
        raise ProtocolError(code, "%s at byte %d" % (what, self.pos))

    def _argument(self, ai):
        """The argument that follows the initial byte (additional info 24..27), shortest form."""
        size = 1 << (ai - 24)
        pos = self.pos
        if size > self.end - pos:
            self._fail(CBOR_TRUNCATED, "argument runs past the end")
        buf = self.buf
        n = 0
        for i in range(pos, pos + size):
            n = (n << 8) | buf[i]
        if n < _SHORTEST[ai - 24]:
            self._fail(CBOR_NON_CANONICAL, "argument not in shortest form")
        self.pos = pos + size
        return n

    def _check_room(self, needed, what):
        if needed > self.end - self.pos:
            self._fail(CBOR_TRUNCATED, what + " longer than the remaining input")

    def item(self, depth):
        if self.pos >= self.end:
            self._fail(CBOR_TRUNCATED, "input ends where an item was expected")
        ib = self.buf[self.pos]
        major = ib >> 5
        ai = ib & 31
        if major == 7:
            return self._simple(ai)
        if ai == 31:
            if major in (2, 3, 4, 5):
                self._fail(CBOR_INDEFINITE, "indefinite length")
            self._fail(CBOR_MALFORMED, "additional info 31 on major type %d" % major)
        if ai > 27:
            self._fail(CBOR_MALFORMED, "reserved additional info %d" % ai)
        start = self.pos
        self.pos += 1
        n = ai if ai < 24 else self._argument(ai)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            self._check_room(n, "byte string")
            value = bytes(self.buf[self.pos:self.pos + n])
            self.pos += n
            return value
        if major == 3:
            self._check_room(n, "text string")
            value = _decode_utf8(self.buf[self.pos:self.pos + n], start)
            self.pos += n
            return value
        if depth >= MAX_DEPTH:
            self.pos = start
            self._fail(CBOR_TOO_DEEP, "nesting deeper than %d" % MAX_DEPTH)
        if major == 4:
            self._check_room(n, "array")  # every element takes at least one byte
            items = []
            for _ in range(n):
                items.append(self.item(depth + 1))
            return items
        if major == 5:
            self._check_room(2 * n, "map")  # every entry takes at least two bytes
            return self._map(n, depth)
        return Tag(n, self.item(depth + 1))  # major 6

    def _simple(self, ai):
        if ai == 20 or ai == 21 or ai == 22:
            self.pos += 1
            return (False, True, None)[ai - 20]
        if 25 <= ai <= 27:
            self._fail(CBOR_FLOAT, "floating-point value")
        if ai == 31:
            self._fail(CBOR_MALFORMED, "break outside an indefinite-length item")
        if ai > 27:
            self._fail(CBOR_MALFORMED, "reserved additional info %d" % ai)
        self._fail(CBOR_UNSUPPORTED, "simple value other than true/false/null")

    def _map(self, count, depth):
        result = {}
        prev_head = -1  # initial byte of the previous key
        prev_key = None
        for _ in range(count):
            key_start = self.pos
            if key_start >= self.end:  # the count fitted the input, the entries did not
                self._fail(CBOR_TRUNCATED, "input ends where a map key was expected")
            head = self.buf[key_start]
            key = self.item(depth + 1)
            # Deterministic keys are unique and in bytewise order of their encoding. Within one
            # initial byte, ints are equal or different values and texts have equal length, and
            # code-point order of str equals bytewise order of UTF-8.
            if isinstance(key, str):
                if self.pos - key_start > 24:
                    self.pos = key_start
                    self._fail(CBOR_UNSUPPORTED, "text map key of 24 bytes or more")
            elif not isinstance(key, int) or key is True or key is False or not -24 <= key <= 23:
                self.pos = key_start
                self._fail(CBOR_UNSUPPORTED, "map key must be an int -24..23 or short text")
            if head == prev_head and key == prev_key:
                self.pos = key_start
                self._fail(CBOR_DUPLICATE_KEY, "duplicate map key %r" % (key,))
            if head < prev_head or (head == prev_head and key < prev_key):
                self.pos = key_start
                self._fail(CBOR_UNSORTED_MAP, "map key %r out of order" % (key,))
            prev_head = head
            prev_key = key
            result[key] = self.item(depth + 1)
        return result


def utf8_text(raw):
    """`raw` (bytes or memoryview) as str if it is strict UTF-8, else ProtocolError."""
    return _decode_utf8(raw, 0)


def _decode_utf8(raw, start):
    try:
        text = str(raw, "utf-8")
    except UnicodeError:
        text = None
    # MicroPython's decoder accepts surrogates, overlong forms and code points past U+10FFFF;
    # check strictly whenever the text is not plain ASCII so both runtimes agree.
    if text is None or (len(text) != len(raw) and not _strict_utf8(raw)):
        raise ProtocolError(CBOR_BAD_UTF8, "text string at byte %d is not UTF-8" % start)
    return text


def _strict_utf8(raw):
    """RFC 3629 well-formedness (Table 3-7 of the Unicode standard)."""
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            follow = 1
        elif 0xE0 <= c <= 0xEF:
            follow = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F  # no surrogates
        elif 0xF0 <= c <= 0xF4:
            follow = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F  # nothing past U+10FFFF
        else:
            return False
        if i + follow >= n:
            return False
        second = raw[i + 1]
        if second < lo or second > hi:
            return False
        for j in range(i + 2, i + 1 + follow):
            if not 0x80 <= raw[j] <= 0xBF:
                return False
        i += 1 + follow
    return True
