"""Fixtures shared by the driver tests: the drivers precompiled as they are deployed (the
firmware build's own mpy-cross step), MicroPython in the board's 64 KB heap and in a roomy one
(to count every byte allocated with the collector off), and the GBK flash tables.

A test module names the drivers it needs: `DRIVERS = ("gbk", "display")`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from onestop.host.fwtables import build_gbk_tables
from onestop.host.fwtools import FIRMWARE_DIR, compile_modules
from onestop.host.mpy import Worker
from onestop.host.sim.link import SerialLink

SUPPORT = Path(__file__).parent / "support"


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> str:
    dest = tmp_path_factory.mktemp("flash")
    build_gbk_tables(dest)
    return str(dest)


@pytest.fixture(scope="module")
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's DRIVERS as deployed: drivers/<name>.mpy under the returned folder."""
    built = tmp_path_factory.mktemp("mpy")
    sources = [FIRMWARE_DIR / "drivers" / f"{name}.py" for name in request.module.DRIVERS]
    compile_modules(sources, built / "drivers")
    return built


@pytest.fixture(scope="module")
def mp(compiled: Path) -> Iterator[Worker]:
    """In the board's 64 KB heap."""
    with Worker(heapsize="64K", paths=[compiled, SUPPORT]) as worker:
        yield worker


@pytest.fixture(scope="module")
def mp_roomy(compiled: Path) -> Iterator[Worker]:
    """Room to run with the garbage collector off, to count every byte allocated."""
    with Worker(heapsize="1M", paths=[compiled, SUPPORT]) as worker:
        yield worker


@pytest.fixture
def ptys() -> Iterator[dict[str, str]]:
    """Pseudo-terminals for a unix kiosk's card reader, printer and display: {role: path}.
    A card reader and a printer answer on their lines: a kiosk whose reader or printer is
    silent stays out of service and never shows the welcome page."""
    from onestop.host.sim.card import CardReaderSim
    from onestop.host.sim.printer import PrinterSim

    links = [SerialLink(role) for role in ("card", "printer", "display")]
    reader = CardReaderSim(links[0].device_path)
    printer = PrinterSim(links[1].device_path)
    yield {link.name: link.host_path for link in links}
    printer.close()
    reader.close()
    for link in links:
        link.close()
