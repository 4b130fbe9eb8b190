"""The kiosk TUI: a whole simulated kiosk (gateway, card reader, printer, touch display and the
real MicroPython firmware, `onestop.host.sim.rig.Hall`) on one terminal, for field technicians.

Left, the touch screen as the resident sees it and the last receipt; right, the controls (each a
button and a key); below them the status and a log of the firmware's events and what was done.
Every key is in keys.KEYS: the bindings, the help screen (? or F1) and the faults panel (f, each
fault the simulator can cause, with its state) are made from it. Every blocking rig call runs on
a thread worker, so the screen keeps updating while, say, the gateway starts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from onestop.host.demo import DEFAULT_RESIDENT, demo_residents, set_aside_previous_demo
from onestop.host.tui.keys import FAULT_KEYS, KEYS, Key, help_lines
from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Header, RichLog, Select, Static

POLL_S = 0.2  # how often the firmware log and the printer are looked at
# A touch that reaches its page this near the end of the kiosk's touch guard (by the screen's
# clock) is taken or ignored as the firmware says: its guard starts once it has drawn the page,
# some 20-50 ms after the screen got it, and it reads the touch a little after it came.
GUARD_EDGE_S = 0.3
KIOSK_ANSWER_S = 1.0  # how long the firmware's word on such a touch is waited for
BOOT_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0  # a stop signal's orderly quit gets this long before the process just ends
CLOSE_WAIT_S = 120.0  # a quit during start-up waits this long for the hall to be built
# Firmware log keys not worth a technician's screen space (events without "ev" are the heap
# log's measurements, for the bench, not for a technician; the pane is watched live, and
# firmware.log has the host's time).
QUIET_KEYS = ("ev", "ms", "at")

# Below this the layout cannot hold the touch screen's panel (54 columns) beside whole control
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

# (button id, label, action) — each also has a key binding in BINDINGS (from keys.KEYS).
# Labels start with their key and fit the 11 columns a button has in a 78-column terminal.
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
    ("faults", "f faults", "faults"),
    ("new-bills", "b new bills", "new_bills"),
    ("receipt", "r receipt", "receipt"),
    ("help", "? help", "help"),
    ("quit", "q quit", "quit"),
)
# What the footer shows (the first key of each), in this order, with these words: 79 columns,
# all of it at 80 (at 78 "q quit" loses its end: it is a button too). The touches are one
# entry, "1-4 touch". Every key is on the help screen (? or F1), every fault on the faults
# panel (f).
FOOTER: dict[str, str] = {
    "help": "help", "insert": "in", "pull": "out", "touch(0)": "touch", "paper": "paper",
    "cover": "cover", "near_end": "near end", "gateway": "gateway", "power": "power",
    "quit": "quit"}
FOOTER_DISPLAY = {"touch(0)": "1-4"}


def key_bindings() -> list[BindingType]:
    """The app's bindings: the footer's first, in its order, then the rest of keys.KEYS."""
    footer_first = sorted(KEYS, key=lambda k: list(FOOTER).index(k.action)
                          if k.action in FOOTER else len(FOOTER))
    bindings: list[BindingType] = []
    for key in footer_first:
        shown = key.shown.split()
        for n, name in enumerate(key.keys.split(",")):
            bindings.append(Binding(
                name, key.action, FOOTER.get(key.action) or key.does,
                show=n == 0 and key.action in FOOTER, tooltip=key.does,
                key_display=FOOTER_DISPLAY.get(key.action) or
                (shown[n] if n < len(shown) else None)))
    return bindings


BUTTON_ACTIONS = {button_id: action for button_id, _label, action in CONTROLS}
# The board's status LED as the status line says it (the pattern the firmware shows).
LIGHT_WORDS = {"serving": "steady", "out_of_service": "slow blink", "fault": "fast blink",
               "off": "off"}
# Action of each fault key, by its button id on the faults panel.
FAULT_BUTTONS = {f"fault-{key.action}": key for key in FAULT_KEYS}


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


# Faults the status line lists after FAULTS, so (the others show in their own fields).
STATUS_FAULTS = {"pull_mid_read": "card pull armed", "card_line_noise": "card line noisy",
                 "printer_line_noise": "printer line noisy",
                 "screen_line_noise": "screen line noisy",
                 "replies_lost": "gateway replies lost"}
# The noise keys: the device's link in the hall, and its name as the log says it.
NOISY_LINES = {"card_line_noise": ("card", "the card reader's line"),
               "printer_line_noise": ("printer", "the printer's line"),
               "screen_line_noise": ("display", "the touch screen's line")}
CARD_KINDS = {"wrong_app": "bank card", "mute": "mute card"}  # deck labels -> what they are
MID_READ_APDUS = 4  # y: the card is pulled while the reader exchanges the read's 5th APDU
PAPER_ENDS_LINES = 10  # e: lines left on the roll, fewer than a receipt has
NOISE_EVERY = 10  # z x v: one chunk in this many crossing the line is garbled


def unpadded(button: Button) -> Button:
    """No column lost either side of a label: with a button's default line-pad of 1,
    "o card out" had 9 of its 11 columns at 78 and lost "out". (Set here: the stylesheet
    parser takes no 0 for line-pad.)"""
    button.styles.line_pad = 0
    return button


def card_kind(card_reader: Any) -> str:
    """What is in the slot: a resident's card by psn_no, "bank card", "mute card"; "" if
    none."""
    card = card_reader.card
    if card is None:
        return ""
    label = str(card.label)
    return CARD_KINDS.get(label, label)


def screen_plugged(hall: Any) -> bool:
    return bool(hall.links["display"].connected)


def touch_outcome(page: str, age_s: float, guard_s: float, *, pressed_on_it: bool,
                  touched_before: bool, too_soon: bool | None = None) -> str:
    """What became of a touch, as the log says it. `age_s`: how long the page had been up when
    the touch reached the screen; `pressed_on_it`: the key was pressed while this page was up
    (else on the page before it); `touched_before`: a touch already went to this page and the
    kiosk had not moved on (it was still answering it); `too_soon`: the kiosk ignored it as
    inside its touch guard (by default, whether `age_s` is under `guard_s`)."""
    if touched_before:
        return (f"ignored by the kiosk: it was still answering the touch before, on this "
                f"{page} page, and drops a touch meant for the page it leaves")
    if too_soon is None:
        too_soon = age_s < guard_s
    if too_soon:
        since = ", from when it had drawn the page" if age_s >= guard_s else ""
        return (f"ignored by the kiosk as too soon: it reached the {page} page {age_s:.2f} s "
                f"after it appeared, inside the kiosk's touch guard ({guard_s:.2f} s{since}); "
                "touch again once the page has been up that long")
    if not pressed_on_it:
        return f"delivered on the {page} page, which appeared after the key was pressed"
    return f"delivered on the {page} page"


def kiosk_answer(hall: Any, seen: int, component: str, shown_at: float,
                 timeout: float = KIOSK_ANSWER_S) -> str | None:
    """What the firmware made of a touch on `component`, from its events after the `seen`th:
    why it ignored it ("too_soon", "not_on_page": its touch_ignored), or "taken" (it went on
    to a step, or the page changed); None if it said none of these in `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        for event in hall.firmware.drain()[seen:]:
            if event.get("ev") == "touch_ignored" and event.get("button") == component:
                return str(event.get("why")) if event.get("why") else None
            if event.get("ev") == "step":
                return "taken"
        if hall.display.page_shown_at != shown_at:
            return "taken"
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


class TechnicianLog(RichLog):
    """The log, each line wrapped at the log's width, and wrapped again when that changes: a
    terminal made narrower cut the lines written before at its edge (a work directory's path
    lost its end), and one made wider left them in narrow pieces."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(wrap=True, **kwargs)
        self._said: deque[str] = deque(maxlen=self.max_lines)
        self._wrapped_at = 0

    def say(self, message: str) -> None:
        self._said.append(message)
        self._put(message)

    def _put(self, message: str) -> None:
        width = self.scrollable_content_region.width
        self.write(Text(message), width=width if width > 0 else None)

    def on_resize(self, event: events.Resize) -> None:
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._wrapped_at:
            return
        self._wrapped_at = width
        self.clear()
        for message in self._said:
            self._put(message)


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
    #left { width: 54; }  /* the screen's page (52, BOX_WIDTH) and the border: no blank column */
    #screen { height: auto; border: round $accent; }
    #receipt-box { height: 1fr; border: round $secondary; }
    #left.-receipt-only #screen { display: none; }  /* r: the whole column for the receipt */
    /* never squeezed below whole labels (a button of 2 columns crashed Rich's wrapping):
       a terminal too narrow for them clips the pane, until the too-small notice replaces it */
    #right { width: 1fr; min-width: 23; }
    #resident { margin-bottom: 1; }  /* compact: one row */
    #controls { grid-size: 2; grid-rows: 1; grid-gutter: 0 1; height: auto; margin-bottom: 1; }
    #controls Button { width: 100%; height: 1; }  /* line-pad 0: in compose */
    #status { height: auto; padding: 0 1; background: $boost; }
    #log { height: 1fr; border: round $primary; }
    #too-small { display: none; padding: 1 1; }
    Screen.-too-narrow #main, Screen.-too-short #main, Screen.-too-narrow #status,
    Screen.-too-short #status { display: none; }
    Screen.-too-narrow #too-small, Screen.-too-short #too-small { display: block; }
    Screen.-short Header { display: none; }  /* its row to the receipt at 80x24 */
    """
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-too-narrow"), (MIN_COLUMNS, "-wide-enough")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-too-short"), (MIN_ROWS, "-short"), (ROOMY_ROWS, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = key_bindings()

    def __init__(self, workdir: Path, resident: str = DEFAULT_RESIDENT,
                 hall_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.workdir = workdir
        self.resident = resident
        self.residents = demo_residents()  # by psn_no, in the list's order
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
        self._main_screen: Any = None
        self.gateway_killed_here = False  # by the (G) control
        self.card_pull_armed = False  # (y): the next card read loses its card
        self._touched_page_at: float | None = None  # the page (its shown_at) last touched

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Static("starting…", id="screen", markup=False)
                with VerticalScroll(id="receipt-box"):
                    yield Static("(no receipt yet)", id="receipt", markup=False)
            with Vertical(id="right"):
                yield Select([(f"{k} {v['name']}", k) for k, v in self.residents.items()],
                             value=self.resident, allow_blank=False, id="resident",
                             compact=True)
                with Grid(id="controls"):
                    for button_id, label, _action in CONTROLS:
                        yield unpadded(Button(label, id=button_id, compact=True))
                yield TechnicianLog(id="log", min_width=20, max_lines=2000)
        yield Static("starting…", id="status", markup=False)  # the whole width: fields whole
        yield Static(TOO_SMALL, id="too-small", markup=False)
        yield Footer(compact=True, show_command_palette=False)  # room for "q Quit" at 80

    def _q(self, selector: str, expect_type: type[Any] | None = None) -> Any:
        """A widget of the main screen, also while a panel (help, faults) is over it (the
        app's own query looks at the screen on top)."""
        screen = self._main_screen or self.screen
        return screen.query_one(selector, expect_type) if expect_type else \
            screen.query_one(selector)

    def on_mount(self) -> None:
        self._main_screen = self.screen
        self._q("#screen").border_title = "touch screen"
        self._q("#receipt-box").border_title = "last receipt"
        self._q("#log").border_title = "log"
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
        self._q("#log", TechnicianLog).say(message)

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
        elif self.hall is not None and not screen_plugged(self.hall):
            text = "(dark: the screen's cable is unplugged — s plugs it in)"
        self._q("#screen", Static).update(text)

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
            self._q("#receipt", Static).update(receipt)
        self._say_receipts_saved(hall)
        if self.card_pull_armed and hall.card.pending_fault is None:
            self.card_pull_armed = False
            self._write_log("the card was pulled out during the read (as y armed it)")
        self._refresh_status()

    def _say_receipts_saved(self, hall: Any) -> None:
        """Each printed receipt is kept in the work directory: say where, once."""
        saved = hall.receipt_files.saved
        for path in saved[self._receipts_said:]:
            self._write_log(f"receipt saved: {path} (and {path.with_suffix('.png').name})")
            self._q("#receipt-box").border_title = f"last receipt: {path.name}"
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
                  f"card {self._card_state(hall)}", f"selected: {self.resident}",
                  f"screen: {self._screen_state(hall)}", f"receipts: {len(hall.receipts())}"]
        faults = [f"{key.shown} {STATUS_FAULTS[key.action]}" for key in FAULT_KEYS
                  if key.action in STATUS_FAULTS and self.fault_state(hall, key.action)]
        if faults:  # each its own field, its key first (the key undoes it)
            faults[0] = "FAULTS: " + faults[0]
            fields.extend(faults)
        # packed here, as wrapping the text would break inside a field ("screen:" / "welcome")
        self._set_status(pack_fields(fields, max(1, self.size.width - 2)))
        if isinstance(self.screen, FaultsScreen):
            self.screen.refresh_labels()

    def fault_state(self, hall: Any, action: str) -> str:
        """A fault's state as the faults panel shows it ("" when it is not there)."""
        printer, card = hall.printer, hall.card
        gateway_down = not hall.gateway_running()
        state = {
            "wrong_card": "in the slot" if card_kind(card) == "bank card" else "",
            "mute_card": "in the slot" if card_kind(card) == "mute card" else "",
            "pull_mid_read": "ARMED" if self.card_pull_armed else "",
            "paper": "OUT" if printer.paper_out else "",
            "paper_ends": f"{printer.paper_left_lines} lines left"
            if printer.paper_left_lines is not None and not printer.paper_out else "",
            "near_end": "ON" if printer.paper_near_end else "",
            "cover": "OPEN" if printer.cover_open else "",
            "power": "OFF" if not self.firmware_running(hall) else "",
            "screen_cable": "UNPLUGGED" if not screen_plugged(hall) else "",
            **{action: "ON" if hall.links[device].noisy else ""
               for action, (device, _line) in NOISY_LINES.items()},
            "gateway": "DOWN" if gateway_down and not self.gateway_killed_here else "",
            "gateway_kill": "KILLED" if gateway_down and self.gateway_killed_here else "",
            "replies_lost": "LOST" if hall.tap is not None and "g2k" in hall.tap.blocked
            else "",
        }
        return state.get(action, "")

    def fault_label(self, key: Key) -> str:
        """A fault's button on the faults panel: its key, its name, its state."""
        hall = self.hall
        state = self.fault_state(hall, key.action) if hall is not None else ""
        return f"{key.shown}  {key.name}: {state or 'no'}"

    @staticmethod
    def _card_state(hall: Any) -> str:
        kind = card_kind(hall.card)
        return f"in ({kind})" if kind else "out"

    def _screen_state(self, hall: Any) -> str:
        """What the resident sees, as the touch-screen panel shows it: nothing while the kiosk
        is off or the screen's cable is out (the simulator still holds the last page)."""
        if not self.firmware_running(hall):
            return "dark (kiosk off)"
        if not screen_plugged(hall):
            return "dark (cable unplugged: s)"
        return screen_name(hall.display)

    def _firmware_state(self, hall: Any) -> str:
        light = f", LED {LIGHT_WORDS.get(hall.status_light(), 'off')}"
        if self.firmware_running(hall):
            return "on" + light
        if self.power_cut_here:
            return "off (power cut: k powers on)"
        status = hall.firmware.proc.returncode if hall.firmware is not None else "?"
        return f"not running (exited {status}: k powers on){light}"

    @staticmethod
    def _paper_state(printer: Any) -> str:
        state = "OUT" if printer.paper_out else "near end" if printer.paper_near_end else "ok"
        if printer.paper_left_lines is not None and not printer.paper_out:
            state += f", {printer.paper_left_lines} lines left"
        return state + (", cover OPEN" if printer.cover_open else "")

    def _gateway_state(self, hall: Any) -> str:
        if hall.gateway_running():
            return "up"
        if self.gateway_killed_here:
            return "DOWN (killed -9: g starts it)"
        if self.gateway_stopped_here:
            return "DOWN"
        return "DOWN (it exited on its own: see gateway.log; g starts it)"

    def _set_status(self, text: str) -> None:
        self._q("#status", Static).update(text)

    # ------------------------------------------------------------------ controls
    async def on_button_pressed(self, event: Button.Pressed) -> None:
        action = BUTTON_ACTIONS.get(event.button.id or "")
        if action is not None:
            await self.run_action(action)  # a coroutine in Textual 8

    def on_select_changed(self, event: Select.Changed) -> None:
        """A resident picked in the list. Not one the list has moved on from (keys typed
        together: a change handled late selected its resident again, and the list's change
        back did the same, for ever)."""
        value = event.value
        if isinstance(value, str) and value == event.select.value and value != self.resident:
            self._select_resident(value)

    def action_resident(self, step: int) -> None:
        """a / A: the next or previous resident in the list (round from the last to the
        first). A card in the slot stays in: the choice is for the next card inserted, as a
        technician swapping cards at a kiosk takes the one in out first."""
        ids = list(self.residents)
        self._select_resident(ids[(ids.index(self.resident) + step) % len(ids)])

    def _select_resident(self, resident: str) -> None:
        self.resident = resident
        select = self._q("#resident", Select)
        with select.prevent(Select.Changed):  # said here, not again by on_select_changed
            select.value = resident  # the list shows it
        who = f"{resident} {self.residents[resident]['name']} " \
              f"({self.residents[resident]['note']})"
        card = card_kind(self.hall.card) if self.hall is not None else ""
        if card:
            self.say(f"selected {who}: the card in the slot ({card}) stays in; i inserts "
                     f"{resident}'s card once it is out (o)")
        else:
            self.say(f"selected {who}: i inserts their card")
        self._refresh_status()

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
        # the page the technician had in front of them when they pressed the key
        pressed_on = self.hall.display.page_shown_at if self.hall is not None else None

        def touch(hall: Any) -> None:
            if not self.firmware_running(hall):
                raise KioskOff()
            if not screen_plugged(hall):
                raise Refused("the screen is dark: its cable is unplugged (s plugs it in)")
            self.say(f"touch on-screen button {index + 1}: "
                     f"{self._touch(hall, f'b{index}', pressed_on)}")

        self.rig(f"touch on-screen button {index + 1}", touch)

    def action_more_time(self) -> None:
        def touch(hall: Any) -> None:
            if not self.firmware_running(hall):
                raise KioskOff()
            if not screen_plugged(hall):
                raise Refused("the screen is dark: its cable is unplugged (s plugs it in)")
            if not hall.display.visible("more"):
                raise Refused("no countdown on the screen: its strip shows over the titles in "
                              "the last 30 s of the bills and confirm pages")
            hall.touch("more", wait=False)  # not a page of its own: no touch guard
            self.say("touched the countdown strip: the page waits its whole time again")

        self.rig("touch the countdown strip", touch)

    def _touch(self, hall: Any, component: str, pressed_on: float | None) -> str:
        """Touch `component` at once, as a finger on the screen does, and say what became of
        it: the kiosk ignores a touch that reaches its page sooner than its touch guard after
        the page appeared (meant for the page before: a double tap's second touch), and one on
        a page it is still answering a touch on. A touch is never held to wait the guard out:
        held, it landed a second after the key, with any key pressed meanwhile waiting behind
        it, and a second tap pressed as the confirm page came up confirmed the settlement,
        which on a real screen the kiosk ignores."""
        display = hall.display
        shown_at, page = display.page_shown_at, display.page
        guard = hall.touch_guard_s
        touched_before = shown_at == self._touched_page_at  # the kiosk is still answering it
        seen = len(hall.firmware.drain())
        hall.touch(component, wait=False)
        age = time.monotonic() - shown_at
        too_soon = age < guard
        if not touched_before and (too_soon or abs(age - guard) < GUARD_EDGE_S):
            # The kiosk's word decides (it answers within milliseconds): at the guard's edge
            # its clock and the screen's differ, and a page just up may still show a button
            # the kiosk is about to hide, which it then ignores as not on its page.
            answer = kiosk_answer(hall, seen, component, shown_at)
            if answer == "not_on_page":
                return (f"ignored by the kiosk: the {page} page has no button "
                        f"{int(component[1:]) + 1} (it showed for a moment as the page came up)")
            if answer is not None:
                too_soon = answer == "too_soon"
        if not touched_before and not too_soon:
            self._touched_page_at = shown_at
        return touch_outcome(page, age, guard, pressed_on_it=shown_at == pressed_on,
                             touched_before=touched_before, too_soon=too_soon)

    def action_wrong_card(self) -> None:
        self._insert_card("wrong_app", "a bank card is in the slot: no social-security "
                                       "application on it (o takes it out)")

    def action_mute_card(self) -> None:
        self._insert_card("mute", "a mute card is in the slot: it never answers the reader "
                                  "(o takes it out)")

    def _insert_card(self, deck_key: str, done: str) -> None:
        def insert(hall: Any) -> None:
            from onestop.host.sim.cards import deck_card

            if hall.card.present:
                raise Refused("a card is already in: take it out first (o)")
            hall.card.insert(deck_card(deck_key))
            self.say(done)
            self._say_if_off(hall, "the card is in the slot")

        self.rig(f"insert a {CARD_KINDS[deck_key]}", insert)

    def action_pull_mid_read(self) -> None:
        def toggle(hall: Any) -> None:
            if self.card_pull_armed:
                hall.card.cancel_fault()
                self.card_pull_armed = False
                self.say("card pull disarmed: the next read goes through")
            else:
                hall.card.pull_after(MID_READ_APDUS, mid_apdu=True)
                self.card_pull_armed = True
                self.say(f"card pull armed: the next card read loses its card during its "
                         f"{MID_READ_APDUS + 1}th command (i inserts one; y disarms)")

        self.rig("card pulled mid-read: arm / disarm", toggle)

    def action_paper_ends(self) -> None:
        def toggle(hall: Any) -> None:
            printer = hall.printer
            if printer.paper_out:
                raise Refused("the paper is out already: p loads a new roll")
            if printer.paper_left_lines is not None:
                printer.paper_left_lines = None
                self.say("a full roll again: the next receipt prints whole")
            else:
                printer.paper_left_lines = PAPER_ENDS_LINES
                self.say(f"the roll is nearly done: {PAPER_ENDS_LINES} lines left, the next "
                         "receipt runs it out (e gives a full roll; once out, p loads one)")

        self.rig("paper ends mid-receipt / a full roll", toggle)

    def action_screen_cable(self) -> None:
        def toggle(hall: Any) -> None:
            link = hall.links["display"]
            if link.connected:
                link.unplug()
                self.say("the screen's cable is unplugged: the screen is dark and hears "
                         "nothing (s plugs it in)")
            else:
                link.plug()
                hall.display.restart()  # powered again, it starts afresh and says so
                self.say("the screen's cable is plugged in: the screen restarts, blank, "
                         "until the kiosk draws its page again")
            self.on_ui(self._show_screen, hall.display.render_text(numbered=True))

        self.rig("unplug / plug in the screen's cable", toggle)

    def action_card_line_noise(self) -> None:
        self._line_noise("card_line_noise", "z")

    def action_printer_line_noise(self) -> None:
        self._line_noise("printer_line_noise", "x")

    def action_screen_line_noise(self) -> None:
        self._line_noise("screen_line_noise", "v")

    def _line_noise(self, action: str, key: str) -> None:
        device, line = NOISY_LINES[action]

        def toggle(hall: Any) -> None:
            link = hall.links[device]
            if link.noisy:
                link.noise(None)
                self.say(f"{line} is clean again")
            else:
                link.noise(NOISE_EVERY)
                self.say(f"noise on {line}: about one transfer in {NOISE_EVERY} garbled "
                         f"({key} cleans it)")

        self.rig(f"noise on {line} on / off", toggle)

    def action_gateway_kill(self) -> None:
        def kill(hall: Any) -> None:
            if not hall.gateway_running():
                raise Refused("the gateway is not running: g starts it")
            hall.stop_gateway(kill=True)
            self.gateway_killed_here = True
            self.gateway_stopped_here = True
            self.say("gateway killed (kill -9, as when its machine dies): g starts it")

        self.rig("kill the gateway (-9)", kill)

    def action_replies_lost(self) -> None:
        def toggle(hall: Any) -> None:
            if hall.tap is None:
                raise Refused("this hall's kiosk reaches its gateway over a serial line")
            if "g2k" in hall.tap.blocked:
                hall.tap.blocked.discard("g2k")
                self.say("the gateway's replies arrive again")
            else:
                hall.tap.blocked.add("g2k")
                self.say("the network loses the gateway's replies: requests still reach it "
                         "(l mends it)")

        self.rig("the gateway's replies lost / arriving", toggle)

    def action_faults(self) -> None:
        if isinstance(self.screen, FaultsScreen):
            self.screen.dismiss()
        else:
            self.push_screen(FaultsScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_receipt_scroll(self, pages: int) -> None:
        """PgDn/PgUp: the receipt by a page (its amounts below the fold at 80x24)."""
        box = self._q("#receipt-box")
        if pages > 0:
            box.scroll_page_down(animate=False)
        else:
            box.scroll_page_up(animate=False)

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
        self._q("#left").toggle_class("-receipt-only")

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
                self.gateway_stopped_here = self.gateway_killed_here = False
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


HELP_WIDTH = 80  # the help box's, where the terminal has room


class HelpScreen(ModalScreen[None]):
    """? or F1: every key, by what it works on."""

    CSS = """
    HelpScreen { align: center middle; }
    #help-box { width: 80; max-width: 100%; height: auto; max-height: 100%;
                border: round $accent; padding: 0 1; background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "close", show=False)]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "keys"
            box.border_subtitle = "Esc closes · ↑ ↓ PgUp PgDn scroll"
            # its lines as wide as the box leaves them (border, padding, scroll bar)
            width = min(HELP_WIDTH, self.app.size.width) - 6
            yield Static("\n".join(help_lines(width)), id="help-text", markup=False)


class FaultsScreen(ModalScreen[None]):
    """f: every fault the simulator can cause, its state, a button for each; their keys work
    here too."""

    CSS = """
    FaultsScreen { align: center middle; }
    #faults-box { width: 60; max-width: 100%; height: auto; max-height: 100%;
                  border: round $warning; padding: 0 1; background: $surface; }
    #faults-box Button { width: 100%; height: 1; content-align: left middle;
                         text-align: left; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f", "dismiss", "close", show=False),
        *(Binding(name, f"app.{key.action}", key.name, show=False)
          for key in FAULT_KEYS for name in key.keys.split(",")),
    ]

    def compose(self) -> ComposeResult:
        app = self.app
        assert isinstance(app, KioskTui)
        with VerticalScroll(id="faults-box") as box:
            box.border_title = "faults: a key or a click causes one, again undoes it"
            box.border_subtitle = "Esc or f closes"
            for key in FAULT_KEYS:
                yield unpadded(Button(app.fault_label(key), id=f"fault-{key.action}",
                                      compact=True))

    def refresh_labels(self) -> None:
        app = self.app
        assert isinstance(app, KioskTui)
        for key in FAULT_KEYS:
            self.query_one(f"#fault-{key.action}", Button).label = app.fault_label(key)

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        key = FAULT_BUTTONS.get(event.button.id or "")
        if key is not None:
            await self.app.run_action(key.action)
