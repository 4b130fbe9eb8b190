"""Every key of `kiosk tui`, in one table: the app's bindings, its help screen (? or F1), its
faults panel (f) and `kiosk tui --help` are all made from it. No Textual here, so `kiosk
--help` stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass

RESIDENT = "The resident"
PRINTER = "The printer"
KIOSK = "The kiosk and its cables"
GATEWAY = "The gateway"
SESSION = "This simulator"
GROUPS = (RESIDENT, PRINTER, KIOSK, GATEWAY, SESSION)


@dataclass(frozen=True)
class Key:
    keys: str  # Textual key names, comma-separated ("pagedown,right_square_bracket")
    shown: str  # as a person reads it ("PgDn ]")
    action: str  # the app's action ("touch(0)")
    does: str  # what it does, on the help screen and as the binding's tooltip
    group: str
    fault: bool = False  # a fault to cause and undo: also on the faults panel (f)
    name: str = ""  # a fault's name on the faults panel and in the status line


KEYS: tuple[Key, ...] = (
    Key("i", "i", "insert", "insert the selected resident's card (the list at the top right; "
        "a / A selects another)", RESIDENT),
    Key("a", "a", "resident(1)", "select the next demo resident in the list, whose card i "
        "inserts; a card already in the slot stays in: the choice is for the next card "
        "inserted", RESIDENT),
    Key("A", "A", "resident(-1)", "select the previous demo resident in the list (as a)",
        RESIDENT),
    Key("o", "o", "pull", "take the card out of the slot", RESIDENT),
    *(Key(str(n + 1), str(n + 1), f"touch({n})", f"touch on-screen button {n + 1}", RESIDENT)
      for n in range(4)),
    Key("0", "0", "more_time", "touch the countdown strip over the titles (a bills or confirm "
        "page's last 30 s): the page waits its whole time again", RESIDENT),
    Key("w", "w", "wrong_card", "insert a wrong card: a bank card, no social-security "
        "application on it", RESIDENT, fault=True,
        name="wrong card in"),
    Key("m", "m", "mute_card", "insert a mute card: it never answers (dirty or broken "
        "contacts)", RESIDENT, fault=True,
        name="mute card in"),
    Key("y", "y", "pull_mid_read", "card pulled out mid-read: arm for the next card read, "
        "or disarm", RESIDENT, fault=True,
        name="card pulled mid-read"),
    Key("p", "p", "paper", "paper out / load a new roll", PRINTER, fault=True,
        name="paper out"),
    Key("e", "e", "paper_ends", "paper runs out during the next receipt (10 lines left on "
        "the roll), or a full roll again", PRINTER, fault=True,
        name="paper ends mid-receipt"),
    Key("n", "n", "near_end", "paper near end / new roll (the near-end sensor)", PRINTER,
        fault=True,
        name="paper near end"),
    Key("c", "c", "cover", "open / close the printer's cover", PRINTER, fault=True,
        name="printer cover open"),
    Key("k", "k", "power", "cut the kiosk's power / power it on (same flash: the journal's "
        "recovery finishes what was interrupted)", KIOSK, fault=True,
        name="power cut"),
    Key("s", "s", "screen_cable", "unplug / plug in the touch screen's cable (plugged in, "
        "the screen restarts)", KIOSK, fault=True,
        name="screen cable unplugged"),
    Key("z", "z", "card_line_noise", "noise on the card reader's line (a bad cable) on / off",
        KIOSK, fault=True,
        name="noise on the card reader's line"),
    Key("x", "x", "printer_line_noise", "noise on the printer's line (a bad cable) on / off",
        KIOSK, fault=True,
        name="noise on the printer's line"),
    Key("v", "v", "screen_line_noise", "noise on the touch screen's line (a bad cable) on / "
        "off", KIOSK, fault=True,
        name="noise on the screen's line"),
    Key("g", "g", "gateway", "stop the gateway (in order) / start it", GATEWAY, fault=True,
        name="gateway stopped"),
    Key("G", "G", "gateway_kill", "kill the gateway (kill -9: its machine died); g starts it",
        GATEWAY, fault=True,
        name="gateway killed (-9)"),
    Key("l", "l", "replies_lost", "the network loses the gateway's replies (the link cut one "
        "way; requests still arrive) on / off", GATEWAY, fault=True,
        name="gateway's replies lost"),
    Key("b", "b", "new_bills", "new bills for every demo resident, dated today (as imported "
        "by kiosk gateway import-bills)", SESSION),
    Key("f", "f", "faults", "the faults panel: each fault's state, a button for each",
        SESSION),
    Key("r", "r", "receipt", "the receipt in the whole left column, or the touch screen back",
        SESSION),
    Key("pagedown,right_square_bracket", "PgDn ]", "receipt_scroll(1)",
        "scroll the receipt down", SESSION),
    Key("pageup,left_square_bracket", "PgUp [", "receipt_scroll(-1)",
        "scroll the receipt up", SESSION),
    Key("question_mark,f1", "? F1", "help", "this help", SESSION),
    Key("q", "q", "quit", "quit (a temporary work directory is removed unless --keep)",
        SESSION),
)

FAULT_KEYS: tuple[Key, ...] = tuple(key for key in KEYS if key.fault)


def help_lines(width: int = 78) -> list[str]:
    """Every key under its group's heading, for the help screen and `kiosk tui --help`."""
    lines: list[str] = []
    column = max(len(key.shown) for key in KEYS) + 2
    for group in GROUPS:
        lines.append(group)
        for key in KEYS:
            if key.group == group:
                lines.extend(_wrapped(key.shown.ljust(column), key.does, width))
        lines.append("")
    return lines[:-1]


def _wrapped(head: str, text: str, width: int) -> list[str]:
    """`head` then `text` broken at spaces, continuation lines under the text's start."""
    rows: list[str] = []
    row = "  " + head
    indent = " " * len(row)
    for word in text.split():
        if len(row) + 1 + len(word) > width and row.strip() != head.strip():
            rows.append(row)
            row = indent + word
        else:
            row += ("" if row.endswith(" ") else " ") + word
    rows.append(row)
    return rows
