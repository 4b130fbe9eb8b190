"""A simulated kiosk on CPython: its key, its persisted counter, signed requests, checked replies.

`KioskClient` is the sans-I/O part (seal a request, open and check the reply to it);
`KioskConnection` carries it over a byte stream (TCP, or a serial port) with the same framing
as the board. Used by the gateway's tests, `kiosk bench gateway` and the TUI. Frames are made
and checked with the host's fast path (fastwire: the protocol's bytes and verdicts).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

from onestop.host.gateway import fastwire
from onestop.host.gateway.ledger.base import KeyRecord, Ledger
from onestop.host.gateway.transports import (
    DEFAULT_BAUD,
    ByteStream,
    SerialSpec,
    SerialStream,
)
from onestop.host.keys import SigningKey, VerifyingKey
from onestop.protocol import framing, messages
from onestop.protocol.errors import ProtocolError

ZERO_RID = bytes(8)


class Counter(Protocol):
    def next(self) -> int: ...


class MemoryCounter:
    """A counter that lives as long as the process: for simulated kiosks that never restart."""

    def __init__(self, last: int = 0) -> None:
        self._last = last

    def next(self) -> int:
        self._last += 1
        return self._last


class FileCounter:
    """A counter that survives restarts, as on the board's flash.

    Values are leased in blocks: the end of a block is written durably (write, fsync, rename)
    before any value in it is used, so after a crash the kiosk resumes above every counter it
    may have sent, with one write per `lease` requests instead of one per request.
    """

    def __init__(self, path: str | os.PathLike[str], lease: int = 64) -> None:
        self._path = Path(path)
        self._lease = lease
        try:
            high_water = int(self._path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            high_water = 0
        self._next = high_water + 1
        self._limit = self._next  # nothing leased yet in this process

    def next(self) -> int:
        if self._next >= self._limit:
            self._limit = self._next + self._lease
            self._store(self._limit - 1)
        value = self._next
        self._next += 1
        return value

    def _store(self, high_water: int) -> None:
        temporary = self._path.with_name(self._path.name + ".tmp")
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{high_water}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._path)
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class GatewayRefused(Exception):
    """The gateway answered with an `error` frame."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(f"{reply['code']}: {reply['msg']}")
        self.reply = reply
        self.code: str = reply["code"]
        self.now: int | None = reply.get("now")


def new_txn_id() -> str:
    """A kiosk-generated settlement id: the idempotency key of `settle`."""
    return "T" + secrets.token_hex(12)


