"""A simulated UART cable: two pseudo-terminals joined by a relay thread.

One end (`device_path`) is opened by a device simulator with pyserial; the other (`host_path`) by
the firmware (MicroPython unix port) or the gateway as its serial port. The relay paces bytes
like a real UART at `baud` (10 bits per byte: start, 8 data, stop), counts them in each
direction, can be unplugged to simulate a pulled cable, can garble what crosses (`faults`;
`noise()` puts a noisy cable's garbling on both directions) and can have noise put on it
(`inject`).
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable


class _End:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline: bytes pass untouched
        self.path = os.ttyname(self.slave)


def line_noise(every: int, seed: int | None = None) -> Callable[[bytes], bytes]:
    """A noisy cable's garbling, for `SerialLink.faults`: about one chunk in `every` that
    crosses has one bit of one byte flipped (a chunk is what the relay read at once: a
    command or reply of a few bytes on a quiet line)."""
    rng = random.Random(seed)

    def garble(chunk: bytes) -> bytes:
        if not chunk or rng.randrange(every):
            return chunk
        damaged = bytearray(chunk)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        return bytes(damaged)

    return garble


class SerialLink:
    def __init__(self, name: str, baud: int = 115200, pace: bool = True) -> None:
        self.name = name
        self.baud = baud
        self.pace = pace
        self.connected = True
        self.bytes_to_device = 0  # host -> device
        self.bytes_to_host = 0  # device -> host
        # Line faults (a cheap cable): "to_device" / "to_host" -> a function given each chunk
        # as it crosses, returning the bytes that arrive (noise, a byte doubled, one dropped).
        self.faults: dict[str, Callable[[bytes], bytes]] = {}
        self._noise: dict[str, Callable[[bytes], bytes]] = {}  # noise()'s, in faults
        self._device = _End()
        self._host = _End()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._relay, args=(self._host, self._device, "to_device"),
                             name=f"{name}-to-device", daemon=True),
            threading.Thread(target=self._relay, args=(self._device, self._host, "to_host"),
                             name=f"{name}-to-host", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def device_path(self) -> str:
        return self._device.path

    @property
    def host_path(self) -> str:
        return self._host.path

    def unplug(self) -> None:
        """Bytes sent while unplugged are lost, as on a pulled cable."""
        self.connected = False

    def plug(self) -> None:
        self.connected = True

    @property
    def noisy(self) -> bool:
        return bool(self._noise) and all(self.faults.get(way) is self._noise.get(way)
                                         for way in self._noise)

    def noise(self, every: int | None, seed: int | None = None) -> None:
        """Noise on the cable both ways (`line_noise(every)`), or none (`every=None`)."""
        for way in ("to_device", "to_host"):
            if self.faults.get(way) is self._noise.get(way):
                self.faults.pop(way, None)
        self._noise = {}
        if every is not None:
            self._noise = {way: line_noise(every, None if seed is None else seed + n)
                           for n, way in enumerate(("to_device", "to_host"))}
            self.faults.update(self._noise)

    def inject(self, to: str, data: bytes) -> None:
        """Bytes neither end sent (line noise, a peer at another baud rate) arrive at the
        device's end (`to="device"`) or the host's (`to="host"`)."""
        end = self._device if to == "device" else self._host
        os.write(end.master, data)

    def reset_counters(self) -> None:
        self.bytes_to_device = self.bytes_to_host = 0

    def _relay(self, src: _End, dst: _End, counter: str) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([src.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(src.master, 256)
            except OSError:
                return
            if not chunk or not self.connected:
                continue
            fault = self.faults.get(counter)
            if fault is not None:
                chunk = fault(chunk)
            if self.pace:
                time.sleep(len(chunk) * 10 / self.baud)
            setattr(self, "bytes_" + counter, getattr(self, "bytes_" + counter) + len(chunk))
            view = memoryview(chunk)
            while view and not self._stop.is_set():
                try:
                    written = os.write(dst.master, view)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                except OSError:
                    return
                view = view[written:]

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1)
        for end in (self._device, self._host):
            for fd in (end.master, end.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
