"""Frames on a byte stream: COBS(payload + CRC-32 little-endian) + 0x00. Runs on both runtimes.

The same framing runs on UART and TCP. COBS removes every 0x00 from the frame, so 0x00 always
marks a frame boundary and a receiver that joins mid-stream, or loses bytes, resynchronises at
the next one. The CRC-32 (binascii.crc32 of the payload) catches corruption COBS cannot see.
On a serial line the transports also write a 0x00 before each frame (not `encode`, whose bytes
the vectors pin): noise on an idle line is then a run of its own, not the head of the next
frame; the empty run between two delimiters is counted in `.stats["empty"]` and skipped.

    deframer = Deframer()
    deframer.receive_data(chunk)          # any split of the stream
    while (frame := deframer.next_frame()) is not None: ...

`Deframer` never buffers more than one maximum-size encoded frame: a longer run is dropped up to
the next delimiter. Bad frames are skipped and counted in `.stats`, never raised.
"""

import binascii

from .errors import code_of, fault

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


MAX_FRAME = const(4096)  # payload bytes (the COSE_Sign1), before CRC and COBS
DELIMITER = const(0x00)

# Fault numbers (errors.fault): the code's index in errors.CODES * 32 + the text's number in
# texts.py.
_ZERO = const(14 * 32)  # frame_cobs
_PAST_END = const(14 * 32 + 1)
_FULL_BLOCK = const(14 * 32 + 2)
_NO_CRC = const(15 * 32)  # frame_crc
_BAD_CRC = const(15 * 32 + 1)
_EMPTY = const(16 * 32)  # frame_empty
_TOO_LARGE = const(18 * 32)  # too_large
_TOO_LONG = const(18 * 32 + 1)


def max_encoded(max_frame=MAX_FRAME):
    """Longest COBS run (without the delimiter) a payload of `max_frame` bytes can produce."""
    n = max_frame + 4  # + CRC
    return n + n // 254 + 1


def encode(payload):
    """One frame ready to write: COBS(payload + CRC) followed by the 0x00 delimiter."""
    size = len(payload)
    if size > MAX_FRAME:
        fault(_TOO_LARGE, (size, MAX_FRAME))
    crc = binascii.crc32(payload) & 0xFFFFFFFF
    n = size + 4
    out = bytearray(n + n // 254 + 2)  # the worst case; trimmed at the end
    code_at = 0  # where the current block's code byte goes
    w = 1
    for i in range(n):
        b = payload[i] if i < size else (crc >> (8 * (i - size))) & 0xFF  # CRC little-endian
        if b == 0:
            out[code_at] = w - code_at
            code_at = w
            w += 1
        else:
            out[w] = b
            w += 1
            if w - code_at == 0xFF:  # a full block of 254 non-zero bytes carries no zero
                out[code_at] = 0xFF
                code_at = w
                w += 1
    out[code_at] = w - code_at
    out[w] = 0
    return bytes(memoryview(out)[:w + 1])


def decode(frame, max_frame=MAX_FRAME):
    """The payload of one COBS run (bytes or bytearray, delimiter removed), or ProtocolError.

    Strict: a run decodes only if it is exactly what `encode` produces for its payload.
    """
    payload = _decode(bytearray(frame), max_frame)
    if isinstance(payload, tuple):
        fault(payload[0], payload[1])
    return payload


def _decode(run, max_frame):
    """decode, in place in the bytearray `run`: the payload, or (fault number, its arguments).

    Decoding only shrinks, so each block moves down within `run` (slice assignment is a memmove
    on both runtimes): the board needs no second buffer of the frame's size.
    """
    n = len(run)
    if n == 0:
        return _EMPTY, ()
    if n > max_encoded(max_frame):
        return _TOO_LONG, (n,)
    if b"\x00" in run:
        return _ZERO, ()
    view = memoryview(run)
    w = 0
    i = 0
    while i < n:
        code = run[i]
        end = i + code
        if end > n:
            return _PAST_END, (i,)
        view[w:w + code - 1] = view[i + 1:end]
        w += code - 1
        if code != 0xFF:
            if end < n:
                run[w] = 0
                w += 1
        elif end == n:  # encode always closes a full block with one more code byte
            return _FULL_BLOCK, ()
        i = end
    if w < 4:
        return _NO_CRC, ()
    size = w - 4
    if size > max_frame:
        return _TOO_LARGE, (size, max_frame)
    if binascii.crc32(view[:size]) & 0xFFFFFFFF != (
            run[size] | run[size + 1] << 8 | run[size + 2] << 16 | run[size + 3] << 24):
        return _BAD_CRC, ()
    return bytes(view[:size])


class Deframer:
    """Bytes in, verified payloads out (sans-I/O)."""

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self._partial = bytearray()  # the current run up to its delimiter, at most one frame
        self._overflow = False  # the current run outgrew a frame: drop it up to the delimiter
        self._ready = []  # verified payloads not yet taken by next_frame
        self.stats = {"cobs": 0, "crc": 0, "too_large": 0, "empty": 0}

    def receive_data(self, data):
        """Feed bytes as they arrive; the caller may reuse `data` afterwards."""
        if isinstance(data, memoryview):
            data = bytes(data)
        start = 0
        end = len(data)
        while start < end:
            stop = data.find(b"\x00", start)
            if stop < 0:
                stop = end
            if not self._overflow and start < stop:
                if len(self._partial) + (stop - start) > max_encoded(self.max_frame):
                    self._overflow = True
                    self._partial = bytearray()  # release it now, not at the delimiter
                else:
                    self._partial.extend(memoryview(data)[start:stop])
            if stop == end:
                return
            # The delimiter: the run so far is one frame. A bad one is counted, without its
            # fault text (errors.fault would load it, for noise on the line).
            run = self._partial
            self._partial = bytearray()
            if self._overflow:
                self.stats["too_large"] += 1
                self._overflow = False
            else:
                payload = _decode(run, self.max_frame)
                if isinstance(payload, tuple):
                    code = code_of(payload[0])  # frame_cobs -> "cobs", too_large, ...
                    self.stats[code[6:] if code.startswith("frame_") else code] += 1
                else:
                    self._ready.append(payload)
            start = stop + 1

    def next_frame(self):
        """The next verified payload (bytes), or None until more data arrives."""
        if self._ready:
            return self._ready.pop(0)
        return None

    @property
    def waiting(self):
        """Verified payloads not yet taken by next_frame (a receiver that takes them slower
        than they come stops reading when this grows)."""
        return len(self._ready)

    @property
    def buffered(self):
        """Bytes of an unfinished frame held (0 while dropping an over-long run)."""
        return len(self._partial)

    @property
    def in_frame(self):
        """Inside a frame: bytes of one held, or an over-long one being dropped."""
        return self._overflow or bool(self._partial)

    def reset(self):
        """Drop an unfinished frame (link reset or read timeout); returns the bytes dropped."""
        dropped = len(self._partial)
        self._partial = bytearray()
        self._overflow = False
        return dropped
