# ESC/POS thermal receipt printer: sans-I/O receipt builder + status codec, async UART adapter.
"""Receipt printer driver (ESC/POS over UART; 58 mm paper, 384 dots, 32 columns of font A).

Building a receipt (nothing is encoded until it is iterated):
    r = Receipt()                 # columns=32: characters per line at size 1 (a CJK char is 2)
    r.init()                      # ESC @
    r.align(CENTER)               # ESC a n   LEFT 0, CENTER 1, RIGHT 2; applies from the next line
    r.size(2, 2)                  # GS ! n    width and height multipliers 1..8
    r.bold(True)                  # ESC E n
    r.text("医保结算单")           # FS & before the first non-ASCII text; GB18030 via drivers.gbk
    r.line("Receipt")             # text + LF
    r.row("统筹基金支付", "85.20")  # left and right text on one line, padded to the width
    r.qr(b"ref...", module=6, ecc="M")   # GS ( k fn 65, 67, 69, 80, 81
    r.feed(2)                     # ESC d n
    r.cut()                       # GS V 65 n: feed past the cutter, full cut (partial=True: 66)
    for chunk in r: ...           # small bytes objects (<= 64 bytes of text each); once
    r.take()                      # or, while building: the chunks so far, then forgotten (the
                                  # receipt sent as it is built; iterating r ends it)

Status (DLE EOT n is answered at once, even while the printer is busy; see hardware/printer.md):
    parse_paper(byte)  -> "ok" | "near_end" | "out"          (reply to DLE EOT 4)
    parse_offline(byte) -> (cover_open, paper_stop, error)    (reply to DLE EOT 2)
    is_realtime_reply(byte) / is_paper_sensor_reply(byte): tell DLE EOT from GS r replies apart.

Printer(reader, writer, timeout_ms=500, print_timeout_ms=20000, poll_ms=250,
        unconfirmed_wait_ms=5000):
    await status() -> {"online": bool, "paper": "ok"|"near_end"|"out",
                       "cover_open": bool, "error": bool}
        online False: no valid answer within timeout_ms (then paper is "unknown")
    await print_receipt(chunks) -> status dict after printing ("near_end" is worth reporting)
        raises PrinterError: .reason, and .status (the status dict that decided it), with reason
          before printing, nothing sent: "offline", "paper_out", "cover_open", "error"
          after sending, receipt incomplete (reprint it): "paper_out_during",
          "cover_open_during", "error_during", "offline_during",
          "unconfirmed_during" (a printer that confirms receipts did not confirm this one:
          part of it, or its GS r, was lost on the line; asked once, the next unconfirmed
          print is "unconfirmed"),
          "unconfirmed" (the printer never confirmed the end of the receipt: some models
          ignore GS r; nothing says it was not printed). A printer known to ignore GS r is
          given unconfirmed_wait_ms to print (watched for a stop meanwhile), not the whole
          print_timeout_ms: its resident would wait 20 s at every visit.
    bytes_sent: bytes of the last receipt sent (0 when it was refused before sending).

The reader must return at least one byte per read(1) (asyncio.StreamReader over a UART, or over
a pseudo-terminal on the unix port); replies are read one byte at a time so a blocking stream
can never stall the event loop waiting for bytes that will not come.
"""

import asyncio
import time

from drivers import gbk
from micropython import const

LEFT = 0
CENTER = 1
RIGHT = 2

_ESC_INIT = b"\x1b@"
_FS_CHINESE_ON = b"\x1c&"
_FS_CHINESE_OFF = b"\x1c."
_LF = b"\n"
_DLE_EOT_OFFLINE = b"\x10\x04\x02"
_DLE_EOT_PAPER = b"\x10\x04\x04"
_GS_R_PAPER = b"\x1dr\x01"  # processed in order: its answer means everything before is printed
_QR_PRINT = b"\x1d(k\x03\x001Q0"
_QR_ECC = {"L": 48, "M": 49, "Q": 50, "H": 51}
_QR_MAX_DATA = const(7089)
_DRAIN_MS = const(20)  # a byte already waiting is read at once; silence this long ends a drain
_TEXT_PIECE = const(32)  # characters encoded per chunk: bounds each chunk to 64 bytes

_TEXT = const(0)  # part kinds of a Receipt
_RAW = const(1)
_QR = const(2)


