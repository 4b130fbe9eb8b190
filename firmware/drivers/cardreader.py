"""Contact smart-card reader module on a UART: frame codec (sans-I/O) and an asyncio adapter
that reads the social-security card. Protocol, status codes and timing:
hardware/card-reader.md.

API (used by firmware/app):

    reader = CardReader(stream_reader, stream_writer)   # asyncio streams over the UART
    await reader.status()     -> "absent" | "present"
    await reader.read_card()  -> {"ssn": str, "card_no": str, "card_id": str,
                                  "name_gbk": bytes,  # raw GBK, padding stripped
                                  "issue": "YYYY-MM-DD", "expiry": "YYYY-MM-DD", "atr": bytes}

read_card powers the card on, reads it, and powers it off again. Every failure raises
CardError(code, msg) with code one of:
    no_card            no card in the slot
    card_removed       the card left (or stopped answering) after it was powered on
    card_mute          no ATR, or a garbled one: an unreadable card
    wrong_application  SELECT of the SSSE application failed (another kind of card)
    bad_status         an unexpected status word (shown in msg, e.g. "SW 6A83")
    bad_record         a record whose TLV or contents are malformed
    reader_timeout     the reader did not answer
    reader_error       the reader refused a command or its replies were garbled
A result is never partial: either every field was read from one card session, or CardError.
status() raises only reader_timeout / reader_error. Dates are returned as read: refusing an
expired card is the application's decision. `from drivers.cardreader import CardError` works.

The stream's readinto() must return the bytes that have arrived instead of waiting to fill the
buffer: machine.UART(timeout=0) does; a unix-port pty needs termios VMIN = 0 (as in
tests/firmware/support/mp_cardreader.py open_port).
"""

import asyncio
import time

from drivers.apdu import (
    READ_PLAN,
    SELECT_SSSE,
    CardError,
    atr_ok,
    decode_field,
    read_record,
    record_value,
    select_ef,
    sw_ok,
    sw_text,
)
from micropython import const

__all__ = ("CardReader", "CardError", "FrameParser", "encode_frame")

_STX = const(0x02)
_ETX = const(0x03)
_MAX_LEN = const(272)  # LEN covers CMD + DATA; the largest short APDU exchange fits

_CMD_STATUS = const(0x31)
_CMD_POWER_ON = const(0x32)
_CMD_APDU = const(0x33)
_CMD_POWER_OFF = const(0x34)

_ST_OK = const(0x00)
_ST_NO_CARD = const(0x01)
_ST_CARD_MUTE = const(0x02)
_ST_CARD_REMOVED = const(0x03)
_ST_NOT_POWERED = const(0x04)
_ST_BCC_ERROR = const(0x07)

_USER_SLOT = const(0x00)

# Host reply timeouts: the reader's documented worst case plus margin.
_TIMEOUT_MS = {_CMD_STATUS: 300, _CMD_POWER_ON: 1500, _CMD_APDU: 2500, _CMD_POWER_OFF: 300}
_INTER_BYTE_MS = const(100)  # a frame with a longer gap inside it is abandoned
_BCC_RETRIES = const(2)  # the reader ignored a frame it got with a bad BCC: safe to resend


def bcc(buf, start, end):
    """XOR of buf[start:end]; over a frame, LEN (both bytes) through the last DATA byte."""
    x = 0
    for i in range(start, end):
        x ^= buf[i]
    return x


def encode_frame(cmd, data=b""):
    """STX | LEN (2, big-endian, = 1 + len(data)) | CMD | DATA | BCC | ETX."""
    n = len(data) + 1
    if n > _MAX_LEN:
        raise ValueError("frame too long")
    frame = bytearray(n + 5)
    frame[0] = _STX
    frame[1] = n >> 8
    frame[2] = n & 0xFF
    frame[3] = cmd
    frame[4:n + 3] = data
    frame[n + 3] = bcc(frame, 1, n + 3)
    frame[n + 4] = _ETX
    return frame


