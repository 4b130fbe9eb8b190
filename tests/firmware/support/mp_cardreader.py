# Runs under MicroPython (onestop.host.mpy.Worker, firmware/ on the path): drives the card-reader
# driver over a pseudo-terminal and hands plain values back to the CPython tests.
import asyncio
import gc
import termios

from drivers.apdu import atr_ok
from drivers.cardreader import CardError, CardReader, FrameParser, encode_frame

_VTIME = 5  # Linux c_cc indexes (MicroPython's termios lacks the names)
_VMIN = 6


def open_port(path):
    """The pty as the kiosk's UART: raw bytes, and a read returns what has arrived (VMIN 0)
    instead of blocking until the buffer is full."""
    port = open(path, "r+b")
    termios.setraw(port.fileno())
    attrs = termios.tcgetattr(port.fileno())
    attrs[6][_VMIN] = 0
    attrs[6][_VTIME] = 0
    termios.tcsetattr(port.fileno(), termios.TCSANOW, attrs)
    return port


async def _session(path, action):
    port = open_port(path)
    try:
        reader = CardReader(asyncio.StreamReader(port), asyncio.StreamWriter(port, {}))
        return await action(reader)
    finally:
        port.close()


def _run(path, action):
    """{"ok": result} or {"error": CardError code, "msg": text}."""
    try:
        return {"ok": asyncio.run(_session(path, action))}
    except CardError as e:
        return {"error": e.code, "msg": e.msg}


async def _read(reader):
    return await reader.read_card()


async def _status(reader):
    return await reader.status()


def read_card(path):
    return _run(path, _read)


def status(path):
    return _run(path, _status)


def read_twice(path):
    """Two reads on one CardReader: the second must not see leftovers of the first."""
    async def twice(reader):
        first = await reader.read_card()
        return [first, await reader.read_card()]
    return _run(path, twice)


def read_while_polling(path, polls):
    """read_card in one task while another polls status(), as a UI task might."""
    async def both(reader):
        async def poll():
            seen = []
            for _ in range(polls):
                seen.append(await reader.status())
                await asyncio.sleep_ms(0)
            return seen
        return await asyncio.gather(reader.read_card(), poll())
    return _run(path, both)


def measure_read(path):
    """Heap figures for one read_card: bytes allocated during it (gc disabled, so nothing is
    reclaimed mid-read: an upper bound on its peak) and bytes still held after a collection."""
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    try:
        result = read_card(path)
        allocated = gc.mem_alloc() - before
    finally:
        gc.enable()
    gc.collect()
    return {"result": result, "allocated": allocated, "retained": gc.mem_alloc() - before}


# ---------------------------------------------------------------- the codec on its own
def frame(cmd, data):
    return bytes(encode_frame(cmd, data))


def parse(chunks):
    """Feed each chunk (bytes), or let the line go quiet (None); collect what comes out."""
    parser = FrameParser()
    frames = []
    for chunk in chunks:
        if chunk is None:
            parser.stale()
        else:
            view = memoryview(chunk)
            while view:
                view = view[parser.feed(view):]
                _drain(parser, frames)
        _drain(parser, frames)
    return {"frames": frames, "skipped": parser.skipped, "rejected": parser.rejected,
            "pending": parser.pending()}


def _drain(parser, frames):
    frame = parser.next_frame()
    while frame:
        frames.append(frame)
        frame = parser.next_frame()


def check_atr(atr):
    return atr_ok(atr)
