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
"""

import asyncio
import time

from drivers.apdu import (
    READ_PLAN,
    SELECT_SSSE,
    SW_OK,
    CardError,
    atr_ok,
    decode_field,
    read_record,
    record_value,
    select_ef,
    status_word,
    sw_text,
)

__all__ = ("CardReader", "CardError", "FrameParser", "encode_frame")

STX = 0x02
ETX = 0x03
MAX_LEN = 272  # LEN covers CMD + DATA; the largest short APDU exchange fits

CMD_STATUS = 0x31
CMD_POWER_ON = 0x32
CMD_APDU = 0x33
CMD_POWER_OFF = 0x34

ST_OK = 0x00
ST_NO_CARD = 0x01
ST_CARD_MUTE = 0x02
ST_CARD_REMOVED = 0x03
ST_NOT_POWERED = 0x04
ST_BCC_ERROR = 0x07

USER_SLOT = 0x00

# Host reply timeouts: the reader's documented worst case plus margin.
TIMEOUT_MS = {CMD_STATUS: 300, CMD_POWER_ON: 1500, CMD_APDU: 2500, CMD_POWER_OFF: 300}
INTER_BYTE_MS = 100  # a frame stalled this long is abandoned and the stream rescanned
BCC_RETRIES = 2  # the reader ignored a frame it got with a bad BCC: safe to resend


def bcc(buf, start, end):
    """XOR of buf[start:end]; over a frame, LEN (both bytes) through the last DATA byte."""
    x = 0
    for i in range(start, end):
        x ^= buf[i]
    return x


def encode_frame(cmd, data=b""):
    """STX | LEN (2, big-endian, = 1 + len(data)) | CMD | DATA | BCC | ETX."""
    n = len(data) + 1
    if n > MAX_LEN:
        raise ValueError("frame too long")
    frame = bytearray(n + 5)
    frame[0] = STX
    frame[1] = n >> 8
    frame[2] = n & 0xFF
    frame[3] = cmd
    frame[4:n + 3] = data
    frame[n + 3] = bcc(frame, 1, n + 3)
    frame[n + 4] = ETX
    return frame


class FrameParser:
    """Frames out of a byte stream into a fixed buffer (no allocation but each frame's data).

    Bytes before an STX are skipped; a candidate with a bad LEN, BCC or ETX is rejected and the
    stream is rescanned from the byte after its STX, so a good frame hidden behind noise is found.
    """

    def __init__(self):
        self._buf = bytearray(MAX_LEN + 5)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self.skipped = 0  # noise bytes outside any frame
        self.rejected = 0  # candidate frames dropped

    def reset(self):
        self._start = self._end = 0

    def pending(self):
        """True while part of a frame is buffered (the inter-byte timeout applies)."""
        return self._end > self._start

    def room(self):
        """Free buffer space to read into; call filled(n) after. Never empty once next_frame()
        has returned None, because a full buffer always holds a complete candidate."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf) and self._start:
            buf = self._buf
            s = self._start
            count = self._end - s
            for i in range(count):  # forward copy: the ranges overlap
                buf[i] = buf[s + i]
            self._start = 0
            self._end = count
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
            if buf[s] != STX:
                i = s
                while i < self._end and buf[i] != STX:
                    i += 1
                self.skipped += i - s
                self._start = i
                continue
            if self._end - s < 3:
                return None
            length = (buf[s + 1] << 8) | buf[s + 2]
            if length == 0 or length > MAX_LEN:
                self.expire()
                continue
            etx = s + length + 4
            if self._end <= etx:
                return None
            if buf[etx] != ETX or bcc(buf, s + 1, etx - 1) != buf[etx - 1]:
                self.expire()
                continue
            self._start = etx + 1
            return buf[s + 3], bytes(self._view[s + 4:etx - 1])
        return None

    def expire(self):
        """Give up on the candidate frame at the front (bad, or stalled past the inter-byte
        timeout) and rescan after its STX."""
        if self._end > self._start:
            self.rejected += 1
            self._start += 1


class CardReader:
    """The reader on a pair of asyncio streams; one command outstanding at a time."""

    def __init__(self, reader, writer):
        self._reader = reader
        self._writer = writer
        self._parser = FrameParser()

    async def status(self):
        st, body = await self._exchange(CMD_STATUS, b"")
        if st != ST_OK or len(body) != 1:
            raise CardError("reader_error", "STATUS: reader status %02X" % st)
        return "present" if body[0] else "absent"

    async def read_card(self):
        st, atr = await self._exchange(CMD_POWER_ON, b"")
        if st != ST_OK:
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
        if status_word(rapdu) != SW_OK:
            raise CardError("wrong_application", "SELECT SSSE: " + sw_text(rapdu))
        card = {}
        for fid, records in READ_PLAN:
            rapdu = await self._apdu(select_ef(fid))
            if status_word(rapdu) != SW_OK:
                raise CardError("bad_status", "SELECT %04X: %s" % (fid, sw_text(rapdu)))
            for record_id, size, key in records:
                rapdu = await self._apdu(read_record(record_id, size))
                value = record_value(rapdu, record_id, size)
                card[key] = decode_field(key, value, record_id)
        return card

    async def _apdu(self, capdu):
        st, rapdu = await self._exchange(CMD_APDU, capdu)
        if st in _CARD_GONE:
            raise CardError("card_removed", "APDU: reader status %02X" % st)
        if st != ST_OK or len(rapdu) < 2:
            raise CardError("reader_error", "APDU: reader status %02X" % st)
        return rapdu

    async def _power_off(self):
        # Best effort: the data is already settled either way; a gone card needs no power-off.
        try:
            await self._exchange(CMD_POWER_OFF, b"")
        except CardError:
            pass

    async def _exchange(self, cmd, apdu):
        """Send one command to the user slot; returns (reader status, reply data)."""
        frame = encode_frame(cmd, bytes((USER_SLOT,)) + apdu)
        for _ in range(BCC_RETRIES + 1):
            self._parser.reset()
            self._writer.write(frame)
            await self._writer.drain()
            reply = await self._reply(cmd, TIMEOUT_MS[cmd])
            if reply[0] != ST_BCC_ERROR:
                return reply[0], reply[1:]
        raise CardError("reader_error", "reader kept reporting BCC errors")

    async def _reply(self, cmd, timeout_ms):
        parser = self._parser
        rejected = parser.rejected
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            frame = parser.next_frame()
            while frame:
                # A reply to another command is a late one from an abandoned exchange.
                if frame[0] == cmd and frame[1]:
                    return frame[1]
                frame = parser.next_frame()
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                if parser.rejected != rejected:
                    raise CardError("reader_error", "garbled reply")
                raise CardError("reader_timeout", "no reply to command %02X" % cmd)
            stalled = parser.pending()
            try:
                n = await asyncio.wait_for_ms(
                    self._reader.readinto(parser.room()),
                    min(left, INTER_BYTE_MS) if stalled else left)
            except asyncio.TimeoutError:
                if stalled:
                    parser.expire()
                continue
            except OSError as e:
                raise CardError("reader_error", "serial port: %s" % e) from None
            if n:  # a UART read may return None or 0 when its FIFO is empty
                parser.filled(n)


_POWER_ON_ERRORS = {ST_NO_CARD: "no_card", ST_CARD_MUTE: "card_mute",
                    ST_CARD_REMOVED: "card_removed"}
# After power-on, any of these means the card we were reading is no longer the one answering.
_CARD_GONE = (ST_NO_CARD, ST_CARD_MUTE, ST_CARD_REMOVED, ST_NOT_POWERED)
