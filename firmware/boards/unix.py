# The simulation board: the MicroPython unix port, each UART a pseudo-terminal (opened raw, at the
# configured speed) or a TCP socket, as named in config.json "uarts" (written by provisioning).
import asyncio
import gc
import os
import sys
import termios

from boards.common import BoardError, NoWatchdog, find_spec, uart_spec

_VTIME = 5  # Linux c_cc indexes; MicroPython's termios does not name them
_VMIN = 6


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


_filler = []


def hold_heap(free_bytes):
    """Model a board whose code runs from flash (frozen, or ROMFS) on the unix port, which loads
    .mpy code into the heap: hold back all of the heap but `free_bytes` for the data the firmware
    makes. Call once every module is imported. The heap may already be in pieces, so it is held
    in the largest blocks that fit."""
    size = 1 << 20
    while size >= 16:
        gc.collect()
        spare = gc.mem_free() - free_bytes
        if spare < 64:
            break
        try:
            _filler.append(bytearray(min(size, spare - 32)))
        except MemoryError:
            size //= 2
    gc.collect()


def release_heap():
    """Give back what hold_heap held (tests: before building their reports)."""
    _filler.clear()
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
        port = open_pty(where, arg)
        return asyncio.StreamReader(port), asyncio.StreamWriter(port, {})

    async def start_network(self):
        pass  # the host's network is already up

    def watchdog(self, timeout_ms):
        return NoWatchdog()

    def heap_baseline(self):
        """Bytes held once the firmware is loaded. With ONESTOP_DATA_HEAP (e.g. 64K) set, first
        leave exactly that much heap free: the board's budget for data (see hold_heap)."""
        data_heap = os.getenv("ONESTOP_DATA_HEAP")
        if data_heap:
            hold_heap(parse_size(data_heap))
        gc.collect()
        return gc.mem_alloc()

    def reset(self):
        sys.exit(3)  # the launcher (or a test) restarts the process: a reboot
