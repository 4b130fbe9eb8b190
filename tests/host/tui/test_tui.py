"""`kiosk tui` driven through Textual's Pilot as a technician drives it: a real simulated hall
boots, P002's card goes in, the first bill is touched (a key) and confirmed (a button), the receipt
shows and the ledger has the settlement; after quitting no process of the hall is left.
"""

from __future__ import annotations

import argparse
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
from onestop.host.gateway.bills import settlement_today
from onestop.host.sim.card import Latency
from onestop.host.tui.app import KioskTui
from textual import events
from textual.binding import Binding
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


def kiosk_tui(tmp_path: Path, stage: Path, **timeouts_ms: int) -> KioskTui:
    """The TUI on a quick kiosk (P002's card selected), its hall in `tmp_path`."""
    return KioskTui(tmp_path / "work", "P002", hall_options={
        "stage": stage, "card_latency": Latency.instant(),
        "timeouts_ms": {**QUICK, **timeouts_ms}})


def log_text(app: KioskTui) -> str:
    """The log as one string without spaces (its lines wrap at the pane's width)."""
    return "".join("".join(line.text.split()) for line in app.query_one("#log", RichLog).lines)


def logged(app: KioskTui, message: str) -> Callable[[], bool]:
    return lambda: "".join(message.split()) in log_text(app)


def status_text(app: KioskTui) -> str:
    return str(app.query_one("#status", Static).content)


def screen_text(app: KioskTui) -> str:
    return str(app.query_one("#screen", Static).content)


async def quit_and_wait(pilot: Pilot, app: KioskTui) -> None:
    await pilot.press("q")
    await until(pilot, lambda: app.closed and app.hall is None, "the hall closed")


