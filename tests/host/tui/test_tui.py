"""`kiosk tui` driven through Textual's Pilot as a technician drives it: a real simulated hall
boots, P002's card goes in, the first bill is touched (a key) and confirmed (a button), the receipt
shows and the ledger has the settlement; after quitting no process of the hall is left.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from onestop.host.fwtools import stage_firmware
from onestop.host.sim.card import Latency
from onestop.host.tui.app import KioskTui
from textual.pilot import Pilot
from textual.widgets import RichLog, Static

QUICK = {"touch_guard": 200, "message": 600}  # ms: a quicker kiosk, as the e2e tests use


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage_firmware(tmp_path_factory.mktemp("firmware") / "stage", "unix", compiled=True)


async def until(pilot: Pilot, ready: Callable[[], object], what: str,
                timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def processes_mentioning(text: str) -> list[str]:
    """Live (not zombie) processes whose command line mentions `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # ended meanwhile
        if text in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


async def test_a_settlement_by_hand_then_quit_leaves_no_process(
        tmp_path: Path, stage: Path) -> None:
    app = KioskTui(tmp_path / "work", "P002", hall_options={
        "stage": stage, "card_latency": Latency.instant(), "timeouts_ms": QUICK})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.query_one("#screen", Static)
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            await until(pilot, lambda: "welcome" in str(screen.content), "the welcome screen")
            await pilot.press("i")
            await until(pilot, lambda: app.hall.display.page == "bills", "the bills")
            # P002 has one bill: a touch where there is no button is one line in the log, not
            # the hall's whole story (screens and firmware events) each time
            log = app.query_one("#log", RichLog)
            await pilot.press("4")
            refused = "touch button 4 failed: nothing to touch at 'b3': the bills page shows"

            def log_text() -> str:  # its lines wrap at the pane's width: no spaces compared
                return "".join("".join(line.text.split()) for line in log.lines)

            await until(pilot, lambda: "".join(refused.split()) in log_text(),
                        "the refused touch logged")
            assert "+===" not in log_text() and "page2bills" not in log_text()
            await pilot.press("1")
            await until(pilot, lambda: app.hall.display.page == "confirm", "the confirm page")
            assert await pilot.click("#touch0")  # the button does what the key does
            await until(pilot, lambda: len(app.hall.receipts()) == 1, "the receipt printed")
            receipt = app.query_one("#receipt", Static)
            printed = app.hall.receipts()[0].text()
            await until(pilot, lambda: str(receipt.content) == printed, "the receipt shown")
            settlements = await asyncio.to_thread(app.hall.settlements)
            assert len(settlements) == 1
            assert processes_mentioning(str(tmp_path)), "the scan sees the hall's processes"

            # The gateway dies on its own: the status says so, and g brings it back.
            status = app.query_one("#status", Static)

            def status_text() -> str:  # fields keep their spaces unbroken (U+00A0)
                return str(status.content).replace("\u00a0", " ")

            assert "gateway up" in status_text() and "receipts: 1" in status_text()
            await pilot.press("p")
            await until(pilot, lambda: "paper OUT" in status_text(), "paper out shown")
            await until(pilot, lambda: "paperout:therollranout" in log_text(),
                        "the log saying what p did")
            await pilot.press("p")
            await until(pilot, lambda: "paperloaded" in log_text(), "paper loaded said")
            app.hall.gateway.kill()
            await until(pilot, lambda: "gateway DOWN (it exited on its own"
                        in status_text(), "the status to show the gateway died")
            await pilot.press("g")
            await until(pilot, lambda: "gateway up" in status_text(), "the gateway back")
            await pilot.press("g")
            await until(pilot, lambda: "gateway DOWN   " in status_text(),
                        "the gateway stopped by hand")
            await pilot.press("q")
            await until(pilot, lambda: app.closed and app.hall is None, "the hall closed")
        assert app.return_value == 0
        deadline = time.monotonic() + 10
        while (left := processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not left, f"still running after quit: {left}"
    finally:
        app.close_hall()  # a failed test leaves nothing running either



@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux to close a real terminal")
def test_a_closed_terminal_ends_kiosk_tui_and_everything_it_started(tmp_path: Path) -> None:
    """A technician's window closed (tmux kill-session, as a dropped ssh): the TUI cannot draw
    or restore that terminal any more, yet it must end and leave nothing holding the work
    directory (its lock would refuse the next `kiosk tui` there)."""
    session = f"onestop-tui-{os.getpid()}"
    command = shlex.join([sys.executable, "-m", "onestop.host.cli", "tui", "--workdir",
                          str(tmp_path / "work")])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                    command], check=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                  capture_output=True, text=True).stdout
            if "page 0 welcome" in pane:
                break
            time.sleep(0.2)
        assert "page 0 welcome" in pane, pane
        subprocess.run(["tmux", "kill-session", "-t", session], check=True)
        deadline = time.monotonic() + 45
        while (left := processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"still running after the terminal closed: {left}"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        for line in processes_mentioning(str(tmp_path)):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


async def test_every_control_label_is_whole_in_an_80_by_24_terminal(
        tmp_path: Path, stage: Path) -> None:
    """A technician's laptop terminal: the controls' labels were cut to "Touch" (which one?)."""
    from textual.widgets import Button

    app = KioskTui(tmp_path / "work", "P002", hall_options={
        "stage": stage, "card_latency": Latency.instant(), "timeouts_ms": QUICK})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            for button in app.query(Button):
                label = str(button.label)
                assert button.content_region.width >= len(label), (label, button.content_region)
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            await pilot.press("q")
            await until(pilot, lambda: app.closed and app.hall is None, "the hall closed")
    finally:
        app.close_hall()
