"""`kiosk fw devices`: a unix kiosk's card reader, printer and touch display, simulated on
pseudo-terminals, driven by typed commands; for a kiosk a technician provisions and runs by hand
(`kiosk fw provision --board unix --uart ...`, `kiosk fw run`). `kiosk tui` does the whole hall
(gateway, devices and kiosk) in one screen; this is the part a kiosk's own flash runs against.

It prints each screen the kiosk shows and each receipt it prints, and reads one command a line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the simulators (pyserial) load when the command runs, not with the CLI
    from onestop.host.sim.display import DisplaySim
    from onestop.host.sim.peripherals import Peripherals

COMMANDS = """\
commands (one a line):
  card ID        insert a demo deck card (P001..P007; wrong_app, mute, garbled_atr)
  pull           take the card out
  touch N        press on-screen button N (1-4, as numbered on the screen)
  paper out|in   the roll runs out / a new roll is loaded
  cover open|closed
  screen         show the screen again
  quit           (or end of input, or Ctrl-C)"""


class DeviceConsole:
    """The devices, and what a technician sees of them: screens and receipts, on `out`."""

    def __init__(self, devices_factory: Callable[..., Peripherals], out: TextIO) -> None:
        self.out = out
        # screen changes come from the display's thread, commands from the main one
        self._lock = threading.RLock()
        self._receipts_shown = 0
        self.devices = devices_factory(on_screen=self._screen)

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def _screen(self, display: DisplaySim) -> None:
        self.say(f"--- screen: {display.page}\n{display.render_text(numbered=True)}")
        self._new_receipts()

    def _new_receipts(self) -> None:
        with self._lock:  # each receipt shown once, whichever thread sees it first
            receipts = [r for r in self.devices.printer.receipts if r.cut]
            for receipt in receipts[self._receipts_shown:]:
                self.say(f"--- receipt\n{receipt.text()}")
            self._receipts_shown = max(self._receipts_shown, len(receipts))

    def run(self, command: str) -> bool:
        """One command; False to stop. A mistake is said, never fatal."""
        from onestop.host.sim.cards import deck_card

        try:
            words = shlex.split(command)
        except ValueError as exc:  # an unbalanced quote
            self.say(f"not a command ({exc}): {command.strip()}")
            return True
        if not words:
            return True
        verb, args = words[0], words[1:]
        devices = self.devices
        try:
            if verb == "quit":
                return False
            if verb == "card" and len(args) == 1:
                if devices.card.present:
                    self.say("a card is in already: pull it first")
                else:
                    devices.card.insert(deck_card(args[0]))
            elif verb == "pull" and not args:
                devices.card.pull()
            elif verb == "touch" and len(args) == 1 and args[0] in ("1", "2", "3", "4"):
                if not devices.display.touch(f"b{int(args[0]) - 1}"):
                    self.say(f"the {devices.display.page} page has no button {args[0]}")
            elif verb == "paper" and args in (["out"], ["in"]):
                devices.printer.paper_out = args[0] == "out"
            elif verb == "cover" and args in (["open"], ["closed"]):
                devices.printer.cover_open = args[0] == "open"
            elif verb == "screen" and not args:
                self._screen(devices.display)
            else:
                self.say(f"not a command: {command.strip()}\n{COMMANDS}")
        except KeyError as exc:  # a card not in the deck
            self.say(str(exc.args[0]))
        self._new_receipts()
        return True

    def close(self) -> None:
        self.devices.close()


def cmd_devices(args: argparse.Namespace) -> int:
    from onestop.host.sim.peripherals import Peripherals

    console = DeviceConsole(lambda **kw: Peripherals(args.baud, **kw), sys.stdout)
    try:
        uarts = console.devices.uarts()
        console.say("the kiosk's UARTs (its end of each pseudo-terminal):")
        for role, path in uarts.items():
            console.say(f"  {role:<8} {path}")
        console.say("a unix kiosk on them (then: kiosk fw run --dir FLASH):\n"
                    "  kiosk fw provision --board unix --dir FLASH "
                    + " ".join(f"--uart {role}={path}" for role, path in uarts.items())
                    + " --kiosk-id ID --gateway tcp:HOST:PORT --gateway-kid KID "
                    "--gateway-public-key HEX")
        console.say(COMMANDS)
        for line in sys.stdin:
            if not console.run(line):
                break
    except KeyboardInterrupt:
        pass
    finally:
        console.close()
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "devices", help="simulated card reader, printer and display for a unix kiosk",
        description=__doc__.split("\n\n")[0], epilog=COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baud", type=int, default=115200,
                        help="the UARTs' pace (default 115200, as the boards)")
    parser.set_defaults(func=cmd_devices)
