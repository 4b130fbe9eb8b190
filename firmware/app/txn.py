# One settlement from the resident's "confirm" to done, shared by the live session and by
# recovery after a reboot. Each step is written to the journal so it is never done twice:
#     begin   journal pending (before anything is sent)
#     settle  settle -> verify the gateway-signed settlement -> journal settled
#     query   settlement_query, for a txn whose settle has no known outcome
#     print   print the receipt -> journal printed
#     report  receipt_printed -> journal done
import os

from app import receipt
from app.link import GatewayError, GatewayUnreachable
from drivers.escpos import PrinterError
from onestop.protocol import cbor, cose
from onestop.protocol.errors import ProtocolError

SETTLED = "settled"
ABORTED = "aborted"  # the settle certainly did not happen
IN_DOUBT = "in_doubt"  # it may have: only a settlement_query can tell
INVALID = "settlement_invalid"  # the gateway's answer failed verification

# Refusals that may come from a gateway that failed after committing the settlement, and
# "replay": the gateway had seen the frame's counter, maybe on a copy of this very frame that
# settled (a man in the middle sends it twice, or to two gateways of one ledger, and hands back
# the second answer). No better than no answer at all. Every other refusal means the ledger
# was not changed.
IN_DOUBT_CODES = ("internal", "unavailable", "replay")


def record_of(settlement):
    """The settlement_record inside a settlement already verified and journaled (no re-check)."""
    return cbor.loads(cose.decode1(settlement).payload)


def printer_problem(status):
    """Why the printer cannot print now (a PrinterError reason), or None."""
    if not status["online"]:
        return "offline"
    if status["cover_open"]:
        return "cover_open"
    if status["paper"] == "out":
        return "paper_out"
    if status["error"]:
        return "error"
    return None


def printer_reason(code):
    """The screen for a printer problem: paper is the one a resident or clerk can fix."""
    if code.startswith("paper_out"):
        return "paper_out"
    return "printer_fault"


