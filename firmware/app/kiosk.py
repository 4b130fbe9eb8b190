# The kiosk: boots from the flash directory, finishes what the journal left open, then serves
# residents one at a time, forever.
#
#   boot -> recover -> IDLE (welcome page) --card in--> Session (app.session) --> IDLE
#                  \-> OUT OF SERVICE while a txn is in doubt or a receipt waits for the
#                      printer (app.recovery); retried every `retry_open` ms
#
# Between visits, once the page it waits on is up, the kiosk signs in to the gateway: at boot
# (its heartbeat's first beat) and every `heartbeat` ms after (Kiosk._heartbeat).
import asyncio
import sys
import time

from app import flash, recovery, screens
from app import txn as T
from app.link import GatewayError, GatewayUnreachable
from app.log import log
from app.session import FW_VERSION, Session
from drivers.cardreader import CardError

WATCHDOG_FEED_MS = 1000
# Status polls in a row the card reader has not answered before it is taken for broken: the
# welcome page would ask for a card it cannot read (out of service instead, until it answers).
READER_DOWN_AFTER = 3
# How often the screen is looked after while no touch is awaited: redrawn after a restart (a
# brown-out brings it back blank, on its first page) or after a page it did not take.
SCREEN_CHECK_MS = 1000
# A screen that takes no page (unplugged, dead) is tried again this often: each try waits out
# its answer (2 x 500 ms), which the polls for a card would otherwise wait behind every second.
SCREEN_RETRY_MS = 5000
ENOSPC = 28  # "no space left on device" (MicroPython's errno module does not name it)


