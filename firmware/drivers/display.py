# Serial touch screen (Nextion / TJC): sans-I/O command codec and event parser, async adapter.
"""The kiosk's touch screen: text commands ending in FF FF FF out, touch events back.

Pages and components are fixed by the HMI (hardware/display-pages.json, hardware/display.md):
    PAGES     welcome 0, reading 1, bills 2, confirm 3, processing 4, printing 5, done 6, error 7
    TEXTS     t_zh 1, t_en 2, l0..l5 3..8, b0..b3 9..12, big 13, more 14 (every page has all)
    BUTTONS   b0..b3, more: the only components that send touch events (more: a strip over
              the titles, shown while a page that waits for a choice counts down its end)

Codec (no I/O):
    page_command(name) -> bytes           b'page confirm\\xff\\xff\\xff'
    text_command(component, text) -> bytes  b't_zh.txt="..."\\xff\\xff\\xff': GBK via drivers.gbk,
        `"` and `\\` escaped, newline sent as the screen's \\r; cut on a character boundary at
        the component's txt_maxl (the screen itself would cut mid-character)
    vis_command(component, shown) -> bytes  b'vis b2,0\\xff\\xff\\xff'
    EventParser().feed(byte) -> event tuple or None, one byte at a time:
        ("touch", page_id, component_id, pressed) ("page", page_id) ("error", code) ("ok",)
        ("startup",) ("ready",) ("other", first_byte)

Display(reader, writer, timeout_ms=500):
    await show(page, texts) -> bool
        `page` a page name, `texts` {component: text}; components not given are cleared and
        buttons without text hidden. Ends with `sendme`, whose answer confirms the screen is on
        that page: True if it is, False if it never answered or is elsewhere.
    await update(texts) -> None
        sets the texts given on the page shown (buttons among them shown when they have text,
        hidden otherwise; what a hidden `more` covered drawn again), no page change, no
        confirmation; presses already received are kept
    await next_touch(timeout_ms) -> (page_id, component_name) or None
        the next press on a button of the page shown last; releases, presses left over from an
        earlier page and other replies are skipped.
    await command(text) -> None      any other instruction (e.g. "dim=30"), FF FF FF added
    errors, last_error               count and code of the error replies seen (bkcmd=2: the
                                     screen answers failures only), e.g. 0x1A invalid variable
    restarts                         times the screen announced a restart (redraw the page)
    await read_events(timeout_ms)    take in what the screen sent meanwhile (for `restarts`
                                     while no touch is awaited)

Replies are read one byte at a time so a stream that blocks until a read is filled (a pty on
the unix port) never stalls the event loop.
"""

import asyncio

from drivers import gbk
from micropython import const

END = b"\xff\xff\xff"
PAGES = ("welcome", "reading", "bills", "confirm", "processing", "printing", "done", "error")
TEXTS = ("t_zh", "t_en", "l0", "l1", "l2", "l3", "l4", "l5", "b0", "b1", "b2", "b3", "big",
         "more")
COMPONENT_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)  # of TEXTS, in order
TXT_MAXL = (40, 60, 80, 80, 80, 80, 80, 80, 60, 60, 60, 60, 20, 80)  # bytes, of TEXTS, in order
BUTTONS = ("b0", "b1", "b2", "b3", "more")
# Hiding a component leaves the page's background where it was: what it lay over is drawn again.
COVERS = {"more": ("t_zh", "t_en")}
ERROR_CODES = (0x00, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x11, 0x12, 0x1A, 0x1B, 0x1C, 0x1D,
               0x1E, 0x1F, 0x20, 0x23, 0x24)
_FIXED_SIZE = {0x65: 7, 0x66: 5, 0x67: 9, 0x68: 9, 0x71: 8}  # whole frame, FF FF FF included
_QUEUE_MAX = const(4)


def component_name(component_id):
    for i in range(len(COMPONENT_IDS)):
        if COMPONENT_IDS[i] == component_id:
            return TEXTS[i]
    return None


def page_command(page):
    return b"page " + page.encode() + END


def vis_command(component, shown):
    return b"vis " + component.encode() + (b",1" if shown else b",0") + END


def encode_text(text, limit=255):
    out = bytearray()
    for char in text:
        cp = ord(char)
        second = -1
        if cp == 0x22 or cp == 0x5C:  # " and \ are escaped
            first, second = 0x5C, cp
        elif cp == 0x0A:
            first, second = 0x5C, 0x72  # \r: the screen's line break inside a string
        elif cp < 0x20:
            first = 0x20
        elif cp < 0x80:
            first = cp
        else:
            code = gbk.code_of(char)
            if code < 0 or code & 0xFF == 0x5C:
                first = 0x3F  # no glyph, or a trail byte the screen would take for an escape
            else:
                first, second = code >> 8, code & 0xFF
        if len(out) + (1 if second < 0 else 2) > limit:
            break
        out.append(first)
        if second >= 0:
            out.append(second)
    return out


def text_command(component, text):
    limit = TXT_MAXL[TEXTS.index(component)]
    return component.encode() + b'.txt="' + encode_text(text, limit) + b'"' + END


