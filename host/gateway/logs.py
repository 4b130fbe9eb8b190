"""Structured logs: one JSON object per line on stderr, so an operator can grep and a collector
can parse them.

Each entry has `ts` (UTC, ISO 8601), `level` and `event`, plus whatever fields the caller adds
(kiosk, txn_id, code, latency_ms...). Fields that hold an ID number are masked before they are
written: a log file must never be a copy of the residents' identity numbers.

Lines logged in one turn of the event loop (a batch of requests logs one `settled` each) are
written together at the end of that turn, one write instead of one per line: a gateway under
load logs hundreds of lines a second, and a slow log sink must not stall the loop once per line.
Outside a running loop (start-up, the operator's commands, other threads) each line is written
at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, TextIO

from onestop.host.gateway import jsontext
from onestop.host.gateway.masking import mask_id, mask_ids_in_text

LOGGER_NAME = "onestop.gateway"
LIBRARY_EVENT = "library_log"  # the event of a line a library logged (see configure)

# Field names whose values are identity numbers (social security number, card number).
ID_FIELDS = frozenset({"ssn", "card_no", "card_id", "id_no"})


def _masked(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        name: mask_id(str(value)) if name in ID_FIELDS and value is not None else value
        for name, value in fields.items()
    }


class JsonLineFormatter(logging.Formatter):
    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})  # fields on every line, e.g. the gateway worker
        self._second = -1  # the whole second whose text is cached below
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        """ISO 8601 UTC with milliseconds: 2026-11-23T07:46:52.222+00:00."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **self.static,
        }
        if hasattr(record, "fields"):
            entry.update(_masked(record.fields))
        else:  # a library's own line (psycopg, asyncio, a Python warning): named; an ID
            # number it quotes (a row in a database error) masked
            entry.update(event=LIBRARY_EVENT, logger=record.name,
                         message=mask_ids_in_text(record.getMessage()))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return jsontext.compact(entry)


class TurnBufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that, inside a running event loop, writes the lines of one loop turn
    together at its end (see the module docstring); `flush()` writes whatever waits."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No loop in this thread (start-up, or another thread: the stall watch, whose
            # warning is for while the loop is held): now, with whatever the loop left waiting.
            self._write_pending()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            self._scheduled = False
            self._write_pending()
            super().flush()
        finally:
            self.release()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:  # as StreamHandler: a broken log sink must not stop the gateway
            self.handleError(logging.makeLogRecord({"msg": lines[0]}))


class EventLog:
    """`log.info("settled", kiosk=..., txn_id=...)`: an event name and its fields."""

    def __init__(self, name: str = LOGGER_NAME) -> None:
        self._logger = logging.getLogger(name)

    def _emit(self, level: int, event: str, exc_info: bool | BaseException,
              fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc_info, extra={"fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, False, fields)

    def error(self, event: str, exc_info: bool | BaseException = False, **fields: Any) -> None:
        self._emit(logging.ERROR, event, exc_info, fields)


def skip_caller_lookup() -> None:
    """Stop `logging` from walking the stack for each record's file and line (the JSON lines
    never show them): a gateway process logs every settlement. Process-wide, so only
    `kiosk gateway serve` does it."""
    logging._srcfile = None  # type: ignore[attr-defined]  # the logging HOWTO's own advice


def configure(level: str = "info", stream: TextIO | None = None,
              static: dict[str, Any] | None = None) -> logging.Handler:
    """Send the gateway's events to `stream` (stderr by default) as JSON lines; `static`
    fields go on every line."""
    handler = TurnBufferedHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter(static))
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    _take_library_lines(handler)
    return handler


_library_handler: logging.Handler | None = None


def _take_library_lines(handler: logging.Handler) -> None:
    """Warnings and errors that libraries log (psycopg's, asyncio's) and Python's warnings
    go to the same stream as JSON lines too: a plain-text line among them broke the operator's
    collector, which expects one JSON object per line."""
    global _library_handler
    root = logging.getLogger()
    if _library_handler is not None:
        root.removeHandler(_library_handler)
    _library_handler = handler
    root.addHandler(handler)
    if root.level > logging.WARNING:
        root.setLevel(logging.WARNING)  # a library's info and debug lines stay out
    logging.captureWarnings(True)
