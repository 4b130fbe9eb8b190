"""How a long-running gateway process (and the bench's kiosk fleet) runs its event loop.

uvloop (libuv) where it is installed: the gateway's work per request is small next to the
event loop's own bookkeeping (a readable socket, a callback, a write), and uvloop does that in C.
The standard asyncio loop otherwise (a platform uvloop does not support): same behaviour.

The garbage collector is tuned for a server: the objects made while starting (policy,
modules, keys) are moved out of its reach (gc.freeze), and the youngest generation is
collected after 50,000 allocations instead of 700. A request's objects are freed by reference
counting the moment it is answered; what the collector would scan is mostly long-lived, and
its full passes over every connection's state stalled every reply for tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

YOUNG_COLLECTION_AFTER = 50_000  # allocations (CPython's default: 700)


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on uvloop's loop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def tune_gc_for_serving() -> None:
    """Call once the process has started up (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, older, oldest)


def loop_name() -> str:
    """Which event loop runs this process: 'uvloop' or 'asyncio' (for the logs)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") \
        else "asyncio"
