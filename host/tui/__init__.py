"""`kiosk tui`: a whole simulated kiosk on one terminal, driven by hand (no hardware).

The gateway (SQLite ledger with the demo residents), the card reader, printer and touch display
simulators and the real MicroPython kiosk firmware, as `kiosk demo` runs them; the resident's
screen, the receipt and the firmware's log on the left and below, the controls on the right.
Textual is imported only when the command runs, so `kiosk --help` stays quick.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from onestop.host.demo import DEFAULT_RESIDENT, DemoRefused, claim_workdir, demo_residents
from onestop.host.signals import exit_on_stop_signals


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "tui", help="a whole simulated kiosk in the terminal, driven by hand",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="keys: i insert card, o take card out, 1-4 touch a button, p paper out/load, "
               "g stop/start gateway, q quit",
    )
    parser.add_argument("--workdir", type=Path,
                        help="where the ledger, keys and kiosk flash go; an earlier run's "
                             "files are moved aside (default: a new temporary directory)")
    parser.add_argument("--resident", default=DEFAULT_RESIDENT, choices=sorted(demo_residents()),
                        metavar="ID", help=f"whose card is selected (default {DEFAULT_RESIDENT})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    exit_on_stop_signals()  # until the app takes SIGTERM/SIGHUP over, and after it ends
    workdir: Path = (args.workdir or Path(tempfile.mkdtemp(prefix="kiosk-tui-"))).resolve()
    try:
        lock = claim_workdir(workdir)
    except DemoRefused as exc:
        print(f"kiosk tui: {exc}", file=sys.stderr)
        return 1
    from onestop.host.tui.app import KioskTui  # Textual is slow to import

    app = KioskTui(workdir, args.resident)
    try:
        status = app.run()
    finally:
        app.close_hall()  # a crash or a signal: no gateway or MicroPython left running
        lock.close()
    return int(status or 0)