class Transactions:
    def __init__(self, journal, link, printer, open_settlement, kiosk_id, counter, log,
                 hall=""):
        self.journal = journal
        self.link = link
        self.printer = printer
        self.open_settlement = open_settlement  # bytes -> settlement_record, checks the signature
        self.kiosk_id = kiosk_id
        self.hall = hall  # printed on each receipt, under its title
        self.counter = counter
        self.log = log

    def new_txn_id(self):
        """Kiosk id, a counter value (never reused) and a random tail: unique forever, e.g.
        K0001-000123-ab12 (the random tail guards against a kiosk whose flash was restored)."""
        return "%s-%06d-%02x%02x" % ((self.kiosk_id, self.counter.next()) + tuple(os.urandom(2)))

    def begin(self, person, bill, cash):
        txn_id = self.new_txn_id()
        entry = self.journal.pending(txn_id, person["psn_no"], bill["bill_id"], cash,
                                     person["name"], person["ssn_masked"],
                                     bill["fixmedins_name"], bill["date"])
        self.log("txn_pending", txn_id=txn_id, bill_id=bill["bill_id"], cash=cash)
        return entry

    async def settle(self, entry):
        """(outcome, detail): (SETTLED, record) or (ABORTED | IN_DOUBT | INVALID, reason)."""
        try:
            reply = await self.link.call("settle", psn_no=entry["psn_no"],
                                         bill_id=entry["bill_id"], txn_id=entry["txn_id"],
                                         confirmed_cash=entry["cash"])
        except GatewayError as e:
            # An error that echoes no request (e.bound False) may be a replayed one while the
            # settle went through: only a settlement_query can tell.
            if e.code in IN_DOUBT_CODES or not e.bound:
                return IN_DOUBT, e.code
            self.journal.aborted(entry["txn_id"], e.code)
            self.log("txn_aborted", txn_id=entry["txn_id"], reason=e.code)
            return ABORTED, e.code
        except GatewayUnreachable:
            return IN_DOUBT, "unreachable"
        return self._accept(entry, reply["settlement"])

    async def query(self, entry, attempts=0):
        """Resolve a txn in doubt. The settle is never sent again from here: see recovery.py.
        `attempts`: as GatewayLink.call."""
        try:
            reply = await self.link.call("settlement_query", attempts, txn_id=entry["txn_id"])
        except GatewayError as e:
            return IN_DOUBT, e.code
        except GatewayUnreachable:
            return IN_DOUBT, "unreachable"
        status = reply["status"]
        if status == "settled":
            return self._accept(entry, reply["settlement"])
        # not_found: the settle never reached the ledger; cancelled: an operator reversed it.
        # Either way there is nothing to print.
        self.journal.aborted(entry["txn_id"], status)
        self.log("txn_aborted", txn_id=entry["txn_id"], reason=status)
        return ABORTED, status

    def _accept(self, entry, settlement):
        try:
            record = self.open_settlement(settlement)
        except ProtocolError as e:
            self.log("settlement_invalid", txn_id=entry["txn_id"], reason=e.code)
            return INVALID, e.code
        mismatch = _mismatch(entry, record, self.kiosk_id)
        if mismatch:
            self.log("settlement_invalid", txn_id=entry["txn_id"], reason=mismatch)
            return INVALID, mismatch
        self.journal.settled(entry["txn_id"], settlement)
        self.log("txn_settled", txn_id=entry["txn_id"], setl_id=record["setl_id"])
        return SETTLED, record

    async def print_receipt(self, entry, unclaimed=False):
        """None once printed (journaled), else the PrinterError reason (the txn stays settled,
        so the receipt is printed again in full later). A receipt whose earlier print began
        (bytes went to the printer before paper ran out or the power was cut) says it is a
        reprint. `unclaimed`: nobody is at the kiosk for it (receipt.build)."""
        record = record_of(entry["settlement"])
        chunks = receipt.build(entry, record, self.kiosk_id, entry["print_began"], unclaimed,
                               self.hall)
        try:
            await self.printer.print_receipt(self._journaled(entry, chunks))
        except PrinterError as e:
            if e.reason != "unconfirmed":
                self.log("print_failed", txn_id=entry["txn_id"], reason=e.reason)
                return e.reason
            # All of it went out and the printer reports nothing wrong, only never said it
            # finished (some models ignore GS r). Printing again would put a receipt in the
            # tray at every try, for ever: it is taken as printed, and the log says so.
            self.log("print_unconfirmed", txn_id=entry["txn_id"])
        self.journal.printed(entry["txn_id"])
        self.log("txn_printed", txn_id=entry["txn_id"])
        return None

    def _journaled(self, entry, chunks):
        """`chunks` as the printer takes them, the journal told before the first goes out
        (the printer asks for none when it refuses a print: cover open, no paper)."""
        for chunk in chunks:
            if not entry["print_began"]:
                self.journal.printing(entry["txn_id"])
                self.log("txn_printing", txn_id=entry["txn_id"])
            yield chunk

    async def report(self, entry):
        """Tell the gateway the receipt is printed; True once the txn is done."""
        record = record_of(entry["settlement"])
        try:
            await self.link.call("receipt_printed", txn_id=entry["txn_id"],
                                 setl_id=record["setl_id"])
        except GatewayUnreachable:
            return False  # stays `printed`; retried while the kiosk is idle
        except GatewayError as e:
            if e.code in IN_DOUBT_CODES or not e.bound:
                return False  # not known to be recorded (as for a settle): sent again later
            # A refusal will not change on a retry; the resident has the receipt either way.
            self.log("report_refused", txn_id=entry["txn_id"], code=e.code)
        self.journal.done(entry["txn_id"])
        self.log("txn_done", txn_id=entry["txn_id"])
        return True


def _mismatch(entry, record, kiosk_id):
    """Which field of a verified settlement differs from what the resident confirmed, or None."""
    if record["txn_id"] != entry["txn_id"]:
        return "txn_id"
    if record["kiosk"] != kiosk_id:
        return "kiosk"
    if record["psn_no"] != entry["psn_no"]:
        return "psn_no"
    if record["bill_id"] != entry["bill_id"]:
        return "bill_id"
    if record["result"]["psn_cash_pay"] != entry["cash"]:
        return "psn_cash_pay"
    return None
