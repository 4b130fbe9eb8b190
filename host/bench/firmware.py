"""`kiosk bench firmware`: what one settlement costs the kiosk board, on the simulated hall.

The real firmware (precompiled, MicroPython unix port, 64 KB data heap) serves N residents in a
row at the simulated township hall (`onestop.host.sim.rig`): card reader, printer and display on
UARTs paced at the baud rate (115200 by default), the card reader answering with its datasheet
latencies, a real gateway behind the frame tap. The simulated resident touches the first bill and
"confirm" as soon as each page has settled (no byte for 0.1 s), and takes the card and receipt.

Printed:
- heap per session step, from the firmware's heap log (bytes above what the loaded firmware
  held before the first resident, so the session's own data, against the 64 KB data heap):
  the most any visit had allocated at the step's end, what was live when it began, the least
  left free at its end, and the smallest of the largest free blocks after it (the biggest
  buffer the next step could still allocate: what fragmentation leaves);
- bytes on each UART per settlement, each direction, from card in to the welcome page again,
  with the time they take on the wire at the baud rate; frames and bytes on the gateway link;
- card in to receipt out (median and worst), and the part after "confirm" (the resident is not
  waited on there).

Every visit must settle and print: the ledger and the printer are checked before any figure is
printed. Times are this machine's, for comparison between builds; they are never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onestop.host.demo import demo_residents

if TYPE_CHECKING:  # the rig starts processes and threads: imported when the bench runs
    from onestop.host.sim.rig import Hall

DATA_HEAP = 64 * 1024
DEFAULT_RESIDENT = "P002"  # dibao, off-site with a referral: all three funds pay
UART_ROLES = ("card", "printer", "display")
WAIT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--visits", type=int, default=3, metavar="N",
                        help="residents served one after another (default 3)")
    parser.add_argument("--resident", default=DEFAULT_RESIDENT, metavar="ID",
                        choices=sorted(demo_residents()),
                        help=f"whose card (a demo resident; default {DEFAULT_RESIDENT}); "
                             "each visit settles a new bill like their first")
    parser.add_argument("--baud", type=int, default=115200,
                        help="UART speed of the simulated devices (default 115200)")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="keep the hall here (default: a temporary directory, removed)")
    parser.add_argument("--stage", type=Path, metavar="DIR",
                        help="an already staged unix firmware (kiosk fw build --board unix)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")


@dataclasses.dataclass
class Visit:
    card_in: float = 0.0
    bills_shown: float = 0.0
    bill_touched: float = 0.0
    confirm_shown: float = 0.0
    confirmed: float = 0.0  # the Confirm button touched
    receipt_out: float = 0.0

    def kiosk_seconds(self) -> float:
        """Card in to receipt out, less the resident's reading time before each touch (at
        least the kiosk's touch guard): the kiosk's own time."""
        return ((self.bills_shown - self.card_in) + (self.confirm_shown - self.bill_touched)
                + (self.receipt_out - self.confirmed))
    uart: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    gateway: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


def run(args: argparse.Namespace) -> int:
    if args.visits < 1:
        print("kiosk bench firmware: --visits must be at least 1")
        return 2
    if args.workdir is not None:
        return _bench(args, args.workdir.resolve())
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-firmware-") as folder:
        return _bench(args, Path(folder))


def _bench(args: argparse.Namespace, folder: Path) -> int:
    from onestop.host.fwtools import FirmwareToolError
    from onestop.host.sim.card import Latency
    from onestop.host.sim.rig import Hall, RigError

    print(f"firmware bench: {args.visits} visit(s) by {args.resident}, precompiled firmware on the "
          f"MicroPython unix port with a {DATA_HEAP // 1024} KB data heap; card reader, printer "
          f"and display on UARTs paced at {args.baud} baud; card reader latencies from its "
          "datasheet; a real gateway over loopback TCP", flush=True)
    hall = Hall(folder, baud=args.baud, stage=args.stage, card_latency=Latency())
    try:
        visits = _serve(hall, args)
        problem = _check(hall, args.visits)
        if problem:
            print(f"kiosk bench firmware: {problem}")
            return 1
        figures = _figures(hall, visits)
    except RigError as exc:
        print(f"kiosk bench firmware: the hall failed: {exc}")
        return 1
    except FirmwareToolError as exc:  # a --stage for another board, or not a stage at all
        print(f"kiosk bench firmware: {exc}")
        return 1
    finally:
        hall.close()
    _print(figures)
    if args.json:
        print(json.dumps(figures, indent=1))
    return 0


def _serve(hall: Hall, args: argparse.Namespace) -> list[Visit]:
    firmware = hall.boot()
    out = threading.Event()
    visits: list[Visit] = []

    def receipt_out(_receipt: object) -> None:
        visits[-1].receipt_out = time.monotonic()
        out.set()

    hall.printer.on_receipt = receipt_out
    # The kiosk signs in as it boots, once its welcome page is up (its heartbeat's first beat):
    # a frame each way that is no visit's, let through before the first visit is counted.
    tap = hall.tap
    assert tap is not None
    deadline = time.monotonic() + WAIT_S
    while tap.frames_by_dir["g2k"] < 1:
        if time.monotonic() > deadline:
            raise _rig_error(hall, "the kiosk did not sign in at boot")
        time.sleep(0.02)
    for number in range(args.visits):
        if number:
            _another_bill(hall, args.resident, number)
        hall.wait_welcome()
        hall.reset_counters()
        out.clear()
        visit = Visit()
        visits.append(visit)
        visit.card_in = time.monotonic()
        hall.insert(args.resident)
        hall.wait_page("bills", WAIT_S)
        visit.bills_shown = time.monotonic()
        hall.touch("b0")
        visit.bill_touched = time.monotonic()
        hall.wait_page("confirm", WAIT_S)
        visit.confirm_shown = time.monotonic()
        hall.touch("b0")
        visit.confirmed = time.monotonic()
        if not out.wait(WAIT_S):
            raise _rig_error(hall, "no receipt came out")
        firmware.wait_event("txn_done", WAIT_S)
        hall.wait_page("done", WAIT_S)
        hall.card.pull()
        hall.wait_welcome()
        visit.uart = {role: {"to_device": link.bytes_to_device, "to_kiosk": link.bytes_to_host}
                      for role, link in hall.links.items()}
        visit.gateway = {way: {"frames": tap.frames_by_dir[way], "bytes": tap.bytes_by_dir[way]}
                         for way in ("k2g", "g2k")}
    return visits


def _rig_error(hall: Hall, what: str) -> Exception:
    from onestop.host.sim.rig import RigError

    return RigError(f"{what}:\n{hall.story()}")


def _another_bill(hall: Hall, psn_no: str, number: int) -> None:
    """A new pending bill like the resident's first (a clinic sent another): one per visit."""
    from onestop.host.gateway.ledger import open_ledger
    from onestop.host.sim.cards import demo_residents

    (resident,) = [r for r in demo_residents() if r["psn_no"] == psn_no]
    first = resident["bills"][0]["bill_id"]
    with closing(open_ledger(hall.db)) as ledger:
        model = ledger.get_bill(first)
        if model is None:
            raise ValueError(f"{psn_no} has no bill {first} in the ledger")
        ledger.upsert_bill(dataclasses.replace(model, bill_id=f"{first}-bench{number}",
                                               status="pending"))


