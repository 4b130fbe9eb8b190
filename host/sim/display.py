"""A simulated Nextion / TJC serial touch screen on one end of a SerialLink.

`HmiScreen` is the screen itself, sans I/O: `receive(bytes) -> reply bytes`. It runs the HMI of
hardware/display-pages.json: instructions end in FF FF FF; `page <name|id>`,
`<component>.txt="..."` (GB18030 text, `\\"` `\\\\` `\\r` escapes, cut at the component's
txt_maxl like the real screen), `vis <component>,<0|1>`, `ref <component>`, `sendme`,
`bkcmd=<n>`, `rest`, and system variables (`dim=`, `sleep=`, ...) are understood. Page and
component names are checked against the HMI and failures answered with Nextion return codes (as
with the default bkcmd=2, successes are not answered): 0x00 invalid instruction, 0x02 invalid
component, 0x03 invalid page, 0x1A invalid variable name or attribute, 0x1B invalid variable
operation, 0x20 invalid escape. A touch on a visible button sends press and release events
`65 page component event`; a component marked hidden_at_load comes up hidden on every page.

`DisplaySim(device_path)` runs a screen behind a pyserial port on a background thread: the
current `page` and each component's `text(...)`, `render_text()` (a readable box: Chinese title,
English title, lines, large digits, buttons), `overflowing()` (components whose text is wider
than the component at its font, so cut off on the panel), `touch(name)`,
`wait_for_page(name, timeout)`, and `on_change(sim)`, called from the simulator's thread once the
screen has settled (no byte for `settle_s`) after a change: the demo prints each screen as it
appears, the TUI mirrors it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import serial

log = logging.getLogger("onestop.sim.display")

END = b"\xff\xff\xff"
LAYOUT = Path(__file__).resolve().parents[2] / "hardware" / "display-pages.json"
INVALID_INSTRUCTION = 0x00
SUCCESS = 0x01
INVALID_COMPONENT = 0x02
INVALID_PAGE = 0x03
INVALID_VARIABLE = 0x1A
INVALID_OPERATION = 0x1B
INVALID_ESCAPE = 0x20
SYSTEM_VARIABLES = ("dim", "dims", "sleep", "thsp", "thup", "usup", "ussp", "baud", "bauds")
BOX_WIDTH = 52


def load_layout(path: Path = LAYOUT) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    """`text` (no wider than `width`) padded to `width` terminal columns."""
    return text + " " * (width - display_width(text))


def _tokens(text: str) -> list[str]:
    """English words, single spaces and single wide (Chinese) characters, in order."""
    tokens: list[str] = []
    for ch in text:
        in_word = ch != " " and display_width(ch) == 1
        last = tokens[-1] if tokens else " "
        if in_word and last[0] != " " and display_width(last[0]) == 1:
            tokens[-1] += ch
        else:
            tokens.append(ch)
    return tokens


def wrap(text: str, width: int) -> list[str]:
    """`text` in rows of at most `width` terminal columns, nothing dropped.

    English breaks at a space, Chinese between any two characters, and a word wider than a
    whole row is split. The panel is wider than the box the terminal draws, so a line the
    panel shows whole must not lose its end here.
    """
    rows: list[str] = []
    row = ""
    for token in _tokens(text):
        if display_width(row) + display_width(token) <= width:
            row += token
            continue
        if row.strip():
            rows.append(row.rstrip(" "))
        row = "" if token == " " else token
        while display_width(row) > width:  # one word wider than the row
            cut = len(row)
            while display_width(row[:cut]) > width:
                cut -= 1
            rows.append(row[:cut])
            row = row[cut:]
    rows.append(row.rstrip(" ") if rows else row)
    return rows


class HmiScreen:
    def __init__(self, layout: dict[str, Any] | None = None) -> None:
        layout = layout or load_layout()
        self.pages: dict[str, int] = {p["name"]: p["id"] for p in layout["pages"]}
        self.components: dict[str, dict[str, Any]] = {c["name"]: c for c in layout["components"]}
        self.page_names = {v: k for k, v in self.pages.items()}
        self.font_heights: dict[int, int] = {f["id"]: f["height"] for f in layout["fonts"]}
        self.geometry_by_page: dict[str, dict[str, dict[str, int]]] = {
            page: places for page, places in layout.get("geometry_by_page", {}).items()
            if isinstance(places, dict)}
        self.bkcmd = 2
        self.errors_sent: list[int] = []
        self.unknown: list[bytes] = []
        self._buf = bytearray()
        self._show_page(0)

    def _show_page(self, page_id: int) -> None:
        # loading a page resets its components to the editor's values: empty and visible, but
        # for those its Preinitialize event hides (hidden_at_load: the countdown strip)
        self.page_id = page_id
        self.shown_at = time.monotonic()
        self.texts = {name: "" for name in self.components}
        self.visible = {name: not c.get("hidden_at_load", False)
                        for name, c in self.components.items()}

    @property
    def page(self) -> str:
        return self.page_names[self.page_id]

    # ------------------------------------------------------------------ instructions
    def receive(self, data: bytes) -> bytes:
        self._buf += data
        replies = bytearray()
        while (end := self._buf.find(END)) >= 0:
            instruction = bytes(self._buf[:end])
            del self._buf[:end + 3]
            code = self._execute(instruction)
            if code is not None and (code == SUCCESS and self.bkcmd in (1, 3)
                                     or code != SUCCESS and self.bkcmd in (2, 3)):
                replies += bytes((code,)) + END
            if code is not None and code != SUCCESS:
                self.errors_sent.append(code)
                log.info("display answers 0x%02x to %r", code, instruction)
            if instruction == b"sendme":
                replies += bytes((0x66, self.page_id)) + END
            elif instruction == b"rest":
                replies += b"\x00\x00\x00" + END + b"\x88" + END
        return bytes(replies)

    def _execute(self, instruction: bytes) -> int | None:
        if instruction == b"sendme":
            return None
        if instruction == b"rest":
            self.bkcmd = 2
            self._show_page(0)
            return None
        if instruction.startswith(b"page "):
            return self._page(instruction[5:].strip().decode("ascii", "replace"))
        if instruction.startswith(b"vis "):
            return self._vis(instruction[4:].decode("ascii", "replace"))
        if instruction.startswith(b"ref "):  # draw a component again: nothing to keep here
            known = instruction[4:].decode("ascii", "replace").strip() in self.components
            return SUCCESS if known else INVALID_COMPONENT
        name, eq, value = instruction.partition(b"=")
        if not eq:
            self.unknown.append(instruction)
            return INVALID_INSTRUCTION
        target = name.decode("ascii", "replace").strip()
        if "." in target:
            return self._assign(target, value)
        if target == "bkcmd" and value.isdigit():
            self.bkcmd = int(value)
            return SUCCESS
        if target in SYSTEM_VARIABLES:
            return SUCCESS if value.strip().isdigit() else INVALID_OPERATION
        return INVALID_VARIABLE

    def _page(self, which: str) -> int:
        page_id = self.pages.get(which)
        if page_id is None and which.isdigit() and int(which) in self.page_names:
            page_id = int(which)
        if page_id is None:
            return INVALID_PAGE
        self._show_page(page_id)
        return SUCCESS

    def _vis(self, args: str) -> int:
        name, _, state = args.partition(",")
        if name.strip() not in self.components:
            return INVALID_COMPONENT
        if state.strip() not in ("0", "1"):
            return INVALID_OPERATION
        self.visible[name.strip()] = state.strip() == "1"
        return SUCCESS

    def _assign(self, target: str, value: bytes) -> int:
        name, _, attribute = target.partition(".")
        if name not in self.components or attribute != "txt":
            return INVALID_VARIABLE
        if len(value) < 2 or value[:1] != b'"' or value[-1:] != b'"':
            return INVALID_OPERATION  # a number or an unterminated string for .txt
        raw = bytearray()
        body = value[1:-1]
        i = 0
        while i < len(body):
            byte = body[i]
            if byte == 0x22:
                return INVALID_OPERATION  # a quote that was not escaped ends the string early
            if byte == 0x5C:
                if i + 1 >= len(body):
                    return INVALID_ESCAPE
                escaped = body[i + 1]
                if escaped == ord("r"):
                    raw += b"\n"
                elif escaped in (0x22, 0x5C):
                    raw.append(escaped)
                else:
                    return INVALID_ESCAPE
                i += 2
                continue
            raw.append(byte)
            i += 1
        maxl = self.components[name].get("txt_maxl", 255)
        self.texts[name] = bytes(raw[:maxl]).decode("gb18030", "replace")
        return SUCCESS

    def text_px(self, name: str) -> int:
        """How wide the component's text is drawn: a Chinese character is as wide as the font
        is high, an ASCII one half that."""
        height = self.font_heights[self.components[name]["font"]]
        line = max(self.texts[name].split("\n"), key=display_width, default="")
        return display_width(line) * height // 2

    def overflowing(self) -> list[str]:
        """Components on this page whose text is wider than the component (cut off on screen)."""
        places = self.geometry_by_page.get(self.page, {})
        return [name for name, component in self.components.items()
                if self.text_px(name) > places.get(name, component)["w"]]

    # ------------------------------------------------------------------ touch
    def touch_events(self, name: str) -> bytes:
        component = self.components.get(name)
        if component is None or not component.get("touch") or not self.visible[name]:
            return b""
        press = bytes((0x65, self.page_id, component["id"], 0x01)) + END
        release = bytes((0x65, self.page_id, component["id"], 0x00)) + END
        return press + release

    # ------------------------------------------------------------------ view
    def render_text(self, numbered: bool = False) -> str:
        """The screen as a box of text; `numbered`: each button after its number (b0 is 1),
        for a person who touches the buttons by number (the TUI's keys 1-4)."""
        inner = BOX_WIDTH - 4
        title = f" page {self.page_id} {self.page} "
        rows = ["+" + title.center(BOX_WIDTH - 2, "=") + "+"]

        def row(text: str) -> None:
            for part in text.split("\n"):
                for piece in wrap(part, inner):
                    rows.append("| " + _fit(piece, inner) + " |")

        if self.visible["more"] and self.texts["more"]:
            # the countdown strip lies over the titles
            row(f"0 [ {self.texts['more']} ]" if numbered else f"[ {self.texts['more']} ]")
        else:
            row(self.texts["t_zh"])
            row(self.texts["t_en"])
        rows.append("+" + "-" * (BOX_WIDTH - 2) + "+")
        for i in range(6):
            row(self.texts[f"l{i}"])
        big = self.texts["big"]
        if big:
            row(" " * max((inner - display_width(big)) // 2, 0) + big)
        buttons = [f"{index + 1} [ {self.texts[b]} ]" if numbered else f"[ {self.texts[b]} ]"
                   for index, b in enumerate(("b0", "b1", "b2", "b3"))
                   if self.visible[b] and self.texts[b]]
        if buttons:
            rows.append("+" + "-" * (BOX_WIDTH - 2) + "+")
            for button in buttons:
                row(button)
        rows.append("+" + "=" * (BOX_WIDTH - 2) + "+")
        return "\n".join(rows)


class DisplaySim:
    def __init__(
        self,
        device_path: str,
        *,
        layout: dict[str, Any] | None = None,
        on_change: Callable[[DisplaySim], None] | None = None,
        settle_s: float = 0.1,
    ) -> None:
        self._serial = serial.Serial(device_path, baudrate=115200, timeout=0.02)
        self._screen = HmiScreen(layout)
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._settled = True
        self.updates = 0  # screen updates that have settled
        self.on_change = on_change
        self.settle_s = settle_s
        self._thread = threading.Thread(target=self._run, name="display-sim", daemon=True)
        self._thread.start()

    @property
    def page(self) -> str:
        with self._changed:
            return self._screen.page

    @property
    def page_shown_at(self) -> float:
        """time.monotonic() when the current page was loaded."""
        with self._changed:
            return self._screen.shown_at

    def text(self, component: str) -> str:
        with self._changed:
            return self._screen.texts[component]

    def visible(self, component: str) -> bool:
        with self._changed:
            return self._screen.visible[component]

    @property
    def errors_sent(self) -> list[int]:
        with self._changed:
            return list(self._screen.errors_sent)

    def render_text(self, numbered: bool = False) -> str:
        with self._changed:
            return self._screen.render_text(numbered)

    def overflowing(self) -> list[str]:
        with self._changed:
            return self._screen.overflowing()

    def touch(self, component: str) -> bool:
        """Press and release `component` on the current page; False if it is not a visible
        button there (nothing is sent, as nothing would be on the real screen)."""
        with self._changed:
            events = self._screen.touch_events(component)
        if events:
            with self._write_lock:
                self._serial.write(events)
        return bool(events)

    def restart(self) -> None:
        """The screen powers up again (its cable plugged back in): blank on its first page,
        anything it had half received forgotten, and it tells the kiosk so, as a real one does
        at start-up."""
        with self._changed:
            self._screen._buf.clear()
            reply = self._screen.receive(b"rest" + END)
            self._settled = False
        with self._write_lock:
            self._serial.write(reply)

    def wait_for(self, predicate: Callable[[DisplaySim], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._settled and predicate(self), timeout)

    def wait_for_page(self, name: str, timeout: float) -> bool:
        return self.wait_for(lambda sim: sim._screen.page == name, timeout)

    def _run(self) -> None:
        import time

        last_byte = 0.0
        while not self._stop.is_set():
            try:
                data = self._serial.read(max(1, self._serial.in_waiting))
            except (serial.SerialException, OSError, TypeError):
                return  # port closed under us
            now = time.monotonic()
            if data:
                with self._changed:
                    reply = self._screen.receive(data)
                    self._settled = False
                last_byte = now
                if reply:
                    with self._write_lock:
                        self._serial.write(reply)
                continue
            if not self._settled and now - last_byte >= self.settle_s:
                with self._changed:
                    self._settled = True
                    self.updates += 1
                    self._changed.notify_all()
                if self.on_change:
                    self.on_change(self)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._serial.close()

    def __enter__(self) -> DisplaySim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
