"""The simulated touch screen: what it shows for a stream of instructions, what it answers, and
the touches it sends (no serial port: the screen is fed bytes)."""

from __future__ import annotations

import pytest
from onestop.host.sim.display import HmiScreen, display_width, load_layout, wrap

END = b"\xff\xff\xff"


def cmd(text: str) -> bytes:
    return text.encode("gb18030") + END


def test_page_by_name_or_id_and_sendme_reports_it() -> None:
    screen = HmiScreen()
    assert screen.receive(cmd("page confirm")) == b""  # bkcmd=2: success is silent
    assert screen.page == "confirm"
    assert screen.receive(cmd("page 7") + cmd("sendme")) == b"\x66\x07" + END
    assert screen.page == "error"


def test_text_is_decoded_from_gb18030_with_escapes() -> None:
    screen = HmiScreen()
    screen.receive(cmd('l0.txt="统筹 \\"800\\" a\\\\b\\rnext"'))
    assert screen.texts["l0"] == '统筹 "800" a\\b\nnext'


def test_changing_page_clears_what_the_last_page_showed() -> None:
    screen = HmiScreen()
    screen.receive(cmd('l0.txt="old"') + cmd("vis b0,0") + cmd("page bills"))
    assert screen.texts["l0"] == "" and screen.visible["b0"]


@pytest.mark.parametrize(("instruction", "code"), [
    ("page nowhere", 0x03),
    ("page 9", 0x03),
    ('t9.txt="x"', 0x1A),
    ('l0.val=1', 0x1A),
    ("l0.txt=12", 0x1B),
    ('l0.txt="a\\qb"', 0x20),
    ("vis b7,1", 0x02),
    ("fly", 0x00),
])
def test_bad_instructions_get_nextion_error_codes(instruction: str, code: int) -> None:
    screen = HmiScreen()
    assert screen.receive(cmd(instruction)) == bytes((code,)) + END
    assert screen.errors_sent == [code]


def test_bkcmd_3_answers_successes_too_and_0_nothing() -> None:
    screen = HmiScreen()
    assert screen.receive(cmd("bkcmd=3") + cmd("page done")) == b"\x01" + END + b"\x01" + END
    assert screen.receive(cmd("bkcmd=0") + cmd("page nowhere")) == b""


def test_text_is_cut_at_the_components_length_like_the_real_screen() -> None:
    screen = HmiScreen()
    screen.receive(cmd('big.txt="' + "9" * 30 + '"'))
    assert screen.texts["big"] == "9" * 20


def test_instructions_split_across_reads_are_put_back_together() -> None:
    screen = HmiScreen()
    for byte in cmd("page done") + cmd('t_zh.txt="完成"'):
        screen.receive(bytes((byte,)))
    assert (screen.page, screen.texts["t_zh"]) == ("done", "完成")


def test_touching_a_button_sends_press_then_release_with_the_page() -> None:
    screen = HmiScreen()
    screen.receive(cmd("page confirm") + cmd('b1.txt="返回"'))
    assert screen.touch_events("b1") == b"\x65\x03\x0a\x01" + END + b"\x65\x03\x0a\x00" + END


def test_hidden_buttons_and_text_components_send_no_touch() -> None:
    screen = HmiScreen()
    screen.receive(cmd("page confirm") + cmd("vis b2,0"))
    assert screen.touch_events("b2") == b""
    assert screen.touch_events("l0") == b""


def test_restart_goes_back_to_the_first_page_and_announces_itself() -> None:
    screen = HmiScreen()
    screen.receive(cmd("page done"))
    assert screen.receive(cmd("rest")) == b"\x00\x00\x00" + END + b"\x88" + END
    assert screen.page == "welcome"


