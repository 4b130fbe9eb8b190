"""A transparent TCP relay between a kiosk and its gateway that records every frame.

Bytes pass through untouched; a copy of each direction is deframed (COBS + CRC) and each frame
is written as one JSON line: {"dir": "k2g"|"g2k", "t": seconds since start, "frame": hex of the
COSE_Sign1 bytes}. This is what `kiosk demo --capture FILE` writes.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import threading
import time
from typing import IO

from onestop.protocol import framing


class FrameTap:
    def __init__(self, upstream_host: str, upstream_port: int, capture: IO[str] | None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.capture = capture
        self.frames = 0
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
                dst.write(data)
                await dst.drain()
                deframer.receive_data(data)
                while (frame := deframer.next_frame()) is not None:
                    self._record(way, frame)
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def _record(self, way: str, frame: bytes) -> None:
        line = {"dir": way, "t": round(time.monotonic() - self._start, 4),
                "frame": binascii.hexlify(frame).decode()}
        with self._lock:
            self.frames += 1
            if self.capture:
                self.capture.write(json.dumps(line) + "\n")
                self.capture.flush()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)
