# The simulation board: the MicroPython unix port, each UART a pseudo-terminal (opened raw, at the
# configured speed) or a TCP socket, as named in config.json "uarts" (written by provisioning).
import asyncio
import gc
import os
import sys
import termios

from app import flash
from boards.common import BoardError, NoWatchdog, find_spec, uart_spec

_VTIME = 5  # Linux c_cc indexes; MicroPython's termios does not name them
_VMIN = 6
_DEVICES = {"card": "card reader", "gateway": "gateway link"}  # else the role's own name


def parse_endpoint(text, default_baud):
    """'tcp:HOST:PORT' -> ("tcp", host, port); 'PATH[@BAUD]' -> ("pty", path, baud)."""
    if text.startswith("tcp:"):
        host, _, port = text[4:].rpartition(":")
        return "tcp", host, int(port)
    path, _, baud = text.partition("@")
    return "pty", path, int(baud) if baud else default_baud


def open_pty(path, baud):
    """The pty as a UART: raw bytes at `baud`, and VMIN 0 so that a read returns what has arrived
    instead of blocking until its buffer is full (asyncio polls before each read)."""
    speed = getattr(termios, "B%d" % baud, None)
    if speed is None:
        raise BoardError("unsupported baud rate %d" % baud)
    port = open(path, "r+b")
    fd = port.fileno()
    termios.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = speed
    attrs[6][_VMIN] = 0
    attrs[6][_VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return port


_held = None  # what hold_heap holds: blocks chained through their first item
_separators = None  # hold_heap's separators between the pieces of a fragmented heap, chained
_WORD = 8 if sys.maxsize > 1 << 32 else 4  # bytes; a heap block is 4 words
_SEPARATOR = 8 * _WORD  # a list of one item: a block of list, a block of item
_ONE = [None]  # made once: `[None] * n` would make a list of one each time, as garbage


def _chain(head, words):
    """A new block of `words` list items whose first item is `head`: any number of blocks held
    without a list that grows, and no garbage made (whose collection, in the middle of cutting
    pieces, would open holes that the next separators take)."""
    block = _ONE * words
    block[0] = head
    return block


def _unlink(block):
    """Give back one block of a chain (its link is cut): at once, as clear() shrinks the items
    of a list in place to 4 (one heap block), so not even a stale pointer to it (the collector
    is conservative) keeps more than that; a block of 4 items or fewer at the next collection."""
    block[0] = None
    if len(block) > 4:
        block.clear()


def _free(head):
    """Give back a whole chain."""
    while head is not None:
        block = head
        head = block[0]
        _unlink(block)


def hold_heap(free_bytes, piece=0):
    """Model a board whose code runs from flash (frozen, or ROMFS) on the unix port, which loads
    .mpy code into the heap: hold back all of the heap but `free_bytes` for the data the firmware
    makes. Call once every module is imported.

    A board's data heap is one piece: nothing but data was ever in it. The unix port's free heap
    is in pieces between the code and whatever the process made before (a test worker's earlier
    calls); left free, those pieces would cut the data heap into as many (largest 4 to 38 KB of a
    64 KB budget, from run to run). So the data heap is reserved first in one block, everything
    else is held (what stays free of it are crumbs of one heap block), and the reserve is given
    back. Without a free block of `free_bytes`, the largest there is is reserved and held blocks
    are given back, the smallest first, until `free_bytes` are free.

    piece: a deliberately fragmented data heap (for tests): the reserve cut into pieces of
    `piece` bytes, each apart from the next, so no allocation larger than a piece can succeed
    (about `free_bytes` free in all, never a held block given back)."""
    global _held, _separators
    gc.collect()
    size = free_bytes
    if piece:  # room for the separators too, and for the end of the reserve no piece fills
        size += (free_bytes // piece + 1) * _SEPARATOR + piece
    while True:
        try:
            reserve = _ONE * (size // _WORD)
            break
        except MemoryError:
            size -= 1024
            if size <= 0:
                raise
    words = 1 << 17
    while words:  # hold all the rest, down to the crumbs too small for a list of one item
        try:
            _held = _chain(_held, words)
        except MemoryError:
            words //= 2
    reserve.clear()
    gc.collect()
    if piece:
        _separators = _cut(piece)
        gc.collect()
    while not piece and _held is not None and gc.mem_free() < free_bytes:
        block = _held
        _held = block[0]
        _unlink(block)
        gc.collect()


def _cut(piece):
    """Fill the reserve, the one free block a list fits in, with pieces, each followed by a
    separator; returns the separators (the pieces are given back)."""
    pieces = None
    separators = None
    try:
        while True:
            pieces = _chain(pieces, piece // _WORD - 4)  # list (4 words) + items: `piece`
            separators = _chain(separators, 1)
    except MemoryError:
        pass
    _free(pieces)
    return separators


def release_heap():
    """Give back what hold_heap held (tests: before building their reports)."""
    global _held, _separators
    _free(_held)
    _free(_separators)
    _held = _separators = None
    gc.collect()


def parse_size(text):
    """'64K' -> 65536; '1M'; plain bytes."""
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


class Board:
    name = "unix"

    def __init__(self, config, flash_dir):
        self.config = config
        self.flash_dir = flash_dir
        self.spec = find_spec(self.name)
        self._ports = {}  # role -> its open pty, closed when the role's UART is opened again

    async def open_uart(self, role):
        default_baud = uart_spec(self.spec, role)["baud"]
        if role == "gateway":
            gw = self.config["gateway"]
            text = gw["path"] + ("@%d" % gw["baud"] if gw.get("baud") else "")
        else:
            text = self.config["uarts"].get(role)
            if not text:
                raise BoardError("config.json names no %s UART" % role)
        kind, where, arg = parse_endpoint(text, default_baud)
        if kind == "tcp":
            return await asyncio.open_connection(where, arg)
        old = self._ports.pop(role, None)
        if old is not None:  # opened again after it failed (the device went away): let it go
            try:
                old.close()
            except OSError:
                pass
        try:
            port = open_pty(where, arg)
        except OSError as e:
            # still an OSError (the gateway link retries one), but saying which device and path
            raise OSError(e.errno, "cannot open the %s's UART %s"
                          % (_DEVICES.get(role, role), where)) from None
        self._ports[role] = port
        return asyncio.StreamReader(port), asyncio.StreamWriter(port, {})

    async def start_network(self):
        pass  # the host's network is already up

    def watchdog(self, timeout_ms):
        return NoWatchdog()

    def heap_baseline(self):
        """Bytes held once the firmware is loaded. With ONESTOP_DATA_HEAP (e.g. 64K) set, first
        leave exactly that much heap free: the board's budget for data (see hold_heap); with
        ONESTOP_HEAP_PIECE (e.g. 512) too, cut into pieces of that size (fragmentation trials)."""
        data_heap = os.getenv("ONESTOP_DATA_HEAP")
        if data_heap:
            hold_heap(parse_size(data_heap), parse_size(os.getenv("ONESTOP_HEAP_PIECE") or "0"))
        gc.collect()
        return gc.mem_alloc()

    def reset(self):
        sys.exit(3)  # the launcher (or a test) restarts the process: a reboot

    def status_light(self):
        return FileLight(self.flash_dir)


class FileLight:
    """No LED here: the pattern is written to FLASH/status_light, where the simulator (the TUI,
    the tests) reads it."""

    def __init__(self, flash_dir):
        self._path = flash.join(flash_dir, "status_light")
        self._pattern = None
        flash.remove(self._path)  # powered on: dark until the kiosk lights it

    def show(self, pattern):
        if pattern == self._pattern:
            return
        self._pattern = pattern
        try:
            flash.write_atomic(self._path, pattern.encode())  # never half a word
        except OSError:
            pass  # a light is no reason to stop serving


def prepare_random():
    """The unix port's os.urandom is the host's getrandom(): random already."""
