"""Deterministic CBOR (RFC 8949 §4.2.1) for the protocol's subset. Runs on MicroPython and CPython.

Values: int (-2**64 .. 2**64-1), bytes, str, list/tuple (decoded as list), dict, True/False/None,
and `Tag(tag, value)`. Map keys are ints -24..23 or text shorter than 24 bytes: for those keys
bytewise order of the encoded keys equals length-first order, so `dumps` is byte-identical to
`cbor2.dumps(x, canonical=True)`.

The decoder is strict: anything that `dumps` would not have produced is rejected with a
ProtocolError whose code names the fault (see errors.py). It never allocates more than the input
could hold: every declared length or count is checked against the remaining bytes first.

Written for a small heap (the board loads this as .mpy, and every function, global name and
constant costs RAM there): few functions, private constants inlined by const().
"""

from .errors import fault

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


MAX_DEPTH = const(16)  # nested arrays, maps and tags; a top-level scalar has depth 0
_UINT64_MAX = const(0xFFFFFFFFFFFFFFFF)

# Fault numbers (errors.fault): the code's index in errors.CODES * 32 + the text's number in
# texts.py. The decoder's texts get " at byte N" appended.
_TRUNCATED = const(0 * 32)  # cbor_truncated
_BAD_OFFSET = const(_TRUNCATED + 0)
_NO_ITEM = const(_TRUNCATED + 1)
_SHORT_ARGUMENT = const(_TRUNCATED + 2)
_LONG_BYTES = const(_TRUNCATED + 3)
_LONG_TEXT = const(_TRUNCATED + 4)
_LONG_ARRAY = const(_TRUNCATED + 5)
_LONG_MAP = const(_TRUNCATED + 6)
_NO_KEY = const(_TRUNCATED + 7)
_NOT_SHORTEST = const(1 * 32)  # cbor_non_canonical
_INDEFINITE = const(2 * 32)  # cbor_indefinite
_FLOAT = const(3 * 32)  # cbor_float
_FLOAT_VALUE = const(3 * 32 + 1)
_DUPLICATE = const(4 * 32)  # cbor_duplicate_key
_UNSORTED = const(5 * 32)  # cbor_unsorted_map
_TOO_DEEP = const(6 * 32)  # cbor_too_deep
_TRAILING = const(7 * 32)  # cbor_trailing
_NOT_UTF8_ENCODABLE = const(8 * 32)  # cbor_bad_utf8
_NOT_UTF8 = const(8 * 32 + 1)
_UNSUPPORTED = const(9 * 32)  # cbor_unsupported
_INT_ABOVE = const(_UNSUPPORTED + 0)
_INT_BELOW = const(_UNSUPPORTED + 1)
_BAD_TAG = const(_UNSUPPORTED + 2)
_BAD_KEY = const(_UNSUPPORTED + 3)
_CANNOT_ENCODE = const(_UNSUPPORTED + 4)
_SIMPLE = const(_UNSUPPORTED + 5)
_LONG_KEY = const(_UNSUPPORTED + 6)
_KEY_KIND = const(_UNSUPPORTED + 7)
_MALFORMED = const(10 * 32)  # cbor_malformed
_STRAY_BREAK = const(_MALFORMED + 0)
_RESERVED_AI = const(_MALFORMED + 1)
_AI_31 = const(_MALFORMED + 2)


class Tag:
    """A CBOR tag: `Tag(18, [...])` is a COSE_Sign1. (`!=` is the negation of `__eq__` on both
    runtimes.)"""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

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
    if n < 24:
        out.append(major << 5 | n)
        return
    # Additional info 24..27: 1, 2, 4 or 8 argument bytes, big-endian, written one by one
    # (struct.pack or to_bytes would allocate every time).
    ai = 24 if n < 0x100 else 25 if n < 0x10000 else 26 if n < 0x100000000 else 27
    out.append(major << 5 | ai)
    for shift in range((8 << (ai - 24)) - 8, -1, -8):
        out.append((n >> shift) & 0xFF)


