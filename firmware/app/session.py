# One resident's visit, from the card going in to the welcome page again:
#
#   READING   read the card                   -> card errors: card_unreadable, wrong_card, ...
#   LOOKUP    sign_in (once), person_info,    -> card_expired, unknown_person, no_bills,
#             pending_bills                      gateway_unreachable, gateway_untrusted,
#                                                service_refused, card_removed
#   CHOOSING  bills page, a button per bill   -> timeout, card_removed
#   PRICING   pre_settle                      -> LOOKUP's gateway refusals, card_removed
#   CONFIRMING confirm page: b0 confirm, b1 cancel -> cancelled, timeout, card_removed
#   SETTLING  journal pending, settle, verify, journal settled
#                                             -> amount_changed, bill_settled, not_settled,
#                                                in_doubt (asked again while the card is in),
#                                                settlement_invalid
#   PRINTING  print, journal printed          -> paper_out, printer_fault (settlement kept;
#                                                printed at once if fixed while the card is in)
#   REPORTING receipt_printed, journal done   (if unanswered: retried while idle)
#   DONE      done page until the card is taken
#
# Every wait has a limit; a card taken out before confirming cancels. Once the resident has
# confirmed, taking the card out changes nothing: the settlement does not need the card.
import asyncio
import time

from app import screens
from app import txn as T
from app.link import GatewayError, GatewayUnreachable, GatewayUntrusted
from drivers import gbk
from drivers.cardreader import CardError

FW_VERSION = "onestop-fw 1.0"
TIMEOUT = "timeout"
CARD_OUT = "card_out"

# CardError code -> the page the resident sees.
CARD_REASONS = {"wrong_application": "wrong_card", "card_removed": "card_removed",
                "no_card": "card_removed"}
# Gateway refusal code -> the page the resident sees (anything else: service_refused).
REFUSAL_REASONS = {"card_expired": "card_expired", "unknown_person": "unknown_person",
                   "amount_changed": "amount_changed", "bill_settled": "bill_settled",
                   "unknown_bill": "bill_settled", "not_found": "not_settled",
                   "cancelled": "not_settled"}
SETTLE_REASONS = {T.IN_DOUBT: "in_doubt", T.INVALID: "settlement_invalid"}


