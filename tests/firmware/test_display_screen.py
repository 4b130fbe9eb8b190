"""The touch screen end to end: firmware/drivers/display.py under the real MicroPython unix port
(precompiled, 64 KB heap) over a paced pseudo-terminal UART to the display simulator."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from onestop.host.mpy import Worker
from onestop.host.sim.display import DisplaySim, load_layout
from onestop.host.sim.link import SerialLink

DRIVERS = ("gbk", "display")  # precompiled by tests/firmware/conftest.py
CONFIRM = {
    "t_zh": "请确认结算", "t_en": "Please confirm the settlement",
    "l0": "乡卫生院 2026-01-01", "l1": "统筹基金 Basic fund  800.00",
    "l2": "大病保险 Serious illness  200.00", "l3": "医疗救助 Assistance  180.00",
    "l4": "个人自付 You pay", "big": "￥54.50",
    "b0": "确认 Confirm", "b1": "返回 Back",
}


@pytest.fixture
def link() -> Iterator[SerialLink]:
    with SerialLink("display", baud=115200) as cable:
        yield cable


@pytest.fixture
def screen(link: SerialLink) -> Iterator[DisplaySim]:
    with DisplaySim(link.device_path) as sim:
        yield sim


def show(mp: Worker, link: SerialLink, tables: str, page: str, texts: dict) -> dict:
    return mp.call("display_session", "show", link.host_path, tables, page, texts)


def touch_when_shown(screen: DisplaySim, page: str, button: str) -> threading.Thread:
    """Touch `button` once the screen shows `page`, as a resident would."""
    def resident() -> None:
        if screen.wait_for_page(page, timeout=5):
            screen.touch(button)
    thread = threading.Thread(target=resident, daemon=True)
    thread.start()
    return thread


def test_confirm_page_appears_as_sent(mp: Worker, link: SerialLink, screen: DisplaySim,
                                      tables: str) -> None:
    result = show(mp, link, tables, "confirm", CONFIRM)
    assert result["confirmed"] and result["errors"] == 0
    assert screen.wait_for_page("confirm", timeout=5)
    for component, text in CONFIRM.items():
        assert screen.text(component) == text
    assert screen.visible("b1") and not screen.visible("b2")
    rendered = screen.render_text()
    assert "请确认结算" in rendered and "￥54.50" in rendered and "[ 返回 Back ]" in rendered


def test_a_new_page_clears_what_the_last_one_showed(mp: Worker, link: SerialLink,
                                                    screen: DisplaySim, tables: str) -> None:
    show(mp, link, tables, "confirm", CONFIRM)
    show(mp, link, tables, "processing", {"t_zh": "正在处理", "t_en": "Processing"})
    assert screen.wait_for_page("processing", timeout=5)
    assert screen.text("l1") == "" and screen.text("big") == ""
    assert not any(screen.visible(b) for b in ("b0", "b1", "b2", "b3"))


def test_each_screen_update_is_announced_once_settled(mp: Worker, link: SerialLink,
                                                      screen: DisplaySim, tables: str) -> None:
    seen: list[str] = []
    screen.on_change = lambda sim: seen.append(sim.render_text())
    show(mp, link, tables, "welcome", {"t_zh": "请插入社保卡", "t_en": "Insert your card"})
    assert screen.wait_for(lambda sim: sim.updates >= 1, timeout=5)
    assert "请插入社保卡" in seen[-1] and "Insert your card" in seen[-1]


def test_a_touch_reaches_the_driver(mp: Worker, link: SerialLink, screen: DisplaySim,
                                    tables: str) -> None:
    resident = touch_when_shown(screen, "confirm", "b0")
    result = mp.call("display_session", "show_then_touch", link.host_path, tables, "confirm",
                     CONFIRM, 5000)
    resident.join()
    assert result["touch"] == (3, "b0")


def test_no_touch_within_the_timeout_gives_none(mp: Worker, link: SerialLink,
                                                screen: DisplaySim, tables: str) -> None:
    result = mp.call("display_session", "show_then_touch", link.host_path, tables, "confirm",
                     CONFIRM, 200)
    assert result["touch"] is None


def test_a_press_left_over_from_the_previous_page_is_not_taken_for_this_one(
        mp: Worker, link: SerialLink, screen: DisplaySim, tables: str) -> None:
    show(mp, link, tables, "bills", {"b0": "乡卫生院 54.50元"})
    assert screen.wait_for_page("bills", timeout=5)
    screen.touch("b0")  # pressed on the bills page, read only after the confirm page is up
    result = mp.call("display_session", "show_then_touch", link.host_path, tables, "confirm",
                     CONFIRM, 300)
    assert result["touch"] is None


def test_a_bad_component_name_gets_the_error_code(mp: Worker, link: SerialLink,
                                                  screen: DisplaySim, tables: str) -> None:
    result = mp.call("display_session", "command_then_listen", link.host_path, tables,
                     't9.txt="x"', 300)
    assert (result["errors"], result["last_error"]) == (1, 0x1A)
    assert screen.errors_sent == [0x1A]


def test_an_out_of_date_hmi_shows_up_as_errors_on_show(mp: Worker, link: SerialLink,
                                                      tables: str) -> None:
    layout = load_layout()
    layout["components"] = [c for c in layout["components"] if c["name"] != "big"]
    with DisplaySim(link.device_path, layout=layout):
        result = show(mp, link, tables, "confirm", CONFIRM)
    assert result["confirmed"]
    assert (result["errors"], result["last_error"]) == (1, 0x1A)


def test_an_unplugged_screen_does_not_confirm(mp: Worker, link: SerialLink, screen: DisplaySim,
                                              tables: str) -> None:
    link.unplug()
    assert show(mp, link, tables, "welcome", {"t_zh": "请插入社保卡"})["confirmed"] is False


def test_a_restarted_screen_is_noticed(mp: Worker, link: SerialLink, screen: DisplaySim,
                                       tables: str) -> None:
    result = mp.call("display_session", "command_then_listen", link.host_path, tables, "rest",
                     300)
    assert result["restarts"] >= 1
    assert screen.page == "welcome"


def test_one_screen_update_allocates_little(mp_roomy: Worker, link: SerialLink,
                                            screen: DisplaySim, tables: str,
                                            record_property) -> None:
    link.reset_counters()
    result = mp_roomy.call("display_session", "show_measured", link.host_path, tables,
                           "confirm", CONFIRM)
    assert result["confirmed"]
    update_bytes = link.bytes_to_device // 2  # two updates: the warm-up and the measured one
    record_property("screen_update_bytes", update_bytes)
    record_property("heap_allocated", result["heap_allocated"])
    record_property("heap_retained", result["heap_retained"])
    assert result["heap_allocated"] < 24_000  # everything, nothing freed: a bound on the peak
    assert result["heap_retained"] < 4_096  # the GBK caches fill up to their bound


COUNTDOWN = "还剩9秒，点这里继续\n9 s left: touch here for more time"


def test_the_countdown_strip_shows_over_the_titles_and_its_touch_reaches_the_driver(
        mp: Worker, link: SerialLink, screen: DisplaySim, tables: str) -> None:
    resident = threading.Thread(target=lambda: screen.wait_for(
        lambda sim: sim.visible("more") and sim.text("more") == COUNTDOWN, timeout=5)
        and screen.touch("more"), daemon=True)
    resident.start()
    result = mp.call("display_session", "show_update_then_touch", link.host_path, tables,
                     "confirm", CONFIRM, [{"more": COUNTDOWN}], 5000)
    resident.join()
    assert result["touch"] == (3, "more") and result["errors"] == 0
    # the page is what it was: the strip only covers its titles
    assert screen.page == "confirm" and screen.text("big") == "￥54.50"
    assert screen.text("t_zh") == "请确认结算" and screen.visible("b0")
    rendered = screen.render_text(numbered=True)
    assert "0 [ 还剩9秒，点这里继续" in rendered and "请确认结算" not in rendered
    assert "more" not in screen.overflowing()


def test_a_hidden_countdown_strip_gives_the_titles_back(mp: Worker, link: SerialLink,
                                                       screen: DisplaySim, tables: str) -> None:
    result = mp.call("display_session", "show_update_then_touch", link.host_path, tables,
                     "confirm", CONFIRM, [{"more": COUNTDOWN}, {"more": ""}], 200)
    assert result["touch"] is None and result["errors"] == 0  # `ref t_zh` is an instruction
    assert not screen.visible("more") and not screen.touch("more")
    assert "请确认结算" in screen.render_text() and screen.visible("b1")


def test_a_new_page_hides_the_countdown_strip(mp: Worker, link: SerialLink, screen: DisplaySim,
                                              tables: str) -> None:
    mp.call("display_session", "show_update_then_touch", link.host_path, tables, "confirm",
            CONFIRM, [{"more": COUNTDOWN}], 0)
    show(mp, link, tables, "processing", {"t_zh": "正在处理", "t_en": "Processing"})
    assert screen.wait_for_page("processing", timeout=5)
    assert not screen.visible("more") and screen.text("more") == ""
