"""Replay and staleness guard for authenticated requests.

A request is accepted once: its counter must be above the last one the ledger has seen for that
kiosk, and its timestamp must be within `STALE_AFTER_S` of the gateway's clock. `sign_in` is
exempt from the clock check — a board boots without a clock and learns the time from the reply —
but never from the counter.

The gateway checks the clock here (`check_fresh`, before the ledger), and advances the counter
inside the request's own ledger transaction (`Ledger.run_requests`): a settle's counter commits
with its settlement, a read-only request's commits without waiting for the disk (what a power
cut can and cannot allow is spelled out there). Every gateway on a shared ledger sees a counter
the moment it commits. `guard` does both as two steps, for callers that hold no transaction.

A settle retry comes with a new counter, so this guard never blocks a legitimate retry.
"""

from __future__ import annotations

from typing import Any, Protocol

from onestop.host.gateway.ledger.base import MAX_COUNTER
from onestop.protocol.errors import ProtocolError

STALE_AFTER_S = 300
CLOCK_EXEMPT = frozenset({"sign_in"})


class CounterStore(Protocol):
    def advance_counter(self, kiosk_id: str, ctr: int) -> bool: ...


def check_fresh(message: dict[str, Any], now: int, window_s: int = STALE_AFTER_S) -> None:
    """Raise `stale` if the request's clock is more than `window_s` away from ours."""
    if message["t"] in CLOCK_EXEMPT:
        return
    skew = int(message["ts"]) - now
    if abs(skew) > window_s:
        raise ProtocolError(
            "stale", f"request time is {skew:+d} s from the gateway's clock (limit {window_s} s)"
        )


def check_counter_range(message: dict[str, Any]) -> None:
    """Raise `invalid` for a counter the ledger cannot keep (refused before the ledger, so it
    can cost no other kiosk's request in the same batch)."""
    if message["ctr"] > MAX_COUNTER:
        raise ProtocolError(
            "invalid", f"counter {message['ctr']} is above {MAX_COUNTER}, the highest one the "
            "gateway keeps"
        )


def check_counter(ledger: CounterStore, message: dict[str, Any]) -> None:
    """Raise `replay` unless the counter is above the last one seen from this kiosk."""
    if not ledger.advance_counter(message["kiosk"], int(message["ctr"])):
        raise ProtocolError(
            "replay", f"counter {message['ctr']} is not above the last one seen from this kiosk"
        )


def guard(
    ledger: CounterStore, message: dict[str, Any], now: int, window_s: int = STALE_AFTER_S
) -> None:
    """Clock first (cheap, and a rejected frame writes nothing), then the persisted counter."""
    check_fresh(message, now, window_s)
    check_counter_range(message)
    check_counter(ledger, message)
