# Runs under MicroPython: stand-ins for the kiosk's devices and its gateway, for testing the
# session state machine (app.session, app.kiosk, app.recovery) without serial lines.
#
# The person at the kiosk is a scripted Resident who reacts to each page shown: inserts a card on
# the welcome page, touches a button, walks away, or pulls the card out. The gateway is a small
# ledger that behaves like the real one where the kiosk can tell (exactly-once settle by txn_id,
# amount_changed, bill_settled, a gateway-signed settlement), with faults scripted per request.
import asyncio
import time

from app.link import GatewayError, GatewayUnreachable, GatewayUntrusted
from drivers.cardreader import CardError
from drivers.escpos import PrinterError
from onestop.protocol import ed25519, messages

GATEWAY_KID = "gw-test"
GATEWAY_SEED = bytes(range(32))
PAGE_IDS = ("welcome", "reading", "bills", "confirm", "processing", "printing", "done", "error")
NOW = 1795000000  # 2026-11-18, the gateway's clock
SWAP_MS = 30  # "card_swapped": out this long, then another card in (the tests poll every 5 ms)


def gateway_key():
    return ed25519.SigningKey(GATEWAY_SEED)


def gateway_verifier():
    return ed25519.VerifyingKey(gateway_key().public_key)


class Resident:
    """script: page name -> what the resident does when that page shows:
    "b0".."b3" touch the button, "pull" take the card out, "none" do nothing (walk away);
    "b0@150": touch it 150 ms after the page shows (at once otherwise); on an error page,
    "reinsert@30": take the card out and put it back 30 ms later; "more" touches the countdown
    strip (if it shows); "more@250,b0@100": one action after another, each timed from the last.
    Pages not in the script get "none". On a done or error page the resident takes the card
    (unless keeps_card). `visits` is how many times they insert the card on the welcome page
    (`walk_up`: on an error page too, as one who does not read an out-of-service page)."""

    def __init__(self, script, visits=1, keeps_card=False, walk_up=False):
        self.script = script
        self.visits = visits
        self.keeps_card = keeps_card
        self.walk_up = walk_up
        self.card = None
        self.pending = None  # the action for the page on screen, taken at the next poll
        self.pending_at = 0  # ticks_ms from which it is taken
        self.then = []  # the page's actions after the pending one

    def next_action(self):
        """Take the next of the page's actions as pending; returns it."""
        action, _, after_ms = self.then.pop(0).partition("@")
        self.pending = action
        self.pending_at = time.ticks_add(time.ticks_ms(), int(after_ms or 0))
        return action

    def saw(self, page):
        if (page == "welcome" or (self.walk_up and page == "error")) and self.visits > 0 \
                and not self.card.present:
            self.visits -= 1
            self.card.present = True
        elif page in ("done", "error") and not self.keeps_card:
            self.card.present = False
        self.then = self.script.get(page, "none").split(",")
        action = self.next_action()
        if action == "reinsert":
            self.card.present = False
            self.card.back_at = self.pending_at


class FakeCard:
    def __init__(self, data, error=None, present=False):
        self.data = data
        self.error = error  # a CardError code read_card raises
        self.present = present
        self.reads = 0
        self.back_at = None  # ticks_ms at which a card taken out goes back in (reinsert)

    async def status(self):
        await asyncio.sleep_ms(0)
        if self.back_at is not None and time.ticks_diff(time.ticks_ms(), self.back_at) >= 0:
            self.present, self.back_at = True, None
        return "present" if self.present else "absent"

    async def read_card(self):
        self.reads += 1
        await asyncio.sleep_ms(0)
        if not self.present:
            raise CardError("no_card", "scripted")
        if self.error:
            raise CardError(self.error, "scripted")
        return dict(self.data)


class FakeDisplay:
    def __init__(self, resident):
        self.resident = resident
        self.pages = []  # [page, t_en] of every page shown
        self.last = {}  # page -> the texts it showed last
        self.restarts = 0
        self.last_error = None
        self.more = ""  # the countdown strip's text ("": hidden)
        self.counted = []  # [page, strip text] of every update of the strip

    async def update(self, texts):
        await asyncio.sleep_ms(0)
        self.more = texts["more"]
        self.counted.append([self.pages[-1][0], self.more])

    async def read_events(self, timeout_ms):
        await asyncio.sleep_ms(0)

    async def show(self, page, texts):
        await asyncio.sleep_ms(0)
        self.pages.append([page, texts["t_en"]])
        self.more = ""  # a page comes up without the strip
        self.last[page] = texts
        self.resident.saw(page)
        return True

    async def next_touch(self, timeout_ms):
        if time.ticks_diff(self.resident.pending_at, time.ticks_ms()) > 0:
            await asyncio.sleep_ms(timeout_ms)  # still reading the page
            return None
        action = self.resident.pending
        self.resident.pending = "none"
        if self.resident.then:
            self.resident.next_action()
        page = self.pages[-1][0]
        if action == "more" and not self.more:
            action = "none"  # a hidden strip is not there to touch
        if action in ("b0", "b1", "b2", "b3", "more"):
            await asyncio.sleep_ms(0)
            return PAGE_IDS.index(page), action
        if action == "pull":
            self.resident.card.present = False
            await asyncio.sleep_ms(0)
            return None
        await asyncio.sleep_ms(timeout_ms)
        return None