def _encode(out, obj, depth):
    if obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif isinstance(obj, int):
        if obj > _UINT64_MAX:
            fault(_INT_ABOVE)
        if obj < -1 - _UINT64_MAX:
            fault(_INT_BELOW)
        if obj >= 0:
            _head(out, 0, obj)
        else:
            _head(out, 1, -1 - obj)
    elif isinstance(obj, str):
        try:
            raw = obj.encode("utf-8")
        except UnicodeError:  # lone surrogates (CPython only)
            raw = None
        if raw is None:
            fault(_NOT_UTF8_ENCODABLE)
        _head(out, 3, len(raw))
        out.extend(raw)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(out, 2, len(obj))
        out.extend(obj)
    elif isinstance(obj, (list, tuple, dict, Tag)):
        if depth >= MAX_DEPTH:
            fault(_TOO_DEEP)
        if isinstance(obj, Tag):
            tag = obj.tag
            if not isinstance(tag, int) or tag is True or tag is False or tag < 0 \
                    or tag > _UINT64_MAX:
                fault(_BAD_TAG)
            _head(out, 6, tag)
            _encode(out, obj.value, depth + 1)
        elif isinstance(obj, dict):
            # Each key's sort key: its one-byte encoding for an int, its UTF-8 for a text.
            # Ints (below 0x38) sort before texts (0x60 + length), shorter texts first, then
            # by their bytes. Insertion sort of both lists in place: maps are small, and
            # sorted() with a key would allocate a tuple per entry.
            keys = list(obj)
            sort_keys = []
            for key in keys:
                if isinstance(key, int) and key is not True and key is not False \
                        and -24 <= key <= 23:
                    sort_keys.append(key if key >= 0 else 0x20 | (-1 - key))
                    continue
                if isinstance(key, str):
                    try:
                        raw = key.encode("utf-8")
                    except UnicodeError:  # lone surrogates (CPython only)
                        raw = None
                    if raw is None:
                        fault(_NOT_UTF8_ENCODABLE)
                    if len(raw) < 24:
                        sort_keys.append(raw)
                        continue
                fault(_BAD_KEY, (key,))
            for i in range(1, len(keys)):
                j = i
                while j > 0:
                    a = sort_keys[j]
                    b = sort_keys[j - 1]
                    if isinstance(a, int):
                        if isinstance(b, int) and a >= b:
                            break
                    elif isinstance(b, int) or len(a) > len(b) or (len(a) == len(b) and a >= b):
                        break
                    sort_keys[j] = b
                    sort_keys[j - 1] = a
                    keys[j], keys[j - 1] = keys[j - 1], keys[j]
                    j -= 1
            _head(out, 5, len(keys))
            for i in range(len(keys)):
                key = sort_keys[i]
                if isinstance(key, int):
                    out.append(key)
                else:
                    _head(out, 3, len(key))
                    out.extend(key)
                _encode(out, obj[keys[i]], depth + 1)
        else:
            _head(out, 4, len(obj))
            for item in obj:
                _encode(out, item, depth + 1)
    elif isinstance(obj, float):
        fault(_FLOAT)
    else:
        fault(_CANNOT_ENCODE, (type(obj).__name__,))


# ---------------------------------------------------------------- decoding
def loads(data):
    """Decode exactly one item from `data` (bytes, bytearray or memoryview); nothing may follow."""
    value, end = load_item(data, 0)
    if end != len(data):
        fault(_TRAILING, (len(data) - end,))
    return value


def load_item(data, offset=0):
    """Decode one item starting at `offset`; returns (value, offset just past it).

    For reading one item out of a larger buffer without copying it: `data` may be a memoryview,
    and only byte and text strings are copied out of it.
    """
    buf = data if isinstance(data, memoryview) else memoryview(data)
    if offset < 0 or offset > len(buf):
        fault(_BAD_OFFSET)
    at = [offset]  # the read position, shared by the recursive calls
    value = _item(buf, at, 0)
    return value, at[0]


def _fail(n, pos, args=()):
    fault(n, args, "", " at byte %d" % pos)