class PrinterError(Exception):
    def __init__(self, reason, status=None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _is_ascii(text):
    for char in text:
        if ord(char) >= 0x80:
            return False
    return True


def text_width(text):
    """Columns `text` takes at size 1: ASCII one, everything else (GB18030) two."""
    width = 0
    for char in text:
        width += 1 if ord(char) < 0x80 else 2
    return width


def qr_store_command(data):
    """GS ( k fn 80: store `data` in the symbol buffer (header; the data follows it)."""
    k = len(data) + 3
    return b"\x1d(k" + bytes((k & 0xFF, k >> 8)) + b"1P0"


class Receipt:
    def __init__(self, columns=32):
        self.columns = columns
        self._parts = []  # added and not yet taken (take(), chunks())
        self._width = 1  # current GS ! width multiplier, for row()
        self._chinese = False  # FS & sent and not yet left (as the chunks are taken)

    def __iter__(self):
        return self.chunks()

    def _raw(self, command):
        self._parts.append((_RAW, command))

    def init(self):
        self._width = 1
        self._raw(_ESC_INIT)

    def align(self, n):
        if n not in (LEFT, CENTER, RIGHT):
            raise ValueError("align must be LEFT, CENTER or RIGHT")
        self._raw(b"\x1ba" + bytes((n,)))

    def size(self, width, height):
        if not (1 <= width <= 8 and 1 <= height <= 8):
            raise ValueError("size multipliers are 1..8")
        self._width = width
        self._raw(b"\x1d!" + bytes((((width - 1) << 4) | (height - 1),)))

    def bold(self, on):
        self._raw(b"\x1bE\x01" if on else b"\x1bE\x00")

    def text(self, text):
        if text:
            self._parts.append((_TEXT, text))

    def line(self, text=""):
        self.text(text)
        self._raw(_LF)

    def row(self, left, right):
        """`left` at the left margin and `right` flush right; on two lines if both won't fit."""
        columns = self.columns // self._width
        gap = columns - text_width(left) - text_width(right)
        if gap < 1:
            self.line(left)
            gap = columns - text_width(right)
            left = ""
        self.line(left + " " * max(gap, 0) + right)

    def qr(self, data, module=6, ecc="M"):
        """`data`: bytes, or an object with len() that yields its bytes in pieces of at most 64
        when iterated (made as the receipt is sent, never whole: app.receipt.Base64url)."""
        if not 0 < len(data) <= _QR_MAX_DATA:
            raise ValueError("QR data must be 1..7089 bytes")
        if not 1 <= module <= 16:
            raise ValueError("QR module size is 1..16 dots")
        if ecc not in _QR_ECC:
            raise ValueError("QR error correction is L, M, Q or H")
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)  # the caller may change it before the receipt is sent
        self._parts.append((_QR, data, module, _QR_ECC[ecc]))

    def feed(self, lines=1):
        if not 0 <= lines <= 255:
            raise ValueError("feed is 0..255 lines")
        self._raw(b"\x1bd" + bytes((lines,)))

    def cut(self, partial=False, feed=4):
        # GS V 65/66 n: feed n lines so the last line clears the cutter, then cut
        self._raw(b"\x1dV" + bytes((66 if partial else 65, feed)))

    def take(self):
        """The chunks of the parts added since the last take() (or since the start), which are
        then forgotten: a receipt can be sent as it is built, a few lines at a time, and never
        be whole in memory. chunks() takes the rest and ends the receipt."""
        parts = self._parts
        self._parts = []
        for part in parts:
            kind = part[0]
            if kind == _RAW:
                if part[1] == _ESC_INIT:
                    self._chinese = False  # ESC @ restores the default (single-byte) mode
                yield part[1]
            elif kind == _TEXT:
                text = part[1]
                if not self._chinese and not _is_ascii(text):
                    self._chinese = True
                    yield _FS_CHINESE_ON
                if len(text) <= _TEXT_PIECE:
                    yield gbk.encode(text)
                else:
                    for start in range(0, len(text), _TEXT_PIECE):
                        yield gbk.encode(text[start:start + _TEXT_PIECE])
            else:
                data = part[1]
                yield b"\x1d(k\x04\x001A2\x00"  # fn 65: model 2
                yield b"\x1d(k\x03\x001C" + bytes((part[2],))  # fn 67: module size in dots
                yield b"\x1d(k\x03\x001E" + bytes((part[3],))  # fn 69: error correction
                yield qr_store_command(data)
                if isinstance(data, bytes):
                    for start in range(0, len(data), 64):
                        yield data[start:start + 64]
                else:
                    for piece in data:
                        yield piece
                yield _QR_PRINT

    def chunks(self):
        """The chunks of the (rest of the) receipt, and its end; iterated once."""
        for chunk in self.take():
            yield chunk
        if self._chinese:
            self._chinese = False
            yield _FS_CHINESE_OFF  # leave the printer as ESC @ would: the next job starts clean


# ------------------------------------------------------------------------------ status codec
def is_realtime_reply(byte):
    """DLE EOT replies: bit 1 and bit 4 set, bits 0 and 7 clear."""
    return byte & 0x93 == 0x12


def is_paper_sensor_reply(byte):
    """GS r 1 replies: only the sensor bits 0..3 may be set."""
    return byte & 0xF0 == 0


def parse_paper(byte):
    # Bits 5-6 paper end, 2-3 near end; either bit of a pair counts (clones set just one).
    if byte & 0x60:
        return "out"
    if byte & 0x0C:
        return "near_end"
    return "ok"


def parse_offline(byte):
    return bool(byte & 0x04), bool(byte & 0x20), bool(byte & 0x40)


def _status(offline_reply, paper_reply):
    if offline_reply is None or paper_reply is None:
        return {"online": False, "paper": "unknown", "cover_open": False, "error": False}
    cover_open, paper_stop, error = parse_offline(offline_reply)
    paper = parse_paper(paper_reply)
    if paper_stop:
        paper = "out"
    return {"online": True, "paper": paper, "cover_open": cover_open, "error": error}


