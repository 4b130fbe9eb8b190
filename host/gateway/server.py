"""The gateway server: frames in over any byte stream, signed replies out.

Two parts:
- `FrameService.process(payload) -> Processed` is synchronous and thread-safe: open and verify
  the COSE_Sign1 against the enrolled key, guard against replays and stale clocks, run the
  handler, seal the reply. Every failure becomes a signed `error` reply; nothing raises.
- `GatewayServer` is the asyncio side: one task per connection (TCP) or line (serial), deframing
  bytes and running `process` in a worker thread so a slow database call for one kiosk never
  stalls the others. The ledger keeps one connection per worker thread, and replaces one that
  broke (a database that went away and came back is picked up without a restart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

from onestop.host.gateway import replay
from onestop.host.gateway.config import (
    LedgerUrlError,
    default_key_path,
    describe,
    parse_ledger_url,
)
from onestop.host.gateway.handlers import Handled, Handlers
from onestop.host.gateway.ledger import open_ledger
from onestop.host.gateway.ledger.base import Ledger, LedgerError
from onestop.host.gateway.logs import EventLog
from onestop.host.gateway.metrics import GatewayMetrics, MetricsEndpoint
from onestop.host.gateway.transports import ByteStream, SerialSpec, SerialStream, start_tcp
from onestop.host.keys import KeyFileError, SigningKey, VerifyingKey, load_signing_key
from onestop.host.settlement import PolicyError
from onestop.protocol import framing, messages
from onestop.protocol.errors import ProtocolError, wire_code

DEFAULT_IDLE_TIMEOUT_S = 120.0
# Worker threads for ledger work, by backend. PostgreSQL serves many connections at once.
# SQLite has one writer and every request writes (its counter): more threads would only queue
# at SQLite's lock, whose busy handler sleeps (1, 2, 5... 100 ms), which stretches the slowest
# replies several-fold; one worker keeps them in order without sleeping.
DEFAULT_WORKERS = {"sqlite": 1, "postgresql": 8}
DEFAULT_POLICY = "reference"
MAX_ERROR_TEXT = 400  # characters of an error's msg: a reason, never a dump
SERIAL_REOPEN_S = 1.0  # wait before reopening a serial line that went away (cable pulled)


@dataclass
class Processed:
    """What the connection loop writes back, and what it logs and counts."""

    reply: bytes  # sealed COSE_Sign1 payload, ready to frame
    request_type: str  # "unauthenticated" when the frame could not be opened
    reply_type: str
    kiosk: str | None = None
    code: str | None = None  # error code, when the reply is an `error`
    msg: str | None = None
    handled: Handled | None = None


class FrameService:
    def __init__(
        self,
        ledger: Ledger,
        handlers: Handlers,
        signer: SigningKey,
        gateway_kid: str,
        log: EventLog,
        clock: Callable[[], float] = time.time,
        stale_after_s: int = replay.STALE_AFTER_S,
    ) -> None:
        self.ledger = ledger
        self.handlers = handlers
        self.signer = signer
        self.gateway_kid = gateway_kid
        self.log = log
        self.clock = clock
        self.stale_after_s = stale_after_s
        self._verifiers: dict[bytes, VerifyingKey] = {}  # by public key: parsed once

    def process(self, payload: bytes) -> Processed:
        now = int(self.clock())
        request: dict[str, Any] | None = None
        ledger = self.ledger
        try:
            # open() also checks that the signer's kid is the kiosk the request names
            _kid, request = messages.open(payload, lambda kid: self._verifier(ledger, kid))
            replay.guard(ledger, request, now, self.stale_after_s)
            handled = self.handlers.handle(ledger, request, now)
        except ProtocolError as exc:
            return self._refuse(request, wire_code(exc.code), exc.msg or exc.code, now)
        except LedgerError as exc:
            return self._refuse(request, "unavailable", f"the ledger is unavailable: {exc}",
                                now)
        except Exception as exc:  # a bug must cost one reply, never the connection
            return self._internal(request, exc, now)
        try:
            sealed = messages.seal(handled.reply, self.gateway_kid, self.signer)
        except Exception as exc:  # a reply that breaks frames.cddl is our bug, not the kiosk's
            return self._internal(request, exc, now)
        return Processed(sealed, request_type=request["t"], reply_type=handled.reply["t"],
                         kiosk=request["kiosk"], handled=handled)

    def _internal(self, request: dict[str, Any] | None, exc: Exception, now: int) -> Processed:
        self.log.error("internal_error", exc_info=exc, kiosk=_kiosk(request), t=_type(request))
        return self._refuse(request, "internal", f"internal error: {type(exc).__name__}", now)

    def _verifier(self, ledger: Ledger, kid: str) -> VerifyingKey:
        record = ledger.get_key(kid)
        if record is None or record.role != "kiosk":
            raise ProtocolError("unknown_kiosk", f"no kiosk {kid} is enrolled")
        if record.status != "active":
            raise ProtocolError("revoked", f"kiosk {kid} is {record.status}")
        verifier = self._verifiers.get(record.public_key)
        if verifier is None:
            verifier = self._verifiers[record.public_key] = VerifyingKey(record.public_key)
        return verifier

    def _refuse(self, request: dict[str, Any] | None, code: str, msg: str, now: int) -> Processed:
        msg = msg if len(msg) <= MAX_ERROR_TEXT else msg[: MAX_ERROR_TEXT - 1] + "…"
        reply = messages.error_reply(request, code, msg, now,
                                     now=now if code == "stale" else None)
        return Processed(
            reply=messages.seal(reply, self.gateway_kid, self.signer),
            request_type=_type(request), reply_type="error", kiosk=_kiosk(request),
            code=code, msg=msg,
        )

    def too_large(self) -> bytes:
        """The error sent once for each oversized frame the deframer dropped."""
        reply = messages.error_reply(
            None, "too_large", f"frame longer than {framing.MAX_FRAME} bytes", int(self.clock())
        )
        return messages.seal(reply, self.gateway_kid, self.signer)


def _kiosk(request: dict[str, Any] | None) -> str | None:
    return None if request is None else request.get("kiosk")


def _type(request: dict[str, Any] | None) -> str:
    return "unauthenticated" if request is None else str(request.get("t"))


class GatewayServer:
    def __init__(
        self,
        service: FrameService,
        metrics: GatewayMetrics,
        log: EventLog,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        workers: int = 1,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.log = log
        self.idle_timeout_s = idle_timeout_s
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="ledger")
        self._tcp: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # ------------------------------------------------------------ listeners
    async def listen_tcp(self, host: str, port: int) -> tuple[str, int]:
        """Start accepting kiosks; returns the bound address (port 0 picks a free one)."""
        server = await start_tcp(host, port, self._serve_connection)
        self._tcp.append(server)
        bound = server.sockets[0].getsockname()
        self.log.info("listening", transport="tcp", host=bound[0], port=bound[1])
        return bound[0], bound[1]

    def attach_serial(self, spec: SerialSpec) -> None:
        """Serve one serial line for as long as the gateway runs, reopening it if it drops."""
        task = asyncio.get_running_loop().create_task(self._serve_serial(spec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_serial(self, spec: SerialSpec) -> None:
        while not self._closing:
            try:
                stream = SerialStream(spec)
            except (OSError, ValueError) as exc:  # pyserial's SerialException is an OSError
                self.log.warning("serial_unavailable", device=spec.device, error=str(exc))
            else:
                self.log.info("listening", transport="serial", device=spec.device,
                              baud=spec.baud)
                await self._serve_stream(stream, idle_timeout_s=None)
            await asyncio.sleep(SERIAL_REOPEN_S)

    async def _serve_connection(self, stream: ByteStream) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve_stream(stream, self.idle_timeout_s)
        except asyncio.CancelledError:
            pass  # close() ends connections; asyncio's accept callback must not see the cancel
        finally:
            if task is not None:
                self._tasks.discard(task)

    # ------------------------------------------------------------ one stream
    async def _serve_stream(self, stream: ByteStream, idle_timeout_s: float | None) -> None:
        """Frames in order, one reply each. A serial line has no idle timeout: a kiosk may wait
        hours for its next resident, and the line is not a resource another kiosk needs."""
        deframer = framing.Deframer(framing.MAX_FRAME)
        gauge = self.metrics.connections.labels(transport=stream.transport)
        gauge.inc()
        self.log.debug("connected", transport=stream.transport, peer=stream.peer)
        reason = "closed by peer"
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(idle_timeout_s):
                        chunk = await stream.read()
                except TimeoutError:
                    reason = "idle timeout"
                    break
                if not chunk:
                    break
                await self._receive(stream, deframer, chunk)
        except (ConnectionError, OSError) as exc:
            reason = f"link error: {exc}"
        finally:
            gauge.dec()
            if deframer.buffered:
                self.metrics.error("truncated")  # the peer left mid-frame: dropped, not served
            self.log.debug("disconnected", transport=stream.transport, peer=stream.peer,
                           reason=reason, dropped_bytes=deframer.buffered)
            await stream.close()

    async def _receive(self, stream: ByteStream, deframer: framing.Deframer,
                       chunk: bytes) -> None:
        before = dict(deframer.stats)
        deframer.receive_data(chunk)
        self._count_discarded(before, deframer.stats)
        for _ in range(deframer.stats["too_large"] - before["too_large"]):
            await self._send(stream, self.service.too_large(), "error")
        loop = asyncio.get_running_loop()
        while (payload := deframer.next_frame()) is not None:
            started = time.perf_counter()
            result = await loop.run_in_executor(self._executor, self.service.process, payload)
            await self._send(stream, result.reply, result.reply_type)
            self._account(result, stream, time.perf_counter() - started)

    async def _send(self, stream: ByteStream, sealed: bytes, reply_type: str) -> None:
        await stream.write(framing.encode(sealed))
        self.metrics.frame("out", reply_type)

    def _count_discarded(self, before: dict[str, int], after: dict[str, int]) -> None:
        for stat, code in (("too_large", "too_large"), ("cobs", "malformed"),
                           ("crc", "malformed")):
            for _ in range(after[stat] - before[stat]):
                self.metrics.error(code)

    def _account(self, result: Processed, stream: ByteStream, elapsed: float) -> None:
        self.metrics.frame("in", result.request_type)
        latency_ms = round(elapsed * 1000, 2)
        if result.code is not None:
            self.metrics.error(result.code)
            self.log.warning("refused", kiosk=result.kiosk, t=result.request_type,
                             code=result.code, msg=result.msg, peer=stream.peer,
                             latency_ms=latency_ms)
            return
        handled = result.handled
        if handled is None:
            return
        if handled.settlement is not None:
            self.metrics.settlement(handled.settlement)
            self.metrics.settle_latency.observe(elapsed)
        if handled.event is not None:
            emit = self.log.warning if handled.warn else self.log.info
            emit(handled.event, kiosk=result.kiosk, latency_ms=latency_ms, **handled.fields)
        else:
            self.log.debug("served", kiosk=result.kiosk, t=result.request_type,
                           latency_ms=latency_ms)

    # ------------------------------------------------------------ shutdown
    async def close(self) -> None:
        """Stop accepting and close every connection; a frame already being processed finishes
        (its settlement commits; the kiosk resolves it with settlement_query), then the ledger
        closes."""
        self._closing = True
        for server in self._tcp:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._tcp:
            await server.wait_closed()
        self._executor.shutdown(wait=True)  # frames already in a worker finish, then close
        self.service.ledger.close()


# ---------------------------------------------------------------- assembly


class ServeError(Exception):
    """The gateway cannot start as configured; the message says why and what to do."""


@dataclass(frozen=True)
class GatewayConfig:
    db: str
    key_path: Path | None = None  # None: the ledger's default (gateway.key beside SQLite)
    policy: str = DEFAULT_POLICY
    tz: tzinfo | None = None
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    workers: int | None = None  # None: by backend (DEFAULT_WORKERS)


class RunningGateway:
    def __init__(self, server: GatewayServer, endpoint: MetricsEndpoint | None,
                 address: tuple[str, int], log: EventLog) -> None:
        self.server = server
        self.metrics_endpoint = endpoint
        self.address = address  # the bound TCP address
        self.log = log

    async def close(self) -> None:
        await self.server.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()


async def start_gateway(
    config: GatewayConfig,
    listen: tuple[str, int],
    serials: Sequence[SerialSpec] = (),
    metrics_at: tuple[str, int] | None = None,
) -> RunningGateway:
    """Load the key and policy, check the ledger, and start serving. ServeError if it cannot."""
    log = EventLog()
    signer, kid = _gateway_identity(config)
    try:
        handlers = Handlers(signer, kid, config.policy, config.tz)
    except PolicyError as exc:
        raise ServeError(str(exc)) from None
    metrics = GatewayMetrics()
    service = FrameService(open_ledger(config.db), handlers, signer, kid, log)
    workers = config.workers or DEFAULT_WORKERS[parse_ledger_url(config.db).backend]
    server = GatewayServer(service, metrics, log, config.idle_timeout_s, workers)
    try:
        address = await server.listen_tcp(*listen)
    except OSError as exc:
        await server.close()
        raise ServeError(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}") from None
    for spec in serials:
        server.attach_serial(spec)
    endpoint = None
    if metrics_at is not None:
        try:
            endpoint = MetricsEndpoint(metrics, *metrics_at)
        except OSError as exc:
            await server.close()
            raise ServeError(f"cannot serve metrics on {metrics_at[0]}:{metrics_at[1]}: "
                             f"{exc.strerror}") from None
        log.info("metrics", host=metrics_at[0], port=endpoint.port)
    log.info("serving", ledger=describe(config.db), gateway=kid, policy=config.policy)
    return RunningGateway(server, endpoint, address, log)


def _gateway_identity(config: GatewayConfig) -> tuple[SigningKey, str]:
    """The gateway's signing key and the kid it is enrolled under in this ledger."""
    try:
        key_path = config.key_path or default_key_path(config.db)
    except LedgerUrlError as exc:
        raise ServeError(str(exc)) from None
    if key_path is None:
        raise ServeError("a PostgreSQL ledger needs --key PATH (the gateway's signing key)")
    try:
        signer = load_signing_key(key_path)
    except KeyFileError as exc:
        raise ServeError(f"{exc} (`kiosk gateway init` makes the gateway's key)") from None
    try:
        ledger = open_ledger(config.db, create=False)
        records = ledger.list_keys()
    except (LedgerError, LedgerUrlError) as exc:
        raise ServeError(f"cannot open the ledger {describe(config.db)}: {exc}") from None
    ledger.close()
    for record in records:
        if (record.role == "gateway" and record.status == "active"
                and record.public_key == signer.public_key):
            return signer, record.kid
    raise ServeError(f"the key {key_path} is not an active gateway key of this ledger: "
                     "run `kiosk gateway init` with this --db")