async def past_the_touch_guard(pilot: Pilot, app: KioskTui) -> None:
    """Until the page on the screen has been up a little longer than the kiosk's touch guard,
    as for a resident who reads it before touching (a touch sooner is ignored)."""
    hall = app.hall
    await pilot.pause(max(0.0, hall.display.page_shown_at + hall.touch_guard_s + 0.5
                          - time.monotonic()))


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
            await pilot.press("4")
            # refused by the screen, or (pressed as the page came up, the button not yet
            # hidden) by the kiosk, which says so
            refused = ("touch on-screen button 4 failed: nothing to touch at 'b3': "
                       "the bills page shows",
                       "touch on-screen button 4: ignored by the kiosk: the bills page has no "
                       "button 4")
            await until(pilot, lambda: any(logged(app, said)() for said in refused),
                        "the refused touch logged")
            assert "+===" not in log_text(app) and "page2bills" not in log_text(app)
            await past_the_touch_guard(pilot, app)
            await pilot.press("1")
            await until(pilot, lambda: app.hall.display.page == "confirm", "the confirm page")
            await past_the_touch_guard(pilot, app)
            assert await pilot.click("#touch0")  # the button does what the key does
            await until(pilot, lambda: len(app.hall.receipts()) == 1, "the receipt printed")
            receipt = app.query_one("#receipt", Static)
            printed = app.hall.receipts()[0].text()
            await until(pilot, lambda: str(receipt.content) == printed, "the receipt shown")
            # kept in the work directory, with the firmware's log (the panels' are lost at exit)
            work = tmp_path / "work"
            await until(pilot, logged(app, f"receipt saved: {work / 'receipts' / '001.txt'}"),
                        "the receipt's file named in the log")
            assert (work / "receipts" / "001.txt").read_text(encoding="utf-8") == printed + "\n"
            assert (work / "receipts" / "001.png").stat().st_size > 0
            firmware_log = (work / "firmware.log").read_text(encoding="utf-8")
            assert '"ev": "idle"' in firmware_log and "--- power on" in firmware_log
            settlements = await asyncio.to_thread(app.hall.settlements)
            assert len(settlements) == 1
            assert processes_mentioning(str(tmp_path)), "the scan sees the hall's processes"

            # P002's one bill is settled: b gives every demo resident new bills, so the
            # training goes on without a restart (it was "No bills waiting" for everyone)
            await pilot.press("o")
            await until(pilot, lambda: app.hall.display.page == "welcome", "the welcome page")
            await pilot.press("b")
            await until(pilot, logged(app, "new bills for the demo residents, dated today: "
                                           "persons: 0 added"), "the new bills imported")
            today = settlement_today()  # China's, as the bills are dated
            bills_file = work / "bills" / f"demo-{today:%Y%m%d}-1.json"
            assert logged(app, f"7 added, 0 updated, 0 unchanged (imported from {bills_file})")()
            await pilot.press("i")
            await until(pilot, lambda: today.isoformat() in screen_text(app),
                        "P002's new bill, dated today")
            await pilot.press("o")
            await until(pilot, lambda: app.hall.display.page == "welcome", "the welcome page")

            # The gateway dies on its own: the status says so, and g brings it back.
            assert "gateway up" in status_text(app) and "receipts: 1" in status_text(app)
            await pilot.press("p")
            await until(pilot, lambda: "paper OUT" in status_text(app), "paper out shown")
            await until(pilot, logged(app, "paper out: the roll ran out"),
                        "the log saying what p did")
            await pilot.press("p")
            await until(pilot, logged(app, "paper loaded"), "paper loaded said")
            await pilot.press("c")
            await until(pilot, lambda: "cover OPEN" in status_text(app), "the cover open")
            await pilot.press("c", "n")
            await until(pilot, lambda: "paper near end   " in status_text(app),
                        "the cover closed, the paper near its end")
            app.hall.gateway.kill()
            await until(pilot, lambda: "gateway DOWN (it exited on its own"
                        in status_text(app), "the status to show the gateway died")
            await pilot.press("g")
            await until(pilot, lambda: "gateway up" in status_text(app), "the gateway back")
            await pilot.press("g")
            await until(pilot, lambda: "gateway DOWN   " in status_text(app),
                        "the gateway stopped by hand")
            await quit_and_wait(pilot, app)
        assert app.return_value == 0
        deadline = time.monotonic() + 10
        while (left := processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not left, f"still running after quit: {left}"
    finally:
        app.close_hall()  # a failed test leaves nothing running either



@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux to close a real terminal")
@pytest.mark.parametrize("keep", [False, True], ids=["temporary", "kept"])
def test_a_closed_terminal_ends_kiosk_tui_and_everything_it_started(
        tmp_path: Path, keep: bool) -> None:
    """A technician's window closed (tmux kill-session, as a dropped ssh): the TUI cannot draw
    or restore that terminal any more, yet it must end and leave nothing holding the work
    directory (its lock would refuse the next `kiosk tui` there). Its temporary work directory
    (the ledger: residents' names and ID numbers; the gateway's key) was left behind, and the
    message saying so went to the dead terminal: now it is removed, as at q, unless --keep."""
    session = f"onestop-tui-{os.getpid()}-{int(keep)}"
    tmp = tmp_path / "tmp"  # where kiosk tui makes its temporary work directory
    tmp.mkdir()
    command = shlex.join(["env", f"TMPDIR={tmp}", sys.executable, "-m", "onestop.host.cli",
                          "tui", *(["--keep"] if keep else [])])
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
        (workdir,) = tmp.glob("kiosk-tui-*")
        assert (workdir / "ledger.sqlite").exists()
        tui = Path("/proc") / subprocess.run(  # env ran it in its own process
            ["tmux", "display-message", "-p", "-t", session, "#{pane_pid}"],
            capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["tmux", "kill-session", "-t", session], check=True)
        deadline = time.monotonic() + 45
        while ((left := processes_mentioning(str(tmp_path))) or tui.exists()) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"still running after the terminal closed: {left}"
        assert not tui.exists(), "kiosk tui still running after the terminal closed"
        assert workdir.exists() == keep, sorted(p.name for p in workdir.iterdir())
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        for line in processes_mentioning(str(tmp_path)):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


@pytest.mark.parametrize("size", [(80, 24), (78, 20)], ids=["80x24", "78x20"])
async def test_every_control_label_is_whole_and_every_key_has_help(
        tmp_path: Path, stage: Path, size: tuple[int, int]) -> None:
    """A technician's laptop terminal, and the smallest the TUI takes: the controls' labels
    were cut ("Touch": which one?; at 78x20 "o card", "n near"); ? and F1 did nothing, the keys'
    help was under Ctrl-P, which the footer did not show, nor c and n; the receipt's amounts
    were below the fold with no key to scroll to them."""
    from onestop.host.tui.app import FOOTER, HelpScreen
    from onestop.host.tui.keys import KEYS
    from textual.widgets import Button
    from textual.widgets._footer import FooterKey

    width, _height = size
    app = KioskTui(tmp_path / "work", "P002", hall_options={
        "stage": stage, "card_latency": Latency.instant(), "timeouts_ms": QUICK})
    try:
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.2)
            for button in app.query(Button):
                label = str(button.label)  # whole, with the padding a button puts around it
                needed = len(label) + 2 * button.styles.line_pad
                assert button.content_region.width >= needed, (label, button.content_region)
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            # The status's fields whole: it wrapped "screen:" / "welcome" in the right pane.
            status = app.query_one("#status", Static)
            lines = status_text(app).splitlines()
            assert all(len(line) <= status.content_region.width for line in lines), lines
            assert any("screen: welcome" in line for line in lines), lines
            # The footer: help first, c and n there, everything whole at 80 ("q quit" is a
            # button too, and at 78 loses its end)
            shown = {key.action: key for key in app.query(FooterKey)}
            assert set(shown) == set(FOOTER) - {"touch(1)", "touch(2)", "touch(3)"}
            assert shown["help"].key == "question_mark" and shown["help"].region.x == 0
            for action, key in shown.items():
                if width >= 80 or action != "quit":
                    assert key.region.right <= width, (action, key.region)
            # ? and F1: every key of the app on the help screen
            for opener in ("question_mark", "f1"):
                await pilot.press(opener)
                await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
                text = str(app.screen.query_one("#help-text", Static).content)
                for key in KEYS:
                    assert f"  {key.shown}  " in text, key
                    assert " ".join(key.does.split()[:3]) in " ".join(text.split()), key
                await pilot.press("escape")
                await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "closed")
            # r: the receipt gets the whole left column (it had 3-6 rows; its amounts need 20)
            receipt_box = app.query_one("#receipt-box")
            await pilot.press("r")
            await until(pilot, lambda: receipt_box.content_region.height >= 14,
                        "the receipt to fill the column")
            assert not app.query_one("#screen").display
            # PgDn / ] and PgUp / [ scroll it (a receipt is 45 lines; here a stand-in)
            app.query_one("#receipt", Static).update("\n".join(f"line {n}" for n in range(45)))
            await pilot.pause(0.1)
            for down, up in (("pagedown", "pageup"), ("right_square_bracket",
                                                      "left_square_bracket")):
                await pilot.press(down)
                await until(pilot, lambda: receipt_box.scroll_y > 0, f"{down} scrolls")
                await pilot.press(up, up)
                await until(pilot, lambda: receipt_box.scroll_y == 0, f"{up} scrolls back")
            await pilot.press("r")
            await until(pilot, lambda: app.query_one("#screen").display, "the screen back")
            await quit_and_wait(pilot, app)
    finally:
        app.close_hall()