class EventParser:
    def __init__(self):
        self._frame = bytearray(9)  # the longest fixed frame; longer ones are only skipped
        self._n = 0
        self._ends = 0  # 0xFF bytes in a row, for frames that end at FF FF FF
        self._skipping = False
        self.garbled = 0

    def feed(self, byte):
        if self._skipping:  # resynchronise: drop everything up to the next FF FF FF
            self._ends = self._ends + 1 if byte == 0xFF else 0
            if self._ends == 3:
                self._skipping = False
                self._ends = 0
            return None
        n = self._n
        if n < 9:
            self._frame[n] = byte
        n += 1
        self._n = n
        kind = self._frame[0]
        size = _FIXED_SIZE.get(kind)
        if size:
            if n < size:
                return None
            self._n = 0
            f = self._frame
            if f[size - 3] == 0xFF and f[size - 2] == 0xFF and f[size - 1] == 0xFF:
                return self._fixed(kind)
            self.garbled += 1
            self._skipping = True
            # the FF bytes the broken frame ended with may be the start of its real end
            self._ends = 2 if f[size - 1] == 0xFF and f[size - 2] == 0xFF else (
                1 if f[size - 1] == 0xFF else 0)
            return None
        self._ends = self._ends + 1 if byte == 0xFF else 0
        if self._ends < 3:
            return None
        self._ends = 0
        self._n = 0
        return self._variable(kind, n - 3)

    def _fixed(self, kind):
        f = self._frame
        if kind == 0x65:
            return ("touch", f[1], f[2], f[3] == 0x01)
        if kind == 0x66:
            return ("page", f[1])
        return ("other", kind)

    def _variable(self, kind, length):
        if length == 3 and kind == 0x00 and self._frame[1] == 0 and self._frame[2] == 0:
            return ("startup",)
        if length == 1:
            if kind == 0x01:
                return ("ok",)
            if kind == 0x88:
                return ("ready",)
            if kind in ERROR_CODES:
                return ("error", kind)
        return ("other", kind)


def _known(texts):
    for name in texts:
        if name not in TEXTS:
            raise ValueError("no component " + name)


class Display:
    def __init__(self, reader, writer, timeout_ms=500):
        self._reader = reader
        self._writer = writer
        self.timeout_ms = timeout_ms
        self._parser = EventParser()
        self._touches = []  # presses that came in while show() waited for its confirmation
        self.page = None  # id of the page shown last
        self.errors = 0
        self.last_error = None
        self.restarts = 0

    async def _send(self, data):
        self._writer.write(data)
        await self._writer.drain()

    async def command(self, text):
        await self._send(text.encode() + END)

    async def show(self, page, texts):
        page_id = PAGES.index(page)  # ValueError: not a page of this HMI
        _known(texts)
        self.page = page_id
        self._touches = []
        await self._send(page_command(page))
        for name in TEXTS:
            await self._send(text_command(name, texts.get(name, "")))
        for name in BUTTONS:
            await self._send(vis_command(name, bool(texts.get(name))))
        await self._send(b"sendme" + END)
        try:
            shown = await asyncio.wait_for_ms(self._confirmation(), self.timeout_ms)
        except asyncio.TimeoutError:
            return False
        return shown == page_id

    async def update(self, texts):
        _known(texts)
        for name in texts:
            text = texts[name]
            await self._send(text_command(name, text))
            if name in BUTTONS:
                await self._send(vis_command(name, bool(text)))
                if not text:
                    for covered in COVERS.get(name, ()):
                        await self.command("ref " + covered)

    async def _next_event(self):
        while True:
            got = await self._reader.read(1)
            if not got:
                await asyncio.sleep_ms(20)  # a hung-up line reads empty: don't spin on it
                continue
            event = self._parser.feed(got[0])
            if event is None:
                continue
            kind = event[0]
            if kind == "error":
                self.errors += 1
                self.last_error = event[-1]  # ("error", code)
            elif kind == "startup" or kind == "ready":
                self.restarts += 1
            return event

    def _press(self, event):
        """(page_id, name) for a press on the page shown last, else None."""
        if event[0] != "touch" or not event[3] or event[1] != self.page:
            return None
        name = component_name(event[2])
        return (event[1], name) if name in BUTTONS else None

    async def _confirmation(self, until_page=True):
        while True:
            event = await self._next_event()
            if event[0] == "page" and until_page:
                return event[1]
            press = self._press(event)
            if press and len(self._touches) < _QUEUE_MAX:
                self._touches.append(press)

    async def read_events(self, timeout_ms):
        """Take in what the screen has sent (a restart is counted in `restarts`; presses on the
        page are kept for next_touch), for up to `timeout_ms`."""
        try:
            await asyncio.wait_for_ms(self._confirmation(False), timeout_ms)
        except asyncio.TimeoutError:
            pass

    async def _next_press(self):
        while True:
            press = self._press(await self._next_event())
            if press:
                return press

    async def next_touch(self, timeout_ms):
        if self._touches:
            return self._touches.pop(0)
        try:
            return await asyncio.wait_for_ms(self._next_press(), timeout_ms)
        except asyncio.TimeoutError:
            return None
