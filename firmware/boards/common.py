# What the firmware asks of a board, and the pin-map loader. Each board module (unix, esp32s3,
# rp2040) defines `Board(config, flash_dir)` with:
#   name                        "unix" | "esp32s3" | "rp2040"
#   spec                        its hardware/boards/<name>.json (UART settings, pins)
#   await open_uart(role)       -> (asyncio.StreamReader, asyncio.StreamWriter) for card, printer,
#                               display or gateway; a read returns what has arrived (>= 1 byte).
#                               Called again for a role (the gateway link after its line failed),
#                               it opens the UART anew and closes the one it gave before (or gives
#                               its one hardware UART again)
#   await start_network()       brings up the LAN before a TCP gateway is dialled (no-op if none)
#   watchdog(timeout_ms)        -> an object with feed(); resets a hung board
#   heap_baseline()             -> bytes of heap held once the firmware is loaded (the unix board
#                               can first hold back the heap a board keeps its code in: flash)
#   reset()                     restarts the board (the unix port exits; its launcher restarts it)
#   status_light()              -> an object with show(pattern): the board's status LED, for a
#                               technician at the kiosk (patterns in LIGHT_PATTERNS; it keeps
#                               blinking on its own, at the REPL after a fault too)
# and, at module level, prepare_random(): called before provisioning makes the kiosk's key, it
# makes os.urandom truly random (an ESP32's radio on). Only modules in boards/ import `machine`.
import json
import sys


class BoardError(Exception):
    pass


# The status LED: what a technician sees on the board, whatever the screen shows (a dark screen,
# its cable out). Each pattern: ms on, then as long off (0: steady), and a colour for an RGB LED.
LIGHT_PATTERNS = {
    "serving": (0, (0, 24, 0)),  # steady green: in service
    "out_of_service": (1000, (40, 20, 0)),  # slow amber blink: the screen says why
    "fault": (150, (40, 0, 0)),  # fast red blink: it cannot start, its log says why
}


def find_spec(name):
    """The pin map boards/<name>.json, looked up along sys.path (it is staged beside boards/);
    or <name>.json there, as a frozen image's flash holds it (a boards/ folder on the flash
    would hide the frozen boards package)."""
    for root in sys.path:
        for place in ("boards/", ""):
            try:
                with open((root + "/" if root else "") + place + name + ".json") as f:
                    return json.load(f)
            except OSError:
                continue
    raise BoardError("no boards/%s.json on the import path" % name)


def uart_spec(spec, role):
    uarts = spec.get("uarts", {})
    if role not in uarts:
        raise BoardError("board %s has no %s UART" % (spec.get("board"), role))
    return uarts[role]


def board_module(name):
    """boards/<name>: its Board, and prepare_random() for provisioning."""
    return __import__("boards." + name, None, None, ["Board"], 0)


def load_board(config, flash_dir):
    return board_module(config["board"]).Board(config, flash_dir)


class NoWatchdog:
    """Stands in where there is no hardware watchdog (the unix port): a hung simulated kiosk is
    noticed and restarted by whatever launched it, not by this object."""

    def feed(self):
        pass
