"""The gateway server: frames in over any byte stream, signed replies out.

Three steps per frame, all on the event loop's thread:
- `FrameService.prepare(payload)`: open and verify the COSE_Sign1 against the enrolled key
  (cached; the request's own transaction checks it is still active), validate, refuse a stale
  clock, and do what can be done before the ledger (`Handlers.ahead`: a settle of the bill its
  kiosk just priced has its record signed). CPU only; a frame that fails here is answered at
  once with a signed `error`.
- the ledger: every prepared request the loop gathered meanwhile runs as one batch
  (`Ledger.run_requests`): each request's replay check (counter advance), reads and writes are
  one transaction, and the batch shares one commit — one disk flush answers many kiosks, and a
  settle's counter advance commits together with the settlement.
- `FrameService.finish`: seal the reply (or the refusal), while the batch's disk flush is under
  way, and write it once the flush is done.

Nothing raises out of these: every failure becomes a signed `error` reply. No worker thread
does this work: it is CPU (signatures, codec) and the ledger's single writer, and Python's GIL
made threads queue behind each other (each SQLite statement gives the GIL up and waits up to
5 ms to get it back). Threads only wait, so that the loop does not: for the ledger's writers'
queue and a batch's disk flush (Batcher), and for the periodic key check (serve_cli). To use
several cores, run several gateway processes: `kiosk gateway serve --workers N` forks N of them
sharing the listening socket (workers.py); SQLite writers take turns on a lock file, PostgreSQL
orders them with row locks. While a batch runs, this process waits for the ledger; the other
workers keep serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any, NoReturn, cast
from zoneinfo import ZoneInfo

from onestop.host.gateway import eventloop, fastwire, replay, storable
from onestop.host.gateway.certs import Cert, CertError, cert_path
from onestop.host.gateway.certs import load as load_cert
from onestop.host.gateway.config import (
    SETTLEMENT_TIMEZONE,
    LedgerUrlError,
    default_key_path,
    describe,
)
from onestop.host.gateway.handlers import Handled, Handlers, SignerRevoked
from onestop.host.gateway.ledger import open_ledger
from onestop.host.gateway.ledger.base import (
    CertRecord,
    KeyRecord,
    Ledger,
    LedgerError,
    RequestJob,
    RequestOutcome,
)
from onestop.host.gateway.logs import EventLog
from onestop.host.gateway.metrics import (
    GatewayMetrics,
    KioskFleetCollector,
    MetricsEndpoint,
    workers_page,
)
from onestop.host.gateway.stallwatch import StallWatch
from onestop.host.gateway.transports import ByteStream, SerialInUse, SerialSpec, SerialStream
from onestop.host.gateway.workers import BACKLOG
from onestop.host.keys import KeyFileError, SigningKey, VerifyingKey, load_signing_key
from onestop.host.settlement import PolicyError
from onestop.protocol import framing, messages
from onestop.protocol.errors import ProtocolError, wire_code

DEFAULT_IDLE_TIMEOUT_S = 120.0
DEFAULT_POLICY = "reference"
MAX_ERROR_TEXT = 400  # characters of an error's msg: a reason, never a dump
SERIAL_REOPEN_S = 1.0  # wait before reopening a serial line that went away (cable pulled)
SERIAL_WARN_EVERY_S = 300.0  # a line that stays away is logged again this often
MAX_BATCH = 128  # requests per ledger transaction at most
# Frames a TCP client may send ahead of its answers before the gateway stops reading its link
# (a kiosk sends one and waits; a client that floods is held back by TCP, not by our memory).
MAX_FRAMES_AHEAD = 16
ACCEPT_PAUSE_S = 0.005  # a worker holding more kiosks than another leaves new ones this long
# accept() failing (out of file descriptors...) would fail again at once: the listener is left
# alone this long, and the failure logged at most once per ACCEPT_WARN_EVERY_S with a count.
ACCEPT_RETRY_S = 0.25
ACCEPT_WARN_EVERY_S = 10.0
# A ledger batch that took this long held up every kiosk of the gateway: logged as a warning.
SLOW_LEDGER_S = 1.0
# Gateways on one ledger whose clocks differ by less than this are not told apart at start-up.
CLOCK_SLACK_S = 600
# A TCP client whose frames are refused this many times in a row for its own fault (frames
# that are not frames, not signed by a key we know, not a valid request, replayed, too large)
# is disconnected: a kiosk never does that, and each refusal costs a signature and a log line
# while other kiosks wait. It may connect again. A refusal for the ledger's sake (unavailable),
# a bug's (internal) or a resident's (card_expired, bill_settled...) is no fault of the link.
MAX_REFUSED_IN_A_ROW = 32
LINK_FAULTS = frozenset({"malformed", "bad_signature", "unknown_kiosk", "revoked", "replay",
                         "invalid", "unsupported_version", "stale"})
# Frames the Deframer drops (its stats), by the error code they count under: each a link's
# fault too (an empty frame, a lone delimiter, is none: it may resynchronise a line).
DISCARDED = {"too_large": "too_large", "cobs": "malformed", "crc": "malformed"}
# Frames one connection may have answered in one pass of the event loop before the others get
# theirs: a client sending thousands of small frames at once must not hold the loop.
FRAMES_PER_PASS = 8
# A frame begun must end within this (a kiosk sends each whole; 4 KB at 9600 baud is 4 s): a
# client trickling a byte at a time would otherwise hold its connection past the idle timeout.
FRAME_DEADLINE_S = 30.0
# "refused" log lines (and "discarded", a serial line's frames that were not frames): at most
# this many per window, together; the rest are counted in one line (the metrics count every
# one), so a flood of bad frames cannot fill the disk with log.
REFUSED_LOG_BURST = 100
REFUSED_LOG_WINDOW_S = 10.0
# Connections past this share of the process's file descriptors are warned of: at the limit the
# listener can take no more, and kiosks are turned away with nothing in the log.
FD_WARN_SHARE = 0.9
FD_WARN_EVERY_S = 60.0


def raise_fd_limit() -> int:
    """The soft limit on open files raised to the hard one (a kiosk is a connection, a
    connection a descriptor); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


@dataclass(slots=True)
class Processed:
    """What the connection loop writes back, and what it logs and counts."""

    reply: bytes  # sealed COSE_Sign1 payload, ready to frame
    request_type: str  # "unauthenticated" when the frame could not be opened
    reply_type: str
    kiosk: str | None = None
    code: str | None = None  # error code, when the reply is an `error`
    msg: str | None = None  # for the log: the reason, with details the kiosk is not sent
    handled: Handled | None = None


