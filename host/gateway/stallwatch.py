"""A thread that watches the ledger work running on the gateway's event loop.

The gateway runs its ledger batches on the loop's thread (no thread hop per batch), so while
one waits no kiosk of this gateway is answered. A lock is waited for at most lock_timeout and
a dead link is noticed by TCP, but a database that keeps the link up and answers nothing (a
hung server, a stuck disk, a frozen pooler) was waited for without end, kiosks timing out,
and the operator heard of it (`ledger_slow`) only once it was over. This thread tells the
operator while it lasts (`ledger_stalled`) and breaks the connection of a transaction that
has itself waited BREAK_AFTER_S (never one whose COMMIT has gone out: Ledger.interrupt): its
batch is answered `unavailable`, nothing stored, and the next batch opens a new connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

WARN_AFTER_S = 5.0
# Under a kiosk's 10 s reply timeout; above a transaction's lock wait (3 s, 0.5 s when its
# batch runs again after one).
BREAK_AFTER_S = 8.0
CHECK_EVERY_S = 0.5


class StallWatch:
    def __init__(self, batch_started: Callable[[], float | None],
                 interrupt: Callable[[float], bool], warn: Callable[..., None]) -> None:
        self._batch_started = batch_started  # monotonic start of the batch under way, or None
        # break the loop's transaction if it has run that many seconds (Ledger.interrupt:
        # never one whose COMMIT has gone out)
        self._interrupt = interrupt
        self._warn = warn  # (event, **fields), called on this thread
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-stall-watch",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        warned: Any = None  # the batch (its start) already warned of
        while not self._stop.wait(CHECK_EVERY_S):
            since = self._batch_started()
            if since is None:
                continue
            waited = round(time.monotonic() - since, 1)
            if waited >= WARN_AFTER_S and warned != since:
                warned = since
                self._warn("ledger_stalled", seconds=waited,
                           hint="the ledger gives no answer (the database, its disk, or "
                                "another program writing to it: an import, a backup); kiosks "
                                "wait meanwhile")
            # Measured by the transaction itself: a batch of slow but answered ones is not
            # broken, nor the next batch's when this one ended a moment ago.
            if waited >= BREAK_AFTER_S and self._interrupt(BREAK_AFTER_S):
                self._warn("ledger_connection_broken", seconds=waited,
                           hint="its batch is answered unavailable (nothing was stored); a "
                           "new connection is opened for the next")
