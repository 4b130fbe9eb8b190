"""The rig's handle on a firmware process: what the firmware says as it dies reaches the
technician (the TUI's log) and the tests (RigError), and never blocks the firmware."""

from __future__ import annotations

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
