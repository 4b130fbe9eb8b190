"""Frames on a byte stream: COBS(payload + CRC-32 little-endian) + 0x00. Runs on both runtimes.

The same framing runs on UART and TCP. COBS removes every 0x00 from the frame, so 0x00 always
marks a frame boundary and a receiver that joins mid-stream, or loses bytes, resynchronises at
the next one. The CRC-32 (binascii.crc32 of the payload) catches corruption COBS cannot see.

    deframer = Deframer()
    deframer.receive_data(chunk)          # any split of the stream
    while (frame := deframer.next_frame()) is not None: ...

`Deframer` never buffers more than one maximum-size encoded frame: a longer run is dropped up to
the next delimiter. Bad frames are skipped and counted in `.stats`, never raised.
"""

import binascii

from .errors import FRAME_COBS, FRAME_CRC, FRAME_EMPTY, TOO_LARGE, ProtocolError

MAX_FRAME = 4096  # payload bytes (the COSE_Sign1), before CRC and COBS
DELIMITER = 0x00


def max_encoded(max_frame=MAX_FRAME):
    """Longest COBS run (without the delimiter) a payload of `max_frame` bytes can produce."""
    n = max_frame + 4  # + CRC
    return n + n // 254 + 1


def encode(payload):
    """One frame ready to write: COBS(payload + CRC) followed by the 0x00 delimiter."""
    size = len(payload)
    if size > MAX_FRAME:
        raise ProtocolError(TOO_LARGE, "payload of %d bytes, maximum %d" % (size, MAX_FRAME))
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
    out[w] = DELIMITER
    return bytes(memoryview(out)[:w + 1])


def decode(frame, max_frame=MAX_FRAME):
    """The payload of one COBS run (bytes or bytearray, delimiter removed), or ProtocolError.

    Strict: a run decodes only if it is exactly what `encode` produces for its payload.
    """
    n = len(frame)
    if n == 0:
        raise ProtocolError(FRAME_EMPTY, "empty frame")
    if n > max_encoded(max_frame):
        raise ProtocolError(TOO_LARGE, "frame of %d encoded bytes" % n)
    if b"\x00" in frame:
        raise ProtocolError(FRAME_COBS, "zero byte inside a frame")
    body = bytearray(n)  # decoding only shrinks
    view = memoryview(body)
    source = memoryview(frame)
    w = 0
    i = 0
    while i < n:
        code = frame[i]
        end = i + code
        if end > n:
            raise ProtocolError(FRAME_COBS, "block at %d runs past the end" % i)
        view[w:w + code - 1] = source[i + 1:end]
        w += code - 1
        if code != 0xFF:
            if end < n:
                body[w] = 0
                w += 1
        elif end == n:  # encode always closes a full block with one more code byte
            raise ProtocolError(FRAME_COBS, "frame ends with a full block")
        i = end
    if w < 4:
        raise ProtocolError(FRAME_CRC, "frame too short to carry a CRC")
    size = w - 4
    if size > max_frame:
        raise ProtocolError(TOO_LARGE, "payload of %d bytes, maximum %d" % (size, max_frame))
    crc = body[size] | body[size + 1] << 8 | body[size + 2] << 16 | body[size + 3] << 24
    payload = bytes(view[:size])
    if binascii.crc32(payload) & 0xFFFFFFFF != crc:
        raise ProtocolError(FRAME_CRC, "CRC mismatch")
    return payload


# Deframer.stats keys for each decode error.
_STAT = {FRAME_COBS: "cobs", FRAME_CRC: "crc", TOO_LARGE: "too_large", FRAME_EMPTY: "empty"}


class Deframer:
    """Bytes in, verified payloads out (sans-I/O)."""

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self._limit = max_encoded(max_frame)
        self._partial = bytearray()  # the current run up to its delimiter, at most _limit bytes
        self._overflow = False  # the current run passed _limit: drop it up to the delimiter
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
                self._take(data, start, end)
                return
            self._take(data, start, stop)
            self._finish()
            start = stop + 1

    def next_frame(self):
        """The next verified payload (bytes), or None until more data arrives."""
        if self._ready:
            return self._ready.pop(0)
        return None

    @property
    def buffered(self):
        """Bytes of an unfinished frame held (0 while dropping an over-long run)."""
        return len(self._partial)

    def reset(self):
        """Drop an unfinished frame (link reset or read timeout); returns the bytes dropped."""
        dropped = len(self._partial)
        self._partial = bytearray()
        self._overflow = False
        return dropped

    def _take(self, data, start, stop):
        if self._overflow or start == stop:
            return
        if len(self._partial) + (stop - start) > self._limit:
            self._overflow = True
            self._partial = bytearray()  # release it now, not at the delimiter
            return
        self._partial.extend(memoryview(data)[start:stop])

    def _finish(self):
        if self._overflow:
            self.stats["too_large"] += 1
            self._overflow = False
            return
        run = self._partial
        self._partial = bytearray()
        try:
            self._ready.append(decode(run, self.max_frame))
        except ProtocolError as exc:
            self.stats[_STAT[exc.code]] += 1