def test_render_text_shows_titles_lines_big_digits_and_visible_buttons() -> None:
    screen = HmiScreen()
    screen.receive(cmd("page confirm") + cmd('t_zh.txt="请确认"') + cmd('t_en.txt="Confirm"')
                   + cmd('l0.txt="统筹基金 800.00"') + cmd('big.txt="￥54.50"')
                   + cmd('b0.txt="确认 OK"') + cmd("vis b0,1") + cmd('b1.txt="hidden"')
                   + cmd("vis b1,0"))
    text = screen.render_text()
    lines = text.splitlines()
    assert "page 3 confirm" in lines[0]
    assert lines[1].startswith("| 请确认") and lines[2].startswith("| Confirm")
    assert "统筹基金 800.00" in text and "￥54.50" in text
    assert "[ 确认 OK ]" in text and "hidden" not in text
    assert len({display_width(line) for line in lines}) == 1  # a box that lines up


def test_the_terminal_picture_wraps_long_lines_and_keeps_every_word() -> None:
    """The panel shows 63 ASCII characters a line; the terminal box is narrower, and used to
    cut the end off ("...receipt prints once pa")."""
    english = "Your settlement is saved; receipt prints once paper is loaded"
    chinese = "结算已保存，装纸后自动打印凭条" * 2
    screen = HmiScreen()
    screen.receive(cmd("page error") + cmd(f'l0.txt="{english}"') + cmd(f'l1.txt="{chinese}"'))
    lines = screen.render_text().splitlines()
    body = [line[2:-2].rstrip() for line in lines if line.startswith("| ") and line[2:-2].strip()]
    assert " ".join(body[:2]) == english  # broken between words, not inside one
    assert "".join(body[2:4]) == chinese
    assert len({display_width(line) for line in lines}) == 1


def test_wrap_splits_a_word_wider_than_the_row_and_keeps_short_lines_as_they_are() -> None:
    assert wrap("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert wrap("  ￥54.50", 20) == ["  ￥54.50"]  # the big digits' centring survives
    assert wrap("", 8) == [""]


def test_an_older_hmi_without_a_component_refuses_it() -> None:
    layout = load_layout()
    layout["components"] = [c for c in layout["components"] if c["name"] != "big"]
    screen = HmiScreen(layout)
    assert screen.receive(cmd('big.txt="1"')) == b"\x1a" + END


def test_text_wider_than_its_component_is_reported() -> None:
    screen = HmiScreen()
    screen.receive(cmd("page error") + cmd('l0.txt="' + "x" * 63 + '"')
                   + cmd('l1.txt="' + "x" * 64 + '"') + cmd('t_zh.txt="' + "错" * 19 + '"')
                   + cmd('b0.txt="' + "确" * 8 + '"'))
    assert sorted(screen.overflowing()) == ["b0", "l1"]  # 760 px lines, 185 px buttons


def test_bill_buttons_are_full_width_rows() -> None:
    screen = HmiScreen()
    screen.receive(cmd("page bills") + cmd('b0.txt="' + "确" * 30 + '"'))
    assert screen.overflowing() == []


def test_the_countdown_strip_comes_up_hidden_on_every_page_and_touches_once_shown() -> None:
    # hidden by each page's Preinitialize event, so no touch reaches it before the kiosk
    # shows it (a finger on a bills page's title would otherwise ask for more time)
    screen = HmiScreen()
    screen.receive(cmd("page bills"))
    assert not screen.visible["more"] and screen.touch_events("more") == b""
    assert screen.visible["b0"]
    screen.receive(cmd('more.txt="还剩9秒"') + cmd("vis more,1"))
    assert screen.touch_events("more") == b"\x65\x02\x0e\x01" + END + b"\x65\x02\x0e\x00" + END
    assert screen.receive(cmd("vis more,0") + cmd("ref t_zh") + cmd("ref t_en")) == b""
    assert screen.receive(cmd("ref t9")) == b"\x02" + END
    screen.receive(cmd("vis more,1") + cmd("page confirm"))
    assert not screen.visible["more"]
