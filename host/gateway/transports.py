"""Byte streams the gateway serves frames over: asyncio TCP and serial lines (pyserial).

Both look the same to the server — `read()` a chunk (b"" at the end), `write(bytes)`, `close()` —
so one connection loop and one framing serve the LAN and a USB/RS-485 cable alike. One difference:
a serial line's frames are written after a 0x00 of their own (`frame_lead`), see SerialStream.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import serial

READ_CHUNK = 4096
DEFAULT_BAUD = 115200
# On a stop, a frame the line was still taking gets this long (plus its bytes' time at the
# baud rate) to go out whole before the port closes (SerialStream.write).
WRITE_REST_S = 2.0


class ByteStream(Protocol):
    transport: str  # "tcp" | "serial": a metrics label
    peer: str  # for logs
    frame_lead: bytes  # written before each frame: b"\x00" on a serial line, b"" on TCP

    async def read(self) -> bytes: ...  # b"" once the peer is gone
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


# ---------------------------------------------------------------- addresses


def parse_host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT' (IPv6 as '[::1]:PORT') -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if int(port) > 65535:
        raise ValueError(f"port {int(port)} is out of range (ports go up to 65535)")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class SerialSpec:
    device: str
    baud: int = DEFAULT_BAUD

    @classmethod
    def parse(cls, text: str) -> SerialSpec:
        """'DEVICE' or 'DEVICE@BAUD' -> SerialSpec."""
        device, sep, baud = text.partition("@")
        if not device or (sep and not baud.isdigit()) or (sep and int(baud) <= 0):
            raise ValueError(f"expected DEVICE[@BAUD], got {text!r}")
        return cls(device, int(baud) if sep else DEFAULT_BAUD)


# ---------------------------------------------------------------- TCP


class TcpStream:
    transport = "tcp"
    frame_lead = b""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def read(self) -> bytes:
        try:
            return await self._reader.read(READ_CHUNK)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass  # the peer was already gone: nothing left to flush


async def start_tcp(
    host: str, port: int, on_stream: Callable[[ByteStream], Awaitable[None]]
) -> asyncio.Server:
    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await on_stream(TcpStream(reader, writer))

    return await asyncio.start_server(accepted, host, port, reuse_address=True)


# ---------------------------------------------------------------- serial


class SerialInUse(OSError):
    """Another process holds the line's exclusive lock: a second reader would split frames."""


class SerialStream:
    """A serial port driven by the event loop: pyserial configures the line (baud, raw 8N1),
    the loop watches its file descriptor, so no thread blocks on a read. The line is locked
    (flock, pyserial's `exclusive`): a second gateway given the same line is refused.

    Each frame is written after a 0x00 of its own (`frame_lead`), not only ended by one: noise
    on an idle line (a cable brushed, an adapter powered, a peer at another baud rate) would
    otherwise be taken for the head of the next frame, whose CRC then fails, and the frame,
    a kiosk's reply, be lost to a whole reply timeout. With it the noise ends as a run of its
    own, discarded; the empty run between two frames' delimiters is skipped by the deframer."""

    transport = "serial"
    frame_lead = b"\x00"

    def __init__(self, spec: SerialSpec) -> None:
        self.device = spec.device
        self.baud = spec.baud
        self.peer = f"{spec.device}@{spec.baud}"
        try:
            self._port = serial.Serial(spec.device, spec.baud, timeout=0, write_timeout=0,
                                       exclusive=True)
        except serial.SerialException as exc:
            if "exclusively lock" in str(exc):
                raise SerialInUse(f"{spec.device} is in use by another gateway (or another "
                                  "program that locked it): a line has one reader") from None
            raise
        self._fd = self._port.fileno()
        os.set_blocking(self._fd, False)
        self._loop = asyncio.get_running_loop()

    async def _wait(self, add: Callable[..., None], remove: Callable[[int], object]) -> None:
        ready = self._loop.create_future()
        add(self._fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            remove(self._fd)

    async def read(self) -> bytes:
        # The port is raw with VMIN=0: an idle line reads b"" at once. So wait until the loop
        # says it is readable; readable yet empty (as pyserial decides too) or EIO means the
        # device is gone (adapter unplugged, pty closed).
        waited = False
        while True:
            try:
                data = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                data = b""
            except OSError:
                return b""
            if data or waited:
                return data
            await self._wait(self._loop.add_reader, self._loop.remove_reader)
            waited = True

    async def write(self, data: bytes) -> None:
        left = [memoryview(data)]
        try:
            await self._write_out(left)
        except asyncio.CancelledError:
            # A stop cancels the line's task, then closes the port: a frame the full line had
            # only partly taken would reach the kiosk cut, and its answer (a settle's refusal)
            # never. The rest still goes out, for as long as the line needs to send it; then
            # the cancellation goes on.
            try:
                async with asyncio.timeout(WRITE_REST_S + len(left[0]) * 10 / self.baud):
                    await self._write_out(left)
            except (TimeoutError, OSError):
                pass  # the line takes nothing (cable pulled, flow held): closed as it is
            raise

    async def _write_out(self, left: list[memoryview]) -> None:
        """Write left[0] whole, waiting for the line to have room; left[0] is kept as what is
        not written yet."""
        while left[0]:
            try:
                left[0] = left[0][os.write(self._fd, left[0]) :]
            except BlockingIOError:
                await self._wait(self._loop.add_writer, self._loop.remove_writer)

    async def close(self) -> None:
        self._port.close()
