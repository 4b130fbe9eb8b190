# Finishing what the journal says is unfinished: at boot, and again whenever the kiosk is idle.
#
#   pending  -> settlement_query: settled   -> journal settled, then print and report as below
#                                 not_found -> journal aborted (the settle never happened;
#                                              a card still in is told "Not settled")
#                                 cancelled -> journal aborted (an operator reversed it)
#                                 no answer -> stays pending; asked again later
#               A pending txn is never settled from here, only asked about. The resident who
#               confirmed it has gone (the power was cut, or the session ended in doubt):
#               settling now would commit their money with nobody to take the receipt, perhaps
#               after they have paid at the counter instead. They can start again at any kiosk.
#   settled  -> print the receipt once the printer is ready -> journal printed
#   printed  -> receipt_printed -> journal done (if unanswered, retried later; not blocking)
#
# While a txn is in doubt, or a settled receipt waits for the printer, the kiosk takes no new
# card. In doubt: every session needs the gateway anyway, and resolving first means a resident
# can never settle a bill again while its first settlement is still unknown. Waiting receipt:
# a new settlement could not get its receipt either.
from app import journal as J
from app import screens
from app import txn as T

ACTIONS = {J.PENDING: "query", J.SETTLED: "print", J.PRINTED: "report"}


def plan(entries):
    """[(txn_id, action)] for the open txns, oldest first: what recovery will do."""
    return [(e["txn_id"], ACTIONS[e["state"]]) for e in entries]


async def finish_open(kiosk):
    """Work through the open txns; returns why no new card may be taken, or None. A step of
    its own in the heap log ("recovery"): it may verify a settlement and print a receipt."""
    entries = kiosk.journal.open_txns()
    if not entries:
        return None
    kiosk.heap.step("recovery")
    blocked = None
    # Once the gateway has not answered, the rest of this pass asks it nothing: each unanswered
    # call costs the link's timeouts and retries, and with a backlog of receipts to report a
    # new resident would wait for all of them. They are asked again next pass.
    away = [False]
    for entry in entries:
        reason = await _finish(kiosk, entry, away)
        if reason is not None and blocked is None:
            blocked = reason
    del entries, entry
    kiosk.heap.step(None)
    return blocked


async def _finish(kiosk, entry, away):
    txns = kiosk.txns
    if entry["state"] == J.PENDING:
        if away[0]:
            return T.IN_DOUBT
        outcome, detail = await txns.query(entry)
        kiosk.log("recovery_query", txn_id=entry["txn_id"], outcome=outcome, detail=detail
                  if isinstance(detail, str) else None)
        if outcome == T.ABORTED:
            if kiosk.doubt_card_in and await kiosk.card_present(False):
                # The card in since the doubt (the visit ended in doubt with them waiting, or
                # the power came back with it in): its holder learns that nothing was
                # settled, not only "please take your card".
                await kiosk.show(screens.error("not_settled", True))
                await kiosk.wait_card(False, kiosk.timeouts["take_card"])
            return None
        if outcome != T.SETTLED:
            away[0] = detail == "unreachable"
            return outcome  # in_doubt or settlement_invalid
    if entry["state"] == J.SETTLED:
        problem = await kiosk.printer_problem()
        if problem is None:
            # Its resident is here only if their card has stayed in since (the power came
            # back with it in, or they wait after a doubt); else it lands in the tray for the
            # next one, who is asked to hand it to the clerk.
            unclaimed = not (kiosk.doubt_card_in and await kiosk.card_present(False))
            await kiosk.show(screens.printing(saved=True))
            problem = await txns.print_receipt(entry, unclaimed)
            if problem is None and not unclaimed:
                # Its resident is here (after a blackout, or a doubt resolved): the visit's
                # own done page, settled and what to pay, until the card is taken.
                await kiosk.show(screens.done(T.record_of(entry["settlement"])["result"]))
                await kiosk.wait_card(False, kiosk.timeouts["take_card"])
        if problem is not None:
            return T.printer_reason(problem)
    if entry["state"] == J.PRINTED and not away[0]:
        away[0] = not await txns.report(entry)
    return None
