"""A simulated ESC/POS thermal receipt printer (58 mm, 384 dots) on one end of a SerialLink.

`EscPosInterpreter` is the printer itself, sans I/O: `feed(bytes) -> reply bytes`. It interprets
the commands in hardware/printer.md (text in the PC437 code page, or GB18030 after `FS &`;
alignment, sizes, bold, feeds, QR codes, cuts) into `Receipt` objects, wraps lines that overflow
the 384-dot head, skips commands it does not know the way real printers do (counted in
`unknown_commands`), and answers `DLE EOT n` and `GS r 1` from its switches:

- `paper_out`, `cover_open`: the sensors. Either one stops the printer: a receipt being printed
  ends there, incomplete (`stopped_by`); until the switch is turned off the printer hears only
  `DLE EOT` (answered at once, as real-time commands are) and everything else it receives is lost.
- `paper_left_lines`: paper on the roll, in text lines (None: endless). When the roll runs out
  mid-receipt the receipt is closed as truncated, `paper_out` turns on and the rest is lost.
- `paper_near_end`: the near-end sensor (also on once 30 lines or fewer are left).
- `answers_gs_r`: off, `GS r` goes unanswered (models that ignore it, or a command lost on the
  line).

`PrinterSim(device_path)` runs an interpreter behind a pyserial port on a background thread:
`receipts` (cut or truncated), `current` (being printed), `last_receipt_text()`,
`wait_for_receipts(n, timeout)`, an `on_receipt` callback, and the switches above.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import segno
import serial

log = logging.getLogger("onestop.sim.printer")

HEAD_DOTS = 384  # 58 mm paper, 203 dpi
FONT_A_DOTS = 12  # ASCII cell width; a GB18030 character is twice as wide
LINE_DOTS = 30  # default line spacing (ESC 2)
NEAR_END_LINES = 30
ALIGNS = ("left", "center", "right")
QR_ECC = {48: "L", 49: "M", 50: "Q", 51: "H"}

# Parameter byte counts of fixed-length commands this printer accepts without acting on them.
_ESC_IGNORED = {
    ord("2"): 0, ord("3"): 1, ord("-"): 1, ord("G"): 1, ord("M"): 1, ord("R"): 1, ord("V"): 1,
    ord("{"): 1, ord(" "): 1, ord("e"): 1, ord("J"): 1, ord("p"): 3, ord("$"): 2, ord("\\"): 2,
    ord("c"): 2, ord("U"): 1, ord("L"): 0, ord("S"): 0, ord("T"): 1, ord("="): 1,
}
_GS_IGNORED = {
    ord("B"): 1, ord("H"): 1, ord("h"): 1, ord("w"): 1, ord("f"): 1, ord("L"): 2, ord("W"): 2,
    ord("a"): 1, ord("I"): 1, ord("b"): 1, ord("P"): 2, ord("/"): 1,
}
_FS_IGNORED = {ord("!"): 1, ord("-"): 1, ord("C"): 1, ord("W"): 1, ord("S"): 2, ord("p"): 2}


@dataclass
class Span:
    text: str
    width: int = 1
    height: int = 1
    bold: bool = False


@dataclass
class Line:
    spans: list[Span] = field(default_factory=list)
    align: str = "left"

    @property
    def text(self) -> str:
        return "".join(span.text for span in self.spans)

    @property
    def height(self) -> int:
        return max((span.height for span in self.spans), default=1)

    @property
    def bold(self) -> bool:
        return any(span.bold for span in self.spans)

    @property
    def dots(self) -> int:
        return sum(char_dots(ch) * span.width for span in self.spans for ch in span.text)


@dataclass
class QrCode:
    data: bytes
    module: int
    ecc: str
    align: str = "left"

    def lines(self) -> int:
        """Paper the symbol takes, in text lines (a 21-module symbol at the smallest)."""
        return max(1, -(-qr_dots(self) // LINE_DOTS))


@dataclass
class Receipt:
    items: list[Line | QrCode] = field(default_factory=list)
    cut: str | None = None  # "full" or "partial" once cut
    stopped_by: str | None = None  # "paper_out" or "cover_open" if printing stopped part-way

    @property
    def truncated(self) -> bool:
        return self.stopped_by is not None

    @property
    def lines(self) -> list[Line]:
        return [item for item in self.items if isinstance(item, Line)]

    @property
    def qr_codes(self) -> list[QrCode]:
        return [item for item in self.items if isinstance(item, QrCode)]

    def text(self, columns: int = HEAD_DOTS // FONT_A_DOTS) -> str:
        """The receipt as it reads: one row per printed line, aligned on a 32-column page."""
        rows = []
        for item in self.items:
            if isinstance(item, QrCode):
                content, dots = f"[QR {item.ecc}: {item.data.decode('utf-8', 'replace')}]", 0
            else:
                content, dots = item.text, item.dots
            rows.append(_aligned(content, dots, item.align, columns).rstrip())
        if self.stopped_by:
            rows.append(f"~~~ {self.stopped_by.replace('_', ' ')}: receipt incomplete ~~~")
        elif self.cut:
            rows.append("-" * columns + f" ({self.cut} cut)")
        return "\n".join(rows)


def char_dots(char: str) -> int:
    return FONT_A_DOTS if ord(char) < 0x80 else 2 * FONT_A_DOTS


def qr_dots(qr: QrCode) -> int:
    symbol = segno.make_qr(qr.data, error=qr.ecc.lower(), boost_error=False)
    return qr.module * len(symbol.matrix)  # modules per side x dots per module


def _aligned(content: str, dots: int, align: str, columns: int) -> str:
    used = -(-dots // FONT_A_DOTS) if dots else len(content)
    pad = max(columns - used, 0)
    if align == "center":
        return " " * (pad // 2) + content
    if align == "right":
        return " " * pad + content
    return content


class EscPosInterpreter:
    def __init__(self, paper_left_lines: int | None = None) -> None:
        self._paper_out = False
        self._cover_open = False
        self.paper_near_end = False
        self.paper_left_lines = paper_left_lines
        # Some models ignore GS r; off, this one does too (or its GS r is lost on the line).
        self.answers_gs_r = True
        self.receipts: list[Receipt] = []
        self.current = Receipt()
        self.unknown_commands: list[bytes] = []
        self.bytes_received = 0
        self.bytes_lost = 0  # received while stopped
        self._buf = bytearray()
        self._reset_modes()

    def _reset_modes(self) -> None:
        self.align = "left"
        self.width = 1
        self.height = 1
        self.bold = False
        self.chinese = False
        self._line = Line()
        self._qr_model = 2
        self._qr_module = 3
        self._qr_ecc = "L"
        self._qr_data = b""

    @property
    def paper_out(self) -> bool:
        return self._paper_out

    @paper_out.setter
    def paper_out(self, out: bool) -> None:
        self._paper_out = out
        if out:
            self.interrupt("paper_out")

    @property
    def cover_open(self) -> bool:
        return self._cover_open

    @cover_open.setter
    def cover_open(self, is_open: bool) -> None:
        self._cover_open = is_open
        if is_open:
            self.interrupt("cover_open")

    @property
    def stopped(self) -> bool:
        return self.paper_out or self.cover_open

    # ------------------------------------------------------------------ status replies
    def _near_end(self) -> bool:
        # an empty roll trips the near-end sensor too
        left = self.paper_left_lines
        low = left is not None and left <= NEAR_END_LINES
        return self.paper_near_end or self.paper_out or low

    def realtime_status(self, n: int) -> int:
        byte = 0x12
        near_end = self._near_end()
        if n == 1 and self.stopped:
            byte |= 0x08  # offline
        elif n == 2:
            byte |= (0x04 if self.cover_open else 0) | (0x20 if self.paper_out else 0)
        elif n == 4:
            byte |= (0x0C if near_end else 0) | (0x60 if self.paper_out else 0)
        return byte

    def _paper_sensor_status(self) -> int:
        near_end = self._near_end()
        return (0x03 if near_end else 0) | (0x0C if self.paper_out else 0)

    # ------------------------------------------------------------------ byte stream
    def feed(self, data: bytes) -> bytes:
        """Interpret `data`; returns what the printer sends back."""
        self.bytes_received += len(data)
        self._buf += data
        replies = bytearray()
        while self._buf:
            if self.stopped:
                if self._buf[0] == 0x10:
                    if len(self._buf) < 3:
                        break
                    if self._buf[1] == 0x04:
                        replies.append(self.realtime_status(self._buf[2]))
                        del self._buf[:3]
                        continue
                self.bytes_lost += 1
                del self._buf[:1]
                continue
            used = self._step(replies)
            if used == 0:
                break  # incomplete command: wait for more bytes
            del self._buf[:used]
        return bytes(replies)

    def _unknown(self, command: bytes) -> None:
        log.info("printer ignores unknown command %s", command.hex(" "))
        self.unknown_commands.append(command)

    def _step(self, replies: bytearray) -> int:
        buf = self._buf
        b = buf[0]
        if b == 0x0A:
            self._print_line()
            return 1
        if b in (0x0D, 0x0C, 0x18, 0x00):
            return 1
        if b == 0x09:
            self._add_text(" ")
            return 1
        if b == 0x10:
            return self._dle(replies)
        if b == 0x1B:
            return self._esc()
        if b == 0x1D:
            return self._gs(replies)
        if b == 0x1C:
            return self._fs()
        if b < 0x20 or b == 0x7F:
            self._unknown(bytes(buf[:1]))
            return 1
        return self._text_char()

    def _need(self, n: int) -> bool:
        return len(self._buf) >= n

    def _dle(self, replies: bytearray) -> int:
        if not self._need(3):
            return 0
        if self._buf[1] == 0x04:
            replies.append(self.realtime_status(self._buf[2]))
        else:
            self._unknown(bytes(self._buf[:3]))
        return 3

    def _esc(self) -> int:
        if not self._need(2):
            return 0
        cmd = self._buf[1]
        if cmd == ord("@"):
            self._reset_modes()  # clears the unprinted line too, as on a real printer
            return 2
        params = {ord("a"): 1, ord("E"): 1, ord("!"): 1, ord("d"): 1, ord("t"): 1}.get(cmd)
        if params is not None:
            if not self._need(2 + params):
                return 0
            n = self._buf[2]
            if cmd == ord("a"):
                self.align = ALIGNS[n % 48] if n % 48 < 3 else "left"
            elif cmd == ord("E"):
                self.bold = bool(n & 1)
            elif cmd == ord("!"):
                self.bold = bool(n & 0x08)
                self.height = 2 if n & 0x10 else 1
                self.width = 2 if n & 0x20 else 1
            elif cmd == ord("d"):
                self._print_line(if_pending=True)
                self._feed_lines(n)
            elif cmd == ord("t") and n != 0:
                log.info("code page %d selected; this printer decodes PC437 only", n)
            return 3
        ignored = _ESC_IGNORED.get(cmd)
        if ignored is None:
            self._unknown(bytes(self._buf[:2]))
            return 2
        return 2 + ignored if self._need(2 + ignored) else 0

    def _gs(self, replies: bytearray) -> int:
        if not self._need(2):
            return 0
        cmd = self._buf[1]
        if cmd == ord("!"):
            if not self._need(3):
                return 0
            n = self._buf[2]
            self.width = (n >> 4 & 0x07) + 1
            self.height = (n & 0x07) + 1
            return 3
        if cmd == ord("V"):
            if not self._need(3):
                return 0
            m = self._buf[2]
            with_feed = m in (65, 66, 97, 98, 103, 104)
            if with_feed and not self._need(4):
                return 0
            self._cut("partial" if m in (1, 49, 66, 98, 104) else "full",
                      self._buf[3] if with_feed else 0)
            return 4 if with_feed else 3
        if cmd == ord("r"):
            if not self._need(3):
                return 0
            if not self.answers_gs_r:
                pass
            elif self._buf[2] in (1, 49):
                replies.append(self._paper_sensor_status())
            else:
                replies.append(0)  # drawer status: no drawer
            return 3
        if cmd == ord("("):
            if not self._need(5):
                return 0
            length = self._buf[3] | self._buf[4] << 8
            if not self._need(5 + length):
                return 0
            if self._buf[2] == ord("k"):
                self._qr_function(bytes(self._buf[5:5 + length]))
            else:
                self._unknown(bytes(self._buf[:3]))
            return 5 + length
        ignored = _GS_IGNORED.get(cmd)
        if ignored is None:
            self._unknown(bytes(self._buf[:2]))
            return 2
        return 2 + ignored if self._need(2 + ignored) else 0

    def _fs(self) -> int:
        if not self._need(2):
            return 0
        cmd = self._buf[1]
        if cmd == ord("&"):
            self.chinese = True
            return 2
        if cmd == ord("."):
            self.chinese = False
            return 2
        ignored = _FS_IGNORED.get(cmd)
        if ignored is None:
            self._unknown(bytes(self._buf[:2]))
            return 2
        return 2 + ignored if self._need(2 + ignored) else 0

    def _qr_function(self, payload: bytes) -> None:
        if len(payload) < 2 or payload[0] != 49:
            self._unknown(b"\x1d(k" + payload[:2])
            return
        fn = payload[1]
        arg = payload[2] if len(payload) > 2 else 0
        if fn == 65:
            self._qr_model = arg - 48
        elif fn == 67:
            self._qr_module = arg
        elif fn == 69:
            self._qr_ecc = QR_ECC.get(arg, "L")
        elif fn == 80:
            self._qr_data = payload[3:]
        elif fn == 81:
            self._print_qr()
        else:
            self._unknown(b"\x1d(k" + payload[:2])

    # ------------------------------------------------------------------ text and paper
    def _text_char(self) -> int:
        buf = self._buf
        b = buf[0]
        if b < 0x80:
            self._add_text(chr(b))
            return 1
        if not self.chinese:
            self._add_text(bytes((b,)).decode("cp437"))
            return 1
        if b == 0x80 or b == 0xFF:
            self._add_text("?")
            return 1
        if not self._need(2):
            return 0
        size = 4 if 0x30 <= buf[1] <= 0x39 else 2  # GB18030 four-byte form
        if not self._need(size):
            return 0
        self._add_text(bytes(buf[:size]).decode("gb18030", "replace")[:1])
        return size

    def _add_text(self, char: str) -> None:
        if self._line.dots + char_dots(char) * self.width > HEAD_DOTS and self._line.spans:
            self._print_line()  # the head is full: the printer wraps
        if not self._line.spans:
            self._line.align = self.align  # ESC a takes effect at the start of a line
        spans = self._line.spans
        style = (self.width, self.height, self.bold)
        if spans and (spans[-1].width, spans[-1].height, spans[-1].bold) == style:
            spans[-1].text += char
        else:
            spans.append(Span(char, *style))

    def _use_paper(self, lines: int) -> bool:
        """Advance the paper; False (and the receipt closed as truncated) if the roll ran out."""
        if self.paper_left_lines is None:
            return True
        if lines > self.paper_left_lines:
            self.paper_left_lines = 0
            self.paper_out = True
            return False
        self.paper_left_lines -= lines
        return True

    def _print_line(self, if_pending: bool = False) -> None:
        line, self._line = self._line, Line(align=self.align)
        if if_pending and not line.spans:
            return
        if not line.spans:
            line.align = self.align
        if self._use_paper(line.height):
            self.current.items.append(line)

    def _feed_lines(self, n: int) -> None:
        for _ in range(n):
            if not self._use_paper(1):
                return
            self.current.items.append(Line(align=self.align))

    def _print_qr(self) -> None:
        if not self._qr_data:
            self._unknown(b"\x1d(k\x03\x001Q0 (no data stored)")
            return
        self._print_line(if_pending=True)
        qr = QrCode(self._qr_data, self._qr_module, self._qr_ecc, self.align)
        if self._use_paper(qr.lines()):
            self.current.items.append(qr)

    def _cut(self, kind: str, feed: int) -> None:
        self._print_line(if_pending=True)
        if not self._use_paper(feed):
            return
        if self.current.items:
            self.current.cut = kind
            self._finish_receipt()

    def interrupt(self, cause: str) -> None:
        """The printer stopped (paper out, cover opened): the receipt in progress ends here."""
        self._line = Line(align=self.align)
        if self.current.items:
            self.current.stopped_by = cause
            self._finish_receipt()

    def _finish_receipt(self) -> None:
        if self.current.items:
            self.receipts.append(self.current)
        self.current = Receipt()
        self._line = Line(align=self.align)

    def load_paper(self, lines: int | None = None) -> None:
        """A technician loads a new roll (None: endless): no longer out, nor near its end."""
        self.paper_left_lines = lines
        self.paper_out = False
        self.paper_near_end = False


class PrinterSim:
    def __init__(
        self,
        device_path: str,
        *,
        paper_left_lines: int | None = None,
        on_receipt: Callable[[Receipt], None] | None = None,
    ) -> None:
        self._serial = serial.Serial(device_path, baudrate=115200, timeout=0.02)
        self._printer = EscPosInterpreter(paper_left_lines)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.on_receipt = on_receipt
        self._thread = threading.Thread(target=self._run, name="printer-sim", daemon=True)
        self._thread.start()

    # switches: set from any thread, read by the printer between bytes
    def _set(self, name: str, value: object) -> None:
        with self._changed:
            setattr(self._printer, name, value)
            self._changed.notify_all()

    @property
    def paper_out(self) -> bool:
        return self._printer.paper_out

    @paper_out.setter
    def paper_out(self, out: bool) -> None:
        self._set("paper_out", out)

    @property
    def cover_open(self) -> bool:
        return self._printer.cover_open

    @cover_open.setter
    def cover_open(self, is_open: bool) -> None:
        self._set("cover_open", is_open)

    @property
    def paper_near_end(self) -> bool:
        return self._printer.paper_near_end

    @paper_near_end.setter
    def paper_near_end(self, near_end: bool) -> None:
        self._set("paper_near_end", near_end)

    @property
    def paper_left_lines(self) -> int | None:
        return self._printer.paper_left_lines

    @paper_left_lines.setter
    def paper_left_lines(self, lines: int | None) -> None:
        self._set("paper_left_lines", lines)

    @property
    def answers_gs_r(self) -> bool:
        return self._printer.answers_gs_r

    @answers_gs_r.setter
    def answers_gs_r(self, answers: bool) -> None:
        self._set("answers_gs_r", answers)

    def load_paper(self, lines: int | None = None) -> None:
        with self._changed:
            self._printer.load_paper(lines)

    @property
    def receipts(self) -> list[Receipt]:
        with self._changed:
            return list(self._printer.receipts)

    @property
    def current(self) -> Receipt:
        with self._changed:
            return self._printer.current

    @property
    def unknown_commands(self) -> list[bytes]:
        with self._changed:
            return list(self._printer.unknown_commands)

    def last_receipt_text(self) -> str:
        with self._changed:
            receipts = self._printer.receipts
            return receipts[-1].text() if receipts else self._printer.current.text()

    def wait_for_receipts(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._printer.receipts) >= count, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._serial.read(max(1, self._serial.in_waiting))
            except (serial.SerialException, OSError, TypeError):
                return  # port closed under us
            if not data:
                continue
            with self._changed:
                finished = len(self._printer.receipts)
                reply = self._printer.feed(data)
                new = self._printer.receipts[finished:]
                self._changed.notify_all()
            if reply:
                self._serial.write(reply)
            for receipt in new:
                if self.on_receipt:
                    self.on_receipt(receipt)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._serial.close()

    def __enter__(self) -> PrinterSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