class FakePrinter:
    """paper: "ok" or "out"; faults: reasons raised by successive print_receipt calls (None:
    print). "paper_out" and "paper_out_during" also leave the paper out, as a roll that ran out
    would; faults other than *_during and "unconfirmed" come before a byte is taken, as the
    real driver refuses them."""

    def __init__(self, paper="ok", faults=None, reload_after=None, runs_out_after=None):
        self.paper = paper
        self.faults = list(faults or [])
        self.reload_after = reload_after  # status polls with the paper out before a clerk loads it
        self.runs_out_after = runs_out_after  # status polls before the roll runs out while idle
        # The ESC/POS bytes of each receipt printed whole, as the chunks the kiosk sent, in
        # lists of at most 32 (no block larger than 256 bytes): joined only for the report,
        # outside the board's heap (the paper is not in it). See receipt_bytes.
        self.receipts = []

    async def status(self):
        await asyncio.sleep_ms(0)
        if self.runs_out_after is not None:
            self.runs_out_after -= 1
            if self.runs_out_after < 0:
                self.paper = "out"
                self.runs_out_after = None
        if self.paper == "out" and self.reload_after is not None:
            self.reload_after -= 1
            if self.reload_after < 0:
                self.paper = "ok"
                self.reload_after = None
        return {"online": True, "paper": self.paper, "cover_open": False, "error": False}

    async def print_receipt(self, chunks):
        await asyncio.sleep_ms(0)
        if self.paper == "out":
            raise PrinterError("paper_out")
        fault = self.faults.pop(0) if self.faults else None
        if fault and fault.startswith("paper_out"):
            self.paper = "out"  # the roll ran out (before this receipt, or during it)
        if fault and not (fault.endswith("_during") or fault == "unconfirmed"):
            raise PrinterError(fault)  # refused before a byte is sent, as the real driver does
        data = []
        for chunk in chunks:
            if not data or len(data[-1]) == 32:
                data.append([])
            data[-1].append(chunk)
        if fault:
            raise PrinterError(fault)
        self.receipts.append(data)
        return await self.status()


def receipt_bytes(receipt):
    """A receipt FakePrinter printed, as one bytes object."""
    return b"".join([chunk for chunks in receipt for chunk in chunks])


def breakdown(total, assistance="none"):
    """A plausible one-stop split of a bill (integer fen): the funds pay, the rest is own-pay;
    for a special-hardship (tekun) resident medical assistance pays all the rest."""
    hifp = total * 60 // 100
    hifmi = total * 10 // 100
    maf = total - hifp - hifmi if assistance == "tekun" else total * 5 // 100
    funds = hifp + hifmi + maf
    return {"medfee_sumamt": total, "fulamt_ownpay_amt": 0, "preselfpay_amt": 0,
            "inscp_scp_amt": total, "act_pay_dedc": 0, "hifp_pay": hifp, "hifmi_pay": hifmi,
            "maf_pay": maf, "fund_pay_sumamt": funds, "psn_cash_pay": total - funds}


