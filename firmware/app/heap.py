# The heap's policy, and its figures at each session step.
#
# The board's 64 KB heap never compacts: a long-lived object allocated high up among a step's
# garbage stays there once the garbage is collected, and splits the free space for good (in the
# kiosk as it was, the ~9 KB a session keeps were spread so that the largest free block after a
# step was 7-9 KB of the 55 KB free). So garbage is never left to pile up above what is kept:
# - the heap is collected at every step boundary (HeapLog.step);
# - and whenever THRESHOLD bytes have been allocated since the last collection (gc.threshold):
#   an Ed25519 verify alone allocates ~1.2 MB of short-lived big ints, a sign ~0.6 MB;
# - and right after each signature check (Collecting), before the reply it vouches for is
#   decoded and kept.
#
# Figures for `kiosk bench firmware` and for sizing a board's heap: enabled by config.json
# "heap_log": true, or ONESTOP_HEAP_LOG=1 on the unix port, each step then prints one line:
#     {"step": "reading", "heap_peak": 9456, "heap_live": 2345, "heap_free": 54000,
#      "heap_block": 50000}
# Bytes above the baseline: what the loaded firmware held before the first resident
# (Board.heap_baseline), so the figures are the session's own data.
# heap_live:  in use when the step began, after collection.
# heap_peak:  allocated when the step ended: heap_live plus what the step allocated since the
#             collector last ran (at most THRESHOLD of garbage).
# heap_free:  free when the step ended, before collection.
# heap_block: the largest block free when the step ended, after collection: the largest buffer
#             the next step could still allocate (less than heap_free by what the live objects
#             split off).
import gc
import json

THRESHOLD = 16384


class HeapLog:
    def __init__(self, enabled, baseline=0, threshold=THRESHOLD):
        self.enabled = enabled
        self.baseline = baseline
        self._step = None
        self._live = 0
        if hasattr(gc, "threshold"):  # a port built without it collects only when full
            gc.threshold(threshold)

    def step(self, name):
        """End the running step (printing its figures) and begin `name` (None: just end)."""
        peak = gc.mem_alloc() - self.baseline
        free = gc.mem_free()
        gc.collect()
        live = gc.mem_alloc() - self.baseline
        if self.enabled and self._step is not None:
            print(json.dumps({"step": self._step, "heap_peak": peak, "heap_live": self._live,
                              "heap_free": free, "heap_block": largest_block()}))
            gc.collect()
        self._step = name
        self._live = live


def largest_block():
    """The largest buffer that can be allocated now (to 16 bytes; a failed try collects)."""
    low = 0
    high = gc.mem_free()
    while high - low > 16:
        size = (low + high) // 2
        try:
            bytearray(size)
            low = size
        except MemoryError:
            high = size
    return low


class Collecting:
    """A signature verifier that collects right after each check: what the check left behind is
    ~1.2 MB of big ints, all garbage, and what comes next is the reply being decoded and kept,
    which then lands at the bottom of the heap."""

    def __init__(self, verifier):
        self.verifier = verifier

    def verify(self, msg, sig):
        ok = self.verifier.verify(msg, sig)
        gc.collect()
        return ok