class Kiosk:
    def __init__(self, board_name, timeouts, display, card, printer, link, journal, txns, heap,
                 watchdog=None, log_fn=log):
        self.board_name = board_name
        self.timeouts = timeouts
        self.display = display
        self.card = card
        self.printer = printer
        self.link = link
        self.journal = journal
        self.txns = txns
        self.heap = heap
        self.watchdog = watchdog
        self.log = log_fn
        self._progress = time.ticks_ms()
        self.sessions = 0
        self._card_may_be_left_in = True  # at power-on, a card in the slot is not a new visit
        self._just_started = True  # ...and its holder is told the kiosk restarted
        # The card in the slot has stayed there since a settlement went in doubt (a visit that
        # ended in doubt with it in; at power-on, the visit the power cut): its holder is the
        # one to tell if recovery finds nothing was settled. Any poll that sees the slot empty
        # clears it, so a card put in later is never told about another's settlement.
        self.doubt_card_in = True
        self._reader_errors = 0  # status polls in a row the card reader did not answer
        # Out of service for this reason, already logged (a spell is logged once, not at every
        # retry: hours of paper out were a line every 20 s in the board's log); and the
        # printer problem already logged.
        self._out_reason = None
        self._printer_logged = None
        self.min_free = flash.MIN_FREE_BYTES
        self._flash_failed = False  # a write failed for want of space: out of service a while
        self.paper_low = False  # the printer said its roll is near its end (logged once)
        self._page = None  # the page shown last, to redraw
        self._screen_ok = True  # the screen took that page
        self._restarts = 0  # the screen's restarts already redrawn after
        # ticks_ms of the last sign-in _heartbeat tried; None: the first, due at boot
        self._heartbeat_at = None
        # what the link signs in with when a reply names a gateway key it does not know yet
        # (key rotation): recovery at power-on asks the gateway before any sign-in
        link.hello = (FW_VERSION, board_name)
        self._heartbeat_failing = False  # logged once per spell
        self.light = None  # the board's status light (boards.common status_light), if any
        self._screen_checked = time.ticks_ms()

    # ------------------------------------------------------------ services for the session
    def progress(self):
        """Called at every step and poll: proof of life for the watchdog feeder."""
        self._progress = time.ticks_ms()

    async def show(self, page):
        self._page = page
        name, shown = page
        error = None
        for _ in range(2):
            # Once more if the screen did not take it: one instruction garbled on the line left
            # the resident on the wrong page, whose buttons did nothing.
            try:
                if await self.display.show(name, shown):
                    if not self._screen_ok:
                        self.log("display_back", page=name)
                    self._screen_ok = True
                    return
                error = self.display.last_error
            except OSError as e:
                error = str(e)
        if self._screen_ok:  # once per spell: keep_screen tries again every SCREEN_RETRY_MS
            self.log("display_error", page=name, error=error)
        self._screen_ok = False
        self._screen_checked = time.ticks_add(time.ticks_ms(), SCREEN_RETRY_MS - SCREEN_CHECK_MS)

    async def keep_screen(self, read=True):
        """The page shown last, drawn again if the screen restarted or did not take it; at
        most once every SCREEN_CHECK_MS. `read`: take in what the screen sent first (no touch
        is being awaited, so nothing else reads it)."""
        if time.ticks_diff(time.ticks_ms(), self._screen_checked) < SCREEN_CHECK_MS:
            return
        self._screen_checked = time.ticks_ms()
        if read:
            await self.display.read_events(10)
        restarted = self.display.restarts != self._restarts
        if restarted:
            self._restarts = self.display.restarts
            self.log("display_restarted")
        if (restarted or not self._screen_ok) and self._page is not None:
            await self.show(self._page)

    async def card_present(self, if_unknown=True):
        try:
            present = await self.card.status() == "present"
        except CardError as e:
            self._reader_errors += 1
            if self._reader_errors == 1:  # once per spell, not at every poll
                self.log("card_status_error", code=e.code)
            return if_unknown
        if self._reader_errors:
            if self.reader_down():
                self.log("card_reader_back", unanswered=self._reader_errors)
            self._reader_errors = 0
        if not present:
            self.doubt_card_in = False
        return present

    def reader_down(self):
        """The card reader has not answered READER_DOWN_AFTER status polls in a row."""
        return self._reader_errors >= READER_DOWN_AFTER

    def card_put_back(self):
        """A visit's card seen taken out and a card put in again while its last page showed:
        a new visit, to be read at once (not a card left in, told to come out)."""
        self._card_may_be_left_in = False

    async def printer_problem(self):
        status = await self.printer.status()
        self._note_paper(status["paper"])
        return T.printer_problem(status)

    def _note_paper(self, paper):
        """A roll near its end is logged once, when the sensor first says so (the welcome
        page tells the staff too); a new roll ends it. No answer, or no paper, changes
        nothing here: the printer's problem is dealt with on its own."""
        if paper == "near_end" and not self.paper_low:
            self.log("paper_near_end")
        if paper == "near_end" or paper == "ok":
            self.paper_low = paper == "near_end"

    async def _printer_not_ready(self):
        """The out-of-service reason if the printer cannot print now (logged), else None."""
        problem = await self.printer_problem()
        if problem != self._printer_logged:
            if problem is not None:
                self.log("printer_not_ready", problem=problem)
            self._printer_logged = problem
        return None if problem is None else T.printer_reason(problem)

    # ------------------------------------------------------------ the main loop
    async def serve(self, rounds=None):
        """Serve residents forever, or for `rounds` turns of the loop (each one welcome page,
        perhaps with a resident's visit, or one out-of-service wait): for tests and benchmarks."""
        if self.watchdog is not None:
            asyncio.create_task(self._feed_watchdog())
        open_txns = len(self.journal.open_txns())
        self.log("boot", open_txns=open_txns)
        # Lit before recovery, which may print and wait for a card: a dark LED says "no power",
        # and a technician would cut it again in the middle.
        self._light("serving")
        if open_txns:
            # The screen comes up blank with the power: while recovery asks the gateway (its
            # retries take half a minute when it is away), a resident whose card is still in
            # reads what the kiosk is doing, not a blank or a page the power cut left.
            await self.show(screens.checking())
        blocked = await self._recover()
        done = 0
        while True:
            if blocked:
                # from recovery: a printer reason means a settled receipt waits for it
                await self._out_of_service(blocked, True)
            else:
                await self._idle()
            done += 1
            if rounds is not None and done >= rounds:
                return
            blocked = await self._recover() if self.journal.open_txns() else None

    def _light(self, pattern):
        if self.light is not None:
            self.light.show(pattern)  # a change only: the same pattern again does nothing

    async def _heartbeat(self):
        """Sign in at boot and every `heartbeat` ms after, busy or idle, in service or not (a
        visit not signed in signs in first too): the gateway's record of it is how the operator
        knows this kiosk is alive and what firmware it runs (`kiosk keys list`), and its reply
        sets the clock again (the log's `at`). Called between visits once the page the kiosk
        waits on is up (welcome, out of service, take your card), never before it: one
        attempt, so a gateway away holds that page for its connect or reply timeout at most,
        and is tried again next time. A card put in meanwhile is read when the beat is over."""
        now = time.ticks_ms()
        if self._heartbeat_at is not None and \
                time.ticks_diff(now, self._heartbeat_at) < self.timeouts["heartbeat"]:
            return
        self._heartbeat_at = now
        try:
            await self.link.sign_in(FW_VERSION, self.board_name, attempts=1)
        except (GatewayError, GatewayUnreachable) as e:  # GatewayUntrusted too
            if not self._heartbeat_failing:
                self.log("heartbeat_failed", error=str(e))
            self._heartbeat_failing = True
            return
        self._heartbeat_failing = False

    async def _recover(self):
        """recovery.finish_open; if it crashes (a bug, the heap exhausted), the kiosk stays out
        of service and tries again later, as a crashed session costs one visit: the journal
        still holds the txn, and a reboot would only crash again at the same place."""
        try:
            return await recovery.finish_open(self)
        except Exception as e:  # noqa: BLE001
            self.log("recovery_crashed", error=repr(e))
            return "fault"

    async def _idle(self):
        """The welcome page until a card goes in (then serve it) or it is time to look at the
        open txns again."""
        # A reader that does not answer cannot read the card the welcome page asks for.
        if self.reader_down():
            await self._out_of_service("reader_fault")
            return
        if self._card_may_be_left_in:
            # A card still in from the last visit (or from before a reboot) must come out
            # first, or it would be served again. Only a reader that says the slot is empty
            # says so: one that did not answer says nothing (asked again, then out of service).
            present = await self.card_present(None)
            if present is None:
                await asyncio.sleep_ms(self.timeouts["poll"])
                return
            if present:
                await self.show(screens.take_card(self._just_started))
                self._light("serving")  # in service: the next resident waits for the card
                await self._heartbeat()
                await self.wait_card(False, self.timeouts["take_card"])
                return
            self._card_may_be_left_in = self._just_started = False
        # A full flash fails a visit at its first write (the counter): out of service instead,
        # until the technician makes room (kiosk fw status shows what is there).
        if self._flash_failed or self._flash_short():
            self._flash_failed = False  # after one spell out, statvfs decides
            await self._out_of_service("flash_full")
            return
        # No paper: out of service now, not only once a resident has put their card in.
        reason = await self._printer_not_ready()
        if reason is not None:
            await self._out_of_service(reason)
            return
        if self._out_reason is not None:
            self.log("back_in_service", was=self._out_reason)
            self._out_reason = None
        if self._page is None or self._page[0] != "welcome":
            self.log("idle")  # once per spell at the welcome page, not at every retry
        if not await self._welcome():
            return
        reason = await self._printer_not_ready()  # the roll may have run out meanwhile
        if reason is not None:
            await self.show(screens.out_of_service(reason, True))
            # Long enough to be read (the take-card page follows at once otherwise, and the
            # resident never learns why): until the card comes out, or `message` ms.
            await self.wait_card(False, self.timeouts["message"])
            self._card_may_be_left_in = True
            return
        self.sessions += 1
        self._card_may_be_left_in = True
        try:
            outcome = await Session(self).run()
            if outcome == "in_doubt":  # the resident may still be there, card in
                self.doubt_card_in = await self.card_present(False)
        except Exception as e:  # noqa: BLE001 - a bug must cost one visit, never the kiosk
            # Whatever the resident confirmed is in the journal: recovery finishes it.
            self.log("session_crashed", error=repr(e))
            sys.print_exception(e, sys.stderr)  # stdout carries the JSON log lines
            if isinstance(e, OSError) and e.args and e.args[0] == ENOSPC:
                self._flash_failed = True
                await self.show(screens.out_of_service("flash_full", True))
            else:
                await self.show(screens.error("service_refused", True))
            # Long enough to be read: the take-card page follows at once otherwise.
            await self.wait_card(False, self.timeouts["message"])

    def _flash_short(self):
        free = flash.free_bytes(self.journal.path)
        if free is None or free >= self.min_free:
            return False
        if self._out_reason != "flash_full":  # once a spell, as out_of_service is
            self.log("flash_short", free=free, needs=self.min_free)
        return True

    async def _welcome(self):
        """The welcome page until a card goes in (True) or `retry_open` ms pass (False). The
        printer is asked every `printer_poll` ms meanwhile: paper run out or a cover opened
        takes the kiosk out of service at once (an idle kiosk noticed only at its next retry,
        20 s on, inviting cards meanwhile), and a roll near its end shows on the page."""
        low = self.paper_low
        await self.show(screens.welcome(low))
        self._light("serving")
        await self._heartbeat()
        deadline = time.ticks_add(time.ticks_ms(), self.timeouts["retry_open"])
        while True:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0 or self.reader_down():
                return False
            if await self.wait_card(True, min(left, self.timeouts["printer_poll"])):
                return True
            reason = await self._printer_not_ready()
            if reason is not None:
                await self._out_of_service(reason)
                return False
            if self.paper_low != low:
                low = self.paper_low
                await self.show(screens.welcome(low))

    async def _out_of_service(self, reason, receipt_waits=False):
        if reason != self._out_reason:
            self.log("out_of_service", reason=reason)
            self._out_reason = reason
        await self.show(screens.out_of_service(reason, False, receipt_waits))
        self._light("out_of_service")
        await self._heartbeat()
        printer = reason == "paper_out" or reason == "printer_fault"
        reader = reason == "reader_fault"
        told = False
        deadline = time.ticks_add(time.ticks_ms(), self.timeouts["retry_open"])
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            # A card put in meanwhile (not one held since a doubt, whose holder waits for its
            # answer) is told to come back out; and it is not read when service resumes.
            # Asked first: paper loaded the same moment must not let the card be read.
            if not told and not self.doubt_card_in and await self.card_present(False):
                await self.show(screens.out_of_service(reason, True, receipt_waits))
                self._card_may_be_left_in = told = True
            # A clerk is loading paper: print the waiting receipt once the printer is ready.
            if printer and await self.printer_problem() is None:
                return
            if reader and (told or self.doubt_card_in):
                await self.card_present(False)  # not asked above: is the reader back?
            if reader and not self.reader_down():
                return
            await self.wait_card(None, self.timeouts["printer_poll"])

    async def wait_card(self, present, timeout_ms):
        """Poll the card slot until it is `present` (True/False) or `timeout_ms` pass; True if
        it got there. present=None just waits, keeping the watchdog fed (and, while a card
        held since a doubt is in, watching for it to be taken out)."""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            self.progress()
            if present is None:
                if self.doubt_card_in:
                    await self.card_present(True)
            elif await self.card_present(not present) == present:
                return True
            elif present and self.reader_down():
                return False  # no card can be read: out of service instead (_idle)
            await self.keep_screen()
            await asyncio.sleep_ms(self.timeouts["poll"])
        return False

    async def _feed_watchdog(self):
        # Fed only while the kiosk shows signs of life: a session stuck for `stall` ms lets
        # the hardware watchdog reset the board, and the journal takes it from there.
        while True:
            if time.ticks_diff(time.ticks_ms(), self._progress) < self.timeouts["stall"]:
                self.watchdog.feed()
            await asyncio.sleep_ms(WATCHDOG_FEED_MS)
