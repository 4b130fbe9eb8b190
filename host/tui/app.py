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
    ("gateway", "g gateway", "gateway"),
    ("quit", "q quit", "quit"),
)

BUTTON_ACTIONS = {button_id: action for button_id, _label, action in CONTROLS}


def event_line(event: dict[str, Any]) -> str:
    """One firmware event on one line: its name, then its other fields."""
    rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in QUIET_KEYS)
    return f"fw {event.get('ev', '?')} {rest}".rstrip()


class KioskTui(App[int]):
    """A simulated kiosk to drive by hand. `hall_options` go to Hall (a test passes a stage)."""

    TITLE = "Onestop kiosk simulator"
    CSS = """
    #left { width: 55; }  /* the screen box (52) and its border, no more */
    #screen { height: auto; border: round $accent; }
    #receipt-box { height: 1fr; border: round $secondary; }
    #right { width: 1fr; }
    #resident { margin-bottom: 1; }
    #controls { grid-size: 2; grid-rows: 1; grid-gutter: 0 1; height: auto; margin-bottom: 1; }
    #controls Button { width: 100%; height: 1; }
    #status { height: auto; padding: 0 1; background: $boost; margin-bottom: 1; }
    #log { height: 1fr; border: round $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "insert", "Insert"),
        Binding("o", "pull", "Card out"),
        Binding("1", "touch(0)", "B1"),
        Binding("2", "touch(1)", "B2"),
        Binding("3", "touch(2)", "B3"),
        Binding("4", "touch(3)", "B4"),
        Binding("p", "paper", "Paper"),
        Binding("g", "gateway", "Gateway"),
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
        self.closed = False
        self._built = threading.Event()  # set once the build ended, whatever happened
        self._rig_lock = threading.Lock()  # one rig action at a time, in order
        self._close_lock = threading.Lock()
        self._events_seen = 0
        self._receipt_shown = ""
        self._ui_thread = threading.get_ident()

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
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
                yield Static("starting…", id="status", markup=False)
                yield RichLog(id="log", wrap=True, min_width=20, max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#screen").border_title = "touch screen"
        self.query_one("#receipt-box").border_title = "last receipt"
        self.query_one("#log").border_title = "log"
        self._catch_stop_signals()
        self.say(f"work directory: {self.workdir}")
        self.say("starting the gateway, the simulated devices and the kiosk firmware …")
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
        self.run_worker(self.quit_with(128 + signum), exclusive=True, group="quit")
        threading.Thread(target=self._exit_anyway, args=(128 + signum,), daemon=True).start()

    def _exit_anyway(self, status: int) -> None:
        """If the orderly quit has not ended the process in time (the terminal is gone: a
        closed window or a dropped ssh, and the UI cannot draw or restore it), close the hall
        and end without the UI, so nothing is left holding the work directory."""
        time.sleep(STOP_GRACE_S)
        self.close_hall()
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
            self.say(f"the kiosk did not start: {exc}")
            self.on_ui(self._set_status, f"did not start: {exc}".splitlines()[0])
            return
        finally:
            self._built.set()
        self.on_ui(self._hall_ready)

    def _hall_ready(self) -> None:
        self.ready = True
        self.say("the kiosk is up, showing its welcome page")
        self._show_screen(self.hall.display.render_text())
        self._refresh_status()
        self.set_interval(POLL_S, self._poll)  # only now: the build waited on the same events

    def close_hall(self) -> None:
        """Stop the firmware, the devices and the gateway (waits for a build under way).
        Safe to call more than once and from any thread."""
        self.closed = True
        self._built.wait(CLOSE_WAIT_S)
        with self._close_lock:
            hall, self.hall = self.hall, None
            if hall is not None:
                hall.close()

    async def action_quit(self) -> None:
        await self.quit_with(0)

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
        self.on_ui(self._show_screen, display.render_text())

    def _show_screen(self, text: str) -> None:
        self.query_one("#screen", Static).update(text)

    def _poll(self) -> None:
        hall = self.hall
        if hall is None or hall.firmware is None:
            return
        events = hall.firmware.drain()
        for event in events[self._events_seen:]:
            if "ev" in event:
                self._write_log(event_line(event))
        self._events_seen = len(events)
        receipt = hall.printer.last_receipt_text()
        if receipt and receipt != self._receipt_shown:
            self._receipt_shown = receipt
            self.query_one("#receipt", Static).update(receipt)
        self._refresh_status()

    def _refresh_status(self) -> None:
        hall = self.hall
        if hall is None:
            return
        fields = (f"gateway {self._gateway_state(hall)}",
                  f"paper {'OUT' if hall.printer.paper_out else 'ok'}",
                  f"card {'in' if hall.card.present else 'out'}",
                  f"screen: {hall.display.page}", f"receipts: {len(hall.receipts())}")
        # a narrow pane wraps between fields, never inside one ("screen:" / "welcome")
        self._set_status("   ".join(field.replace(" ", "\u00a0") for field in fields))

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
        self.rig(f"insert {resident}'s card", lambda hall: hall.insert(resident))

    def action_pull(self) -> None:
        self.rig("take the card out", lambda hall: hall.card.pull())

    def action_touch(self, index: int) -> None:
        self.rig(f"touch button {index + 1}", lambda hall: hall.touch(f"b{index}"))

    def action_paper(self) -> None:
        def toggle(hall: Any) -> None:
            if hall.printer.paper_out:
                hall.printer.load_paper()
                self.say("paper loaded")
            else:
                hall.printer.paper_out = True
                self.say("paper out: the roll ran out")

        self.rig("paper out / load paper", toggle)

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
            except Exception as exc:  # a refused touch, a gateway that will not start
                # a RigError's first line; the rest is the hall's whole story, for tests
                self.say(f"{what} failed: {getattr(exc, 'headline', exc)}")
        self.on_ui(self._refresh_status)
