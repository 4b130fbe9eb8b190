# What each page shows: (page name, {component: text}) for drivers.display.Display.show.
# Pages and components: hardware/display-pages.json. Only components with text are given: the
# driver clears the others and hides buttons without text, so nothing from an earlier visit
# lingers.
from app import texts
from app.money import yuan
from drivers.escpos import text_width

LINES = 6
BUTTONS = 4
# A bill button is one 63-column row and 60 bytes: clinic, date and the bill's total (labelled
# 总额: a bare amount reads as what the resident is about to pay). 14 Chinese characters leave
# room for the largest amount; a longer name ends in "…", so it is not mistaken for another
# clinic.
CLINIC_CHARS = 14
# The confirm page's first line, clinic and date, is a body line: 31 Chinese characters.
CONFIRM_CLINIC_CHARS = 26
LABEL_COLUMNS = 35  # the confirm page's amounts line up after the longest label
AMOUNT_COLUMNS = 13  # 99,999,999.99: a line is 48 columns, as wide as the simulator's box


def _page(page, title, lines=(), big="", buttons=()):
    shown = {"t_zh": title[0], "t_en": title[1]}
    if big:
        shown["big"] = big
    for i in range(min(len(lines), LINES)):
        if lines[i]:
            shown["l%d" % i] = lines[i]
    for i in range(min(len(buttons), BUTTONS)):
        shown["b%d" % i] = buttons[i]
    return page, shown


def _notice(page, words):
    return _page(page, words[:2], words[2:])


def welcome(paper_low=False):
    """`paper_low`: the roll is near its end; a line for the staff at the bottom."""
    if not paper_low:
        return _notice("welcome", texts.WELCOME)
    return _page("welcome", texts.WELCOME[:2], texts.WELCOME[2:] + ("", "") + texts.PAPER_LOW)


def reading():
    return _notice("reading", texts.READING)


def lookup():
    return _notice("processing", texts.LOOKUP)


def pricing():
    return _notice("processing", texts.PRICING)


def settling():
    return _notice("processing", texts.SETTLING)


def checking():
    return _notice("processing", texts.CHECKING)


def printing(saved=False):
    return _notice("printing", texts.REPRINTING if saved else texts.PRINTING)


def _clinic(bill, chars):
    """The clinic's name in at most `chars` characters, a cut one ending in "…"."""
    clinic = bill["fixmedins_name"]
    return clinic if len(clinic) <= chars else clinic[:chars - 1] + "…"


def bill_button(bill):
    clinic = _clinic(bill, CLINIC_CHARS)
    return "%s %s %s%s%s" % (clinic, bill["date"], texts.BILL_TOTAL, yuan(bill["medfee_sumamt"]),
                             texts.YUAN)


def bills(name, bill_list):
    """The bills page: one button per bill (b0..b3); more than four are left to the counter."""
    lines = [texts.HELLO[0] % name, texts.HELLO[1] % name]
    extra = len(bill_list) - BUTTONS
    if extra > 0:
        lines.append(texts.MORE_BILLS[0] % extra)
        lines.append(texts.MORE_BILLS[1] % extra)
    while len(lines) < 4:
        lines.append("")
    lines.append(texts.LEAVE[0])
    lines.append(texts.LEAVE[1])
    buttons = [bill_button(b) for b in bill_list[:BUTTONS]]
    return _page("bills", texts.BILLS, lines, buttons=buttons)


def share_line(words, fen):
    """Label, then the amount flush right in its column (the panel's ASCII is fixed-width, a
    Chinese character two columns), so the figures line up as on the receipt."""
    label = "%s %s" % words
    amount = yuan(fen)
    return "%s%s%s" % (label, " " * max(1, LABEL_COLUMNS - text_width(label)),
                       " " * max(0, AMOUNT_COLUMNS - len(amount)) + amount)


def confirm(bill, result):
    """The bill's total, each fund's share (the receipt's order), and in large digits what
    the resident pays."""
    lines = [
        "%s %s" % (_clinic(bill, CONFIRM_CLINIC_CHARS), bill["date"]),
        share_line(texts.TOTAL, result["medfee_sumamt"]),
        share_line(texts.BASIC, result["hifp_pay"]),
        share_line(texts.SERIOUS, result["hifmi_pay"]),
        share_line(texts.ASSISTANCE, result["maf_pay"]),
        "%s %s" % texts.YOU_PAY,
    ]
    return _page("confirm", texts.CONFIRM, lines, yuan(result["psn_cash_pay"]),
                 (texts.CONFIRM_BUTTON, texts.CANCEL_BUTTON))


def more_time(seconds):
    """The countdown strip's text, both lines (0 seconds: hidden)."""
    if seconds <= 0:
        return ""
    return "%s\n%s" % (texts.MORE_TIME[0] % seconds, texts.MORE_TIME[1] % seconds)


def done(result, others=0):
    """`others`: the resident's bills still waiting, which the card settles when it goes in
    again (a resident who chose one of three would otherwise leave with two unsettled)."""
    pay = texts.PAY_AT if result["psn_cash_pay"] > 0 else texts.NOTHING_TO_PAY
    take = texts.DONE[2:] if others <= 0 else (texts.DONE_MORE[0] % others,
                                               texts.DONE_MORE[1] % others)
    lines = [take[0], take[1], pay[0], pay[1], "%s %s" % texts.YOU_PAY]
    return _page("done", texts.DONE[:2], lines, yuan(result["psn_cash_pay"]))


def error(reason, card_in=False, pay=None, waiting=False):
    """`pay`: fen, for a settlement saved without its receipt: what the resident pays, in
    large digits, since they may leave with nothing on paper. `waiting`: the kiosk goes on
    trying for a resident who stays (the printer, the gateway): they may wait, or leave."""
    words = texts.ERRORS[reason]
    leave = ("", "")
    if card_in and waiting:
        leave = texts.WAIT_OR_LEAVE if pay is None else texts.WAIT_OR_LEAVE_RECEIPT
    elif card_in:
        leave = texts.TAKE_THIS_CARD if reason == "wrong_card" else texts.TAKE_CARD
    if pay is None:
        return _page("error", words[:2], (words[2], words[3], "", "") + leave)
    # the amount's label last (l5), right above the amount in large digits
    return _page("error", words[:2], (words[2], words[3]) + leave + ("", "%s %s" % texts.YOU_PAY),
                 yuan(pay))


def out_of_service(reason, card_in=False, receipt_waits=False):
    """`card_in`: a card went in meanwhile; its holder is told to take it back.
    `receipt_waits`: a settled receipt waits for the printer (texts.RECEIPT_WAITS)."""
    waits = texts.RECEIPT_WAITS.get(reason) if receipt_waits else None
    lines = texts.OUT_OF_SERVICE_REASONS[reason] + (waits or ("", ""))
    if card_in:
        lines = lines + texts.TAKE_CARD
    return _page("error", texts.OUT_OF_SERVICE, lines)


def take_card(restarted=False):
    """`restarted`: the card was in the slot as the kiosk started (see texts.RESTARTED)."""
    return _page("done", texts.TAKE_CARD, texts.RESTARTED if restarted else ())