@dataclass(slots=True)
class Prepared:
    """An authenticated, valid, fresh request waiting for the ledger."""

    request: dict[str, Any]
    now: int
    job: RequestJob


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
        # Active kiosk keys as last read. A revocation since is caught by the request's own
        # transaction (RequestJob.public_key), which then drops the entry.
        self._keys: dict[str, KeyRecord] = {}
        # Called (with the key's status) when a settle found this gateway's own key revoked,
        # once its refusal is sent: serving stops at once rather than at the next periodic
        # check.
        self.on_signer_revoked: Callable[[str], None] | None = None

    # ------------------------------------------------------------ the three steps
    def prepare(self, payload: bytes) -> Prepared | Processed:
        """Open, verify, validate and check the clock; a Processed refusal if that fails."""
        now = int(self.clock())
        request: dict[str, Any] | None = None
        used: list[KeyRecord] = []
        try:
            # open() also checks that the signer's kid is the kiosk the request names
            _kid, request = fastwire.open(payload, lambda kid: self._verifier(kid, used))
            if request["t"] not in fastwire.REQUESTS:
                # A reply or error is never a kiosk's to send; open() ties only a request's
                # `kiosk` to its signer, so this one's may name another kiosk: refused before
                # the ledger is asked anything about that kiosk, in an error addressed to no one.
                t, request = request["t"], None
                raise ProtocolError("invalid", f"{t} is not a request")
            replay.check_fresh(request, now, self.stale_after_s)
            replay.check_counter_range(request)
            storable.check_text(request)
        except ProtocolError as exc:
            return self._refuse(request, wire_code(exc.code), exc.msg or exc.code, now)
        except LedgerError as exc:
            return self._unavailable(request, exc, now)
        except Exception as exc:  # a bug must cost one reply, never the connection
            return self._internal(request, exc, now)
        handlers = self.handlers
        try:
            ahead = handlers.ahead(request, now)
        except Exception as exc:  # a bug must cost one reply, never the connection
            return self._internal(request, exc, now)

        def work(ledger: Ledger, request: dict[str, Any] = request, now: int = now) -> Handled:
            return handlers.handle(ledger, request, now, ahead)

        job = RequestJob(kiosk_id=request["kiosk"], ctr=request["ctr"],
                         public_key=used[-1].public_key, work=work,
                         durable=request["t"] in handlers.DURABLE,
                         undo_refused=request["t"] in handlers.WRITES)
        return Prepared(request, now, job)

    def run(self, prepared: Sequence[Prepared]) -> list[RequestOutcome]:
        """The ledger work of `prepared`, one transaction each, one commit for all."""
        try:
            return self.ledger.run_requests([p.job for p in prepared])
        except Exception as exc:  # a bug in the ledger: each request gets an internal error
            return [RequestOutcome("refused", error=exc) for _ in prepared]

    def finish(self, prepared: Prepared, outcome: RequestOutcome) -> Processed:
        """Seal the reply to a request the ledger has run (or its refusal)."""
        request, now = prepared.request, prepared.now
        if outcome.status == "done":
            handled = outcome.value
            try:
                sealed = fastwire.seal(handled.reply, self.gateway_kid, self.signer)
                if len(sealed) > framing.MAX_FRAME:  # unsendable: the kiosk would only time out
                    raise ValueError(f"{handled.reply['t']} of {len(sealed)} bytes is over "
                                     f"the {framing.MAX_FRAME}-byte frame limit")
            except Exception as exc:  # a reply that breaks frames.cddl is our bug
                return self._internal(request, exc, now)
            return Processed(sealed, request_type=request["t"], reply_type=handled.reply["t"],
                             kiosk=request["kiosk"], handled=handled)
        if outcome.status == "replay":
            return self._refuse(request, "replay", f"counter {request['ctr']} is not above "
                                "the last one seen from this kiosk", now)
        if outcome.status == "key":
            self._keys.pop(request["kiosk"], None)
            if outcome.value is None:
                return self._refuse(request, "unknown_kiosk",
                                    f"no kiosk {request['kiosk']} is enrolled", now)
            return self._refuse(request, "revoked", f"kiosk {request['kiosk']} is "
                                f"{outcome.value}", now)
        error = outcome.error
        if isinstance(error, ProtocolError):
            return self._refuse(request, wire_code(error.code), error.msg or error.code, now)
        if isinstance(error, LedgerError):
            return self._unavailable(request, error, now)
        return self._internal(request, error or RuntimeError(outcome.status), now)

    # ------------------------------------------------------------ helpers
    def _internal(self, request: dict[str, Any] | None, exc: BaseException,
                  now: int) -> Processed:
        self.log.error("internal_error", exc_info=exc, kiosk=_kiosk(request), t=_type(request))
        return self._refuse(request, "internal", f"internal error: {type(exc).__name__}", now)

    def _verifier(self, kid: str, used: list[KeyRecord]) -> VerifyingKey:
        record = self._keys.get(kid)
        if record is None:
            # A request names the kiosk that signed it, and frames.cddl's kiosk_id_text admits
            # no other kid: any other text (one holding a NUL, which PostgreSQL cannot even be
            # asked about) is no enrolled kiosk, and the ledger is not asked.
            if not fastwire.CHECKS.kiosk_id(kid):
                raise ProtocolError("unknown_kiosk", f"no kiosk {kid} is enrolled")
            record = self.ledger.get_key(kid)
            if record is None or record.role != "kiosk":
                raise ProtocolError("unknown_kiosk", f"no kiosk {kid} is enrolled")
            if record.status != "active":
                raise ProtocolError("revoked", f"kiosk {kid} is {record.status}")
            self._keys[kid] = record
        used.append(record)
        verifier = self._verifiers.get(record.public_key)
        if verifier is None:
            verifier = self._verifiers[record.public_key] = VerifyingKey(record.public_key)
        return verifier

    def _unavailable(self, request: dict[str, Any] | None, error: LedgerError,
                     now: int) -> Processed:
        """The kiosk hears that the ledger is unavailable and whether its request may have
        been stored; where the ledger is (host, role, schema, file) and why, only the log."""
        if not error.at_commit:
            told = "the gateway's ledger is unavailable; nothing was stored"
        elif _type(request) in Handlers.WRITES:
            told = ("the gateway's ledger is unavailable; the request may have been stored: "
                    "ask with settlement_query")
        else:  # a read: nothing of it needs finding out (a person_info asked again re-reads)
            told = "the gateway's ledger is unavailable; ask again"
        return self._refuse(request, "unavailable", told, now, detail=str(error))

    def _refuse(self, request: dict[str, Any] | None, code: str, msg: str, now: int,
                detail: str | None = None) -> Processed:
        """An `error` reply with `msg`; `detail`, if given, is what the log says instead."""
        msg = msg if len(msg) <= MAX_ERROR_TEXT else msg[: MAX_ERROR_TEXT - 1] + "…"
        reply = messages.error_reply(request, code, msg, now,
                                     now=now if code == "stale" else None)
        return Processed(
            reply=fastwire.seal(reply, self.gateway_kid, self.signer),
            request_type=_type(request), reply_type="error", kiosk=_kiosk(request),
            code=code, msg=detail or msg,
        )

    def too_large(self) -> bytes:
        """The error sent once for each oversized frame the deframer dropped."""
        reply = messages.error_reply(
            None, "too_large", f"frame longer than {framing.MAX_FRAME} bytes", int(self.clock())
        )
        return fastwire.seal(reply, self.gateway_kid, self.signer)