async def test_any_terminal_size_is_survived_and_too_small_says_how_big(
        tmp_path: Path, stage: Path) -> None:
    """Under ~62 columns a control button squeezed to 2 columns crashed Rich's wrapping, at
    start and on a resize. Now nothing crashes; a terminal too small says what size is needed."""
    from onestop.host.tui.app import MIN_COLUMNS, MIN_ROWS

    app = kiosk_tui(tmp_path, stage)
    try:
        async with app.run_test(size=(60, 24)) as pilot:
            too_small = app.query_one("#too-small", Static)
            main = app.query_one("#main")
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            assert too_small.display and not main.display
            text = str(too_small.content)
            assert f"at least {MIN_COLUMNS} columns and {MIN_ROWS} rows" in text
            for size in ((80, 24), (61, 24), (40, 12), (12, 4), (MIN_COLUMNS, MIN_ROWS)):
                await pilot.resize_terminal(*size)
                await pilot.pause(0.2)  # rendered at that size: a crash would end run_test
                fits = size >= (MIN_COLUMNS, MIN_ROWS)
                assert (main.display, too_small.display) == (fits, not fits), size
            await quit_and_wait(pilot, app)
        assert app.return_code == 0
    finally:
        app.close_hall()


async def test_a_second_card_is_refused_and_the_screen_numbers_its_buttons(
        tmp_path: Path, stage: Path) -> None:
    """A slot holds one card: `i` with one in swapped it (the firmware then settled the first
    resident's bill with another's card in). And the screen's buttons carry the number of the
    key that touches them, as the Keys help says."""
    app = kiosk_tui(tmp_path, stage)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            await pilot.press("i")
            await until(pilot, lambda: app.hall.display.page == "bills", "the bills")
            first_card = app.hall.card.card
            app.resident = "P001"
            await pilot.press("i")
            await until(pilot, logged(app, "a card is already in: take it out first (o)"),
                        "the second card refused")
            assert app.hall.card.card is first_card
            await until(pilot, lambda: "1 [ 北京大学第一医院" in screen_text(app),
                        "the bill's button numbered")
            await past_the_touch_guard(pilot, app)
            await pilot.press("1")
            await until(pilot, lambda: "1 [ 确认 Confirm ]" in screen_text(app)
                        and "2 [ 取消 Cancel ]" in screen_text(app), "confirm/cancel numbered")
            tooltips = {b.key: b.tooltip for b in app.BINDINGS if isinstance(b, Binding)}
            assert [tooltips[str(n)] for n in (1, 2, 3, 4)] == [
                f"touch on-screen button {n}" for n in (1, 2, 3, 4)]
            await quit_and_wait(pilot, app)
    finally:
        app.close_hall()


async def test_a_and_shift_a_select_the_resident_whose_card_i_inserts(
        tmp_path: Path, stage: Path) -> None:
    """The resident whose card i inserts could only be picked in the list at the top right,
    with the mouse or by tabbing to it. a / A select the next / previous one: the list shows
    it, the status line and the log say it; with a card in the slot, the card stays in and the
    choice is for the next card inserted."""
    from textual.widgets import Select

    app = kiosk_tui(tmp_path, stage)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            hall = app.hall
            select = app.query_one("#resident", Select)
            assert select.value == "P002" and "selected: P002" in status_text(app)
            await pilot.press("a")
            await until(pilot, lambda: select.value == "P003"
                        and "selected: P003" in status_text(app), "P003 selected")
            assert logged(app, "selected P003 李桂英 (special-hardship")()
            assert logged(app, "): i inserts their card")()
            for _ in range(3):  # round from the first to the last; keys typed together (as
                # a terminal sends them), ahead of the list's own change messages
                app.post_message(events.Key("A", "A"))
            await until(pilot, lambda: select.value == "P007"
                        and "selected: P007" in status_text(app), "P007 selected")
            await pilot.pause(0.5)  # the list's own change messages must not select again
            assert (select.value, app.resident) == ("P007", "P007")
            said = [line.text for line in app.query_one("#log", RichLog).lines
                    if line.text.startswith("selected ")]
            assert [line.split()[1] for line in said] == ["P003", "P002", "P001", "P007"], said
            await pilot.press("a")
            await until(pilot, lambda: select.value == "P001", "round to the first")
            await pilot.press("i")
            await until(pilot, lambda: "card in (P001)" in status_text(app), "P001's card in")
            await until(pilot, lambda: "张秀兰" in screen_text(app), "P001 served")
            # a card in the slot: the selection changes, the card stays
            await pilot.press("a")
            await until(pilot, logged(app, "the card in the slot (P001) stays in; i inserts "
                                           "P002's card once it is out (o)"), "said so")
            assert "card in (P001)" in status_text(app) and "selected: P002" in status_text(app)
            assert select.value == "P002" and hall.card.card.label == "P001"
            assert "张秀兰" in screen_text(app)
            await pilot.press("o")
            await until(pilot, lambda: hall.display.page == "welcome"
                        and "card out" in status_text(app), "the card out")
            await pilot.press("i")
            await until(pilot, lambda: "card in (P002)" in status_text(app), "P002's card in")
            await until(pilot, lambda: "王建国" in screen_text(app), "P002 served")
            # the list picks one too, said the same way
            select.value = "P005"
            await until(pilot, lambda: "selected: P005" in status_text(app), "P005 selected")
            assert app.resident == "P005" and logged(app, "selected P005 陈淑珍")()
            await quit_and_wait(pilot, app)
    finally:
        app.close_hall()


