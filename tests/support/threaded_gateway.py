"""A TCP gateway on a thread of its own, for the link tests (firmware/app/link.py under
MicroPython): each request the kiosk sends is opened with the kiosk's key and handed to
`answer(request, writer)`, which writes the reply, or not, as the test's script says."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from onestop.host.keys import VerifyingKey
from onestop.protocol import framing, messages


class ThreadedGateway:
    def __init__(self, kiosk_key: VerifyingKey) -> None:
        self.port = 0
        self._kiosk_key = kiosk_key
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)

    async def answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        """Answer `request` on `writer`; False closes the connection."""
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        deframer = framing.Deframer()
        while data := await reader.read(4096):
            deframer.receive_data(data)
            while (payload := deframer.next_frame()) is not None:
                _kid, request = messages.open(payload, lambda _kid: self._kiosk_key)
                if not await self.answer(request, writer):
                    writer.close()
                    return
        writer.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
