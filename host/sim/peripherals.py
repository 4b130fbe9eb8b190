"""A kiosk's three devices simulated, each on a pseudo-terminal UART paced at the baud rate:
the card reader, the receipt printer and the touch display. What a unix kiosk's UARTs are wired
to: the hall's (rig.Hall), and those of a kiosk run by hand (`kiosk fw devices`).
"""

from __future__ import annotations

from collections.abc import Callable

from onestop.host.fwtools import ROLES
from onestop.host.sim.card import CardReaderSim, Latency
from onestop.host.sim.display import DisplaySim
from onestop.host.sim.link import SerialLink
from onestop.host.sim.printer import PrinterSim


class Peripherals:
    def __init__(self, baud: int = 115200, card_latency: Latency | None = None,
                 on_screen: Callable[[DisplaySim], None] | None = None) -> None:
        self.links: dict[str, SerialLink] = {}
        self._devices: list[CardReaderSim | PrinterSim | DisplaySim] = []
        try:
            self.links = {role: SerialLink(role, baud=baud) for role in ROLES}
            self.card = CardReaderSim(self.links["card"].device_path,
                                      latency=card_latency or Latency())
            self._devices.append(self.card)
            self.printer = PrinterSim(self.links["printer"].device_path)
            self._devices.append(self.printer)
            self.display = DisplaySim(self.links["display"].device_path, on_change=on_screen)
            self._devices.append(self.display)
        except BaseException:
            self.close()
            raise

    def uarts(self) -> dict[str, str]:
        """The kiosk's side of each UART, by role: what `kiosk fw provision --uart` takes."""
        return {role: link.host_path for role, link in self.links.items()}

    def close(self) -> None:
        for device in self._devices:
            device.close()
        for link in self.links.values():
            link.close()
