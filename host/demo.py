"""`kiosk demo`: one resident's whole settlement, end to end, on a fresh machine.

It starts a gateway on an SQLite ledger in a work directory, seeds the demo residents, provisions
and enrolls a kiosk, boots the real firmware under the MicroPython unix port (64 KB data heap,
precompiled as for a board) wired to the card reader, printer and display simulators over
simulated 115200-baud UARTs, and walks the resident through card → bills → confirm → settle →
receipt, printing each screen as it appears and the receipt as printed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import stat
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import IO, Any

from onestop.host.signals import exit_on_stop_signals

RESIDENTS_FILE = Path(__file__).resolve().parent / "sim" / "demo_residents.json"
DEFAULT_RESIDENT = "P002"  # dibao, off-site with a referral: all three funds pay


def demo_residents() -> dict[str, dict[str, Any]]:
    data = json.loads(RESIDENTS_FILE.read_text(encoding="utf-8"))
    return {r["psn_no"]: r for r in data["residents"]}


def residents_epilog() -> str:
    """The simulated residents, for the --help of the commands that take --resident."""
    return "residents: " + "; ".join(f"{k} {v['name']} ({v['note']})"
                                     for k, v in demo_residents().items())


def register(sub: argparse._SubParsersAction) -> None:
    residents = demo_residents()
    parser = sub.add_parser(
        "demo", help="a resident's whole settlement, end to end, in simulation",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=residents_epilog(),
    )
    parser.add_argument("--headless", action="store_true",
                        help="plain terminal output (the only mode in this build)")
    parser.add_argument("--resident", default=DEFAULT_RESIDENT, choices=sorted(residents),
                        metavar="ID", help=f"whose card is inserted (default {DEFAULT_RESIDENT})")
    parser.add_argument("--workdir", type=Path,
                        help="where the ledger, keys, kiosk flash and receipt go "
                             "(default: a new temporary directory)")
    parser.add_argument("--capture", type=Path, metavar="FILE",
                        help="write every kiosk-gateway frame as JSON lines (they hold the "
                        "residents' names and full ID numbers: the file is the owner's only)")
    parser.set_defaults(func=run)


class ScreenPrinter:
    """Prints each screen once, as the resident sees it appear."""

    def __init__(self) -> None:
        self.last = ""
        self.page = ""
        self.start = time.monotonic()
        self.printed = threading.Condition()

    def __call__(self, display: Any) -> None:
        text = display.render_text()
        if text != self.last:
            self.last = text
            elapsed = time.monotonic() - self.start
            print(f"\n[{elapsed:5.1f} s] screen: {display.page}\n{text}", flush=True)
        with self.printed:
            self.page = display.page
            self.printed.notify_all()

    def wait_shown(self, page: str, timeout: float = 5.0) -> None:
        """Narrate after the screen it refers to is on the terminal."""
        with self.printed:
            self.printed.wait_for(lambda: self.page == page, timeout)


# What a demo leaves in its work directory; a new run in the same directory moves these aside
# (never anything else), so it starts again from the demo residents' unsettled bills.
LOCK_FILE = "demo.lock"  # held while a demo runs in the directory
DEMO_FILES = ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm",
              "ledger.sqlite-writer.lock", "gateway.key", "gateway.log", "flash", "stage",
              "receipt.png", "firmware.log", "receipts", "bills")


def set_aside_previous_demo(workdir: Path) -> Path | None:
    present = [name for name in DEMO_FILES if (workdir / name).exists()]
    if not present:
        return None
    aside = workdir / time.strftime("previous-%Y%m%d-%H%M%S")
    aside.mkdir()
    for name in present:
        (workdir / name).rename(aside / name)
    return aside


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


class DemoRefused(Exception):
    """The demo cannot start here (said in one line)."""


def claim_workdir(workdir: Path) -> IO[str]:
    """The work directory, made if missing and locked for this demo (the open lock file; the
    lock goes when it is closed or the process ends). A second demo in the same directory
    would set this one's live ledger and kiosk aside under it."""
    if workdir.exists() and not workdir.is_dir():
        raise DemoRefused(f"--workdir {workdir}: not a directory")
    theirs = [name for name in DEMO_FILES if (workdir / name).exists()]
    if theirs and not (workdir / LOCK_FILE).exists():
        # Every demo leaves its lock file: without it, these are no demo's (a real gateway's
        # ledger and key, say), and a demo would move them aside and put its own in their place.
        raise DemoRefused(f"--workdir {workdir}: it holds {', '.join(theirs[:3])} that no demo "
                          "made (a demo moves aside only its own files): give an empty or new "
                          "folder")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        lock = open(workdir / LOCK_FILE, "a", encoding="utf-8")  # held while the demo runs
    except OSError as exc:
        raise DemoRefused(f"--workdir {workdir}: {exc.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DemoRefused(f"--workdir {workdir}: another demo is running there (kiosk demo or "
                          "kiosk tui); wait for it or give another --workdir") from None
    return lock


def run(args: argparse.Namespace) -> int:
    exit_on_stop_signals()  # `kill` or a closed terminal: the gateway and kiosk stop too
    try:
        return _run(args)
    except DemoRefused as exc:
        print(f"kiosk demo: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from onestop.host.fwtools import FirmwareToolError
    from onestop.host.sim.receipt_render import render_png
    from onestop.host.sim.rig import Hall, RigError

    resident = demo_residents()[args.resident]
    workdir: Path = (args.workdir or Path(tempfile.mkdtemp(prefix="kiosk-demo-"))).resolve()
    print(f"Onestop demo: {resident['name']} ({args.resident}), {resident['note']}")
    print(f"work directory: {workdir}")
    lock = claim_workdir(workdir)
    capture = None
    hall = None
    try:
        if args.capture:
            try:
                # the frames hold the residents' names and full ID numbers: owner only
                fd = os.open(args.capture, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                             0o600)
                try:
                    if stat.S_ISREG(os.fstat(fd).st_mode):  # not /dev/null, say
                        os.fchmod(fd, 0o600)  # a file that was there keeps its mode otherwise
                    capture = open(fd, "w", encoding="utf-8")
                except OSError:
                    os.close(fd)
                    raise
            except OSError as exc:
                raise DemoRefused(f"--capture {args.capture}: {exc.strerror}") from None
        aside = set_aside_previous_demo(workdir)
        if aside is not None:
            print(f"an earlier demo's ledger and kiosk were moved to {aside}")
        print("starting the gateway, the simulated devices and the kiosk firmware ...",
              flush=True)
        screens = ScreenPrinter()
        hall = Hall(workdir, capture=capture, on_screen=screens)
        firmware = hall.boot()
        firmware.wait_event("idle")
        screens.wait_shown("welcome")
        print(f"\n>>> {resident['name']} inserts the social-security card", flush=True)
        hall.insert(args.resident)
        if not hall.display.wait_for(lambda d: d.page in ("bills", "error"), 60):
            raise RigError("the kiosk showed neither the bills nor an error:\n" + hall.story())
        screens.wait_shown(hall.display.page)
        expired = card_expired(resident)
        if hall.display.page == "error":
            if expired:  # what this resident is in the demo for
                print(f"\nThe kiosk refused this card, as it must: it expired on "
                      f"{resident['expiry']}. Nothing was settled.")
                return 0
            print("\nThe kiosk refused this card (shown above); nothing was settled.")
            return 1
        if expired:
            print(f"\ndemo failed: the kiosk accepted a card that expired on {resident['expiry']}",
                  file=sys.stderr)
            return 1
        print("\n>>> touches the first bill", flush=True)
        hall.touch("b0")
        hall.wait_page("confirm")
        screens.wait_shown("confirm")
        print("\n>>> touches 确认 Confirm", flush=True)
        hall.touch("b0")
        firmware.wait_event("txn_done", 60)
        hall.wait_page("done")
        screens.wait_shown("done")
        print("\n>>> takes the card and the receipt", flush=True)
        hall.card.pull()
        hall.wait_page("welcome")
        screens.wait_shown("welcome")
        return report(hall, workdir, args, render_png)
    except (RigError, FirmwareToolError, OSError) as exc:  # OSError: the work directory
        # read-only, full, gone; FirmwareToolError: the firmware could not be built or provisioned
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if hall is not None:
            hall.close()
        if capture:
            capture.close()
        lock.close()


def card_expired(resident: dict[str, Any]) -> bool:
    """Whether the resident's card is past its expiry date today (the kiosk must refuse it)."""
    return date.fromisoformat(resident["expiry"]) < date.today()


def report(hall: Any, workdir: Path, args: argparse.Namespace, render_png: Any) -> int:
    (receipt,) = hall.receipts()
    (settlement,) = hall.settlements()
    png = render_png(receipt, workdir / "receipt.png")
    result = settlement.result
    print("\n========== the receipt, as printed ==========")
    print(receipt.text())
    print("=============================================")
    print(f"receipt image:     {png}")
    print(f"settlement:        {settlement.setl_id} (txn {settlement.txn_id})")
    for label, field in (("total", "medfee_sumamt"), ("basic insurance", "hifp_pay"),
                         ("serious illness", "hifmi_pay"), ("medical assistance", "maf_pay"),
                         ("resident pays", "psn_cash_pay")):
        print(f"  {label:<19}{yuan(result[field]):>14} yuan")
    ledger = workdir / "ledger.sqlite"
    print(f"ledger:            {ledger}")
    print(f"the keys:          kiosk keys list --db {shlex.quote(str(ledger))} --json")
    print(f"at the counter:    kiosk gateway lookup --db {shlex.quote(str(ledger))} "
          f"--txn-id {settlement.txn_id}")
    print(f"frames on the kiosk-gateway link: {hall.tap.frames}"
          + (f", written to {args.capture}" if args.capture else ""))
    return 0