class KioskClient:
    def __init__(
        self,
        kiosk_id: str,
        key: SigningKey,
        counter: Counter,
        gateway_kid: str,
        gateway_key: VerifyingKey,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kiosk_id = kiosk_id
        self.key = key
        self.counter = counter
        self.gateway_kid = gateway_kid
        self.gateway_key = gateway_key
        self.clock = clock
        self.clock_offset = 0  # learnt from a `stale` error, as the board learns it at sign-in

    def now(self) -> int:
        return int(self.clock()) + self.clock_offset

    def request(self, t: str, **body: Any) -> tuple[dict[str, Any], bytes]:
        """A new request (next counter, fresh rid) and its signed COSE_Sign1 bytes."""
        message = messages.request(t, self.kiosk_id, self.counter.next(), secrets.token_bytes(8),
                                   self.now(), **body)
        return message, fastwire.seal(message, self.kiosk_id, self.key)

    def _key_for(self, kid: str) -> VerifyingKey:
        if kid != self.gateway_kid:
            raise ProtocolError("unknown_kiosk", f"reply signed by {kid!r}, not our gateway")
        return self.gateway_key

    def open_reply(self, payload: bytes) -> dict[str, Any]:
        """Verify a frame from the gateway (any frame: for tests that send raw bytes)."""
        _kid, reply = fastwire.open(payload, self._key_for)
        return reply

    def check_reply(self, request: dict[str, Any], payload: bytes) -> dict[str, Any]:
        """The gateway's answer to `request`, verified; raise GatewayRefused for an `error`.

        Raises ProtocolError("invalid") for a reply to some other request (the caller skips it).
        """
        reply = self.open_reply(payload)
        unauthenticated = reply["ctr"] == 0 and reply["rid"] == ZERO_RID
        answers = (reply["kiosk"], reply["ctr"], reply["rid"]) == (
            request["kiosk"], request["ctr"], request["rid"])
        if reply["t"] == "error" and (answers or unauthenticated):
            if reply["code"] == "stale" and reply.get("now") is not None:
                self.clock_offset += int(reply["now"]) - self.now()
            raise GatewayRefused(reply)
        if not answers or reply["t"] != request["t"] + "_reply":
            raise ProtocolError(
                "invalid",
                f"{reply['t']} is not the answer to {request['t']} ctr {request['ctr']}",
            )
        return reply

    def open_settlement(self, signed: bytes) -> dict[str, Any]:
        """The settlement record inside a settle reply, checked against the pinned gateway key."""
        return fastwire.open_settlement(signed, self.gateway_key)


def pinned_gateway_key(ledger: Ledger) -> tuple[str, VerifyingKey]:
    """The gateway key a kiosk is provisioned with: the ledger's one active gateway key."""
    active = [k for k in ledger.list_keys() if k.role == "gateway" and k.status == "active"]
    if len(active) != 1:
        raise LookupError(f"expected one active gateway key in the ledger, found {len(active)}")
    return active[0].kid, VerifyingKey(active[0].public_key)


def enroll_kiosk(ledger: Ledger, kiosk_id: str, counter: Counter | None = None) -> KioskClient:
    """A new simulated kiosk: it makes its own key, the ledger stores only the public half
    (as `kiosk gateway enroll` does), and it pins the gateway's key."""
    key = SigningKey.generate()
    ledger.add_key(KeyRecord(kid=kiosk_id, role="kiosk", public_key=key.public_key,
                             status="active"))
    gateway_kid, gateway_key = pinned_gateway_key(ledger)
    return KioskClient(kiosk_id, key, counter or MemoryCounter(), gateway_kid, gateway_key)


class _TcpLink(asyncio.Protocol):
    """A TCP ByteStream made directly on asyncio's transport (lighter than StreamReader and
    StreamWriter, which matters when one process drives hundreds of kiosks)."""

    transport = "tcp"
    frame_lead = b""

    def __init__(self) -> None:
        self.peer = "?"
        self._tcp: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not subclass asyncio.Transport)
        transport = cast(asyncio.Transport, transport)
        self._tcp = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        while not self._chunks and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if not self._chunks:
            return b""
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        return data

    async def write(self, data: bytes) -> None:
        if self._tcp is None or self._tcp.is_closing():
            raise ConnectionResetError("the connection is closed")
        self._tcp.write(data)
        if self._writable is not None:
            await self._writable

    async def close(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            await self._closed


class KioskConnection:
    """One kiosk's link to a gateway: one request outstanding at a time, as on the board."""

    def __init__(self, client: KioskClient, stream: ByteStream,
                 max_frame: int = framing.MAX_FRAME) -> None:
        self.client = client
        self.stream = stream
        self._deframer = framing.Deframer(max_frame)

    @classmethod
    async def open_tcp(cls, client: KioskClient, host: str, port: int) -> KioskConnection:
        _transport, link = await asyncio.get_running_loop().create_connection(
            _TcpLink, host, port)
        return cls(client, link)

    @classmethod
    async def open_serial(cls, client: KioskClient, device: str,
                          baud: int = DEFAULT_BAUD) -> KioskConnection:
        return cls(client, SerialStream(SerialSpec(device, baud)))

    async def call(self, t: str, timeout: float = 10.0, **body: Any) -> dict[str, Any]:
        """Send one request and return the verified reply (GatewayRefused for an `error`)."""
        request, sealed = self.client.request(t, **body)
        await self.stream.write(self.stream.frame_lead + fastwire.encode_frame(sealed))
        async with asyncio.timeout(timeout):
            while True:
                payload = await self.receive_payload()
                try:
                    return self.client.check_reply(request, payload)
                except ProtocolError as exc:
                    if exc.code != "invalid":
                        raise
                    # a late answer to an earlier request that timed out: not ours, skip it

    async def resolve(self, txn_id: str, psn_no: str, bill_id: str,
                      confirmed_cash: int) -> dict[str, Any]:
        """Settle an in-doubt txn exactly once (after a lost reply or a power cut): ask the
        gateway; if it never saw the txn, send the same settle again under the same txn_id.
        Returns the settlement_query_reply or settle_reply that holds the answer."""
        answer = await self.call("settlement_query", txn_id=txn_id)
        if answer["status"] != "not_found":
            return answer
        return await self.call("settle", psn_no=psn_no, bill_id=bill_id, txn_id=txn_id,
                               confirmed_cash=confirmed_cash)

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are, framed or not: for tests of what a broken kiosk might send."""
        await self.stream.write(data)

    async def receive_payload(self) -> bytes:
        """The next frame's payload from the gateway; ConnectionError if the link closes."""
        while True:
            payload = self._deframer.next_frame()
            if payload is not None:
                return payload
            chunk = await self.stream.read()
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self._deframer.receive_data(chunk)

    async def close(self) -> None:
        await self.stream.close()