class Session:
    def __init__(self, kiosk):
        self.k = kiosk  # app.kiosk.Kiosk: devices, link, journal, timeouts, log

    async def run(self):
        """The outcome: "settled", or the reason shown on the error page."""
        outcome = await self._visit()
        self.k.heap.step(None)
        self.k.log("session_end", outcome=outcome)
        return outcome

    async def _visit(self):
        k = self.k
        card = await self._read_card()
        if isinstance(card, str):
            return await self.fail(card)
        person_bills = await self._while_card_in(self._lookup(card))
        if person_bills == CARD_OUT:
            return await self.fail("card_removed")
        if isinstance(person_bills, str):
            return await self.fail(person_bills)
        person, bills = person_bills
        del person_bills
        choice = await self.wait_touch(screens.bills(person["name"], bills),
                                       ["b%d" % i for i in range(min(len(bills), 4))],
                                       k.timeouts["choose"], "choosing")
        if choice == TIMEOUT or choice == CARD_OUT:
            return await self.fail(_ended(choice))
        bill = bills[int(choice[1:])]
        others = len(bills) - 1  # told on the done page: the card settles them next
        del bills  # the others are not needed again
        result = await self._while_card_in(self._price(person, bill))
        if result == CARD_OUT:
            return await self.fail("card_removed")
        if isinstance(result, str):
            return await self.fail(result)
        choice = await self.wait_touch(screens.confirm(bill, result), ("b0", "b1"),
                                       k.timeouts["confirm"], "confirming")
        if choice != "b0":
            return await self.fail("cancelled" if choice == "b1" else _ended(choice))
        cash = result["psn_cash_pay"]
        del result
        return await self._settle(person, bill, cash, others)

    # ------------------------------------------------------------ steps
    async def _read_card(self):
        await self.enter("reading", screens.reading())
        try:
            card = await self.k.card.read_card()
        except CardError as e:
            self.k.log("card_error", code=e.code)
            return CARD_REASONS.get(e.code, "card_unreadable")
        return {"ssn": card["ssn"], "card_no": card["card_no"], "card_id": card["card_id"],
                "name": gbk.decode(card["name_gbk"]), "issue": card["issue"],
                "expiry": card["expiry"]}

    async def _lookup(self, card):
        k = self.k
        await self.enter("lookup", screens.lookup())
        try:
            if not k.link.signed_in:
                await k.link.sign_in(FW_VERSION, k.board_name)
            person = await k.link.call("person_info", card=card)
            del card
            bills = (await k.link.call("pending_bills", psn_no=person["psn_no"]))["bills"]
        except GatewayError as e:
            return _refusal(k, e)
        except GatewayUnreachable as e:
            return _unreachable(e)
        if not bills:
            return "no_bills"
        return person, bills

    async def _price(self, person, bill):
        await self.enter("pricing", screens.pricing())
        try:
            reply = await self.k.link.call("pre_settle", psn_no=person["psn_no"],
                                           bill_id=bill["bill_id"])
        except GatewayError as e:
            return _refusal(self.k, e)
        except GatewayUnreachable as e:
            return _unreachable(e)
        return reply["result"]

    async def _settle(self, person, bill, cash, others=0):
        k = self.k
        await self.enter("settling", screens.settling())
        entry = k.txns.begin(person, bill, cash)
        outcome, detail = await k.txns.settle(entry)
        if outcome == T.IN_DOUBT:
            # The resident is still here: one query may settle the doubt now instead of later.
            # One try: after a settle that went unanswered (up to 3 tries, ~30 s) the resident
            # has waited long enough; recovery keeps asking once they are told.
            outcome, detail = await k.txns.query(entry, 1)
        if outcome == T.IN_DOUBT:
            # Told it will be checked; while the card is in, the answer is theirs to see:
            # the receipt if it was settled, "not settled" if it never reached the ledger.
            resolved = await self.wait_with_card("in_doubt", k.timeouts["doubt_poll"],
                                                 self._resolved(entry))
            if resolved is None:
                return "in_doubt"  # gone: recovery keeps asking
            outcome, detail = resolved
        if outcome == T.ABORTED:
            return await self.fail(REFUSAL_REASONS.get(detail, "service_refused"))
        if outcome != T.SETTLED:
            return await self.fail(SETTLE_REASONS[outcome])
        paid = detail["result"]  # for the done page; the journal has the settlement
        del detail
        await self.enter("printing", screens.printing())
        problem = await k.txns.print_receipt(entry)
        while problem:
            # Saved, not printed. A resident still at the kiosk waits for the receipt: it
            # prints as soon as a clerk loads paper, not after they have given up and gone.
            # The page says "please wait here": for paper, the kiosk waits as long as a clerk
            # may take (it serves nobody else without paper anyway); a fault needs a
            # technician, and the resident is not kept.
            reason = T.printer_reason(problem)
            if await self.wait_with_card(reason, k.timeouts["printer_poll"],
                                         self._printer_ready, paid["psn_cash_pay"],
                                         patient=reason == "paper_out") is None:
                return reason  # gone: recovery prints it when it can
            await self.enter("printing", screens.printing(saved=True))
            problem = await k.txns.print_receipt(entry)
        # The resident has the receipt: the done page now, not after the gateway has heard of
        # it (with its retries that took 30 s when the link was down; recovery retries later).
        shown = time.ticks_ms()
        await self.enter("done", screens.done(paid, others))
        await self.enter("reporting", None)
        await k.txns.report(entry)
        await k.wait_card(False, k.timeouts["take_card"])
        # A resident who took the card at once still reads it: settled, and what to pay.
        left = k.timeouts["message"] - time.ticks_diff(time.ticks_ms(), shown)
        if left > 0:
            await asyncio.sleep_ms(left)
        return "settled"

    async def _while_card_in(self, step):
        """Await `step` (a gateway exchange) while the slot is asked every `poll` ms if the
        card is still in: CARD_OUT if it was taken out meanwhile, else what `step` gave. The
        reader only says that a card is in, not which: a card swapped during the exchange
        would otherwise be shown, and could settle, the first resident's bills."""
        k = self.k
        watch = [False, False, False]  # stop, card gone, asleep (safe to cancel)

        async def watching():
            while not watch[0]:
                if not await k.card_present():
                    watch[1] = True
                    return
                watch[2] = True
                await asyncio.sleep_ms(k.timeouts["poll"])
                watch[2] = False

        watcher = asyncio.create_task(watching())
        try:
            result = await step
        finally:
            watch[0] = True
            if watch[2]:  # not in the middle of a reader command: stop it now
                watcher.cancel()
            try:
                await watcher
            except asyncio.CancelledError:
                pass
        return CARD_OUT if watch[1] else result

    # ------------------------------------------------------------ waiting and pages
    async def enter(self, step, page):
        self.k.heap.step(step)
        self.k.progress()
        self.k.log("step", step=step)
        if page is not None:
            await self.k.show(page)

    async def wait_touch(self, page, buttons, timeout_ms, step):
        """The button touched, TIMEOUT, or CARD_OUT if the card was taken out meanwhile."""
        k = self.k
        await self.enter(step, page)
        shown = time.ticks_ms()
        deadline = time.ticks_add(shown, timeout_ms)
        counted = 0  # the seconds the countdown strip shows (0: hidden)
        while True:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                return TIMEOUT
            if timeout_ms > k.timeouts["more_time"]:
                counted = await self._count_down(left, counted)
            touch = await k.display.next_touch(min(left, k.timeouts["poll"]))
            if touch is not None:
                # The countdown strip, while it shows: the resident is still there, and the
                # page waits its whole time again. A press too soon after the page came up was
                # meant for the page before (a double tap): ignored, and said so (a resident's
                # "it settled when I tapped twice" is answered from the log).
                if touch[1] == "more" and counted:
                    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
                    counted = await self._count_down(timeout_ms, counted)
                    k.log("more_time", step=step)
                elif touch[1] not in buttons:
                    k.log("touch_ignored", button=touch[1], why="not_on_page")
                elif time.ticks_diff(time.ticks_ms(), shown) < k.timeouts["touch_guard"]:
                    k.log("touch_ignored", button=touch[1], why="too_soon")
                else:
                    return touch[1]
            if not await k.card_present():
                return CARD_OUT
            await k.keep_screen(False)  # next_touch has read what the screen sent
            k.progress()

    async def _count_down(self, left, counted):
        """The countdown strip for `left` ms, updated when its whole seconds change; the
        seconds it shows now."""
        seconds = (left + 999) // 1000 if left <= self.k.timeouts["more_time"] else 0
        if seconds != counted:
            try:
                await self.k.display.update({"more": screens.more_time(seconds)})
            except OSError:
                pass  # the screen's line: keep_screen finds out and redraws the page
        return seconds

    async def wait_with_card(self, reason, every_ms, check, pay=None, patient=False):
        """The `reason` page (with `pay`, see screens.error) while the card is in, asking
        `check()` every `every_ms`: what it gives once it is not None; None once the card is
        taken out (after the page was up `message` ms) or `take_card` ms pass. `patient` (the
        page promised to wait for paper): `wait_paper` ms instead, and a reader that does not
        answer counts as the card gone (a broken reader must not hold the kiosk)."""
        k = self.k
        card_in = await k.card_present()
        await self.enter("error", screens.error(reason, card_in, pay, True))
        now = time.ticks_ms()
        readable = time.ticks_add(now, k.timeouts["message"])
        deadline = time.ticks_add(now, k.timeouts["wait_paper" if patient else "take_card"])
        asked = time.ticks_add(now, -every_ms)
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            # once out, the visit is over
            card_in = card_in and await k.card_present(not patient)
            if card_in and time.ticks_diff(time.ticks_ms(), asked) >= every_ms:
                asked = time.ticks_ms()
                answer = await check()
                if answer is not None:
                    return answer
            if not card_in and time.ticks_diff(readable, time.ticks_ms()) <= 0:
                return None
            k.progress()
            await k.keep_screen()
            await asyncio.sleep_ms(k.timeouts["poll"])
        return None

    async def _printer_ready(self):
        return True if await self.k.printer_problem() is None else None

    def _resolved(self, entry):
        async def check():
            outcome, detail = await self.k.txns.query(entry, 1)
            return None if outcome == T.IN_DOUBT else (outcome, detail)
        return check

    async def fail(self, reason):
        """The error page for `reason`, then back to idle: shown for `message` ms, and while
        the card is still in, until it is taken (or `take_card` ms pass). A card put in after
        it was out (again, or another) ends it at once: a new visit, read at once, not shown
        this page's reason or told to come back out."""
        k = self.k
        card_in = await k.card_present()
        await self.enter("error", screens.error(reason, card_in))
        went_out = not card_in
        deadline = time.ticks_add(time.ticks_ms(), k.timeouts["message"])
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            if not await k.card_present():
                went_out = True
            elif went_out:
                k.card_put_back()
                return reason
            k.progress()
            await k.keep_screen()
            await asyncio.sleep_ms(k.timeouts["poll"])
        if not went_out:
            await k.wait_card(False, k.timeouts["take_card"])
        return reason


def _ended(choice):
    return "card_removed" if choice == CARD_OUT else "timeout"


def _unreachable(error):
    """No verified answer: the network, or (every reply failed the key check) a kiosk given the
    wrong gateway key, which waiting will not mend: the resident is sent to staff."""
    return "gateway_untrusted" if isinstance(error, GatewayUntrusted) else "gateway_unreachable"


def _refusal(kiosk, error):
    kiosk.log("gateway_refused", code=error.code, msg=error.msg)
    return REFUSAL_REASONS.get(error.code, "service_refused")