def _refusal(status, suffix):
    if not status["online"]:
        return "offline" + suffix
    if status["cover_open"]:
        return "cover_open" + suffix
    if status["paper"] == "out":
        return "paper_out" + suffix
    if status["error"]:
        return "error" + suffix
    return None


# ----------------------------------------------------------------------------- async adapter
class Printer:
    def __init__(self, reader, writer, timeout_ms=500, print_timeout_ms=20000, poll_ms=250,
                 unconfirmed_wait_ms=5000):
        self._reader = reader
        self._writer = writer
        self.timeout_ms = timeout_ms
        self.print_timeout_ms = print_timeout_ms
        # A long receipt (25 cm) on a slow 58 mm printer (50 mm/s) prints in 5 s.
        self.unconfirmed_wait_ms = unconfirmed_wait_ms
        self.poll_ms = poll_ms
        self.bytes_sent = 0
        # Whether this printer answers GS r: None until the first status() that finds it
        # ready asks (so the first receipt after a boot is covered too), then learnt from its
        # answers. Once it has answered, a receipt it does not confirm is one the line may have
        # eaten (see print_receipt).
        self.confirms = None

    async def _send(self, data):
        self._writer.write(data)
        await self._writer.drain()

    async def _read_byte(self, timeout_ms):
        # one timer per call: wait_for allocates ~2 KB, so exchanges share one where they can
        try:
            got = await asyncio.wait_for_ms(self._reader.read(1), timeout_ms)
        except asyncio.TimeoutError:
            return None
        return got[0] if got else None

    async def _discard_input(self):
        for _ in range(64):
            if await self._read_byte(_DRAIN_MS) is None:
                return

    async def _realtime_reply(self):
        # Skip bytes that cannot be a DLE EOT reply (an XON, line noise) rather than misread them.
        for _ in range(16):
            got = await self._reader.read(1)
            if got and is_realtime_reply(got[0]):
                return got[0]
        return None

    async def _query_status(self):
        await self._send(_DLE_EOT_OFFLINE)
        offline_reply = await self._realtime_reply()
        await self._send(_DLE_EOT_PAPER)
        return _status(offline_reply, await self._realtime_reply())

    async def status(self):
        # The two replies are told apart only by their order: a byte come unasked (doubled on
        # the line, a late answer, noise) would shift every later pair by one, and near-end
        # paper would read as a cover open for good. Whatever is waiting goes first.
        await self._discard_input()
        try:
            status = await asyncio.wait_for_ms(self._query_status(), self.timeout_ms)
        except asyncio.TimeoutError:
            return _status(None, None)
        if self.confirms is None and _refusal(status, "") is None:
            await self._ask_confirms()
        return status

    async def _ask_confirms(self):
        """Ask once, with nothing to print, whether this printer answers GS r (at once if it
        does; a stopped printer would not, so only a ready one is asked)."""
        await self._send(_GS_R_PAPER)
        for _ in range(4):  # past a stray byte or two
            byte = await self._read_byte(self.timeout_ms)
            if byte is None:
                break
            if is_paper_sensor_reply(byte):
                self.confirms = True
                return
        self.confirms = False

    async def _wait_printed(self):
        """True once the printer confirms everything sent is printed; False if it stopped."""
        await self._send(_GS_R_PAPER)
        # A printer that ignores GS r will not confirm: it is given the time a receipt takes.
        wait = self.unconfirmed_wait_ms if self.confirms is False else self.print_timeout_ms
        deadline = time.ticks_add(time.ticks_ms(), wait)
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            byte = await self._read_byte(self.poll_ms)
            if byte is None:
                # Still busy, or stopped: a stopped printer never answers GS r but does answer
                # DLE EOT, so ask why rather than wait out the whole timeout.
                await self._send(_DLE_EOT_OFFLINE)
            elif is_realtime_reply(byte):
                cover_open, paper_stop, error = parse_offline(byte)
                if cover_open or paper_stop or error:
                    return False
            elif is_paper_sensor_reply(byte):
                self.confirms = True
                return True
        return False

    async def print_receipt(self, chunks):
        self.bytes_sent = 0
        before = await self.status()
        reason = _refusal(before, "")
        if reason:
            raise PrinterError(reason, before)
        sent = 0
        for chunk in chunks:
            await self._send(chunk)
            sent += len(chunk)
        self.bytes_sent = sent
        confirmed = await self._wait_printed()
        after = await self.status()
        reason = _refusal(after, "_during")
        if reason:
            raise PrinterError(reason, after)
        if not confirmed:
            if self.confirms:
                # It confirmed receipts before: this one's GS r, or part of it, was lost on the
                # line. Printed again once (the next unconfirmed one is taken as printed: a
                # printer that stopped answering GS r must not print each receipt for ever).
                self.confirms = False
                raise PrinterError("unconfirmed_during", after)
            raise PrinterError("unconfirmed", after)
        return after
