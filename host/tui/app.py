"""The kiosk TUI: a whole simulated kiosk (gateway, card reader, printer, touch display and the
real MicroPython firmware, `onestop.host.sim.rig.Hall`) on one terminal, for field technicians.

Left, the touch screen as the resident sees it and the last receipt; right, the controls (each a
button and a key); below them the status and a log of the firmware's events and what was done.
Every blocking rig call runs on a thread worker, so the screen keeps updating while, say, a
touch waits out the kiosk's touch guard.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from onestop.host.demo import DEFAULT_RESIDENT, demo_residents, set_aside_previous_demo
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Header, RichLog, Select, Static

POLL_S = 0.2  # how often the firmware log and the printer are looked at
BOOT_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0  # a stop signal's orderly quit gets this long before the process just ends
CLOSE_WAIT_S = 120.0  # a quit during start-up waits this long for the hall to be built
# Firmware log keys not worth a technician's screen space (events without "ev" are the heap
# log's measurements, for the bench, not for a technician).
QUIET_KEYS = ("ev", "ms")

# Below this the layout cannot hold the touch screen's box (55 columns) beside whole control
# labels, or the screen above the status: a notice asks for a bigger terminal instead (a button
# squeezed to 2 columns crashed Rich's text wrapping).
MIN_COLUMNS = 78
MIN_ROWS = 20
ROOMY_ROWS = 30  # from here up the title bar is shown too
TOO_SMALL = (f"terminal too small: make it at least {MIN_COLUMNS} columns and {MIN_ROWS} rows "
             "(q quits)")
# The firmware's take-card page is its "done" page without the amount paid (nothing settled);
# the status names it so, not "done", which would suggest a finished settlement.
TAKE_CARD_PAGE = "take card"
STATUS_GAP = "   "

# (button id, label, action) — each also has a key binding in BINDINGS.
# Labels start with their key and fit the 10 columns a button has in an 80-column terminal.
CONTROLS: tuple[tuple[str, str, str], ...] = (
    ("insert", "i card in", "insert"),
    ("pull", "o card out", "pull"),
    ("touch0", "1 touch 1", "touch(0)"),
    ("touch1", "2 touch 2", "touch(1)"),
    ("touch2", "3 touch 3", "touch(2)"),
    ("touch3", "4 touch 4", "touch(3)"),
    ("paper", "p paper", "paper"),
    ("cover", "c cover", "cover"),
    ("near-end", "n near end", "near_end"),
    ("gateway", "g gateway", "gateway"),
    ("power", "k power", "power"),
    ("receipt", "r receipt", "receipt"),
    ("quit", "q quit", "quit"),
)
TOUCH = Binding.Group("touch", compact=True)  # one "1234 touch" in the footer

BUTTON_ACTIONS = {button_id: action for button_id, _label, action in CONTROLS}


def event_line(event: dict[str, Any]) -> str:
    """One firmware event on one line: its name, then its other fields."""
    rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in QUIET_KEYS)
    return f"fw {event.get('ev', '?')} {rest}".rstrip()


def pack_fields(fields: list[str], width: int) -> str:
    """`fields` on as few lines of `width` as they fill, a line breaking only between fields
    (a field wider than a whole line gets a line of its own)."""
    lines: list[str] = []
    for field in fields:
        if lines and len(lines[-1]) + len(STATUS_GAP) + len(field) <= width:
            lines[-1] += STATUS_GAP + field
        else:
            lines.append(field)
    return "\n".join(lines)


def screen_name(display: Any) -> str:
    """The page's name for the status line (the take-card page is not a settlement done)."""
    page = display.page
    if page == "done" and not display.text("big"):
        return TAKE_CARD_PAGE
    return page


class Refused(Exception):
    """A control that cannot be done now (said in the log as it is, not as a failure)."""


class KioskOff(Refused):
    def __init__(self) -> None:
        super().__init__("the kiosk is off (no firmware running): k powers it on")