async def test_power_cut_after_confirm_then_power_on_prints_the_receipt_by_recovery(
        tmp_path: Path, stage: Path) -> None:
    """A dead firmware was invisible (the screen frozen on its page, the status all fine) and
    the power could not be cut. `k` cuts it (SIGKILL) and boots the same flash again: the
    settlement interrupted before its receipt printed is finished by the journal's recovery."""
    app = kiosk_tui(tmp_path, stage)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            await until(pilot, lambda: "firmware on, LED steady" in status_text(app),
                        "the board's LED lit")
            await pilot.press("i")
            await until(pilot, lambda: app.hall.display.page == "bills", "the bills")
            await past_the_touch_guard(pilot, app)
            await pilot.press("1")
            await until(pilot, lambda: app.hall.display.page == "confirm", "the confirm page")
            await past_the_touch_guard(pilot, app)
            await pilot.press("p", "1")  # the roll runs out, then the resident confirms
            await until(pilot, lambda: app.hall.display.page == "error", "waiting for paper")
            assert len(await asyncio.to_thread(app.hall.settlements)) == 1
            await pilot.press("k")
            await until(pilot, lambda: "firmware off (power cut" in status_text(app),
                        "the status saying the power is off")
            await until(pilot, lambda: "the kiosk is off" in screen_text(app), "a dark screen")
            # the status agrees with the panel (it said "screen: printing")
            assert "screen: dark (kiosk off)" in status_text(app), status_text(app)
            await pilot.press("2")
            await until(pilot, logged(app, "touch on-screen button 2: the kiosk is off"),
                        "a touch refused as the kiosk is off")
            await pilot.press("p", "k")  # paper loaded, power on: the same flash boots
            await until(pilot, lambda: len(app.hall.receipts()) == 1,
                        "the receipt printed by recovery", 60)
            await until(pilot, lambda: "firmware on" in status_text(app), "firmware on")
            # the card stayed in: its holder sees the visit's done page, what to pay
            await until(pilot, lambda: "screen: done" in status_text(app), "the done page")
            await until(pilot, lambda: "Settlement complete" in screen_text(app),
                        "the done page drawn")
            assert len(await asyncio.to_thread(app.hall.settlements)) == 1
            # power cut and back with the card still in, nothing left to finish: the kiosk
            # asks for the card, which is not a settlement done
            await pilot.press("k")
            await until(pilot, lambda: "firmware off (power cut" in status_text(app), "off")
            await pilot.press("k")
            await until(pilot, lambda: "screen: take card" in status_text(app),
                        "the take-card page named as such", 60)
            assert len(await asyncio.to_thread(app.hall.settlements)) == 1

            # the firmware dies on its own, with a traceback (SIGINT: MicroPython raises
            # KeyboardInterrupt wherever it is, and nothing in the firmware catches it)
            app.hall.firmware.proc.send_signal(signal.SIGINT)
            await until(pilot, lambda: "firmware not running (exited" in status_text(app),
                        "the status saying the firmware died")
            await until(pilot, logged(app, "the firmware is not running: it exited on its own"),
                        "the log saying so")
            # ...and what it said as it died (MicroPython writes the traceback on stdout): the
            # KeyboardInterrupt, or, when the signal lands while the GC runs a finaliser (heap
            # locked), the MemoryError MicroPython raises instead of building that exception
            await until(pilot, logged(app, "Traceback (most recent call last)"),
                        "the traceback in the log")
            await until(pilot, lambda: logged(app, "KeyboardInterrupt")()
                        or logged(app, "MemoryError: memory allocation failed, heap is locked")(),
                        "the traceback's exception in the log")
            await until(pilot, lambda: "screen: dark (kiosk off)" in status_text(app),
                        "the status's screen dark, as the panel (it said welcome)")
            assert "the kiosk is off" in screen_text(app)
            await quit_and_wait(pilot, app)
    finally:
        app.close_hall()


async def test_what_a_dying_firmware_wrote_to_stderr_is_in_the_log(
        tmp_path: Path, stage: Path) -> None:
    """The unix port's own fatal errors go to stderr, which the technician never saw: only
    "exited on its own (status 1)". (The rig's reading of stderr is tested in
    tests/host/sim/test_rig_firmware.py; here, that the TUI shows what it read.)"""
    app = KioskTui(tmp_path / "work", "P002", hall_options={
        "stage": stage, "card_latency": Latency.instant(), "timeouts_ms": QUICK})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            firmware = app.hall.firmware
            firmware.stderr_tail = lambda: ["FATAL: uncaught NLR 0x7f00"]
            firmware.proc.kill()
            await until(pilot, logged(app, "the firmware is not running: it exited on its own"),
                        "the log saying it died")
            assert logged(app, "firmware: FATAL: uncaught NLR 0x7f00")(), log_text(app)[-800:]
            await quit_and_wait(pilot, app)
    finally:
        app.close_hall()


