"""A technician's kiosk from the command line alone: `kiosk fw devices` for the card reader,
printer and display, `kiosk fw provision --board unix` on them, `kiosk fw run`, a real gateway.
(Before it, only Python code could make the devices a provisioned unix kiosk needs.)"""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

from onestop.host.bench.gateway import GatewayProcess
from onestop.host.gateway.kiosk_client import pinned_gateway_key
from onestop.host.gateway.ledger import open_ledger
from onestop.host.sim.rig import TOUCH_GUARD_MS

KIOSK = [sys.executable, "-m", "onestop.host.cli"]
WAIT_S = 60.0
# A person reads the page first: the kiosk ignores presses before its touch guard has passed.
TOUCH_AFTER_S = TOUCH_GUARD_MS / 1000 + 0.4


class Console:
    """`kiosk fw devices` as a technician types at it: its output read as it comes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([*KIOSK, "fw", "devices"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no {pattern!r} in:\n" + "\n".join(self.seen[-60:]))

    def type(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()


def kiosk(*args: str) -> str:
    done = subprocess.run([*KIOSK, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_kiosk_provisioned_and_run_by_hand_on_the_simulated_devices_settles(
        tmp_path: Path, ledger_template: Path) -> None:
    for name in ("ledger.sqlite", "gateway.key"):
        shutil.copy2(ledger_template / name, tmp_path / name)
    db = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    gateway = GatewayProcess(db, tmp_path / "gateway.key", tmp_path / "gateway.log")
    console = Console()
    run = None
    try:
        gateway.start()
        with closing(open_ledger(db)) as ledger:
            kid, verifier = pinned_gateway_key(ledger)
        uarts = {role: console.until(rf"^  {role}\s+(\S+)$").group(1)
                 for role in ("card", "printer", "display")}
        console.until("^commands")
        flash = tmp_path / "flash"
        provisioned = kiosk(
            "fw", "provision", "--board", "unix", "--dir", str(flash), "--kiosk-id", "K0042",
            "--gateway", f"tcp:127.0.0.1:{gateway.port}", "--gateway-kid", kid,
            "--gateway-public-key", verifier.public_key.hex(),
            *[arg for role, path in uarts.items() for arg in ("--uart", f"{role}={path}")])
        public = re.search(r"kiosk public key: ([0-9a-f]{64})", provisioned).group(1)
        kiosk("gateway", "enroll", "--db", db, "--kiosk-id", "K0042", "--public-key", public)
        run = subprocess.Popen([*KIOSK, "fw", "run", "--dir", str(flash)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        console.until("^--- screen: welcome")
        console.type("card P001")
        console.until("^--- screen: bills")
        time.sleep(TOUCH_AFTER_S)
        console.type("touch 1")
        console.until("^--- screen: confirm")
        time.sleep(TOUCH_AFTER_S)
        console.type("touch 1")
        console.until("^--- receipt")
        console.until("cut\\)$")  # the whole receipt, to its cut
        console.type("pull")
        console.until("^--- screen: welcome")
        console.type("touch 9")
        console.until("not a command: touch 9")  # said, and the console goes on
        console.type("quit")
        assert console.proc.wait(timeout=15) == 0
        with closing(open_ledger(db)) as ledger:
            (settlement,) = [s for day in _days() for s in ledger.settlements_on(day)]
        assert settlement.kiosk_id == "K0042" and settlement.psn_no == "P001"
    finally:
        if run is not None:
            run.terminate()
            run.wait(timeout=15)
        if console.proc.poll() is None:
            console.proc.kill()
            console.proc.wait()
        gateway.stop()


def _days() -> list[str]:
    from datetime import date, timedelta

    today = date.today()
    return [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)]
