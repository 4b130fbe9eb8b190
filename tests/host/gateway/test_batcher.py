"""The Batcher's order of work on the event loop, with a service that only records what is
asked of it and a ledger whose disk flush is over at once (the real ones: test_server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from onestop.host.gateway.ledger.base import LedgerError, OwedFlush, RequestOutcome
from onestop.host.gateway.server import Batcher, Prepared, Processed


class RecordingLedger:
    def __init__(self, flush_fails: bool = False) -> None:
        self.flush_fails = flush_fails

    def take_writers_queue(self, _thread: int, wait: bool) -> bool:
        return True

    def leave_writers_queue(self) -> None:
        pass

    @contextlib.contextmanager
    def durable_later(self) -> Iterator[OwedFlush]:
        owed = OwedFlush(self._flush)
        owed.note(1)
        yield owed

    def _flush(self, _upto: int) -> None:
        if self.flush_fails:
            raise LedgerError("flushing the WAL failed")


class RecordingService:
    """Each batch's ledger run and each reply's sealing noted in `log`; a request that arrives
    while the first batch runs (another kiosk's frame) is handed in then."""

    def __init__(self, log: list[str], ledger: RecordingLedger) -> None:
        self.log = log
        self.ledger = ledger
        self.on_signer_revoked = None
        self.batcher: Batcher | None = None
        self.meanwhile: list[tuple[Prepared, Any]] = []

    def run(self, prepared: list[Prepared]) -> list[RequestOutcome]:
        self.log.append("ledger " + ",".join(p.request["t"] for p in prepared))
        assert self.batcher is not None
        for later, then in self.meanwhile:
            self.batcher.submit_then(later, then)
        self.meanwhile.clear()
        return [RequestOutcome("done") for _ in prepared]

    def finish(self, prepared: Prepared, outcome: RequestOutcome) -> Processed:
        # the signing outlasts the flush, which a real disk usually finishes in a millisecond
        time.sleep(0.3)
        if outcome.status == "failed":
            return Processed(b"", prepared.request["t"], "error", code="unavailable")
        return Processed(b"", prepared.request["t"], prepared.request["t"] + "_reply")


def request(t: str) -> Prepared:
    return Prepared({"t": t, "kiosk": "K-01"}, 0, job=None)  # type: ignore[arg-type]


async def served(flush_fails: bool = False) -> list[str]:
    log: list[str] = []
    service = RecordingService(log, RecordingLedger(flush_fails))
    batcher = Batcher(service)  # type: ignore[arg-type]
    service.batcher = batcher
    done = asyncio.Event()

    def replied(processed: Processed) -> None:
        log.append(f"reply {processed.reply_type}")
        if processed.request_type == "person_info":
            done.set()

    service.meanwhile.append((request("person_info"), replied))
    batcher.submit_then(request("settle"), replied)
    await asyncio.wait_for(done.wait(), 10.0)
    await batcher.drain()
    return log


async def test_a_batch_whose_flush_is_done_is_answered_before_the_next_batch_runs() -> None:
    # Before: the settle's reply waited for the next batch's ledger work, which the loop ran
    # first (10-20 ms for every kiosk of a batch, under load).
    assert await served() == ["ledger settle", "reply settle_reply",
                              "ledger person_info", "reply person_info_reply"]


async def test_a_flush_that_failed_before_the_signing_ended_is_answered_unavailable() -> None:
    assert await served(flush_fails=True) == ["ledger settle", "reply error",
                                              "ledger person_info", "reply error"]
