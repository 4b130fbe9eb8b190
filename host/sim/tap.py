"""A transparent TCP relay between a kiosk and its gateway that records every frame.

Bytes pass through untouched; a copy of each direction is deframed (COBS + CRC) and each frame
is written as one JSON line: {"dir": "k2g"|"g2k", "t": seconds since start, "frame": hex of the
COSE_Sign1 bytes}. This is what `kiosk demo --capture FILE` writes.

For the end-to-end tests and benchmarks the tap also counts frames and bytes in each direction,
can cut one direction of the link (`blocked`: its bytes are dropped, as on a cable that lost a
wire), calls `on_frame(dir, frame)` for each whole frame before the bytes that complete it are
passed on (so a test can act between a request and the gateway seeing it), and can be pointed
at another gateway (`retarget`) for the connections that follow, as when a gateway restarts on a
new port.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import threading
import time
from collections.abc import Callable
from typing import IO

from onestop.protocol import framing

WAYS: tuple[str, ...] = ("k2g", "g2k")


class FrameTap:
    def __init__(self, upstream_host: str, upstream_port: int, capture: IO[str] | None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.capture = capture
        self.frames = 0  # frames passed on, both directions
        self.frames_by_dir = dict.fromkeys(WAYS, 0)
        self.bytes_by_dir = dict.fromkeys(WAYS, 0)  # bytes passed on (framing included)
        self.blocked: set[str] = set()  # directions whose bytes are dropped
        # called on the tap's thread for each whole frame, before it is passed on; must not
        # raise (the connection would be dropped)
        self.on_frame: Callable[[str, bytes], None] | None = None
        self.port = 0
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-tap", daemon=True)

    def start(self) -> FrameTap:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("frame tap did not start")
        return self

    def retarget(self, upstream_host: str, upstream_port: int) -> None:
        """Connections made from now on go to this gateway (open ones stay where they are)."""
        self.upstream = (upstream_host, upstream_port)

    def reset_counters(self) -> None:
        with self._lock:
            self.frames_by_dir = dict.fromkeys(WAYS, 0)
            self.bytes_by_dir = dict.fromkeys(WAYS, 0)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _accept(self, kr: asyncio.StreamReader, kw: asyncio.StreamWriter) -> None:
        try:
            gr, gw = await asyncio.open_connection(*self.upstream)
        except OSError:
            kw.close()
            return
        await asyncio.gather(self._pump(kr, gw, "k2g"), self._pump(gr, kw, "g2k"))

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: str) -> None:
        deframer = framing.Deframer()
        try:
            while data := await src.read(4096):
                deframer.receive_data(data)
                frames = []
                while (frame := deframer.next_frame()) is not None:
                    frames.append(bytes(frame))
                    if self.on_frame is not None:
                        self.on_frame(way, frames[-1])
                if way in self.blocked:
                    continue
                dst.write(data)
                await dst.drain()
                self._count(way, len(data))
                for frame in frames:
                    self._record(way, frame)
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def _count(self, way: str, size: int) -> None:
        with self._lock:
            self.bytes_by_dir[way] += size

    def _record(self, way: str, frame: bytes) -> None:
        line = {"dir": way, "t": round(time.monotonic() - self._start, 4),
                "frame": binascii.hexlify(frame).decode()}
        with self._lock:
            self.frames += 1
            self.frames_by_dir[way] += 1
            if self.capture:
                self.capture.write(json.dumps(line) + "\n")
                self.capture.flush()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)