class HeadlessTui(KioskTui):
    """For `kiosk tui` itself: no hall, headless; `quits_at_once` or its mount fails."""

    fails = False

    def build_hall(self) -> None:  # type: ignore[override]
        self._built.set()  # nothing built: nothing to wait for at quit

    def on_mount(self) -> None:
        if self.fails:
            raise RuntimeError("a bug in the TUI")
        self.exit(0)

    def run(self, **_options: object) -> int | None:  # type: ignore[override]
        return super().run(headless=True, size=(80, 24))


@pytest.mark.parametrize(("fails", "keep", "status", "left_behind"), [
    (False, False, 0, False), (False, True, 0, True), (True, False, 1, True)])
def test_kiosk_tui_exit_status_and_its_temporary_work_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        fails: bool, keep: bool, status: int, left_behind: bool) -> None:
    """An app that ended on an exception made `kiosk tui` exit 0 (Textual's run() returns None
    then); and each run without --workdir left a /tmp/kiosk-tui-* behind. Now: non-zero, and the
    directory it made is removed, unless kept (--keep, or a failure to look into)."""
    import tempfile

    from onestop.host import tui

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(HeadlessTui, "fails", fails)
    monkeypatch.setattr("onestop.host.tui.app.KioskTui", HeadlessTui)
    args = argparse.Namespace(workdir=None, keep=keep, resident="P002")
    assert tui.run(args) == status
    made = list(tmp_path.glob("kiosk-tui-*"))
    assert bool(made) == left_behind, made
    if left_behind:
        assert str(made[0]) in capsys.readouterr().err


