# One JSON object per line on stdout: what the kiosk did, for the technician (USB console on a
# board, the launcher's pipe in simulation). Values must be text, numbers, booleans or None.
import json
import time

_clock = None  # the link's gateway-set clock (boot.py), for each line's `at`


def date_lines_by(clock):
    global _clock
    _clock = clock


def log(event, **fields):
    fields["ev"] = event
    # ms: uptime for intervals between lines; it wraps every 12.4 days (2**30 ms) on a board.
    # at: Unix seconds on the gateway's clock, once it has told the time (the board has no RTC).
    fields["ms"] = time.ticks_ms()
    if _clock is not None and _clock.synced:
        fields["at"] = _clock.now()
    print(json.dumps(fields))
