"""The rig's handle on a firmware process: what the firmware says as it dies reaches the
technician (the TUI's log) and the tests (RigError), and never blocks the firmware."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from onestop.host.fwtools import stage_firmware
from onestop.host.sim.rig import Firmware, RigError


def test_what_the_firmware_wrote_to_stderr_is_kept_for_whoever_asks_why_it_stopped(
        tmp_path: Path) -> None:
    stage = stage_firmware(tmp_path / "stage", "unix", compiled=True)
    # a firmware that fails at boot the way MicroPython's own faults do: a line on stderr
    (stage / "main.py").write_text(
        "import sys\n"
        "for n in range(10000):\n"  # more than a pipe holds: it must not block on a full pipe
        "    sys.stderr.write('noise %d\\n' % n)\n"
        "sys.stderr.write('FATAL: the flash is unreadable\\n')\n"
        "sys.exit(4)\n")
    flash = tmp_path / "flash"
    flash.mkdir()
    firmware = Firmware(flash, stage)
    with pytest.raises(RigError, match="the flash is unreadable"):
        firmware.wait_event("ready", timeout=20)
    tail = firmware.stderr_tail()
    assert tail[-1] == "FATAL: the flash is unreadable"
    assert tail[-2] == "noise 9999" and len(tail) <= 40
    assert firmware.proc.returncode == 4


def test_a_typed_command_with_an_unbalanced_quote_is_said_not_fatal() -> None:
    # `kiosk fw devices` ended with a traceback at `card "P001`
    import io
    from types import SimpleNamespace

    from onestop.host.sim.devices_cli import DeviceConsole

    out = io.StringIO()
    console = DeviceConsole(lambda **_kw: SimpleNamespace(close=lambda: None), out)
    assert console.run('card "P001') is True  # the console goes on
    assert "not a command (No closing quotation)" in out.getvalue()


def test_every_line_the_firmware_wrote_is_kept_in_its_log_file(tmp_path: Path) -> None:
    """The firmware's log lived only in a 2000-line panel of the TUI: gone at exit."""
    stage = stage_firmware(tmp_path / "stage", "unix", compiled=True)
    (stage / "main.py").write_text(
        "import sys\n"
        "print('{\"ev\": \"ready\", \"ms\": 1}')\n"
        "print('not JSON')\n"
        "sys.stderr.write('FATAL: the flash is unreadable\\n')\n"
        "sys.exit(4)\n")
    flash = tmp_path / "flash"
    flash.mkdir()
    log = tmp_path / "firmware.log"
    for _boot in range(2):  # a second boot appends
        firmware = Firmware(flash, stage, log_path=log)
        firmware.wait_event("ready", timeout=20)
        firmware.proc.wait(timeout=20)
        firmware.power_cut()
    lines = log.read_text(encoding="utf-8").splitlines()
    said = [line.split(" ", 2)[2] for line in lines]  # after the host's date and time
    # stdout and stderr are read apart, so their lines may come in either order
    written = sorted(['{"ev": "ready", "ms": 1}', "not JSON",
                      "stderr: FATAL: the flash is unreadable"])
    assert len(said) == 10, said
    for boot in (said[:5], said[5:]):
        assert boot[0].startswith("--- power on (firmware process"), boot
        assert sorted(boot[1:4]) == written, boot
        assert boot[4] == "--- the firmware had exited (status 4)", boot


def test_each_receipt_is_saved_as_text_and_png_numbered_after_those_there(
        tmp_path: Path) -> None:
    from onestop.host.sim.printer import Line, Receipt, Span
    from onestop.host.sim.rig import ReceiptFiles

    folder = tmp_path / "receipts"
    folder.mkdir()
    (folder / "004.txt").write_text("an earlier run's\n")
    files = ReceiptFiles(folder)
    whole = Receipt(items=[Line([Span("个人支付 You pay 16,562.50")])], cut="full")
    torn = Receipt(items=[Line([Span("医保自助结算")])], stopped_by="paper_out")
    files(whole)
    files(torn)
    assert [p.name for p in files.saved] == ["005.txt", "006-incomplete.txt"]
    assert (folder / "005.txt").read_text(encoding="utf-8") == whole.text() + "\n"
    assert "receipt incomplete" in (folder / "006-incomplete.txt").read_text(encoding="utf-8")
    for name in ("005.png", "006-incomplete.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_simulated_kiosks_touch_guard_is_the_boards_default() -> None:
    # the simulated resident and the hardware-less kiosk tests time their touches by it
    from onestop.host.sim.rig import TOUCH_GUARD_MS

    config = Path(__file__).resolve().parents[3] / "firmware" / "app" / "config.py"
    found = re.search(r'"touch_guard": (\d+)', config.read_text(encoding="utf-8"))
    assert found is not None and int(found.group(1)) == TOUCH_GUARD_MS