async def test_a_kiosk_that_did_not_start_says_why_and_quitting_exits_non_zero(
        tmp_path: Path, stage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken install (no MicroPython, say): the technician reads why, quits, and the
    # command's status says it failed (so its temporary work directory is kept to look into).
    from onestop.host.tui import exit_status

    def no_hall(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("no micropython binary on this machine")

    monkeypatch.setattr("onestop.host.sim.rig.Hall", no_hall)  # imported when the hall is built
    app = kiosk_tui(tmp_path, stage)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, logged(app, "the kiosk did not start: no micropython binary"),
                        "the reason in the log")
            await quit_and_wait(pilot, app)
        assert exit_status(app) == 1
    finally:
        app.close_hall()


async def test_each_fault_is_caused_shown_and_undone(tmp_path: Path, stage: Path) -> None:
    """Only paper, cover, near end, gateway stop and power could be caused from the TUI. Now
    also a wrong card, a mute card, a card pulled mid-read, paper ending mid-receipt, the
    screen's cable, noise on the card reader's line, the gateway killed and its replies lost:
    each shows in the status line or the log, and its key (or the faults panel) undoes it."""
    from onestop.host.tui.app import FaultsScreen
    from textual.widgets import Button

    app = kiosk_tui(tmp_path, stage)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            hall = app.hall

            async def served_with(words: str, what: str) -> None:
                await until(pilot, lambda: words in screen_text(app), what)
                await pilot.press("o")
                await until(pilot, lambda: hall.display.page == "welcome"
                            and "card out" in status_text(app), "the card out, welcome")

            # the wrong card and the mute card
            await pilot.press("w")
            await until(pilot, lambda: "card in (bank card)" in status_text(app), "bank card")
            await served_with("This is not a social security card", "the wrong card refused")
            await pilot.press("m")
            await until(pilot, lambda: "card in (mute card)" in status_text(app), "mute card")
            await served_with("The card could not be read", "the mute card refused")

            # the card pulled mid-read: armed, undone, armed again and fired
            await pilot.press("y")
            armed = "FAULTS: y card pull armed"
            await until(pilot, lambda: armed in status_text(app), "the pull armed")
            await pilot.press("y")
            await until(pilot, lambda: armed not in status_text(app), "the pull disarmed")
            assert hall.card.pending_fault is None
            await pilot.press("y", "i")
            await until(pilot, logged(app, "the card was pulled out during the read"),
                        "the pull said to have happened")
            await until(pilot, lambda: "Card taken out" in screen_text(app), "the kiosk says")
            assert armed not in status_text(app) and "card out" in status_text(app)
            await until(pilot, lambda: hall.display.page == "welcome", "the welcome page")

            # the screen's cable: dark, touches refused; plugged in, the kiosk redraws it
            await pilot.press("s")
            await until(pilot, lambda: "screen: dark (cable unplugged: s)" in status_text(app),
                        "the screen dark in the status")
            assert "the screen's cable is unplugged" in screen_text(app)
            await pilot.press("1")
            await until(pilot, logged(app, "the screen is dark: its cable is unplugged"),
                        "a touch refused")
            await pilot.press("s")
            await until(pilot, logged(app, "fw display_restarted"), "the kiosk hears it")
            await until(pilot, lambda: "page 0 welcome" in screen_text(app)
                        and "Please insert" in screen_text(app), "the welcome page redrawn")
            assert "screen: welcome" in status_text(app)

            # noise on the card reader's line: the kiosk's log shows the reader failing
            await pilot.press("z")
            noisy = "FAULTS: z card line noisy"
            await until(pilot, lambda: noisy in status_text(app), "the noise in the status")
            await until(pilot, logged(app, "fw card_status_error"), "the reader failing", 60)
            await pilot.press("z")
            await until(pilot, lambda: noisy not in status_text(app), "the line clean")
            assert not hall.links["card"].noisy and not hall.links["card"].faults

            # on the printer's line: its status garbled, the kiosk out of service until clean
            await pilot.press("x")
            await until(pilot, lambda: "FAULTS: x printer line noisy" in status_text(app),
                        "the printer's noise in the status")
            await until(pilot, logged(app, "fw printer_not_ready"), "the printer failing", 60)
            await until(pilot, lambda: "firmware on, LED slow blink" in status_text(app),
                        "the board's LED blinking: out of service")
            await pilot.press("x")
            await until(pilot, logged(app, "fw back_in_service"), "back in service", 60)
            assert not hall.links["printer"].noisy and not hall.links["printer"].faults
            # and on the screen's (pages drawn through it go wrong: the kiosk redraws them)
            await pilot.press("v")
            await until(pilot, lambda: "FAULTS: v screen line noisy" in status_text(app),
                        "the screen's noise in the status")
            assert hall.links["display"].noisy
            await pilot.press("v")
            await until(pilot, lambda: "screen line noisy" not in status_text(app),
                        "the screen's line clean")
            assert not hall.links["display"].noisy and not hall.links["display"].faults

            # the gateway killed (-9), then started; its replies lost, then arriving again
            await pilot.press("G")
            await until(pilot, lambda: "gateway DOWN (killed -9" in status_text(app),
                        "the gateway killed")
            assert hall.gateway.process.returncode == -signal.SIGKILL
            await pilot.press("g")
            await until(pilot, lambda: "gateway up" in status_text(app), "the gateway back")
            await pilot.press("l")
            lost = "FAULTS: l gateway replies lost"
            await until(pilot, lambda: lost in status_text(app), "the replies lost")
            assert "g2k" in hall.tap.blocked
            await pilot.press("l")
            await until(pilot, lambda: lost not in status_text(app), "the replies back")

            # the faults panel: each fault's state; a click or a key there causes one
            await pilot.press("f")
            await until(pilot, lambda: isinstance(app.screen, FaultsScreen), "the panel")
            cover = app.screen.query_one("#fault-cover", Button)
            assert str(cover.label) == "c  printer cover open: no"
            await pilot.click("#fault-cover")
            await until(pilot, lambda: hall.printer.cover_open, "the cover opened by a click")
            await until(pilot, lambda: str(cover.label) == "c  printer cover open: OPEN",
                        "the panel showing it")
            # the kiosk out of service (its LED blinking) before the cover is closed, and in
            # service again before the next card: one put in meanwhile is only asked out
            await until(pilot, lambda: "LED slow blink" in status_text(app),
                        "the kiosk out of service")
            await pilot.press("c")
            await until(pilot, lambda: not hall.printer.cover_open, "closed by its key there")
            await until(pilot, lambda: "LED steady" in status_text(app)
                        and hall.display.page == "welcome", "the kiosk in service again")

            # the paper runs out during the next receipt: torn, and printed whole once loaded
            await pilot.press("e")
            await until(pilot, lambda: "paper ok, 10 lines left" in status_text(app),
                        "the roll nearly done")
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, FaultsScreen), "closed")
            await pilot.press("i")
            await until(pilot, lambda: hall.display.page == "bills", "the bills")
            await past_the_touch_guard(pilot, app)
            await pilot.press("1")
            await until(pilot, lambda: hall.display.page == "confirm", "the confirm page")
            await past_the_touch_guard(pilot, app)
            await pilot.press("1")
            await until(pilot, lambda: "paper OUT" in status_text(app), "the paper run out")
            await until(pilot, logged(app, "receipts/001-incomplete.txt"), "the torn receipt")
            await pilot.press("p")
            await until(pilot, lambda: len(hall.receipts()) == 1, "printed whole", 60)
            await quit_and_wait(pilot, app)
    finally:
        app.close_hall()


async def test_a_double_tap_says_whether_the_second_touch_was_ignored(
        tmp_path: Path, stage: Path) -> None:
    """1 1 on the bills page logged "> touch on-screen button 1" twice, and nothing told
    whether the kiosk took the second (confirming the settlement) or ignored it."""
    # the boards' guard: under a loaded machine the second touch may reach the screen a good
    # while after the confirm page (it waits its turn behind the first); a shorter guard let it
    # be taken, as it would be on a kiosk
    app = kiosk_tui(tmp_path, stage, touch_guard=1500)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            hall = app.hall
            await pilot.press("i")
            await until(pilot, lambda: "1 [ " in screen_text(app), "the bills drawn")
            await past_the_touch_guard(pilot, app)  # read: a touch sooner is ignored
            await pilot.press("1", "1")
            await until(pilot, logged(app, "touch on-screen button 1: delivered on the bills "
                                           "page"), "the first touch taken", 10)
            # the second reached the bills page before the kiosk had answered the first, the
            # processing page that came meanwhile (no button there), or the confirm page inside
            # its guard (test_a_touch_inside_the_touch_guard_is_ignored_at_once_not_held)
            not_taken = ("touch on-screen button 1: ignored by the kiosk",
                         "touch on-screen button 1 failed: nothing to touch at 'b0': the "
                         "processing page shows no such button")
            await until(pilot, lambda: any(logged(app, said)() for said in not_taken),
                        "the second said not to be taken", 10)
            await until(pilot, lambda: hall.display.page == "confirm", "the confirm page")
            await pilot.pause(2.0)  # past the guard: the kiosk took no second touch
            assert hall.display.page == "confirm" and hall.settlements() == []
            await quit_and_wait(pilot, app)
    finally:
        app.close_hall()


