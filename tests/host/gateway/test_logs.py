"""The gateway's JSON-line log: one parseable object per line, ID numbers masked, and the lines
of one event-loop turn written together (one write, not one per line), none lost."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from datetime import datetime

import pytest
from onestop.host.gateway import logs


class CountingStream(io.StringIO):
    """A log sink that counts the writes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def sink() -> CountingStream:
    stream = CountingStream()
    logs.configure("info", stream, static={"worker": 1})
    yield stream
    logging.getLogger(logs.LOGGER_NAME).handlers[0].flush()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_logged_outside_an_event_loop_is_written_at_once(sink) -> None:
    logs.EventLog().info("listening", port=7000, ssn="130630196001010048")
    (entry,) = lines(sink)
    assert entry["event"] == "listening" and entry["worker"] == 1 and entry["port"] == 7000
    assert entry["ssn"] == "130630********0048"
    stamped = datetime.fromisoformat(entry["ts"])
    assert stamped.utcoffset().total_seconds() == 0
    assert abs((datetime.now(stamped.tzinfo) - stamped).total_seconds()) < 60


def test_the_lines_of_one_loop_turn_are_written_together_at_its_end(sink) -> None:
    log = logs.EventLog()

    async def a_batch_of_settlements() -> None:
        for number in range(40):
            log.info("settled", kiosk=f"K-{number}", txn_id=f"T{number}")
        assert sink.getvalue() == ""  # still this turn
        await asyncio.sleep(0)
        assert sink.writes == 1
        log.warning("refused", code="replay")
        await asyncio.sleep(0)

    asyncio.run(a_batch_of_settlements())
    entries = lines(sink)
    assert [e["kiosk"] for e in entries[:40]] == [f"K-{n}" for n in range(40)]  # in order
    assert entries[40]["event"] == "refused" and entries[40]["level"] == "warning"
    assert sink.writes == 2


def test_lines_still_waiting_are_written_by_flush(sink) -> None:
    log = logs.EventLog()

    async def log_and_flush_before_the_turn_ends() -> None:
        log.info("stopping")
        logging.getLogger(logs.LOGGER_NAME).handlers[0].flush()  # as logging.shutdown does
        assert [e["event"] for e in lines(sink)] == ["stopping"]

    asyncio.run(log_and_flush_before_the_turn_ends())
    assert len(lines(sink)) == 1  # the scheduled write found nothing left to write


def test_a_line_from_another_thread_is_written_while_the_loop_is_held(sink) -> None:
    # The stall watch warns from its thread while the loop is held by the ledger: its line
    # waited behind the loop turn's lines, to be written when the stall was over.
    import threading

    log = logs.EventLog()

    async def held_by_the_ledger() -> None:
        log.info("settled", kiosk="K-1")  # this turn's line, waiting for the turn's end
        watch = threading.Thread(target=lambda: log.warning("ledger_stalled", seconds=5.0))
        watch.start()
        watch.join()  # the loop is still held (this coroutine has not yielded)
        assert [e["event"] for e in lines(sink)] == ["settled", "ledger_stalled"]

    asyncio.run(held_by_the_ledger())
    assert len(lines(sink)) == 2



LIBRARY_LINES = """
import logging, warnings
from onestop.host.gateway import logs
logs.configure("info", static={"worker": 1})
logs.EventLog().info("listening", port=7000)
logging.getLogger("psycopg").warning("error ignored in rollback on %s", "<conn>")
logging.getLogger("psycopg").warning("Key (ssn)=(130630196001010048) already exists")
logging.getLogger("psycopg").info("a library's chatter below warning")
warnings.warn("an old setting", DeprecationWarning, stacklevel=1)
"""


def test_a_librarys_warning_and_a_python_warning_are_json_lines_too() -> None:
    # psycopg's own warnings (and Python's) came out as plain text among the JSON lines, and
    # broke the operator's collector.
    run = subprocess.run([sys.executable, "-W", "always", "-c", LIBRARY_LINES],
                         capture_output=True, text=True, timeout=60, check=True)
    entries = [json.loads(line) for line in run.stderr.splitlines()]  # every line is JSON
    assert [entry["event"] for entry in entries] == [
        "listening", logs.LIBRARY_EVENT, logs.LIBRARY_EVENT, logs.LIBRARY_EVENT]
    _, psycopg, quoted, warned = entries
    assert quoted["message"] == "Key (ssn)=(130630********0048) already exists"
    assert (psycopg["level"], psycopg["logger"], psycopg["worker"]) == ("warning", "psycopg", 1)
    assert psycopg["message"] == "error ignored in rollback on <conn>"
    assert warned["logger"] == "py.warnings" and "an old setting" in warned["message"]