class FrameParser:
    """Frames out of a byte stream into a fixed buffer (no allocation but each frame's data).

    Bytes before an STX are skipped; a candidate with a bad LEN, BCC or ETX is rejected and the
    stream is rescanned from the byte after its STX, so a good frame hidden behind noise is found.
    A candidate left incomplete when the line went quiet (see stale()) is rejected the same way.
    """

    def __init__(self):
        self._buf = bytearray(_MAX_LEN + 5)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._stale = 0  # candidates starting before this index will never complete
        self.skipped = 0  # noise bytes outside any frame
        self.rejected = 0  # candidate frames dropped

    def reset(self):
        self._start = self._end = self._stale = 0

    def pending(self):
        """True while bytes of an unfinished frame are buffered."""
        return self._end > self._start

    def stale(self):
        """The line went quiet (inter-byte timeout): no frame begun so far will be completed."""
        self._stale = self._end

    def room(self):
        """Free buffer space to read into; call filled(n) after. Never empty once next_frame()
        has returned None, because a full buffer always holds a complete candidate."""
        if self._start == self._end:
            self.reset()
        elif self._end == len(self._buf) and self._start:
            buf = self._buf
            s = self._start
            count = self._end - s
            for i in range(count):  # forward copy: the ranges overlap
                buf[i] = buf[s + i]
            self._start = 0
            self._end = count
            self._stale = max(0, self._stale - s)
        return self._view[self._end:]

    def filled(self, n):
        self._end += n

    def feed(self, data):
        """Copy as much of `data` as fits; returns the count taken."""
        room = self.room()
        n = min(len(room), len(data))
        room[:n] = data[:n]
        self.filled(n)
        return n

    def next_frame(self):
        """The next good frame as (cmd, data bytes), or None until more bytes arrive."""
        buf = self._buf
        while self._end > self._start:
            s = self._start
            if buf[s] != _STX:
                i = s
                while i < self._end and buf[i] != _STX:
                    i += 1
                self.skipped += i - s
                self._start = i
                continue
            etx = s + 4  # until LEN is known: the shortest frame
            if self._end - s >= 3:
                length = (buf[s + 1] << 8) | buf[s + 2]
                if length == 0 or length > _MAX_LEN:
                    self._reject()
                    continue
                etx = s + length + 4
            if self._end <= etx:
                if s < self._stale:
                    self._reject()
                    continue
                return None
            if buf[etx] != _ETX or bcc(buf, s + 1, etx - 1) != buf[etx - 1]:
                self._reject()
                continue
            self._start = etx + 1
            return buf[s + 3], bytes(self._view[s + 4:etx - 1])
        return None

    def _reject(self):
        # Drop only the STX: the rest is rescanned for a frame hidden behind it.
        self.rejected += 1
        self._start += 1


