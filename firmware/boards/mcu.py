# What the microcontroller boards (esp32s3, rp2040) share: hardware UARTs and the watchdog from
# machine, Wi-Fi from network, all set up from the board's pin map (hardware/boards/<name>.json).
import asyncio
import gc

import machine
from boards.common import LIGHT_PATTERNS, BoardError, find_spec, uart_spec

_PARITY = {"none": None, "even": 0, "odd": 1}
WIFI_CONNECT_MS = 20000


def hardware_uart(s):
    """machine.UART from a pin-map entry; timeout 0 so a read returns only what has arrived."""
    return machine.UART(
        s["id"], baudrate=s["baud"], bits=s.get("bits", 8),
        parity=_PARITY[s.get("parity", "none")], stop=s.get("stop", 1),
        tx=machine.Pin(s["tx"]), rx=machine.Pin(s["rx"]),
        timeout=0, rxbuf=s.get("rxbuf", 512))


class McuBoard:
    name = None

    def __init__(self, config, flash_dir):
        self.config = config
        self.flash_dir = flash_dir
        self.spec = find_spec(self.name)
        self._ports = {}  # role -> the open UART: opened once, reused after a driver restart

    async def open_uart(self, role):
        port = self._ports.get(role)
        if port is None:
            port = self._ports[role] = self.make_uart(role, uart_spec(self.spec, role))
        return asyncio.StreamReader(port), asyncio.StreamWriter(port, {})

    def make_uart(self, role, s):
        if s.get("kind", "hardware") != "hardware":
            raise BoardError("%s: UART kind %s is not built into this board" % (role, s["kind"]))
        return hardware_uart(s)

    async def start_network(self):
        import network

        wlan = network.WLAN(network.STA_IF)
        if wlan.isconnected():
            return
        net = self.config.get("network")
        if not net:
            raise OSError("no network settings in config.json")
        wlan.active(True)
        wlan.connect(net["ssid"], net["password"])
        waited = 0
        while not wlan.isconnected():
            if waited >= WIFI_CONNECT_MS:
                raise OSError("Wi-Fi %s: not connected" % net["ssid"])
            await asyncio.sleep_ms(250)
            waited += 250

    def watchdog(self, timeout_ms):
        return machine.WDT(timeout=timeout_ms)

    def heap_baseline(self):
        """Bytes held once the firmware is loaded (frozen code stays in flash)."""
        gc.collect()
        return gc.mem_alloc()

    def reset(self):
        machine.reset()

    def status_light(self):
        return StatusLight(self.spec.get("status_led"), self.light_timer)

    def light_timer(self):
        return machine.Timer(-1)  # a virtual timer (the rp2's only kind): it runs at the REPL too


class StatusLight:
    """The board's status LED (pin map: {"pin", "kind": "plain" | "rgb"}; none: a no-op),
    blinking on a timer of its own, so the asyncio loop need not run for it."""

    def __init__(self, led, timer):
        self._pattern = None
        self._lit = False
        self._timer = None
        self._make_timer = timer
        self._pixel = self._pin = None
        if not led:
            return
        if led.get("kind") == "rgb":  # a WS2812 (the ESP32-S3-DevKitC-1's)
            import neopixel

            self._pixel = neopixel.NeoPixel(machine.Pin(led["pin"]), 1)
        else:
            self._pin = machine.Pin(led["pin"], machine.Pin.OUT)

    def show(self, pattern):
        if pattern == self._pattern or (self._pin is None and self._pixel is None):
            return
        self._pattern = pattern
        if self._timer is not None:
            self._timer.deinit()
            self._timer = None
        blink_ms = LIGHT_PATTERNS[pattern][0]
        self._set(True)
        if blink_ms:
            self._timer = self._make_timer()
            self._timer.init(period=blink_ms, mode=machine.Timer.PERIODIC,
                             callback=lambda _t: self._set(not self._lit))

    def _set(self, lit):
        self._lit = lit
        if self._pin is not None:
            self._pin.value(1 if lit else 0)
            return
        self._pixel[0] = LIGHT_PATTERNS[self._pattern][1] if lit else (0, 0, 0)
        self._pixel.write()
