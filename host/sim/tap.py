"""A transparent TCP relay between a kiosk and its gateway that records every frame.

Bytes pass through untouched; a copy of each direction is deframed (COBS + CRC) and each frame
is written as one JSON line: {"dir": "k2g"|"g2k", "t": seconds since start, "frame": hex of the
COSE_Sign1 bytes}. This is what `kiosk demo --capture FILE` writes.

For the end-to-end tests and benchmarks the tap also counts frames and bytes in each direction,
can cut one direction of the link (`blocked`: its bytes are dropped, as on a cable that lost a
wire), calls `on_frame(dir, frame)` for each whole frame before the bytes that complete it are
passed on (so a test can act between a request and the gateway seeing it), can replace a frame
with another (`rewrite`: an attacker on the network path, for the key rotation test), and can be
pointed at another gateway (`retarget`) for the connections that follow, as when a gateway
restarts on a new port.

A tap listens only while its gateway can be reached (`upstream_alive`, asked every
`WATCH_S`; `listen(False)` / `listen(True)` at once): in a hall a kiosk that connects to a gateway
that is down is refused (ECONNREFUSED), as by the gateway's host; a tap that accepted and then
hung up would make it log "connection closed by the gateway" instead. It keeps its port while
it does not listen, as the gateway's address stays the same.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import IO

from onestop.protocol import framing

WAYS: tuple[str, ...] = ("k2g", "g2k")
WATCH_S = 0.1  # how often a tap asks whether its gateway is still there


class FrameTap:
    def __init__(self, upstream_host: str, upstream_port: int, capture: IO[str] | None,
                 upstream_alive: Callable[[], bool] | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        # asked on the tap's thread: False, and the tap stops listening until it is True again
        self.upstream_alive = upstream_alive
        self._wanted = True  # listen(False) holds the tap closed whatever upstream_alive says
        self._server: asyncio.Server | None = None
        self.capture = capture
        self.frames = 0  # frames passed on, both directions
        self.frames_by_dir = dict.fromkeys(WAYS, 0)
        self.bytes_by_dir = dict.fromkeys(WAYS, 0)  # bytes passed on (framing included)
        self.blocked: set[str] = set()  # directions whose bytes are dropped
        # called on the tap's thread for each whole frame, before it is passed on; must not
        # raise (the connection would be dropped)
        self.on_frame: Callable[[str, bytes], None] | None = None
        # an attacker on the path: called on the tap's thread for each whole frame, returns
        # the payload to pass on instead (None: the frame as it came); while set, whole frames
        # are passed on one by one, each framed again
        self.rewrite: Callable[[str, bytes], bytes | None] | None = None
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

    @property
    def listening(self) -> bool:
        return self._server is not None

    def listen(self, on: bool) -> None:
        """Listen (again, on the same port) or stop listening, before this returns: a kiosk's
        connection is then refused, as by a host whose gateway is not running. Connections
        already open stay as they are. RuntimeError if the port was taken meanwhile."""
        self._wanted = on
        future = asyncio.run_coroutine_threadsafe(self._set_listening(on), self._loop)
        future.result(timeout=5)

    def retarget(self, upstream_host: str, upstream_port: int) -> None:
        """Connections made from now on go to this gateway (open ones stay where they are)."""
        self.upstream = (upstream_host, upstream_port)

    def reset_counters(self) -> None:
        with self._lock:
            self.frames_by_dir = dict.fromkeys(WAYS, 0)
            self.bytes_by_dir = dict.fromkeys(WAYS, 0)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._set_listening(True))
        watcher = self._loop.create_task(self._watch())
        self._ready.set()
        self._loop.run_forever()
        watcher.cancel()
        self._loop.run_until_complete(asyncio.gather(watcher, return_exceptions=True))
        if self._server is not None:
            self._server.close()

    async def _set_listening(self, on: bool) -> None:
        if on and self._server is None:
            # the port it had (0 the first time: any free one); SO_REUSEADDR, as start_server
            # sets on Unix, lets it bind again at once
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        elif not on and self._server is not None:
            server, self._server = self._server, None
            server.close()  # a connection still in its backlog is reset

    async def _watch(self) -> None:
        """Listen only while the gateway is there (one that died on its own too)."""
        while True:
            await asyncio.sleep(WATCH_S)
            alive = self.upstream_alive
            if alive is None:
                continue
            with contextlib.suppress(OSError):  # the port taken meanwhile: try again later
                await self._set_listening(self._wanted and alive())

    async def _accept(self, kr: asyncio.StreamReader, kw: asyncio.StreamWriter) -> None:
        try:
            gr, gw = await asyncio.open_connection(*self.upstream)
        except OSError:
            # the gateway went away since the watcher last looked: reset, as close to a
            # refusal as an accepted connection can be, and stop listening at once
            sock = kw.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            kw.close()
            if self.upstream_alive is not None:
                await self._set_listening(False)
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
                rewrite = self.rewrite
                if rewrite is not None:
                    frames = [rewrite(way, frame) or frame for frame in frames]
                    data = b"".join(framing.encode(frame) for frame in frames)
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
