"""A township hall in simulation: the hardware-in-the-loop rig with the board replaced by the
MicroPython unix port.

`Hall` starts a real gateway (`kiosk gateway serve`) on an SQLite ledger with the demo residents,
the card reader, printer and display simulators each on a simulated UART (a pseudo-terminal pair
paced at the baud rate), and one kiosk provisioned the way a technician does it (`kiosk fw
provision`: the key made on the device; `kiosk gateway enroll`). `boot()` starts the precompiled
firmware under `micropython` with the board's 64 KB data heap. Every frame between kiosk and
gateway passes a `FrameTap`, which can record them.

The hall's files live in its folder: `ledger.sqlite` (so `kiosk keys list --db
FOLDER/ledger.sqlite` lists the keys), `gateway.key`, `gateway.log`, `firmware.log` (every line
the firmware wrote, stamped with the host's time), `receipts/` (each receipt printed, as text
and PNG), the kiosk's `flash/` and the firmware `stage/` (unless a stage is given).

Faults a test or the TUI may cause: pull the card (`card.pull_after`, ...), paper out
(`printer.paper_out`, `printer.paper_left_lines`), stop, kill and restart the gateway
(`stop_gateway`, `start_gateway`: while it is down the tap does not listen, so the kiosk is
refused as by a hall's gateway host), cut the link one way (`tap.blocked`), cut the power
(`power_cut`). With `serial_gateway=True` the kiosk reaches its gateway over a serial line
instead (`kiosk gateway serve --serial`; `gateway_line`, a simulated cable that can be unplugged
or have noise put on it), with no tap.

Used by `kiosk demo`, the end-to-end tests and `kiosk bench firmware`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from onestop.host.bench.gateway import GatewayProcess
from onestop.host.fwtools import provision_unix, stage_firmware, start_unix_firmware
from onestop.host.gateway.kiosk_client import pinned_gateway_key
from onestop.host.gateway.ledger import open_ledger
from onestop.host.gateway.ledger.base import Settlement
from onestop.host.sim.card import Latency
from onestop.host.sim.cards import deck_card
from onestop.host.sim.display import DisplaySim
from onestop.host.sim.link import SerialLink
from onestop.host.sim.peripherals import Peripherals
from onestop.host.sim.printer import Receipt
from onestop.host.sim.tap import FrameTap

log = logging.getLogger("onestop.sim.rig")

WAIT_S = 30.0
FAULT_EXIT = 2  # the unix port's exit status for a kiosk that cannot start (app.boot)
STDERR_KEPT_LINES = 40  # of the firmware's stderr: a MicroPython traceback is a dozen lines
# The simulated kiosk's touch guard (the boards' default, firmware/app/config.py): presses
# sooner than this after a page appears are ignored. The simulated resident touches a little
# after it: the screen's page load and the kiosk's own confirmation of it take a moment.
TOUCH_GUARD_MS = 1500
# The simulated kiosk's hall, printed on its receipts (kiosk fw provision --hall).
DEMO_HALL = "演示镇便民服务中心"
READING_MARGIN_S = 0.15
# The components a kiosk page shows text in (hardware/display-pages.json), top to bottom.
COMPONENTS = ("t_zh", "t_en", "l0", "l1", "l2", "l3", "l4", "l5", "big", "b0", "b1", "b2", "b3",
              "more")


class RigError(Exception):
    """The simulated hall did not behave as expected (with what the screen and firmware said).

    The first line says what went wrong; the rest, for a test's failure report, is the hall's
    whole story, which `headline` leaves out (a person at the TUI sees the screen already)."""

    @property
    def headline(self) -> str:
        return str(self).split("\n", 1)[0]


def kiosk_cli(*args: str) -> str:
    """Run a `kiosk` command as an operator would; its output, or RigError with its stderr."""
    result = subprocess.run([sys.executable, "-m", "onestop.host.cli", *args],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RigError(f"kiosk {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


LEDGER_FILES = ("ledger.sqlite", "gateway.key")
FIRMWARE_LOG = "firmware.log"  # every line the firmware wrote, each boot's after the last's
BILLS = "bills"  # bills files imported into the ledger by new_demo_bills
RECEIPTS = "receipts"  # each receipt printed: NNN.txt and NNN.png (NNN-incomplete.* if torn)


class ReceiptFiles:
    """Each receipt the printer finishes (cut, or torn off by paper out or an opened cover)
    saved in `folder` as text (as `Receipt.text()` reads) and as the PNG `kiosk demo` makes.
    Numbered from 001 on, after any already there."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.saved: list[Path] = []  # the text files, in order
        self._lock = threading.Lock()
        numbers = [int(p.name[:3]) for p in folder.glob("[0-9][0-9][0-9]*.txt")] \
            if folder.exists() else []
        self._next = max(numbers, default=0) + 1

    def __call__(self, receipt: Receipt) -> None:
        """The printer's on_receipt (its thread): a failure to save is logged, not raised."""
        from onestop.host.sim.receipt_render import render_png

        with self._lock:
            name = f"{self._next:03d}" + ("-incomplete" if receipt.truncated else "")
            self._next += 1
            text = self.folder / f"{name}.txt"
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                text.write_text(receipt.text() + "\n", encoding="utf-8")
            except OSError:  # a full disk: the kiosk goes on printing
                log.exception("could not save receipt %s in %s", name, self.folder)
                return
            try:
                render_png(receipt, self.folder / f"{name}.png")
            except Exception:  # a full disk, a font Pillow cannot read
                log.exception("could not draw receipt %s in %s", name, self.folder)
            self.saved.append(text)  # once both are there


