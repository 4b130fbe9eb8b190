# Runs under MicroPython (a firmware stage on the path, precompiled, 64 KB heap): one resident's
# session, or the kiosk's main loop, with the fakes of app_fakes, and a transcript of what the
# resident saw, what the gateway was asked, what was printed and what the journal holds.
import asyncio
import gc

import app_fakes as F
from app.counter import Counter
from app.heap import Collecting, HeapLog
from app.journal import Journal
from app.kiosk import Kiosk
from app.session import Session
from app.txn import Transactions
from boards.unix import hold_heap, release_heap
from drivers import gbk
from onestop.protocol import messages

KIOSK_ID = "K0001"
TIMEOUTS = {"choose": 300, "confirm": 300, "message": 5, "take_card": 300, "poll": 5,
            "printer_poll": 20, "doubt_poll": 20, "retry_open": 40, "stall": 60000,
            "touch_guard": 0, "wait_paper": 3000, "heartbeat": 600000, "more_time": 0}
KEPT_PAGES = ("bills", "confirm", "done", "error")
BOARD_DATA_HEAP = 64 * 1024


def on_board_heap(run, heap=None):
    """run() with only the 64 KB a board has for data left free (its code is in flash, while
    the unix port keeps .mpy code in the heap; see boards.unix.hold_heap). The test's own
    report is built afterwards, outside that budget. heap: [bytes, piece] for a smaller data
    heap, or one cut into pieces of `piece` bytes (0: one piece)."""
    free, piece = heap or (BOARD_DATA_HEAP, 0)
    hold_heap(free, piece)
    try:
        return run()
    finally:
        release_heap()


class Rig:
    """Everything a Kiosk needs, from a spec (plain values from the test):
    dir, tables, people, card, card_error, script, visits, keeps_card, faults, price_change,
    gateway_state, paper, printer_faults, reload_after, runs_out_after, walk_up, min_free (and
    heap, for on_board_heap; card_in, for the main loop)."""

    def __init__(self, spec):
        gbk.set_table_dir(spec["tables"])
        self.events = []
        resident = F.Resident(spec.get("script", {}), spec.get("visits", 1),
                              spec.get("keeps_card", False), spec.get("walk_up", False))
        self.card = F.FakeCard(spec.get("card"), spec.get("card_error"))
        resident.card = self.card
        self.display = F.FakeDisplay(resident)
        self.printer = F.FakePrinter(spec.get("paper", "ok"), spec.get("printer_faults"),
                                     spec.get("reload_after"), spec.get("runs_out_after"))
        self.gateway = F.FakeGateway(KIOSK_ID, spec.get("people", {}), spec.get("gateway_state"),
                                     spec.get("faults"), spec.get("price_change", 0))
        self.gateway.card = self.card
        self.journal = Journal(spec["dir"] + "/journal.bin")
        self.counter = Counter(spec["dir"] + "/counter")
        verifier = Collecting(F.gateway_verifier())  # as app.boot wraps the pinned key

        def open_settlement(data):
            return messages.open_settlement(data, verifier)

        self.txns = Transactions(self.journal, self.gateway, self.printer, open_settlement,
                                 KIOSK_ID, self.counter, self.log)
        timeouts = dict(TIMEOUTS)
        timeouts.update(spec.get("timeouts", {}))
        self.kiosk = Kiosk("unix", timeouts, self.display, self.card, self.printer,
                           self.gateway, self.journal, self.txns, HeapLog(False), None, self.log)
        if "min_free" in spec:  # a flash this short of room (statvfs cannot be faked)
            self.kiosk.min_free = spec["min_free"]

    def log(self, event, **fields):
        self.events.append("step:" + fields["step"] if event == "step" else event)

    def transcript(self, outcome=None):
        gc.collect()
        return {
            "outcome": outcome,
            "pages": self.display.pages,
            "last": {p: self.display.last[p] for p in KEPT_PAGES if p in self.display.last},
            "calls": self.gateway.calls,
            "attempts": self.gateway.attempts,
            "receipts": [F.receipt_bytes(r) for r in self.printer.receipts],
            "open": [[e["txn_id"], e["state"]] for e in self.journal.open_txns()],
            "state": self.gateway.state,
            "reads": self.card.reads,
            "events": self.events,
            "counted": self.display.counted,
        }


def session(spec):
    """One visit: the card is already in; Session.run until the welcome page would show."""
    def run():
        rig = Rig(spec)
        rig.card.present = True
        return rig, asyncio.run(Session(rig.kiosk).run())

    rig, outcome = on_board_heap(run, spec.get("heap"))
    return rig.transcript(outcome)


def kiosk(spec):
    """The main loop from boot (recovery first) for spec["rounds"] rounds."""
    def run():
        rig = Rig(spec)
        rig.card.present = spec.get("card_in", False)  # a card in the slot at power-on
        asyncio.run(rig.kiosk.serve(spec.get("rounds", 1)))
        return rig

    return on_board_heap(run, spec.get("heap")).transcript()