def _kiosk(request: dict[str, Any] | None) -> str | None:
    return None if request is None else request.get("kiosk")


def _type(request: dict[str, Any] | None) -> str:
    return "unauthenticated" if request is None else str(request.get("t"))


class Batcher:
    """Gathers prepared requests while the event loop has other work, then runs them in the
    ledger together (one transaction each, one commit) and resolves their futures in order.

    The ledger work runs on the loop's thread: a batch starts behind whatever is ready now, so
    every frame that arrived in the same turn of the loop joins the same commit. The loop never
    waits for the ledger's writers' queue (another gateway process's turn) or for the disk flush
    that makes a commit durable: worker threads do, while the loop goes on checking the next
    frames' signatures, and the next batch may run while this one's flush is on its way. A
    batch's replies go out only once its commit is on disk.
    """

    def __init__(self, service: FrameService, max_batch: int = MAX_BATCH,
                 slow: Callable[[float, int], None] | None = None) -> None:
        self.service = service
        self.max_batch = max_batch
        self._waiting: list[tuple[Prepared, Callable[[Processed], None]]] = []
        self._scheduled = False  # a batch is due to start
        self._in_ledger = False  # a batch is waiting for its turn or running in the ledger
        self._since: dict[int, float] = {}  # batch number -> monotonic start, until replied
        self._since_guard = threading.Lock()  # _since is read by the stall watch and metrics
        self._batches = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._slow = slow  # told (seconds, requests) of a batch over SLOW_LEDGER_S

    def batch_started(self) -> float | None:
        """When the oldest batch not yet answered started (monotonic), or None (read from
        another thread: the stall watch)."""
        with self._since_guard:
            return min(self._since.values(), default=None)

    def busy_seconds(self) -> float:
        """How long the oldest batch not yet answered has been in the ledger; 0 when none is
        (read from the metrics endpoint's thread)."""
        since = self.batch_started()
        return 0.0 if since is None else time.monotonic() - since

    def submit(self, prepared: Prepared) -> asyncio.Future[Processed]:
        """The reply, once the batch `prepared` joins has run."""
        future: asyncio.Future[Processed] = asyncio.get_running_loop().create_future()

        def resolve(processed: Processed) -> None:
            if not future.cancelled():
                future.set_result(processed)

        self.submit_then(prepared, resolve)
        return future

    def submit_then(self, prepared: Prepared, then: Callable[[Processed], None]) -> None:
        """Call then(reply) once the batch `prepared` joins has run."""
        self._waiting.append((prepared, then))
        self._schedule()

    async def drain(self) -> None:
        """Every request submitted gets its ledger work done and its reply (stopping)."""
        while self._waiting or self._tasks:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            elif not self._in_ledger:
                self._start()
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None

    def _schedule(self) -> None:
        if not self._scheduled and not self._in_ledger:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if not self._waiting or self._in_ledger:
            return
        self._in_ledger = True
        task = asyncio.get_running_loop().create_task(self._run_batch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _threads_for_waits(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._threads is None:
            # one for the writers' queue, one for a flush, one for the flush after it
            self._threads = concurrent.futures.ThreadPoolExecutor(3, "ledger-wait")
        return self._threads

    def _off_loop(self, work: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """`work` started at once on a worker thread; its result, to await."""
        return asyncio.get_running_loop().run_in_executor(self._threads_for_waits(), work,
                                                          *args)

    async def _run_batch(self) -> None:
        ledger = self.service.ledger
        self._batches += 1
        number = self._batches
        started = time.monotonic()
        with self._since_guard:
            self._since[number] = started
        try:
            try:
                queued = await self._take_turn(ledger)
                # Taken after the wait: frames that came meanwhile join this batch. A frame
                # whose connection closed meanwhile still runs: it was received whole, and a
                # settle that commits is found by the kiosk's settlement_query.
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    with ledger.durable_later() as owed:
                        outcomes = self.service.run([p for p, _ in batch])
                finally:
                    if queued:
                        ledger.leave_writers_queue()
            finally:
                self._in_ledger = False  # the next batch may run while this one's flush waits
                if self._waiting:
                    self._schedule()
            # A settle that found this gateway's key revoked stops the server once the batch's
            # replies are sent (whatever the flush does to them)
            revoked = next((outcome.error.status for outcome in outcomes
                            if isinstance(outcome.error, SignerRevoked)), None)
            replies: list[Processed | None] | None = None
            if owed.owed:
                # The replies are sealed while the disk flush is under way (it waits on a
                # worker thread, without the GIL) and sent once it is done: the signing no
                # longer adds to the wait of every kiosk in the batch.
                flushing = self._threads_for_waits().submit(owed.wait)
                replies = self._finish_all(batch, outcomes)
                try:
                    # Usually the flush is over by now (it takes less than the signing): the
                    # replies go at once, not after what the loop runs first once told so (the
                    # next batch's ledger work: 10-20 ms more for every kiosk of this one).
                    if flushing.done():
                        flushing.result()
                    else:
                        await asyncio.wrap_future(flushing)
                except LedgerError as exc:  # stored or not: each kiosk asks settlement_query
                    outcomes = [RequestOutcome("failed", error=exc) for _ in batch]
                    replies = None
            took = time.monotonic() - started
            if took >= SLOW_LEDGER_S and self._slow is not None:
                self._slow(took, len(batch))
        finally:
            with self._since_guard:
                self._since.pop(number, None)
        if replies is None:
            replies = self._finish_all(batch, outcomes)
        for (prepared, then), reply in zip(batch, replies, strict=True):
            if reply is None:
                continue
            try:
                then(reply)
            except Exception as exc:  # one reply's bug must not cost the others theirs
                self.service.log.error("internal_error", exc_info=exc,
                                       kiosk=prepared.request.get("kiosk"))
        if revoked is not None and self.service.on_signer_revoked is not None:
            self.service.on_signer_revoked(revoked)

    def _finish_all(self, batch: list[tuple[Prepared, Callable[[Processed], None]]],
                    outcomes: list[RequestOutcome]) -> list[Processed | None]:
        """Each request's sealed reply (None for one whose sealing met a bug: logged)."""
        replies: list[Processed | None] = []
        for (prepared, _), outcome in zip(batch, outcomes, strict=True):
            try:
                replies.append(self.service.finish(prepared, outcome))
            except Exception as exc:  # one reply's bug must not cost the others theirs
                self.service.log.error("internal_error", exc_info=exc,
                                       kiosk=prepared.request.get("kiosk"))
                replies.append(None)
        return replies

    async def _take_turn(self, ledger: Ledger) -> bool:
        """This process's turn among the ledger's writers, for the loop's thread: at once if
        free, else waited for on a worker thread. False if the queue itself failed (its lock
        file): the batch's own transaction then meets, and reports, the same fault."""
        loop_thread = threading.get_ident()
        try:
            return ledger.take_writers_queue(loop_thread, wait=False) or bool(
                await self._off_loop(ledger.take_writers_queue, loop_thread, True))
        except OSError:
            return False


class TcpConnection(asyncio.Protocol):
    """One kiosk's TCP connection: frames in order, one reply each, at most one in the ledger
    at a time (a kiosk waits for each answer; frames sent ahead wait their turn here)."""

    def __init__(self, server: GatewayServer, counted: bool = False) -> None:
        self.server = server
        self.counted = counted  # in the shared per-worker counts (see accept_shared)
        self.deframer = framing.Deframer(framing.MAX_FRAME)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._busy = False  # a frame of this connection is in the ledger's batch
        self._paused = False  # the kiosk is not reading its replies: stop taking frames
        self._not_reading = False  # too many frames ahead: its link is not read meanwhile
        self._eof = False  # the kiosk half-closed: close once its frames are answered
        self._lost = False  # the connection is gone
        self._last_heard = 0.0
        self._partial_since: float | None = None  # when the unfinished frame began
        self._idle: asyncio.TimerHandle | None = None
        self._reason = "closed by peer"
        self._gauge: Any = None
        self._refused_in_a_row = 0
        self._pump_scheduled = False

    # ---- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not subclass asyncio.Transport)
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        server = self.server
        if server._closing:
            transport.abort()
            if self.counted:
                server._uncount()
            return
        server._connections.add(self)
        server._count_descriptors()
        self._gauge = server.metrics.connections.labels(transport="tcp")
        self._gauge.inc()
        server.log.debug("connected", transport="tcp", peer=self.peer)
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        self._idle = loop.call_at(self._last_heard + server.idle_timeout_s, self._check_idle)

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._last_heard = now = loop.time()
        deframer = self.deframer
        before = dict(deframer.stats)
        ended_before = deframer.waiting + sum(before.values())
        deframer.receive_data(data)
        if deframer.stats != before:
            self.server._count_discarded(before, deframer.stats)
            too_large = deframer.stats["too_large"] - before["too_large"]
            if not self._paused:  # a client not reading its answers gets no more of them
                for _ in range(min(too_large, MAX_REFUSED_IN_A_ROW)):
                    self._write(self.server.service.too_large(), "error")
            if self._refused(sum(deframer.stats[k] - before[k] for k in DISCARDED)):
                return
        # a frame ended in this chunk: the next one's clock starts now
        ended = deframer.waiting + sum(deframer.stats.values()) > ended_before
        self._track_partial(now, restart=ended)
        self._pump()
        if deframer.waiting > MAX_FRAMES_AHEAD and not self._not_reading:
            self._not_reading = True
            cast(asyncio.Transport, self.transport).pause_reading()

    def eof_received(self) -> bool:
        # The kiosk has finished sending (a half-close): what it sent whole is still answered,
        # then the connection closes. (asyncio would close at once and drop those answers while
        # their work, a settlement perhaps, still ran.)
        self._eof = True
        self._close_when_answered()
        return True  # keep the write side open

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        if self._idle is not None:
            self._idle.cancel()
        if self._gauge is None:
            return  # refused while the gateway was stopping
        if self.counted:
            server._uncount()
        server._connections.discard(self)
        self._lost = True  # frames still queued are not started: nobody would hear the answer
        self._gauge.dec()
        if exc is not None and self._reason == "closed by peer":
            self._reason = f"link error: {exc}"
        dropped = self.deframer.buffered
        if dropped:
            server.metrics.error("truncated")  # the peer left mid-frame: dropped, not served
        server.log.debug("disconnected", transport="tcp", peer=self.peer, reason=self._reason,
                         dropped_bytes=dropped)

    # ---- frames
    def _pump(self) -> None:
        server = self.server
        self._pump_scheduled = False
        answered = 0
        transport = self.transport
        while not (self._busy or self._paused or self._lost or server._closing
                   or (transport is not None and transport.is_closing())):
            if answered >= FRAMES_PER_PASS:  # the other connections' turn; then the rest
                if not self._pump_scheduled:
                    self._pump_scheduled = True
                    asyncio.get_running_loop().call_soon(self._pump)
                return
            payload = self.deframer.next_frame()
            if payload is None:
                self._close_when_answered()  # a half-closed link whose frames are all answered
                return
            if self._not_reading and self.deframer.waiting <= MAX_FRAMES_AHEAD // 2:
                self._not_reading = False
                cast(asyncio.Transport, self.transport).resume_reading()
            started = time.perf_counter()
            prepared = server.service.prepare(payload)
            if isinstance(prepared, Processed):
                self._answer(prepared, started)
                answered += 1
                continue
            self._busy = True
            server.batcher.submit_then(
                prepared, lambda result, started=started: self._answered(result, started))

    def _refused(self, frames: int) -> bool:
        """Count frames refused in a row (0: one was served); True if the connection is
        closed for them."""
        if not frames:
            self._refused_in_a_row = 0
            return False
        self._refused_in_a_row += frames
        transport = self.transport
        if (self._refused_in_a_row < MAX_REFUSED_IN_A_ROW or self._lost
                or (transport is not None and transport.is_closing())):
            return False
        self.server.metrics.warning("refused_in_a_row")
        self.server.log.warning("disconnected_for_refusals", transport="tcp", peer=self.peer,
                                refused=self._refused_in_a_row)
        self.close(f"{self._refused_in_a_row} frames refused in a row")
        return True

    def _track_partial(self, now: float, restart: bool = False) -> None:
        """Start the clock of an unfinished frame (FRAME_DEADLINE_S), or stop it; `restart`:
        a frame ended, so the one under way began now."""
        if not self.deframer.in_frame:
            self._partial_since = None
            return
        if self._partial_since is not None and not restart:
            return
        self._partial_since = now
        deadline = now + FRAME_DEADLINE_S
        if self._idle is not None and self._idle.when() > deadline:
            self._idle.cancel()
            self._idle = asyncio.get_running_loop().call_at(deadline, self._check_idle)

    def _answered(self, result: Processed, started: float) -> None:
        self._busy = False
        self._answer(result, started)
        self._pump()
        self._close_when_answered()

    def _close_when_answered(self) -> None:
        if self._eof and not self._busy and not self.deframer.waiting:
            self.close("closed by peer")

    def _answer(self, result: Processed, started: float) -> None:
        self._write(result.reply, result.reply_type)
        self.server._account(result, self.peer, time.perf_counter() - started)
        if result.code is None:
            self._refused(0)
        elif result.code in LINK_FAULTS:
            self._refused(1)

    def _write(self, sealed: bytes, reply_type: str) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(fastwire.encode_frame(sealed))
            self.server.metrics.frame("out", reply_type)

    # ---- ending
    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._not_reading and self._partial_since is not None:
            self._partial_since = now  # we stopped reading it: its clock waits for us
        if self._partial_since is not None and now >= self._partial_since + FRAME_DEADLINE_S:
            self.close(f"a frame not finished in {FRAME_DEADLINE_S:g} s")
            return
        due = self._last_heard + self.server.idle_timeout_s
        if now >= due:
            self.close("idle timeout")
            return
        if self._partial_since is not None:
            due = min(due, self._partial_since + FRAME_DEADLINE_S)
        self._idle = loop.call_at(due, self._check_idle)

    def close(self, reason: str) -> None:
        self._reason = reason
        if self.transport is not None:
            self.transport.close()


class GatewayServer:
    def __init__(
        self,
        service: FrameService,
        metrics: GatewayMetrics,
        log: EventLog,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.log = log
        self.idle_timeout_s = idle_timeout_s
        self.batcher = Batcher(service, max_batch, slow=self._ledger_slow)
        metrics.watch_ledger(self.batcher.busy_seconds)
        loop_thread = threading.get_ident()  # where the batches run
        self._stall_watch = StallWatch(self.batcher.batch_started,
                                       lambda after: service.ledger.interrupt(loop_thread,
                                                                              after),
                                       self._ledger_stalled)
        self._stall_watch.start()
        self._tcp: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[TcpConnection] = set()
        self._shared: SharedListener | None = None
        self._accept_failures = 0  # since the last accept_failed warning
        self._accept_warned_at = -ACCEPT_WARN_EVERY_S
        self._refused_logged = 0  # "refused" lines in this window
        self._refused_unlogged = 0  # ...and those not written
        self._refused_window: asyncio.TimerHandle | None = None
        self.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._fd_warned_at = -FD_WARN_EVERY_S
        self._closing = False

    # ------------------------------------------------------------ listeners
    async def listen_tcp(self, host: str, port: int) -> tuple[str, int]:
        """Start accepting kiosks; returns the bound address (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        # the kernel's queue as deep as the workers' (a hall's kiosks all reconnect at once
        # after a restart; uvloop's default of 100 left the rest to SYN retries, 1 s each)
        server = await loop.create_server(lambda: TcpConnection(self), host, port,
                                          reuse_address=True, backlog=BACKLOG)
        self._tcp.append(server)
        bound = server.sockets[0].getsockname()
        self.log.info("listening", transport="tcp", host=bound[0], port=bound[1])
        return bound[0], bound[1]

    def accept_shared(self, shared: SharedListener) -> tuple[str, int]:
        """Accept kiosks from a socket several worker processes share, taking a connection only
        while no worker holds fewer (see workers.py); returns the socket's address."""
        self._shared = shared
        self._watch_listener()
        bound = shared.listener.getsockname()
        # The supervisor says `listening` once every worker is ready.
        self.log.info("worker_listening", transport="tcp", host=bound[0], port=bound[1])
        return bound[0], bound[1]

    def _watch_listener(self) -> None:
        shared = self._shared
        if shared is not None and not self._closing:
            asyncio.get_running_loop().add_reader(shared.listener.fileno(), self._acceptable)

    def _acceptable(self) -> None:
        shared = self._shared
        assert shared is not None
        loop = asyncio.get_running_loop()
        while True:
            if shared.shares.more_than_least(shared.index):
                # let a less loaded worker take it: stop watching for a moment
                loop.remove_reader(shared.listener.fileno())
                loop.call_later(ACCEPT_PAUSE_S, self._watch_listener)
                return
            try:
                sock, _peer = shared.listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # another worker took it
            except OSError as exc:  # out of file descriptors...: keep serving the others
                loop.remove_reader(shared.listener.fileno())
                loop.call_later(ACCEPT_RETRY_S, self._watch_listener)
                self._accept_failed(exc)
                return
            sock.setblocking(False)
            shared.shares.add(shared.index, 1)  # counted now: the next check sees it
            loop.create_task(self._adopt(sock))

    def _accept_failed(self, exc: OSError) -> None:
        self._accept_failures += 1
        now = time.monotonic()
        if now >= self._accept_warned_at + ACCEPT_WARN_EVERY_S:
            self.log.warning("accept_failed", error=str(exc), failures=self._accept_failures,
                             retry_s=ACCEPT_RETRY_S)
            self._accept_failures, self._accept_warned_at = 0, now

    async def _adopt(self, sock: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: TcpConnection(self, counted=True), sock)
        except OSError:
            self._uncount()
            sock.close()

    def _uncount(self) -> None:
        if self._shared is not None:
            self._shared.shares.add(self._shared.index, -1)

    @staticmethod
    def open_serial(spec: SerialSpec) -> SerialStream | None:
        """The line opened (and locked) now; None if it is absent (attach_serial waits for
        it); SerialInUse if another gateway serves it."""
        try:
            return SerialStream(spec)
        except SerialInUse:
            raise
        except (OSError, ValueError):  # unplugged: _serve_serial says so and waits for it
            return None

    def attach_serial(self, spec: SerialSpec, first: SerialStream | None = None) -> None:
        """Serve one serial line (`first`: already opened by open_serial) for as long as the
        gateway runs, reopening it if it drops."""
        task = asyncio.get_running_loop().create_task(self._serve_serial(spec, first))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_serial(self, spec: SerialSpec, first: SerialStream | None = None) -> None:
        # Tried every SERIAL_REOPEN_S, so a line plugged back is served at once; an outage is
        # logged when it starts and then every SERIAL_WARN_EVERY_S, not at every try.
        down_since: float | None = None
        warned_at = 0.0
        while not self._closing:
            try:
                stream = first if first is not None else SerialStream(spec)
            except (OSError, ValueError) as exc:  # pyserial's SerialException is an OSError
                now = time.monotonic()
                if down_since is None or now - warned_at >= SERIAL_WARN_EVERY_S:
                    down_since = now if down_since is None else down_since
                    self.log.warning("serial_unavailable", device=spec.device, error=str(exc),
                                     down_s=round(now - down_since), retry_s=SERIAL_REOPEN_S)
                    warned_at = now
            else:
                first = None  # opened at start-up (attach_serial): once
                back = {} if down_since is None else {
                    "down_s": round(time.monotonic() - down_since)}
                down_since = None
                self.log.info("listening", transport="serial", device=spec.device,
                              baud=spec.baud, **back)
                await self._serve_stream(stream, idle_timeout_s=None)
            await asyncio.sleep(SERIAL_REOPEN_S)

    # ------------------------------------------------------------ one stream (serial lines)
    async def _serve_stream(self, stream: ByteStream, idle_timeout_s: float | None) -> None:
        """Frames in order, one reply each. A serial line has no idle timeout: a kiosk may wait
        hours for its next resident, and the line is not a resource another kiosk needs.
        (TCP connections are served by TcpConnection, the same steps as callbacks.)"""
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
        self._count_discarded(before, deframer.stats,
                              stream if isinstance(stream, SerialStream) else None)
        for _ in range(deframer.stats["too_large"] - before["too_large"]):
            await self._send(stream, self.service.too_large(), "error")
        while (payload := deframer.next_frame()) is not None:
            started = time.perf_counter()
            prepared = self.service.prepare(payload)
            if isinstance(prepared, Prepared):
                result = await self.batcher.submit(prepared)
            else:
                result = prepared
            await self._send(stream, result.reply, result.reply_type)
            self._account(result, stream.peer, time.perf_counter() - started)

    async def _send(self, stream: ByteStream, sealed: bytes, reply_type: str) -> None:
        await stream.write(stream.frame_lead + fastwire.encode_frame(sealed))
        self.metrics.frame("out", reply_type)

    def _count_discarded(self, before: dict[str, int], after: dict[str, int],
                         line: SerialStream | None = None) -> None:
        """Count the frames the deframer dropped; on a serial line, log them too: a technician
        must tell noise or a wrong baud rate (garbage coming in) from a cut cable (nothing)."""
        for stat, code in DISCARDED.items():
            for _ in range(after[stat] - before[stat]):
                self.metrics.error(code)
                if line is not None:
                    self._log_refused(event="discarded", transport="serial", device=line.device,
                                      baud=line.baud, code=code, reason=stat,
                                      hint="line noise or a wrong baud rate")

    def _ledger_slow(self, seconds: float, requests: int) -> None:
        # Every kiosk of this gateway waited meanwhile: the operator hears of it at once.
        self.metrics.warning("ledger_slow")
        self.log.warning("ledger_slow", seconds=round(seconds, 3), requests=requests)

    def _ledger_stalled(self, event: str, **fields: Any) -> None:
        # On the stall watch's thread, while the loop waits (the log writes at once there).
        self.metrics.warning(event)
        self.log.warning(event, **fields)

    def _account(self, result: Processed, peer: str, elapsed: float) -> None:
        self.metrics.frame("in", result.request_type)
        latency_ms = round(elapsed * 1000, 2)
        if result.code is not None:
            self.metrics.error(result.code)
            self._log_refused(kiosk=result.kiosk, t=result.request_type, code=result.code,
                              msg=result.msg, peer=peer, latency_ms=latency_ms)
            return
        handled = result.handled
        if handled is None:
            return
        if handled.settlement is not None:
            self.metrics.settlement(handled.settlement)
            self.metrics.settle_latency.observe(elapsed)
        if handled.event is not None:
            if handled.warn:
                self.metrics.warning(handled.event)
            emit = self.log.warning if handled.warn else self.log.info
            emit(handled.event, kiosk=result.kiosk, latency_ms=latency_ms, **handled.fields)
        else:
            self.log.debug("served", kiosk=result.kiosk, t=result.request_type,
                           latency_ms=latency_ms)

    def _count_descriptors(self) -> None:
        connections = len(self._connections)
        if connections < self.fd_limit * FD_WARN_SHARE:
            return
        now = time.monotonic()
        if now >= self._fd_warned_at + FD_WARN_EVERY_S:
            self._fd_warned_at = now
            self.metrics.warning("connections_near_fd_limit")
            self.log.warning("connections_near_fd_limit", connections=connections,
                             fd_limit=self.fd_limit,
                             remedy="raise the open-files limit (ulimit -n, LimitNOFILE=)")

    def _log_refused(self, event: str = "refused", **fields: Any) -> None:
        if self._refused_window is None:  # a window opens with its first refusal
            self._refused_window = asyncio.get_running_loop().call_later(
                REFUSED_LOG_WINDOW_S, self._end_refused_window)
        if self._refused_logged < REFUSED_LOG_BURST:
            self._refused_logged += 1
            self.log.warning(event, **fields)
        else:
            self._refused_unlogged += 1

    def _end_refused_window(self) -> None:
        if self._refused_unlogged:
            self.log.warning("refused_unlogged", frames=self._refused_unlogged,
                             seconds=REFUSED_LOG_WINDOW_S, logged=self._refused_logged)
        self._refused_logged = self._refused_unlogged = 0
        self._refused_window = None

    # ------------------------------------------------------------ shutdown
    async def close(self) -> None:
        """Stop accepting and close every connection; a frame already being processed finishes
        (its settlement commits; the kiosk resolves it with settlement_query), then the ledger
        closes."""
        self._closing = True
        if self._refused_window is not None:  # the window's count, before the log ends
            self._refused_window.cancel()
            self._end_refused_window()
        if self._shared is not None:
            asyncio.get_running_loop().remove_reader(self._shared.listener.fileno())
        for server in self._tcp:
            server.close()
        for connection in list(self._connections):
            connection.close("gateway stopping")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._tcp:
            await server.wait_closed()
        await self.batcher.drain()  # frames received whole still get their ledger work done
        self._stall_watch.stop()
        self.service.ledger.close()


# ---------------------------------------------------------------- assembly


@dataclass(frozen=True)
class SharedListener:
    """What a worker of `kiosk gateway serve --workers N` accepts kiosks from: the socket all
    the workers share, and everyone's connection counts (workers.ConnectionShares)."""

    index: int
    listener: socket.socket
    shares: Any
    metrics_ports: Any = None  # workers.MetricsPorts under --metrics: where each worker's are


class ServeError(Exception):
    """The gateway cannot start as configured; the message says why and what to do."""


@dataclass(frozen=True)
class GatewayConfig:
    db: str
    key_path: Path | None = None  # None: the ledger's default (gateway.key beside SQLite)
    policy: str | tuple[str, ...] = DEFAULT_POLICY  # several: each governs its regions
    tz: tzinfo | None = ZoneInfo(SETTLEMENT_TIMEZONE)  # None: this machine's local zone
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S


class RunningGateway:
    def __init__(self, server: GatewayServer, endpoint: MetricsEndpoint | None,
                 address: tuple[str, int], log: EventLog, kid: str = "") -> None:
        self.server = server
        self.metrics_endpoint = endpoint
        self.address = address  # the bound TCP address
        self.log = log
        self.kid = kid  # the gateway key it signs with

    async def close(self) -> None:
        await self.server.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()


def _metrics_page(metrics: GatewayMetrics, shared: SharedListener | None,
                  fleet: KioskFleetCollector) -> Any:
    """What the metrics endpoint shows: this gateway's registry and the kiosks' sign-ins;
    under --workers, worker 0's shows every worker's (the others', on loopback, are for it to
    read) and the sign-ins once."""
    if shared is not None and shared.metrics_ports is not None and shared.index:
        return metrics.registry
    if shared is None or shared.metrics_ports is None:
        page = metrics.registry
    else:
        page = workers_page(metrics.registry, shared.metrics_ports.known)
    page.register(fleet)
    return page


async def start_gateway(
    config: GatewayConfig,
    listen: tuple[str, int],
    serials: Sequence[SerialSpec] = (),
    metrics_at: tuple[str, int] | None = None,
    shared: SharedListener | None = None,
) -> RunningGateway:
    """Load the key and policy, check the ledger, and start serving. ServeError if it cannot.
    `shared`: serve as one of several worker processes, accepting from their common socket
    (`listen` is then unused)."""
    log = EventLog()
    signer, kid, cert, superseded = _gateway_identity(config)
    if superseded is not None:  # serving anyway: kiosks that did not move still need it
        log.warning("gateway_key_superseded", gateway=kid,
                    cert_serial=None if cert is None else cert.serial,
                    by=superseded.kid, by_serial=superseded.serial,
                    problem=f"gateway key {superseded.kid} was certified with serial "
                    f"{superseded.serial}: kiosks that moved to it refuse this key's replies; "
                    f"serve with {superseded.kid}'s key file")
    try:
        handlers = Handlers(signer, kid, config.policy, config.tz,
                            cert=None if cert is None else cert.data)
    except PolicyError as exc:
        raise ServeError(str(exc)) from None
    metrics = GatewayMetrics()
    metrics.gateway_key(kid, 0 if cert is None else cert.serial)
    ledger = open_ledger(config.db)
    ledger.tune_for_serving()
    exposed = ledger.exposure()
    if exposed is not None:  # made by an older version, or copied: the operator must know
        log.warning("ledger_exposed", problem=exposed)
    service = FrameService(ledger, handlers, signer, kid, log)
    server = GatewayServer(service, metrics, log, config.idle_timeout_s)
    endpoint = None
    if metrics_at is not None:  # before the kiosks' port: "listening" means all is up
        try:
            fleet = KioskFleetCollector(lambda: (ledger.list_keys(), ledger.sign_ins()))
            endpoint = MetricsEndpoint(_metrics_page(metrics, shared, fleet), *metrics_at,
                                       on_close=fleet.close)
        except OSError as exc:
            await server.close()
            raise ServeError(f"cannot serve metrics on {metrics_at[0]}:{metrics_at[1]}: "
                             f"{exc.strerror}") from None
    # The lines first: a line another gateway serves is refused before "listening" (and the
    # ones opened before it are closed, their locks released).
    opened: list[SerialStream | None] = []

    async def give_up(why: str) -> NoReturn:
        for stream in opened:
            if stream is not None:
                await stream.close()
        if endpoint is not None:
            endpoint.close()
        await server.close()
        raise ServeError(why) from None

    try:
        for spec in serials:
            opened.append(server.open_serial(spec))
    except SerialInUse as exc:
        await give_up(f"--serial {exc}")
    try:
        if shared is None:
            address = await server.listen_tcp(*listen)
        else:
            address = server.accept_shared(shared)
    except OSError as exc:
        await give_up(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}")
    for spec, stream in zip(serials, opened, strict=True):
        server.attach_serial(spec, stream)
    if endpoint is not None:
        if shared is not None and shared.metrics_ports is not None and shared.index:
            shared.metrics_ports.set(shared.index, endpoint.port)  # for worker 0 to read
        log.info("metrics", host=metrics_at[0], port=endpoint.port)
    log.info("serving", ledger=describe(config.db), gateway=kid, policy=handlers.policy_name,
             cert_serial=None if cert is None else cert.serial,
             pid=os.getpid(),  # which process a worker is, for the operator's kill or py-spy
             event_loop=eventloop.loop_name(), fd_limit=server.fd_limit)
    return RunningGateway(server, endpoint, address, log, kid)


def _check_clock(latest: int | None, now: float) -> None:
    """Refuse to serve by a clock that reads before the ledger's latest settlement (`latest`):
    a host that booted without its time (1970) dates settlements by it and counts them in that
    year's accumulations, with that year's caps, and neither the kiosks (they take the
    gateway's time) nor the audit could tell."""
    if latest is None or now >= latest - CLOCK_SLACK_S:
        return

    def utc(seconds: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
    raise ServeError(f"this host's clock reads {utc(now)}, before the ledger's latest "
                     f"settlement ({utc(latest)}): settlements would be dated, and counted in "
                     "the year, by it. Set the clock (NTP) and start again")


def check_config(config: GatewayConfig) -> None:
    """What start_gateway would refuse (key, ledger, clock, policy), as a ServeError, without
    serving."""
    signer, kid, _cert, _superseded = _gateway_identity(config)
    try:
        Handlers(signer, kid, config.policy, config.tz)
    except PolicyError as exc:
        raise ServeError(str(exc)) from None


def _cert_of(key_path: Path, signer: SigningKey, kid: str,
             recorded: dict[str, CertRecord]) -> Cert | None:
    """The cert beside the key file, if any; ServeError if it certifies another key (the kiosks
    would move to that key, and refuse this gateway's replies), or if it is not the cert the
    ledger recorded for this key (`certify --db`): signed by another authority than the
    ledger's newest cert, or a serial other than the one recorded. Kiosks would refuse it, and
    only at their next sign-in, one by one."""
    path = cert_path(key_path)
    try:
        cert = load_cert(path)
    except CertError as exc:
        raise ServeError(f"{exc}: certify the key again (kiosk gateway certify) or remove "
                         "it") from None
    if cert is not None and (cert.key != signer.public_key or cert.kid != kid):
        raise ServeError(f"the cert {path} certifies gateway key {cert.kid} "
                         f"({cert.key.hex()[:16]}...), not this key {kid} "
                         f"({signer.public_key.hex()[:16]}...): certify this key (`kiosk "
                         f"gateway certify --authority FILE --key {key_path} --serial N "
                         "--db URL`: with --db, under the id the ledger has for it) or remove "
                         "the cert")
    if cert is None or not recorded:
        return cert
    newest = max(recorded.values(), key=lambda c: c.serial)
    try:
        messages.open_cert(cert.data, newest.authority,
                           VerifyingKey(newest.authority_public_key))
    except ProtocolError:
        raise ServeError(f"the cert {path} is not signed by authority {newest.authority}, "
                         "which signed this ledger's newest cert and which the kiosks trust: "
                         f"certify the key again (`kiosk gateway certify --authority FILE "
                         f"--key {key_path} --serial N --db URL`)") from None
    mine = recorded.get(kid)  # none: certified before the ledger kept certs, or without --db
    if mine is not None and mine.serial != cert.serial:
        raise ServeError(f"the cert {path} has serial {cert.serial}, but the ledger recorded "
                         f"serial {mine.serial} for gateway key {kid}: certify the key again "
                         "with --db (kiosk gateway certify)")
    return cert


def superseded_by(kid: str, cert: Cert | None,
                  recorded: dict[str, CertRecord]) -> CertRecord | None:
    """Another gateway key's recorded cert with a higher serial than this key's, if any:
    kiosks that moved to it refuse this key (a rotation half undone)."""
    mine = 0 if cert is None else cert.serial
    higher = [c for c in recorded.values() if c.kid != kid and c.serial > mine]
    return max(higher, key=lambda c: c.serial) if higher else None


def _active_gateway_kids(records: Sequence[KeyRecord]) -> list[str]:
    """The ledger's active gateway keys: the ones its kiosks are provisioned with."""
    return [r.kid for r in records if r.role == "gateway" and r.status == "active"]


def _missing_key_hint(db: str) -> str:
    """What to do about an unreadable key file: make one (a new ledger), or, for a ledger that
    has an active gateway key, get that one's file back: `init` would make another key, which
    no kiosk trusts (each is provisioned with the ledger's)."""
    try:
        with open_ledger(db, create=False) as ledger:
            active = _active_gateway_kids(ledger.list_keys())
    except Exception:  # noqa: BLE001 - only a hint: the key file's own error is the message
        active = []
    if not active:
        return " (`kiosk gateway init` makes the gateway's key)"
    return (f"; this ledger's gateway key is {', '.join(active)}, which its kiosks are "
            "provisioned with: restore that key's file (from where it was backed up) and serve "
            "with it (--key). `kiosk gateway init` would make another key, which no kiosk "
            "trusts")


def _gateway_identity(
        config: GatewayConfig) -> tuple[SigningKey, str, Cert | None, CertRecord | None]:
    """The gateway's signing key, the kid it is enrolled under in this ledger (whose clock
    check, _check_clock, is made in the same read), its cert (certs.py) if it has one, and
    another key's recorded cert that supersedes it, if any (superseded_by)."""
    try:
        key_path = config.key_path or default_key_path(config.db)
    except LedgerUrlError as exc:
        raise ServeError(str(exc)) from None
    if key_path is None:
        raise ServeError("a PostgreSQL ledger needs --key PATH (the gateway's signing key)")
    try:
        signer = load_signing_key(key_path)
    except KeyFileError as exc:
        raise ServeError(f"{exc}{_missing_key_hint(config.db)}") from None
    try:
        ledger = open_ledger(config.db, create=False)
        try:
            # a gateway older than its ledger must not write to it, nor one that lost a table
            ledger.check_schema(complete=True)
            records = ledger.list_keys()
            recorded = ledger.gateway_certs()
            latest = ledger.latest_settlement_time()
        finally:
            ledger.close()
    except (LedgerError, LedgerUrlError) as exc:
        raise ServeError(f"cannot open the ledger {describe(config.db)}: {exc}") from None
    _check_clock(latest, time.time())
    for record in records:
        if record.role == "gateway" and record.public_key == signer.public_key:
            if record.status == "active":
                cert = _cert_of(key_path, signer, record.kid, recorded)
                return signer, record.kid, cert, superseded_by(record.kid, cert, recorded)
            raise ServeError(f"the key {key_path} (gateway key {record.kid}) was revoked: make a "
                             "new one with `kiosk gateway init --key NEW_PATH` and serve with it")
    active = _active_gateway_kids(records)
    if not active:
        raise ServeError(f"the key {key_path} is not a gateway key of this ledger, which has no "
                         "active one: run `kiosk gateway init` with this --db and --key")
    # Not "run init": that would enrol this key beside the one the kiosks are pinned to, and
    # every kiosk would refuse the gateway's replies.
    raise ServeError(f"the key {key_path} is not this ledger's gateway key; its active gateway "
                     f"key{'s are' if len(active) > 1 else ' is'} {', '.join(active)}, which "
                     "its kiosks are provisioned with: serve with that key's file (--key)")