def prepare_ledger(folder: Path) -> Path:
    """A new ledger in `folder` with the gateway's key and the demo residents, as an operator
    makes one (`kiosk gateway init`, `kiosk gateway seed-demo`); returns `folder`. Halls can
    start from a copy of it (Hall(ledger_from=...)), which is quicker than making one each."""
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{folder / 'ledger.sqlite'}"
    kiosk_cli("gateway", "init", "--db", db, "--key", str(folder / "gateway.key"))
    kiosk_cli("gateway", "seed-demo", "--db", db)
    return folder


def wall_clock() -> str:
    """The host's local time to the millisecond, as firmware.log stamps its lines."""
    return datetime.now().isoformat(sep=" ", timespec="milliseconds")


class Firmware:
    """The firmware process and its JSON-line event log, read on a thread.

    With `log_path`, every line it writes is also appended there as it comes, after the host's
    time (the firmware's own `ms` is its uptime): its stdout as written (JSON lines, a
    traceback's lines), its stderr after "stderr: ", and a "--- power on" / "--- power cut"
    line when it starts and is cut. It outlives the process, unlike `seen`."""

    def __init__(self, flash: Path, stage: Path, heap_log: bool = True,
                 log_path: Path | None = None) -> None:
        self.powered = True  # until power_cut (a board at its REPL after a fault still is)
        self._log_lock = threading.Lock()
        self._log: IO[str] | None = None
        if log_path is not None:
            self._log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 (closed at power_cut)
        self.proc = start_unix_firmware(flash, stage, heapsize="64K", compiled=True,
                                        heap_log=heap_log)
        self._write_log(f"--- power on (firmware process {self.proc.pid})")
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        # Its stderr (a traceback when it dies), read as it comes so that a chatty firmware
        # never blocks on a full pipe; the last lines kept for whoever asks why it stopped.
        self._stderr: deque[str] = deque(maxlen=STDERR_KEPT_LINES)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _write_log(self, line: str) -> None:
        with self._log_lock:
            if self._log is not None and not self._log.closed:
                self._log.write(f"{wall_clock()} {line}\n")
                self._log.flush()  # read while the kiosk runs, and kept if this process dies

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._write_log(line.rstrip("\n"))
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"ev": "text", "text": line.rstrip()})

    def _read_stderr(self) -> None:
        if self.proc.stderr is None:
            return
        with contextlib.suppress(ValueError, OSError):  # closed by power_cut
            for line in self.proc.stderr:
                self._stderr.append(line.rstrip())
                self._write_log("stderr: " + line.rstrip())

    def stderr_tail(self) -> list[str]:
        """The last lines the firmware wrote to stderr (all of them, once it has exited)."""
        if self.proc.poll() is not None:
            self._stderr_reader.join(timeout=1.0)
        return list(self._stderr)

    def drain(self) -> list[dict[str, Any]]:
        # get_nowait: the TUI's poll and a rig action's story() may drain at once, and a
        # blocking get() after the other took the last line would hang its thread
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def wait_event(self, name: str, timeout: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(event)
            if event.get("ev") == name:
                return event
        stderr = "\n".join(self.stderr_tail()) if self.proc.poll() is not None else ""
        raise RigError(f"the firmware never said {name!r}; last events {self.seen[-8:]} {stderr}")

    def power_cut(self) -> None:
        """SIGKILL: nothing in the firmware runs, as when the hall's power fails."""
        self.powered = False
        running = self.proc.poll() is None
        if running:
            self.proc.kill()
        self.proc.wait()
        # what it wrote before it died, into the log, before the pipes go
        self._reader.join(timeout=1.0)
        self._stderr_reader.join(timeout=1.0)
        if running:
            self._write_log("--- power cut")
        elif self._log is not None and not self._log.closed:
            self._write_log(f"--- the firmware had exited (status {self.proc.returncode})")
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        with self._log_lock:
            if self._log is not None:
                self._log.close()


@dataclass(frozen=True)
class Screen:
    """A screen as the resident saw it once it settled: its page, the whole text of each
    visible component, and the picture `DisplaySim.render_text` draws (long lines wrapped)."""

    page: str
    texts: dict[str, str]
    picture: str

    @property
    def words(self) -> str:
        """Every text on the screen, one component a line, top to bottom."""
        return "\n".join(text for text in self.texts.values() if text)


class Hall:
    """A gateway, the three simulated devices and one provisioned unix kiosk."""

    def __init__(self, folder: Path, *, kiosk_id: str = "K0001", baud: int = 115200,
                 stage: Path | None = None, capture: IO[str] | None = None,
                 on_screen: Callable[[DisplaySim], None] | None = None,
                 card_latency: Latency | None = None,
                 timeouts_ms: dict[str, int] | None = None,
                 ledger_from: Path | None = None, serial_gateway: bool = False,
                 authority: tuple[str, str] | None = None) -> None:
        """`ledger_from`: a folder made by prepare_ledger to copy the ledger and gateway key
        from (otherwise they are made here, unless the folder already has them). `authority`:
        the operator's authority key (kid, public key hex) the kiosk is provisioned with
        (`kiosk fw provision --authority-kid --authority-public-key`: gateway key rotation)."""
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.kiosk_id = kiosk_id
        self.db = f"sqlite:///{folder / 'ledger.sqlite'}"
        self.screens: list[Screen] = []  # each screen shown, once it settled
        self.cut_off: list[tuple[str, list[str]]] = []  # (page, components) drawn cut off
        self._on_screen = on_screen
        self.firmware: Firmware | None = None
        self.gateway: GatewayProcess | None = None
        self.tap: FrameTap | None = None
        self.gateway_line: SerialLink | None = None
        self._serial_gateway = serial_gateway
        self.devices: Peripherals | None = None
        self.links: dict[str, SerialLink] = {}
        self.receipt_files = ReceiptFiles(folder / RECEIPTS)
        self._authority = authority
        try:
            self._build(baud, stage, capture, card_latency, timeouts_ms, ledger_from)
        except BaseException:
            self.close()
            raise

    def _build(self, baud: int, stage: Path | None, capture: IO[str] | None,
               card_latency: Latency | None, timeouts_ms: dict[str, int] | None,
               ledger_from: Path | None) -> None:
        folder = self.folder
        self.stage = stage or stage_firmware(folder / "stage", "unix", compiled=True)
        key = folder / "gateway.key"
        if not key.exists():
            if ledger_from is not None:
                for name in LEDGER_FILES:
                    shutil.copy2(ledger_from / name, folder / name)
            else:
                prepare_ledger(folder)
        extra: tuple[str, ...] = ()
        if self._serial_gateway:
            self.gateway_line = line = SerialLink("gateway", baud)
            extra = ("--serial", f"{line.host_path}@{baud}")
            gateway_at = {"kind": "serial", "path": line.device_path, "baud": baud}
        # A demo or TUI killed outright must not leave its gateway serving the hall's ledger.
        self.gateway = gateway = GatewayProcess(self.db, key, folder / "gateway.log",
                                                stop_with_parent=True, extra=extra)
        gateway.start()
        if not self._serial_gateway:
            # the tap listens only while the gateway runs: a kiosk is refused, as in a hall
            self.tap = tap = FrameTap("127.0.0.1", gateway.port, capture,
                                      upstream_alive=self.gateway_running).start()
            gateway_at = {"kind": "tcp", "host": "127.0.0.1", "port": tap.port}
        with closing(open_ledger(self.db)) as ledger:
            gateway_kid, verifier = pinned_gateway_key(ledger)
        self.devices = Peripherals(baud, card_latency, on_screen=self._screen)
        self.links = self.devices.links
        self.card, self.printer, self.display = (
            self.devices.card, self.devices.printer, self.devices.display)
        self.printer.on_receipt = self.receipt_files
        self.flash = folder / "flash"
        settings = {
            "version": 1, "board": "unix", "kiosk_id": self.kiosk_id,
            "gateway": gateway_at,
            "gateway_kid": gateway_kid, "gateway_public_key": verifier.public_key.hex(),
            "uarts": self.devices.uarts(),
            "heap_log": True,
            "hall": DEMO_HALL,
        }
        if self._authority is not None:
            settings["authority_kid"], settings["authority_public_key"] = self._authority
        timeouts = {"touch_guard": TOUCH_GUARD_MS, **(timeouts_ms or {})}
        self.touch_guard_s = timeouts["touch_guard"] / 1000
        settings["timeouts_ms"] = timeouts
        self.public_key = provision_unix(self.flash, settings)["public_key"]
        kiosk_cli("gateway", "enroll", "--db", self.db, "--kiosk-id", self.kiosk_id,
                  "--public-key", self.public_key)

    def _screen(self, display: DisplaySim) -> None:
        texts = {name: display.text(name) for name in COMPONENTS if display.visible(name)}
        self.screens.append(Screen(display.page, texts, display.render_text()))
        cut = display.overflowing()
        if cut:
            self.cut_off.append((display.page, cut))
        if self._on_screen is not None:
            self._on_screen(display)

    def pages(self) -> list[str]:
        """The pages shown so far, in order (a page shown twice running counts once)."""
        shown: list[str] = []
        for screen in list(self.screens):
            if not shown or shown[-1] != screen.page:
                shown.append(screen.page)
        return shown

    # ---------------------------------------------------------------- the gateway
    def stop_gateway(self, kill: bool = False) -> None:
        """Stop the gateway: SIGTERM (an operator stops it), or SIGKILL (its machine dies)."""
        assert self.gateway is not None
        if self.tap is not None:
            self.tap.listen(False)  # a kiosk connecting from now on is refused
        if kill:
            self.gateway.kill()
        else:
            self.gateway.stop()

    def gateway_running(self) -> bool:
        """Whether the gateway process is alive (one that died on its own is not)."""
        return self.gateway is not None and self.gateway.running

    def start_gateway(self, key: Path | None = None) -> None:
        """Start the gateway again (on a new port; the tap follows it); with `key`, serving
        with that key file from now on (an operator's key rotation)."""
        assert self.gateway is not None
        if key is not None:
            self.gateway.key_path = key
        self.gateway.start()
        if self.tap is not None:
            self.tap.retarget("127.0.0.1", self.gateway.port)
            self.tap.listen(True)

    # ---------------------------------------------------------------- the ledger
    def new_demo_bills(self) -> tuple[Path, str]:
        """Give every demo resident their demo bills again as new bills, dated today (new bill
        ids: `<demo bill id>-<YYYYMMDD>-<round>`), imported as an operator imports the clinics'
        bills (`kiosk gateway import-bills`) from a file kept in FOLDER/bills/. The file and
        the command's summary line ("persons: ...; bills: N added, ...")."""
        from onestop.host.gateway.bills import demo_bills_again, demo_document, settlement_today

        day = settlement_today()
        first = next(bill["bill_id"] for resident in demo_document()["residents"]
                     for bill in resident.get("bills", []))
        with closing(open_ledger(self.db)) as ledger:
            round_no = 1
            while ledger.get_bill(f"{first}-{day:%Y%m%d}-{round_no}") is not None:
                round_no += 1
        tag = f"{day:%Y%m%d}-{round_no}"
        path = self.folder / BILLS / f"demo-{tag}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(demo_bills_again(day, tag), ensure_ascii=False, indent=1),
                        encoding="utf-8")
        out = kiosk_cli("gateway", "import-bills", "--db", self.db, str(path))
        return path, out.strip().splitlines()[-1]

    # ---------------------------------------------------------------- the kiosk
    def boot(self) -> Firmware:
        self.firmware = Firmware(self.flash, self.stage, log_path=self.folder / FIRMWARE_LOG)
        self.firmware.wait_event("ready")
        return self.firmware

    def power_cut(self) -> None:
        if self.firmware is not None:
            self.firmware.power_cut()

    def status_light(self) -> str:
        """The board's status LED as a technician sees it: "serving" (steady), "out_of_service"
        (slow blink), "fault" (fast blink: it could not start, and stays at its REPL, still
        blinking), or "off" (no power, or not lit yet)."""
        firmware = self.firmware
        if firmware is None or not firmware.powered:
            return "off"
        code = firmware.proc.poll()
        if code is not None and code != FAULT_EXIT:  # a power cut, or a crash: no power
            return "off"
        try:
            return (self.flash / "status_light").read_text().strip() or "off"
        except FileNotFoundError:
            return "off"

    # ---------------------------------------------------------------- a resident
    def wait_page(self, page: str, timeout: float = WAIT_S) -> None:
        if not self.display.wait_for_page(page, timeout):
            raise RigError(f"the screen never showed {page!r}:\n{self.story()}")

    def touch(self, component: str, wait: bool = True) -> None:
        """Touch `component` as a person does: not before the page has been up for the
        kiosk's touch guard (a press sooner is ignored as meant for the page before). Without
        `wait`, at once, as a finger that double-taps."""
        if wait:
            until = self.display.page_shown_at + self.touch_guard_s + READING_MARGIN_S
            time.sleep(max(0.0, until - time.monotonic()))
        if not self.display.touch(component):
            raise RigError(f"nothing to touch at {component!r}: the {self.display.page} page "
                           f"shows no such button\n{self.story()}")

    def insert(self, resident: str) -> None:
        self.card.insert(deck_card(resident))

    def wait_welcome(self, timeout: float = WAIT_S) -> None:
        """Until the firmware has put up its welcome page, ready for a card. (The screen starts
        on that page before the firmware shows anything, and after a visit or a boot the kiosk
        first makes sure the slot is empty: a card inserted before then is asked out again.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.screens and self.screens[-1].page == "welcome" and \
                    self.display.page == "welcome":
                return
            time.sleep(0.02)
        raise RigError(f"the kiosk never welcomed a resident:\n{self.story()}")

    def settle_first_bill(self, resident: str) -> None:
        """Card in, the first bill chosen, the amount confirmed (the receipt then prints)."""
        assert self.firmware is not None, "boot() first"
        self.wait_welcome()
        self.insert(resident)
        self.wait_page("bills")
        self.touch("b0")
        self.wait_page("confirm")
        self.touch("b0")

    def story(self) -> str:
        """What the screen shows and what the firmware said last: for a failure message."""
        events = self.firmware.drain()[-20:] if self.firmware else []
        return self.display.render_text() + "\n" + "\n".join(map(str, events))

    # ---------------------------------------------------------------- what came out
    def settlements(self) -> list[Settlement]:
        """Settlements in the ledger (around today: the gateway's clock decides the day)."""
        today = date.today()
        days = [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)]
        with closing(open_ledger(self.db)) as ledger:
            return [s for day in days for s in ledger.settlements_on(day)]

    def receipts(self) -> list[Receipt]:
        """Whole receipts: cut, nothing lost to an empty roll."""
        return [r for r in self.printer.receipts if r.cut and not r.truncated]

    def heap_steps(self) -> list[dict[str, Any]]:
        events = self.firmware.drain() if self.firmware else []
        return [e for e in events if "heap_peak" in e]

    def reset_counters(self) -> None:
        """Zero the byte counters of the UARTs and the gateway link (for the bench)."""
        for link in self.links.values():
            link.reset_counters()
        if self.tap is not None:
            self.tap.reset_counters()

    def close(self) -> None:
        self.power_cut()
        if self.devices is not None:
            self.devices.close()
        if self.tap is not None:
            self.tap.close()
        if self.gateway is not None:
            self.gateway.stop()
        if self.gateway_line is not None:
            self.gateway_line.close()