def _check(hall: Hall, count: int) -> str | None:
    settled = len(hall.settlements())
    printed = len(hall.receipts())
    if settled != count or printed != count or len(hall.printer.receipts) != count:
        return (f"{count} visits made {settled} settlements and {printed} whole receipts "
                f"({len(hall.printer.receipts)} in all): no figures for a run that failed")
    return None


def _figures(hall: Hall, visits: list[Visit]) -> dict[str, Any]:
    steps: dict[str, dict[str, int]] = {}
    for event in hall.heap_steps():
        step = steps.setdefault(event["step"], {"heap_peak": 0, "heap_live": 0,
                                                "heap_free": DATA_HEAP,
                                                "heap_block": DATA_HEAP, "seen": 0})
        step["heap_peak"] = max(step["heap_peak"], event["heap_peak"])
        step["heap_live"] = max(step["heap_live"], event["heap_live"])
        step["heap_free"] = min(step["heap_free"], event["heap_free"])
        step["heap_block"] = min(step["heap_block"], event["heap_block"])
        step["seen"] += 1
    uart = {role: {way: _median([v.uart[role][way] for v in visits])
                   for way in ("to_device", "to_kiosk")} for role in UART_ROLES}
    gateway = {way: {what: _median([v.gateway[way][what] for v in visits])
                     for what in ("frames", "bytes")} for way in ("k2g", "g2k")}
    total = [v.kiosk_seconds() for v in visits]
    after_confirm = [v.receipt_out - v.confirmed for v in visits]
    to_bills = [v.bills_shown - v.card_in for v in visits]
    return {
        "visits": len(visits),
        "baud": hall.links["card"].baud,
        "data_heap": DATA_HEAP,
        "heap": steps,
        "uart_bytes": uart,
        "gateway": gateway,
        "seconds": {
            "card_in_to_receipt_out": {"median": statistics.median(total), "worst": max(total)},
            "confirm_to_receipt_out": {"median": statistics.median(after_confirm),
                                       "worst": max(after_confirm)},
            "card_in_to_bills": {"median": statistics.median(to_bills), "worst": max(to_bills)},
        },
    }


