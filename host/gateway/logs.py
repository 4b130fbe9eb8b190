"""Structured logs: one JSON object per line on stderr, so an operator can grep and a collector
can parse them.

Each entry has `ts` (UTC, ISO 8601), `level` and `event`, plus whatever fields the caller adds
(kiosk, txn_id, code, latency_ms...). Fields that hold an ID number are masked before they are
written: a log file must never be a copy of the residents' identity numbers.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from onestop.host.gateway.masking import mask_id

LOGGER_NAME = "onestop.gateway"

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

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **self.static,
        }
        entry.update(_masked(getattr(record, "fields", {})))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)


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
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter(static))
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler
