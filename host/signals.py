"""Stopping a foreground command the way an operator's tools stop it.

Ctrl-C raises KeyboardInterrupt, and every command's `finally` clauses stop what it started (a
gateway, a MicroPython kiosk, the simulated devices). SIGTERM (`kill`, systemd) and SIGHUP (a
closed SSH session) would end the process without them, leaving those children running.
"""

from __future__ import annotations

import signal


def exit_on_stop_signals() -> None:
    """From now on SIGTERM and SIGHUP end this process with SystemExit(128 + signal), so the
    `finally` clauses run first (exit status as a shell reports a process killed by it)."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
