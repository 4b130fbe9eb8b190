# The heap at each session step. The heap is collected at every step boundary: in a 64 KB heap
# that never compacts, long-lived objects allocated among a step's garbage would otherwise split
# the free space into pieces too small for the next step's buffers.
#
# Figures for `kiosk bench firmware` and for sizing a board's heap: enabled by config.json
# "heap_log": true, or ONESTOP_HEAP_LOG=1 on the unix port, each step then prints one line:
#     {"step": "reading", "heap_peak": 23456, "heap_live": 2345, "heap_free": 40000}
# Bytes above the baseline: what the loaded firmware held before the first resident
# (Board.heap_baseline), so the figures are the session's own data.
# heap_live: in use when the step began, after collection.
# heap_peak: allocated when the step ended: heap_live plus everything the step allocated,
#            garbage included. The most the step needed at once is at most this figure, unless
#            the collector had to run during the step (then heap_free shows how close it came).
# heap_free: free when the step ended, before collection.
import gc
import json


class HeapLog:
    def __init__(self, enabled, baseline=0):
        self.enabled = enabled
        self.baseline = baseline
        self._step = None
        self._live = 0

    def step(self, name):
        """End the running step (printing its figures) and begin `name` (None: just end)."""
        peak = gc.mem_alloc() - self.baseline
        free = gc.mem_free()
        gc.collect()
        live = gc.mem_alloc() - self.baseline
        if self.enabled and self._step is not None:
            print(json.dumps({"step": self._step, "heap_peak": peak, "heap_live": self._live,
                              "heap_free": free}))
        self._step = name
        self._live = live