class FakeGateway:
    """What app.link.GatewayLink.call gives the session, from a ledger kept in `state` (plain
    values, handed back to the test and passed in again after a simulated reboot).

    faults: request type -> list of faults for its successive calls: "unreachable" (no answer,
    nothing done), "untrusted" (answers, none signed by the pinned gateway key; nothing done),
    "lost_reply" (done, but the answer never arrives), "error:CODE" (refused), "bad_signature"
    (a settlement signed by another key), "memory_error" (MemoryError, nothing sent),
    "flash_full" (OSError 28, no space left, as the counter's write raises it; nothing sent),
    "card_swapped" (answered; meanwhile the card is taken out and another put in: `card` is
    the FakeCard), "card_put_in" (answered; meanwhile a card is put in), "spoofed_error:CODE"
    (done, but in place of the answer comes a gateway-signed error about an unauthenticated
    frame, which echoes no request: one captured earlier, put on the link by a man in the
    middle), "duplicated" (done, by a copy of the frame a man in the middle sent first; the
    answer to the frame itself, refused "replay" as its counter was seen, is what comes back),
    "ok" (no fault)."""

    def __init__(self, kiosk_id, people, state=None, faults=None, price_change=0):
        self.kiosk_id = kiosk_id
        self.people = people  # ssn -> {"person": {...}, "bills": [...]}
        self.state = state or {"settlements": {}, "bills_settled": {}, "printed": [],
                               "setl_seq": 0}
        self.faults = faults or {}
        self.price_change = price_change  # added to psn_cash_pay between pre_settle and settle
        self.calls = []
        self.attempts = []  # what each call asked for (0: the configured number)
        self.signed_in = False
        self._key = gateway_key()
        self.card = None  # the FakeCard, for "card_swapped"

    async def sign_in(self, fw, board, attempts=0):
        await self.call("sign_in", attempts, fw=fw, board=board)
        self.signed_in = True

    async def call(self, t, attempts=0, **body):
        await asyncio.sleep_ms(0)
        self.calls.append(t)
        self.attempts.append(attempts)
        queue = self.faults.get(t)
        fault = queue.pop(0) if queue else "ok"
        if fault == "unreachable":
            self.signed_in = False
            raise GatewayUnreachable(t)
        if fault == "untrusted":
            self.signed_in = False
            raise GatewayUntrusted(t)
        if fault.startswith("error:"):
            raise GatewayError(fault[6:], "scripted")
        if fault == "memory_error":  # the heap exhausted while the request was made
            raise MemoryError("scripted")
        if fault == "flash_full":  # the request's counter could not be written: ENOSPC
            raise OSError(28)
        if fault == "card_put_in":  # someone tries the kiosk while it is out of service
            self.card.present = True
        if fault == "card_swapped":  # a slow answer, long enough for a hand to swap cards
            self.card.present = False
            await asyncio.sleep_ms(SWAP_MS)
            self.card.present = True  # another resident's card: the reader cannot tell
            await asyncio.sleep_ms(SWAP_MS)
        reply = getattr(self, "_" + t)(fault, **body)
        if fault == "lost_reply":
            self.signed_in = False
            raise GatewayUnreachable(t + ": the answer was lost")
        if fault == "duplicated":
            raise GatewayError("replay", "counter already seen")
        if fault.startswith("spoofed_error:"):
            error = GatewayError(fault[14:], "scripted")
            error.bound = False  # as app.link raises it for an error that echoes nothing
            raise error
        return reply

    # ------------------------------------------------------------ handlers
    def _sign_in(self, fault, fw, board):
        return {"t": "sign_in_reply", "sign_no": "S1", "now": NOW, "gateway": "fake",
                "policy": "test"}

    def _person(self, psn_no):
        for ssn in self.people:
            if self.people[ssn]["person"]["psn_no"] == psn_no:
                return self.people[ssn]
        raise GatewayError("unknown_person", psn_no)

    def _assistance(self, psn_no):
        return self._person(psn_no)["person"].get("assistance", "none")

    def _bill(self, psn_no, bill_id):
        for bill in self._person(psn_no)["bills"]:
            if bill["bill_id"] == bill_id:
                return bill
        raise GatewayError("unknown_bill", bill_id)

    def _person_info(self, fault, card):
        found = self.people.get(card["ssn"])
        if found is None:
            raise GatewayError("unknown_person", "no such card")
        reply = dict(found["person"])
        reply["t"] = "person_info_reply"
        return reply

    def _pending_bills(self, fault, psn_no):
        settled = self.state["bills_settled"]
        bills = [b for b in self._person(psn_no)["bills"] if b["bill_id"] not in settled]
        return {"t": "pending_bills_reply", "psn_no": psn_no, "bills": bills}

    def _pre_settle(self, fault, psn_no, bill_id):
        bill = self._bill(psn_no, bill_id)
        return {"t": "pre_settle_reply", "bill_id": bill_id,
                "result": breakdown(bill["medfee_sumamt"], self._assistance(psn_no))}

    def _settle(self, fault, psn_no, bill_id, txn_id, confirmed_cash):
        state = self.state
        if txn_id in state["settlements"]:  # a retry: the very same bytes
            return {"t": "settle_reply", "txn_id": txn_id,
                    "settlement": state["settlements"][txn_id]}
        if bill_id in state["bills_settled"]:
            raise GatewayError("bill_settled", bill_id)
        result = breakdown(self._bill(psn_no, bill_id)["medfee_sumamt"] + self.price_change,
                           self._assistance(psn_no))
        if result["psn_cash_pay"] != confirmed_cash:
            raise GatewayError("amount_changed", "now " + str(result["psn_cash_pay"]))
        state["setl_seq"] += 1
        record = {"setl_id": "SETL" + ("00000" + str(state["setl_seq"]))[-6:], "txn_id": txn_id,
                  "kiosk": self.kiosk_id, "psn_no": psn_no, "bill_id": bill_id,
                  "setl_time": NOW, "result": result}
        key = ed25519.SigningKey(bytes(32)) if fault == "bad_signature" else self._key
        settlement = messages.seal_settlement(record, GATEWAY_KID, key)
        state["settlements"][txn_id] = settlement
        state["bills_settled"][bill_id] = txn_id
        return {"t": "settle_reply", "txn_id": txn_id, "settlement": settlement}

    def _settlement_query(self, fault, txn_id):
        settlement = self.state["settlements"].get(txn_id)
        if settlement is None:
            return {"t": "settlement_query_reply", "txn_id": txn_id, "status": "not_found"}
        return {"t": "settlement_query_reply", "txn_id": txn_id, "status": "settled",
                "settlement": settlement}

    def _receipt_printed(self, fault, txn_id, setl_id):
        self.state["printed"].append(txn_id)
        return {"t": "receipt_printed_reply", "txn_id": txn_id}