class CardReader:
    """The reader on a pair of asyncio streams. Commands go one at a time (the module is half
    duplex); calls from several tasks are serialised per command."""

    def __init__(self, reader, writer):
        self._reader = reader
        self._writer = writer
        self._parser = FrameParser()
        self._busy = False  # a command is on the line

    async def status(self):
        st, body = await self._exchange(_CMD_STATUS, b"")
        if st != _ST_OK or len(body) != 1:
            raise CardError("reader_error", "STATUS: reader status %02X" % st)
        return "present" if body[0] else "absent"

    async def read_card(self):
        st, atr = await self._exchange(_CMD_POWER_ON, b"")
        if st != _ST_OK:
            raise CardError(_POWER_ON_ERRORS.get(st, "reader_error"),
                            "POWER ON: reader status %02X" % st)
        if not atr_ok(atr):
            await self._power_off()
            raise CardError("card_mute", "garbled ATR")
        try:
            card = await self._read_ssse()
        except CardError as e:
            if e.code != "reader_timeout":
                await self._power_off()
            raise
        await self._power_off()
        card["atr"] = atr
        return card

    async def _read_ssse(self):
        rapdu = await self._apdu(SELECT_SSSE)
        if not sw_ok(rapdu):
            raise CardError("wrong_application", "SELECT SSSE: " + sw_text(rapdu))
        card = {}
        for fid, records in READ_PLAN:
            rapdu = await self._apdu(select_ef(fid))
            if not sw_ok(rapdu):
                raise CardError("bad_status", "SELECT %04X: %s" % (fid, sw_text(rapdu)))
            for record_id, size, key in records:
                rapdu = await self._apdu(read_record(record_id, size))
                value = record_value(rapdu, record_id, size)
                card[key] = decode_field(key, value, record_id)
        return card

    async def _apdu(self, capdu):
        st, rapdu = await self._exchange(_CMD_APDU, capdu)
        if st in _CARD_GONE:
            raise CardError("card_removed", "APDU: reader status %02X" % st)
        if st != _ST_OK or len(rapdu) < 2:
            raise CardError("reader_error", "APDU: reader status %02X" % st)
        return rapdu

    async def _power_off(self):
        # Best effort: the data is already settled either way; a gone card needs no power-off.
        try:
            await self._exchange(_CMD_POWER_OFF, b"")
        except CardError:
            pass

    async def _exchange(self, cmd, params):
        """Send one command to the user slot; returns (reader status, reply data)."""
        frame = encode_frame(cmd, bytes((_USER_SLOT,)) + params)
        # e.g. a status() poll from another task waits its turn; a plain flag because sleep_ms
        # allocates nothing, where asyncio.Lock costs ~400 bytes a command.
        while self._busy:
            await asyncio.sleep_ms(2)
        self._busy = True
        try:
            for _ in range(_BCC_RETRIES + 1):
                self._parser.reset()
                self._writer.write(frame)
                await self._writer.drain()
                reply = await self._reply(cmd, _TIMEOUT_MS[cmd])
                if reply[0] != _ST_BCC_ERROR:
                    return reply[0], reply[1:]
        finally:
            self._busy = False
        raise CardError("reader_error", "reader kept reporting BCC errors")

    async def _reply(self, cmd, timeout_ms):
        """The data of the reply to `cmd`. One timer per exchange keeps the heap churn low."""
        parser = self._parser
        rejected = parser.rejected
        try:
            return await asyncio.wait_for_ms(self._receive(cmd), timeout_ms)
        except asyncio.TimeoutError:
            pass
        parser.stale()  # a noise STX may hold the reply inside a frame that never completes
        data = self._matching(cmd)
        if data:
            return data
        if parser.rejected != rejected:
            raise CardError("reader_error", "garbled reply")
        raise CardError("reader_timeout", "no reply to command %02X" % cmd)

    async def _receive(self, cmd):
        parser = self._parser
        last = time.ticks_ms()
        while True:
            data = self._matching(cmd)
            if data:
                return data
            try:
                n = await self._reader.readinto(parser.room())
            except OSError as e:
                raise CardError("reader_error", "serial port: %s" % e) from None
            if not n:  # a UART read may return None or 0 with its FIFO empty
                await asyncio.sleep_ms(1)
                continue
            now = time.ticks_ms()
            if time.ticks_diff(now, last) > _INTER_BYTE_MS:
                parser.stale()  # before filled(): only the bytes from before the gap
            last = now
            parser.filled(n)

    def _matching(self, cmd):
        """The data of the next buffered reply to `cmd`; replies to other commands are late
        ones from an abandoned exchange and are dropped."""
        frame = self._parser.next_frame()
        while frame:
            if frame[0] == cmd and frame[1]:
                return frame[1]
            frame = self._parser.next_frame()
        return None


_POWER_ON_ERRORS = {_ST_NO_CARD: "no_card", _ST_CARD_MUTE: "card_mute",
                    _ST_CARD_REMOVED: "card_removed"}
# After power-on, any of these means the card we were reading is no longer the one answering.
_CARD_GONE = (_ST_NO_CARD, _ST_CARD_MUTE, _ST_CARD_REMOVED, _ST_NOT_POWERED)