def _median(values: list[int]) -> int:
    return int(statistics.median(values))


def _print(figures: dict[str, Any]) -> None:
    heap = figures["data_heap"]
    print(f"\nheap per session step (bytes of the {heap // 1024} KB data heap; most over "
          f"{figures['visits']} visit(s))")
    print(f"  {'step':<12}{'peak':>9}{'of heap':>9}{'live at start':>15}{'least free':>12}"
          f"{'largest block':>15}")
    for name, step in figures["heap"].items():
        print(f"  {name:<12}{step['heap_peak']:>9,}{100 * step['heap_peak'] / heap:>8.0f}%"
              f"{step['heap_live']:>15,}{step['heap_free']:>12,}{step['heap_block']:>15,}")
    print(f"\nbytes per settlement on each UART at {figures['baud']} baud (card in to welcome "
          "again; median)")
    print(f"  {'UART':<10}{'kiosk->device':>15}{'device->kiosk':>15}{'wire time':>11}")
    for role, counts in figures["uart_bytes"].items():
        wire = (counts["to_device"] + counts["to_kiosk"]) * 10 / figures["baud"]
        print(f"  {role:<10}{counts['to_device']:>15,}{counts['to_kiosk']:>15,}"
              f"{wire:>10.3f}s")
    gateway = figures["gateway"]
    print("\ngateway link per settlement (signed frames, COBS framed; median)")
    print(f"  kiosk->gateway {gateway['k2g']['frames']:>3} frames {gateway['k2g']['bytes']:>7,} B")
    print(f"  gateway->kiosk {gateway['g2k']['frames']:>3} frames {gateway['g2k']['bytes']:>7,} B")
    seconds = figures["seconds"]
    print(f"\ntimes ({figures['visits']} visit(s); the kiosk's own: the resident's reading "
          "time before each touch, at least the touch guard, is left out)")
    for key, label in (("card_in_to_receipt_out", "card in -> receipt out"),
                       ("confirm_to_receipt_out", "confirm -> receipt out"),
                       ("card_in_to_bills", "card in -> bills shown")):
        print(f"  {label:<24} median {seconds[key]['median']:6.2f} s   "
              f"worst {seconds[key]['worst']:6.2f} s")
