# One JSON object per line on stdout: what the kiosk did, for the technician (USB console on a
# board, the launcher's pipe in simulation). Values must be text, numbers, booleans or None.
import json
import time


def log(event, **fields):
    fields["ev"] = event
    fields["ms"] = time.ticks_ms()
    print(json.dumps(fields))