def _item(buf, at, depth):
    """The item at buf[at[0]:]; at[0] is moved past it."""
    start = at[0]
    end = len(buf)
    if start >= end:
        _fail(_NO_ITEM, start)
    major = buf[start] >> 5
    ai = buf[start] & 31
    if major == 7:
        if 20 <= ai <= 22:
            at[0] = start + 1
            return (False, True, None)[ai - 20]
        if 25 <= ai <= 27:
            _fail(_FLOAT_VALUE, start)
        if ai == 31:
            _fail(_STRAY_BREAK, start)
        if ai > 27:
            _fail(_RESERVED_AI, start, (ai,))
        _fail(_SIMPLE, start)
    if ai == 31:
        if 1 < major < 6:
            _fail(_INDEFINITE, start)
        _fail(_AI_31, start, (major,))
    if ai > 27:
        _fail(_RESERVED_AI, start, (ai,))
    pos = start + 1
    n = ai
    if ai >= 24:  # the argument follows in 1, 2, 4 or 8 bytes, in its shortest form
        size = 1 << (ai - 24)
        if size > end - pos:
            _fail(_SHORT_ARGUMENT, pos)
        n = 0
        for i in range(pos, pos + size):
            n = (n << 8) | buf[i]
        if n < (24, 0x100, 0x10000, 0x100000000)[ai - 24]:
            _fail(_NOT_SHORTEST, pos)
        pos += size
    at[0] = pos
    if major < 2:
        return n if major == 0 else -1 - n
    if major < 4:
        if n > end - pos:
            _fail(_LONG_BYTES if major == 2 else _LONG_TEXT, pos)
        at[0] = pos + n
        if major == 2:
            return bytes(buf[pos:pos + n])
        return utf8_text(buf[pos:pos + n], start)
    if depth >= MAX_DEPTH:
        _fail(_TOO_DEEP, start)
    if major == 4:
        if n > end - pos:  # every element takes at least one byte
            _fail(_LONG_ARRAY, pos)
        items = []
        for _ in range(n):
            items.append(_item(buf, at, depth + 1))
        return items
    if major == 6:
        return Tag(n, _item(buf, at, depth + 1))
    if 2 * n > end - pos:  # every map entry takes at least two bytes
        _fail(_LONG_MAP, pos)
    result = {}
    prev_head = -1  # initial byte of the previous key
    prev_key = None
    for _ in range(n):
        key_at = at[0]
        if key_at >= end:  # the count fitted the input, the entries did not
            _fail(_NO_KEY, key_at)
        head = buf[key_at]
        key = _item(buf, at, depth + 1)
        # Deterministic keys are unique and in bytewise order of their encoding. Within one
        # initial byte, ints are equal or different values and texts have equal length, and
        # code-point order of str equals bytewise order of UTF-8.
        if isinstance(key, str):
            if at[0] - key_at > 24:
                _fail(_LONG_KEY, key_at)
        elif not isinstance(key, int) or key is True or key is False or not -24 <= key <= 23:
            _fail(_KEY_KIND, key_at)
        if head == prev_head and key == prev_key:
            _fail(_DUPLICATE, key_at, (key,))
        if head < prev_head or (head == prev_head and key < prev_key):
            _fail(_UNSORTED, key_at, (key,))
        prev_head = head
        prev_key = key
        result[key] = _item(buf, at, depth + 1)
    return result


def utf8_text(raw, at=0):
    """`raw` (bytes or memoryview) as str if it is strict UTF-8, else ProtocolError (naming byte
    `at` of the input it came from)."""
    try:
        text = str(raw, "utf-8")
    except UnicodeError:
        text = None
    # MicroPython's decoder accepts surrogates, overlong forms and code points past U+10FFFF;
    # check strictly (RFC 3629, Table 3-7 of the Unicode standard) whenever the text is not
    # plain ASCII, so both runtimes agree.
    if text is not None and len(text) != len(raw):
        i = 0
        n = len(raw)
        while text is not None and i < n:
            c = raw[i]
            i += 1
            if c < 0x80:
                continue
            lo = 0x80  # the range of the first continuation byte
            hi = 0xBF
            if 0xC2 <= c <= 0xDF:
                follow = 1
            elif 0xE0 <= c <= 0xEF:
                follow = 2
                if c == 0xE0:
                    lo = 0xA0  # no overlong forms
                elif c == 0xED:
                    hi = 0x9F  # no surrogates
            elif 0xF0 <= c <= 0xF4:
                follow = 3
                if c == 0xF0:
                    lo = 0x90
                elif c == 0xF4:
                    hi = 0x8F  # nothing past U+10FFFF
            else:
                text = None
                break
            if i + follow > n:
                text = None
                break
            for j in range(i, i + follow):
                if not lo <= raw[j] <= hi:
                    text = None
                lo = 0x80
                hi = 0xBF
            i += follow
    if text is None:
        fault(_NOT_UTF8, (at,))
    return text