async def test_a_touch_inside_the_touch_guard_is_ignored_at_once_not_held(
        tmp_path: Path, stage: Path) -> None:
    """A key pressed before its page had been up for the kiosk's touch guard was held, and
    delivered once the guard had passed: the second tap of a double tap, pressed as the confirm
    page came up, confirmed the settlement a second later (a real screen's touch that soon the
    kiosk ignores), and keys pressed meanwhile waited behind it. A touch now reaches the screen
    at once, and the log says the kiosk ignored it, as the kiosk's own log line does."""
    app = kiosk_tui(tmp_path, stage, touch_guard=1500)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            hall = app.hall
            await pilot.press("i")
            await until(pilot, lambda: "1 [ " in screen_text(app), "the bills drawn")
            await pilot.press("1")
            await until(pilot, logged(app, "touch on-screen button 1: ignored by the kiosk as "
                                           "too soon: it reached the bills page"),
                        "the touch said to be ignored", 10)
            await until(pilot, lambda: logged(app, "fw touch_ignored")()
                        and "why=too_soon" in log_text(app), "the kiosk saying so too", 10)
            await past_the_touch_guard(pilot, app)
            assert hall.display.page == "bills"  # not taken later either
            await pilot.press("1")  # the page read: taken
            await until(pilot, logged(app, "touch on-screen button 1: delivered on the bills "
                                           "page"), "the touch taken", 10)
            await until(pilot, lambda: hall.display.page == "confirm", "the confirm page")
            # 1 again as the confirm page comes up (a double tap): ignored, nothing settled
            await pilot.press("1")
            await until(pilot, logged(app, "touch on-screen button 1: ignored by the kiosk as "
                                           "too soon: it reached the confirm page"),
                        "the second tap said to be ignored", 10)
            await past_the_touch_guard(pilot, app)
            assert hall.display.page == "confirm"
            assert await asyncio.to_thread(hall.settlements) == []
            await quit_and_wait(pilot, app)
    finally:
        app.close_hall()


def test_what_became_of_a_touch_is_said_for_each_case() -> None:
    from onestop.host.tui.app import touch_outcome

    def said(age: float, *, pressed_on_it: bool, touched_before: bool,
             too_soon: bool | None = None) -> str:
        return touch_outcome("confirm", age, 0.6, pressed_on_it=pressed_on_it,
                             touched_before=touched_before, too_soon=too_soon)

    assert said(2.0, pressed_on_it=True, touched_before=False) == "delivered on the confirm page"
    assert said(0.1, pressed_on_it=True, touched_before=False) == (
        "ignored by the kiosk as too soon: it reached the confirm page 0.10 s after it "
        "appeared, inside the kiosk's touch guard (0.60 s); touch again once the page has "
        "been up that long")
    assert said(0.1, pressed_on_it=False, touched_before=False).startswith(
        "ignored by the kiosk as too soon: it reached the confirm page 0.10 s after")
    # at the guard's edge the kiosk's word decides: its guard starts once it drew the page
    assert said(0.62, pressed_on_it=True, touched_before=False, too_soon=True).startswith(
        "ignored by the kiosk as too soon: it reached the confirm page 0.62 s after it "
        "appeared, inside the kiosk's touch guard (0.60 s, from when it had drawn the page)")
    assert said(0.58, pressed_on_it=True, touched_before=False, too_soon=False) == (
        "delivered on the confirm page")
    assert said(0.9, pressed_on_it=False, touched_before=False) == (
        "delivered on the confirm page, which appeared after the key was pressed")
    assert said(3.0, pressed_on_it=True, touched_before=True).startswith(
        "ignored by the kiosk: it was still answering the touch before")


def test_at_the_guard_s_edge_the_kiosk_s_own_word_says_what_became_of_a_touch() -> None:
    """The kiosk's guard starts once it has drawn the page, some 20-50 ms after the screen got
    it: a touch 1.52 s after the screen showed the page could still be ignored by a 1.5 s
    guard, and the log said it was delivered. Near the edge, the firmware's events decide."""
    from types import SimpleNamespace

    from onestop.host.tui.app import kiosk_answer

    def hall_saying(*events: dict[str, str], shown_at: float = 1.0) -> SimpleNamespace:
        seen = [{"ev": "idle"}, *events]
        return SimpleNamespace(firmware=SimpleNamespace(drain=lambda: seen),
                               display=SimpleNamespace(page_shown_at=shown_at))

    ignored = {"ev": "touch_ignored", "button": "b0", "why": "too_soon"}
    assert kiosk_answer(hall_saying(ignored), 1, "b0", 1.0) == "too_soon"
    assert kiosk_answer(hall_saying({**ignored, "why": "not_on_page"}), 1, "b0",
                        1.0) == "not_on_page"
    assert kiosk_answer(hall_saying({"ev": "step", "step": "pricing"}), 1, "b0", 1.0) == "taken"
    assert kiosk_answer(hall_saying(shown_at=2.0), 1, "b0", 1.0) == "taken"  # a new page
    # another button's, or before the touch: not this touch's answer
    assert kiosk_answer(hall_saying({**ignored, "button": "b1"}), 1, "b0", 1.0, 0.05) is None
    assert kiosk_answer(hall_saying(ignored), 2, "b0", 1.0, 0.05) is None


