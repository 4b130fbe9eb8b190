# What the microcontroller boards (esp32s3, rp2040) share: hardware UARTs and the watchdog from
# machine, Wi-Fi from network, all set up from the board's pin map (hardware/boards/<name>.json).
import asyncio
import gc

import machine
from boards.common import BoardError, find_spec, uart_spec

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
