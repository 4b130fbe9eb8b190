"""`kiosk tui`: a whole simulated kiosk on one terminal, driven by hand (no hardware).

The gateway (SQLite ledger with the demo residents), the card reader, printer and touch display
simulators and the real MicroPython kiosk firmware, as `kiosk demo` runs them; the resident's
screen, the receipt and the firmware's log on the left and below, the controls on the right.
Textual is imported only when the command runs, so `kiosk --help` stays quick.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from onestop.host.demo import (
    DEFAULT_RESIDENT,
    DemoRefused,
    claim_workdir,
    demo_residents,
    residents_epilog,
)
from onestop.host.signals import exit_on_stop_signals
from onestop.host.tui.keys import help_lines


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "tui", help="a whole simulated kiosk in the terminal, driven by hand",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="keys:\n" + "\n".join(help_lines()) + f"\n\n{residents_epilog()}",
    )
    parser.add_argument("--workdir", type=Path,
                        help="where the ledger, keys and kiosk flash go; an earlier run's "
                             "files are moved aside (default: a new temporary directory, "
                             "removed at exit unless --keep)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary work directory at exit (its path is printed)")
    parser.add_argument("--resident", default=DEFAULT_RESIDENT, choices=sorted(demo_residents()),
                        metavar="ID", help=f"whose card is selected (default {DEFAULT_RESIDENT})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    exit_on_stop_signals()  # until the app takes SIGTERM/SIGHUP over, and after it ends
    made_here = args.workdir is None
    workdir: Path = (args.workdir or Path(tempfile.mkdtemp(prefix="kiosk-tui-"))).resolve()
    try:
        lock = claim_workdir(workdir)
    except DemoRefused as exc:
        print(f"kiosk tui: {exc}", file=sys.stderr)
        if made_here:
            shutil.rmtree(workdir, ignore_errors=True)
        return 1
    if made_here and args.keep:  # said now too: the terminal may be gone at the end
        say(f"kiosk tui: the work directory is {workdir} (kept at exit: --keep)")
    from onestop.host.tui.app import KioskTui  # Textual is slow to import

    app = KioskTui(workdir, args.resident)
    status = 1  # unless the app says otherwise: a signal or an error ended it
    done = False

    def finish(status: int) -> None:
        """Once, whichever way the app ends: its hall closed, the directory let go and, if
        it was made here, removed unless kept."""
        nonlocal done
        if done:
            return
        done = True
        app.close_hall()  # a crash or a signal: no gateway or MicroPython left running
        lock.close()
        if made_here:
            tidy_workdir(workdir, remove=not args.keep and removable(app, status))

    app.before_exit = finish  # the app's last resort when a stop signal's quit hangs
    try:
        app.run()
        status = exit_status(app)
    finally:
        finish(status)
    return status


def removable(app: Any, status: int) -> bool:
    """Whether the temporary work directory goes at exit (without --keep): after q, or after a
    stop signal (a closed terminal window or ssh session, `kill`): nobody could read where it
    was kept, and it holds the residents' names and ID numbers and the gateway's key. Kept
    after a failure a technician quit with q (the path is printed) to look into."""
    return status == 0 or app.stop_signal is not None


def say(message: str) -> None:
    """A line on stderr, if there is still a terminal to take it (a closed one gives EIO)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass


def exit_status(app: Any) -> int:
    """The command's exit status: the app's own, or non-zero if it ended on an exception
    (then Textual's run() returns None, with its return_code 1)."""
    if app.return_code:
        return int(app.return_code)
    return int(app.return_value or 0)


def tidy_workdir(workdir: Path, remove: bool) -> None:
    """Remove the temporary work directory the TUI made, else say where it is (after a failure
    its gateway.log and the kiosk's flash tell what happened)."""
    if remove:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        say(f"kiosk tui: the work directory is {workdir}")