async def test_the_countdown_strip_is_key_0_and_gives_the_page_its_time_again(
        tmp_path: Path, stage: Path) -> None:
    confirm_ms, counted_ms = 3000, 2500  # the strip shows 0.5 s after the confirm page
    app = kiosk_tui(tmp_path, stage, confirm=confirm_ms, more_time=counted_ms)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.ready, "the kiosk to boot", 60)
            await until(pilot, lambda: "welcome" in screen_text(app), "the welcome screen")
            await pilot.press("i")
            await until(pilot, lambda: app.hall.display.page == "bills", "the bills")
            await pilot.press("0")  # no strip yet (the bills page waits 2 minutes): said so
            await until(pilot, logged(app, "touch the countdown strip: no countdown on the "
                                           "screen"), "the refusal said")
            await past_the_touch_guard(pilot, app)
            await pilot.press("1")
            await until(pilot, lambda: app.hall.display.page == "confirm", "the confirm page")
            first_end = app.hall.display.page_shown_at + confirm_ms / 1000
            await until(pilot, lambda: "0 [ 还剩" in screen_text(app), "the countdown", 5)
            assert "touch here for more time" in screen_text(app)
            await pilot.press("0")
            await until(pilot, logged(app, "touched the countdown strip: the page waits its "
                                           "whole time again"), "the touch said")
            await until(pilot, lambda: "还剩" not in screen_text(app), "the strip gone", 2)
            await pilot.pause(max(0.0, first_end + 0.3 - time.monotonic()))
            assert app.hall.display.page == "confirm"  # past the time it had
            await until(pilot, lambda: "0 [ 还剩" in screen_text(app), "counting again", 3)
            await pilot.press("2")  # cancel
            await until(pilot, lambda: app.hall.display.page == "error", "the cancelled page")
            await quit_and_wait(pilot, app)
    finally:
        if app.hall is not None:
            app.hall.close()


class LayoutOnlyTui(KioskTui):
    """The TUI's layout alone: no hall is built, nothing boots."""

    def build_hall(self) -> None:  # type: ignore[override]
        self._built.set()  # nothing built: nothing to wait for at quit


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_the_touch_screen_panel_is_as_wide_as_the_screen_it_shows(
        tmp_path: Path, size: tuple[int, int]) -> None:
    """The touch-screen panel was a column wider inside its border than the screen's page (53
    for 52): a blank column between the page's right edge and the panel's, at every size."""
    from onestop.host.sim.display import BOX_WIDTH, HmiScreen, display_width

    app = LayoutOnlyTui(tmp_path / "work", "P002")
    async with app.run_test(size=size) as pilot:
        page = HmiScreen().render_text(numbered=True)
        app._show_screen(page)
        await pilot.pause(0.1)
        lines = page.splitlines()
        assert {display_width(line) for line in lines} == {BOX_WIDTH}
        screen = app.query_one("#screen", Static)
        assert screen.content_region.width == BOX_WIDTH, screen.content_region
        assert screen.content_region.height == len(lines)  # no line wrapped
        # the receipt's panel below it as wide (the column's), a 32-column receipt in it whole
        receipt_box = app.query_one("#receipt-box")
        assert receipt_box.region.width == screen.region.width
        assert receipt_box.content_region.width >= 32 + receipt_box.styles.scrollbar_size_vertical


async def test_the_log_wraps_its_lines_again_when_the_terminal_is_resized(
        tmp_path: Path) -> None:
    """The log wrapped each line at the width it had when it was written: a terminal made
    narrower cut the earlier lines at its edge ("work directory: /tmp/..." lost its end)."""
    app = LayoutOnlyTui(tmp_path / "work", "P002")
    said = ("work directory: /tmp/a-long-folder-name/for-the-technician/to-read-whole/"
            "receipts-ledger-firmware-log")

    def shown(log: RichLog) -> tuple[int, list[str]]:
        return log.scrollable_content_region.width, [line.text.rstrip() for line in log.lines]

    async with app.run_test(size=(200, 40)) as pilot:
        app.say(said)
        await pilot.pause(0.2)
        log = app.query_one("#log", RichLog)
        wide, lines = shown(log)
        assert any(said in line for line in lines), (wide, lines)  # one line, whole
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)
        narrow, lines = shown(log)
        assert max(len(line) for line in lines) <= narrow < len(said), (narrow, lines)
        assert "".join(lines).replace(" ", "").endswith(said.replace(" ", ""))  # all of it
        await pilot.resize_terminal(200, 40)  # wide again: one line again
        await pilot.pause(0.3)
        assert any(said in line for line in shown(log)[1])