class KioskTui(App[int]):
    """A simulated kiosk to drive by hand. `hall_options` go to Hall (a test passes a stage)."""

    TITLE = "Onestop kiosk simulator"
    CSS = """
    #main { height: 1fr; }
    #left { width: 55; }  /* the screen box (52) and its border, no more */
    #screen { height: auto; border: round $accent; }
    #receipt-box { height: 1fr; border: round $secondary; }
    #left.-receipt-only #screen { display: none; }  /* r: the whole column for the receipt */
    /* never squeezed below whole labels (a button of 2 columns crashed Rich's wrapping):
       a terminal too narrow for them clips the pane, until the too-small notice replaces it */
    #right { width: 1fr; min-width: 23; }
    #resident { margin-bottom: 1; }
    #controls { grid-size: 2; grid-rows: 1; grid-gutter: 0 1; height: auto; margin-bottom: 1; }
    #controls Button { width: 100%; height: 1; }
    #status { height: auto; padding: 0 1; background: $boost; }
    #log { height: 1fr; border: round $primary; }
    #too-small { display: none; padding: 1 1; }
    Screen.-too-narrow #main, Screen.-too-short #main, Screen.-too-narrow #status,
    Screen.-too-short #status { display: none; }
    Screen.-too-narrow #too-small, Screen.-too-short #too-small { display: block; }
    Screen.-short Header { display: none; }  /* its row to the receipt at 80x24 */
    /* the compact footer sets group labels flush against the next key ("1234 touchp Paper") */
    Footer.-compact FooterLabel { margin: 0 1 0 0; }
    """
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-too-narrow"), (MIN_COLUMNS, "-wide-enough")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-too-short"), (MIN_ROWS, "-short"), (ROOMY_ROWS, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "insert", "Card in"),
        Binding("o", "pull", "Card out"),
        *(Binding(str(n + 1), f"touch({n})", f"B{n + 1}", group=TOUCH,
                  tooltip=f"touch on-screen button {n + 1}") for n in range(4)),
        Binding("p", "paper", "Paper", tooltip="paper out / load paper"),
        # the printer's lesser sensors: on their buttons and in the Keys help, not the footer
        Binding("c", "cover", "Cover", tooltip="open / close the printer's cover", show=False),
        Binding("n", "near_end", "Near end", tooltip="paper near end / new roll", show=False),
        Binding("g", "gateway", "Gateway", tooltip="stop / start the gateway"),
        Binding("k", "power", "Power", tooltip="cut the kiosk's power / power it on"),
        Binding("b", "new_bills", "New bills", show=False,
                tooltip="new bills for every demo resident, dated today"),
        Binding("r", "receipt", "Receipt", tooltip="the receipt in the whole left column, "
                                                   "or the touch screen back"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, workdir: Path, resident: str = DEFAULT_RESIDENT,
                 hall_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.workdir = workdir
        self.resident = resident
        self.hall_options = hall_options or {}
        self.hall: Any = None  # a Hall once built (typed loosely: the rig is imported lazily)
        self.ready = False  # the kiosk booted and idle: the controls work
        self.gateway_stopped_here = False  # by the (g) control, not on its own
        self.power_cut_here = False  # the firmware stopped by the (k) control, not on its own
        self.failed_to_start = False  # the hall's build failed (its logs are worth keeping)
        self.stop_signal: int | None = None  # SIGHUP, SIGTERM: what ended the app, if one did
        # called with the exit status when a stop signal's orderly quit hangs and the process
        # is ended without the UI (`kiosk tui` tidies its work directory there)
        self.before_exit: Callable[[int], None] | None = None
        self._death_noted: Any = None  # the dead firmware already said so in the log
        self._firmware_polled: Any = None  # whose events _events_seen counts
        self.closed = False
        self._building = False  # a build was started: a close waits for it
        self._built = threading.Event()  # set once the build ended, whatever happened
        self._rig_lock = threading.Lock()  # one rig action at a time, in order
        self._close_lock = threading.Lock()
        self._events_seen = 0
        self._receipts_said = 0  # receipt files already named in the log
        self._receipt_shown = ""
        self._ui_thread = threading.get_ident()

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Static("starting…", id="screen", markup=False)
                with VerticalScroll(id="receipt-box"):
                    yield Static("(no receipt yet)", id="receipt", markup=False)
            with Vertical(id="right"):
                residents = demo_residents()
                yield Select([(f"{k} {v['name']}", k) for k, v in residents.items()],
                             value=self.resident, allow_blank=False, id="resident")
                with Grid(id="controls"):
                    for button_id, label, _action in CONTROLS:
                        yield Button(label, id=button_id, compact=True)
                yield RichLog(id="log", wrap=True, min_width=20, max_lines=2000)
        yield Static("starting…", id="status", markup=False)  # the whole width: fields whole
        yield Static(TOO_SMALL, id="too-small", markup=False)
        yield Footer(compact=True, show_command_palette=False)  # room for "q Quit" at 80

    def on_mount(self) -> None:
        self.query_one("#screen").border_title = "touch screen"
        self.query_one("#receipt-box").border_title = "last receipt"
        self.query_one("#log").border_title = "log"
        self._catch_stop_signals()
        self.say(f"work directory: {self.workdir}")
        self.say("starting the gateway, the simulated devices and the kiosk firmware …")
        self._building = True
        self.build_hall()

    def _catch_stop_signals(self) -> None:
        """SIGTERM/SIGHUP quit as `q` does, so the hall is closed with the terminal restored."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(signum, self._stop_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (a test): the command's own handlers remain

    def _stop_signal(self, signum: int) -> None:
        # The exit status a shell reports for a process ended by the signal, as elsewhere.
        self.stop_signal = signum
        self.run_worker(self.quit_with(128 + signum), exclusive=True, group="quit")
        threading.Thread(target=self._exit_anyway, args=(128 + signum,), daemon=True).start()

    def _exit_anyway(self, status: int) -> None:
        """If the orderly quit has not ended the process in time (the terminal is gone: a
        closed window or a dropped ssh, and the UI cannot draw or restore it), close the hall
        and end without the UI, so nothing is left holding the work directory."""
        time.sleep(STOP_GRACE_S)
        try:
            self.close_hall()
            if self.before_exit is not None:
                self.before_exit(status)
        finally:
            os._exit(status)

    # ------------------------------------------------------------------ from any thread
    def on_ui(self, func: Callable[..., Any], *args: Any) -> None:
        """Run `func` on the UI thread (directly if already there); dropped once the app ended."""
        if threading.get_ident() == self._ui_thread:
            func(*args)
            return
        try:
            self.call_from_thread(func, *args)
        except RuntimeError:
            pass  # the app has stopped: nothing left to show it on

    def say(self, message: str) -> None:
        self.on_ui(self._write_log, message)

    def _write_log(self, message: str) -> None:
        self.query_one("#log", RichLog).write(Text(message))

    # ------------------------------------------------------------------ start and stop
    @work(thread=True, group="build")
    def build_hall(self) -> None:
        from onestop.host.sim.rig import Hall

        try:
            aside = set_aside_previous_demo(self.workdir)
            if aside is not None:
                self.say(f"an earlier run's ledger and kiosk were moved to {aside}")
            self.hall = hall = Hall(self.workdir, on_screen=self._screen_changed,
                                    **self.hall_options)
            if self.closed:
                return  # quit while it was being built
            hall.boot().wait_event("idle", BOOT_TIMEOUT_S)
            hall.wait_welcome(BOOT_TIMEOUT_S)
        except Exception as exc:  # shown in the UI: the technician reads it there
            self.failed_to_start = True  # quitting then exits non-zero, keeping the files
            self.say(f"the kiosk did not start: {exc}")
            self.on_ui(self._set_status, f"did not start: {exc}".splitlines()[0])
            return
        finally:
            self._built.set()
        self.on_ui(self._hall_ready)

    def _hall_ready(self) -> None:
        self.ready = True
        self._poll()  # the firmware's ready/boot/idle lines first, then what they amount to
        self.say("the kiosk is up, showing its welcome page")
        self._show_screen(self.hall.display.render_text(numbered=True))
        self.set_interval(POLL_S, self._poll)  # only now: the build waited on the same events

    def close_hall(self) -> None:
        """Stop the firmware, the devices and the gateway (waits for a build under way).
        Safe to call more than once and from any thread."""
        self.closed = True
        if self._building:  # an app that failed before it began a build has none to wait for
            self._built.wait(CLOSE_WAIT_S)
        with self._close_lock:
            hall, self.hall = self.hall, None
            if hall is not None:
                hall.close()

    async def action_quit(self) -> None:
        await self.quit_with(1 if self.failed_to_start else 0)

    async def quit_with(self, status: int) -> None:
        """Close the hall off the UI thread (it takes a moment), saying so, then exit."""
        self.ready = False
        self.say("stopping the kiosk, the devices and the gateway …")
        self._set_status("stopping …")
        await asyncio.to_thread(self.close_hall)
        self.exit(status)

    # ------------------------------------------------------------------ what is shown
    def _screen_changed(self, display: Any) -> None:
        """Called on the display simulator's thread at every change of the screen."""
        self.on_ui(self._show_screen, display.render_text(numbered=True))

    def _show_screen(self, text: str) -> None:
        if self.hall is not None and not self.firmware_running(self.hall):
            # no power, no picture: the last page must not look like a kiosk still serving
            text = "(dark: the kiosk is off — k powers it on)"
        self.query_one("#screen", Static).update(text)

    def _poll(self) -> None:
        hall = self.hall
        if hall is None or hall.firmware is None:
            return
        self._log_firmware_events(hall.firmware)
        if not self.firmware_running(hall) and self._death_noted is not hall.firmware:
            self._death_noted = hall.firmware
            self._firmware_stopped(hall)
        receipt = hall.printer.last_receipt_text()
        if receipt and receipt != self._receipt_shown:
            self._receipt_shown = receipt
            self.query_one("#receipt", Static).update(receipt)
        self._say_receipts_saved(hall)
        self._refresh_status()

    def _say_receipts_saved(self, hall: Any) -> None:
        """Each printed receipt is kept in the work directory: say where, once."""
        saved = hall.receipt_files.saved
        for path in saved[self._receipts_said:]:
            self._write_log(f"receipt saved: {path} (and {path.with_suffix('.png').name})")
            self.query_one("#receipt-box").border_title = f"last receipt: {path.name}"
        self._receipts_said = len(saved)

    def _log_firmware_events(self, firmware: Any) -> None:
        if firmware is not self._firmware_polled:  # booted again: a new process, a new log
            self._firmware_polled, self._events_seen = firmware, 0
        events = firmware.drain()
        for event in events[self._events_seen:]:
            if "ev" in event:
                self._write_log(event_line(event))
        self._events_seen = len(events)

    def _firmware_stopped(self, hall: Any) -> None:
        """The firmware process ended: say how once, and darken the screen."""
        if not self.power_cut_here:
            status = hall.firmware.proc.returncode
            # what it wrote to stderr as it died (the port's own fatal errors; a Python
            # traceback goes to stdout, already in the log): the technician's first clue
            for line in hall.firmware.stderr_tail():
                self._write_log(f"firmware: {line}")
            self.say(f"the firmware is not running: it exited on its own (status {status}); "
                     "k powers the kiosk on")
        self._show_screen("")

    @staticmethod
    def firmware_running(hall: Any) -> bool:
        return hall.firmware is not None and hall.firmware.proc.poll() is None

    def on_resize(self) -> None:
        self._refresh_status()  # packed to the new width

    def _refresh_status(self) -> None:
        hall = self.hall
        if hall is None:
            return
        fields = [f"firmware {self._firmware_state(hall)}",
                  f"gateway {self._gateway_state(hall)}",
                  f"paper {self._paper_state(hall.printer)}",
                  f"card {'in' if hall.card.present else 'out'}",
                  f"screen: {self._screen_state(hall)}", f"receipts: {len(hall.receipts())}"]
        # packed here, as wrapping the text would break inside a field ("screen:" / "welcome")
        self._set_status(pack_fields(fields, max(1, self.size.width - 2)))

    def _screen_state(self, hall: Any) -> str:
        """What the resident sees, as the touch-screen panel shows it: nothing while the kiosk
        is off (the simulator still holds the last page it was sent)."""
        if not self.firmware_running(hall):
            return "dark (kiosk off)"
        return screen_name(hall.display)

    def _firmware_state(self, hall: Any) -> str:
        if self.firmware_running(hall):
            return "on"
        if self.power_cut_here:
            return "off (power cut: k powers on)"
        status = hall.firmware.proc.returncode if hall.firmware is not None else "?"
        return f"not running (exited {status}: k powers on)"

    @staticmethod
    def _paper_state(printer: Any) -> str:
        state = "OUT" if printer.paper_out else "near end" if printer.paper_near_end else "ok"
        return state + (", cover OPEN" if printer.cover_open else "")

    def _gateway_state(self, hall: Any) -> str:
        if hall.gateway_running():
            return "up"
        if self.gateway_stopped_here:
            return "DOWN"
        return "DOWN (it exited on its own: see gateway.log; g starts it)"

    def _set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    # ------------------------------------------------------------------ controls
    async def on_button_pressed(self, event: Button.Pressed) -> None:
        action = BUTTON_ACTIONS.get(event.button.id or "")
        if action is not None:
            await self.run_action(action)  # a coroutine in Textual 8

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.resident = event.value

    def action_insert(self) -> None:
        resident = self.resident

        def insert(hall: Any) -> None:
            if hall.card.present:  # a slot holds one card: a second cannot go in over it
                raise Refused("a card is already in: take it out first (o)")
            hall.insert(resident)
            self._say_if_off(hall, "the card is in the slot")

        self.rig(f"insert {resident}'s card", insert)

    def action_pull(self) -> None:
        def pull(hall: Any) -> None:
            hall.card.pull()
            self._say_if_off(hall, "the card is out of the slot")

        self.rig("take the card out", pull)

    def _say_if_off(self, hall: Any, done: str) -> None:
        """A card goes in or out of a kiosk without power too, but nothing reads it."""
        if not self.firmware_running(hall):
            self.say(f"{done}, but the kiosk is off: nothing reads it until k powers it on")

    def action_touch(self, index: int) -> None:
        def touch(hall: Any) -> None:
            if not self.firmware_running(hall):
                raise KioskOff()
            hall.touch(f"b{index}")

        self.rig(f"touch on-screen button {index + 1}", touch)

    def action_paper(self) -> None:
        def toggle(hall: Any) -> None:
            if hall.printer.paper_out:
                hall.printer.load_paper()
                self.say("paper loaded")
            else:
                hall.printer.paper_out = True
                self.say("paper out: the roll ran out")

        self.rig("paper out / load paper", toggle)

    def action_cover(self) -> None:
        def toggle(hall: Any) -> None:
            hall.printer.cover_open = not hall.printer.cover_open
            self.say("printer cover opened" if hall.printer.cover_open else
                     "printer cover closed")

        self.rig("open / close the printer cover", toggle)

    def action_near_end(self) -> None:
        def toggle(hall: Any) -> None:
            hall.printer.paper_near_end = not hall.printer.paper_near_end
            self.say("paper near end: the roll is running low" if hall.printer.paper_near_end
                     else "paper near end cleared: a new roll")

        self.rig("paper near end / new roll", toggle)

    def action_new_bills(self) -> None:
        def new_bills(hall: Any) -> None:
            path, summary = hall.new_demo_bills()
            self.say(f"new bills for the demo residents, dated today: {summary} "
                     f"(imported from {path})")

        self.rig("new bills for the demo residents", new_bills)

    def action_receipt(self) -> None:
        """The receipt takes the whole left column (its amounts in sight at 80x24), or not."""
        self.query_one("#left").toggle_class("-receipt-only")

    def action_power(self) -> None:
        def toggle(hall: Any) -> None:
            if self.firmware_running(hall):
                self.power_cut_here = True
                hall.power_cut()  # SIGKILL, as the hall's power failing
                self.say("power cut: the kiosk is off (k powers it on)")
            else:
                self._power_on(hall)

        self.rig("cut the kiosk's power / power it on", toggle)

    def _power_on(self, hall: Any) -> None:
        """Boot the firmware again on the same flash: its journal recovery runs first."""
        self.say("power on: the kiosk boots on the same flash (an interrupted settlement "
                 "is finished by its journal recovery)")
        hall.power_cut()  # a firmware that died on its own: reap it, close its pipes
        self._death_noted = hall.firmware  # cut here, not dead on its own: nothing to report
        self.power_cut_here = False
        hall.boot()  # until it says "ready"; recovery and the welcome page follow

    def action_gateway(self) -> None:
        def toggle(hall: Any) -> None:
            if hall.gateway_running():
                hall.stop_gateway()
                self.gateway_stopped_here = True
                self.say("gateway stopped")
            else:
                hall.start_gateway()
                self.gateway_stopped_here = False
                self.say("gateway started")

        self.rig("stop / start the gateway", toggle)

    def rig(self, what: str, do: Callable[[Any], None]) -> None:
        """Do a rig action on a thread worker (they block: the touch guard, a gateway start)."""
        if not self.ready:
            self.say(f"{what}: not yet, the kiosk is not up")
            return
        self.say(f"> {what}")
        self._rig_worker(what, do)

    @work(thread=True, group="rig")
    def _rig_worker(self, what: str, do: Callable[[Any], None]) -> None:
        with self._rig_lock:
            hall = self.hall
            if hall is None or not self.ready:
                return
            try:
                do(hall)
            except Refused as exc:
                self.say(f"{what}: {exc}")
            except Exception as exc:  # a refused touch, a gateway that will not start
                # a RigError's first line; the rest is the hall's whole story, for tests
                self.say(f"{what} failed: {getattr(exc, 'headline', exc)}")
        self.on_ui(self._refresh_status)
