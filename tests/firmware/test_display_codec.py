"""The touch screen's codec in firmware/drivers/display.py under the real MicroPython unix port
(precompiled by mpy-cross, 64 KB heap): the bytes the screen receives and the events it sends."""

from __future__ import annotations

import json
from pathlib import Path

from onestop.host.mpy import Worker

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ("gbk", "display")  # precompiled by tests/firmware/conftest.py
END = b"\xff\xff\xff"


def text_command(mp: Worker, tables: str, component: str, text: str) -> bytes:
    return mp.call("display_session", "text_command", tables, component, text)


def test_the_firmware_knows_the_hmi_of_the_hardware_file(mp: Worker) -> None:
    hmi = json.loads((ROOT / "hardware" / "display-pages.json").read_text(encoding="utf-8"))
    firmware = mp.call("display_session", "layout")
    assert firmware["pages"] == [p["name"] for p in sorted(hmi["pages"], key=lambda p: p["id"])]
    by_name = {c["name"]: c for c in hmi["components"]}
    assert sorted(firmware["texts"]) == sorted(by_name)
    assert firmware["ids"] == [by_name[name]["id"] for name in firmware["texts"]]
    assert firmware["txt_maxl"] == [by_name[name]["txt_maxl"] for name in firmware["texts"]]
    assert firmware["buttons"] == sorted(n for n, c in by_name.items() if c["touch"])


def test_page_and_visibility_commands(mp: Worker) -> None:
    assert mp.call("display_session", "page_command", "confirm") == b"page confirm" + END
    assert mp.call("display_session", "vis_command", "b2", False) == b"vis b2,0" + END


def test_chinese_text_is_sent_as_gb_bytes(mp: Worker, tables: str) -> None:
    assert text_command(mp, tables, "t_zh", "请插入社保卡") == (
        b't_zh.txt="' + "请插入社保卡".encode("gb2312") + b'"' + END)


def test_quotes_backslashes_and_newlines_are_escaped(mp: Worker, tables: str) -> None:
    assert text_command(mp, tables, "l0", 'say "hi"\\\nnext') == (
        b'l0.txt="say \\"hi\\"\\\\\\rnext"' + END)


def test_characters_the_screen_cannot_show_become_question_marks(mp: Worker,
                                                                 tables: str) -> None:
    # € has no GB code; 乗 (GBK 81 5C) would end in a byte the screen reads as a backslash
    assert "乗".encode("gbk") == b"\x81\x5c"
    assert text_command(mp, tables, "l0", "€1 乗") == b'l0.txt="?1 ?"' + END


def test_text_longer_than_the_component_holds_is_cut_between_characters(
        mp: Worker, tables: str) -> None:
    command = text_command(mp, tables, "big", "￥" + "9" * 18 + "元")  # 2 + 18 + 2 bytes > 20
    assert command == b'big.txt="' + "￥".encode("gbk") + b"9" * 18 + b'"' + END


def parse(mp: Worker, data: bytes) -> dict:
    return mp.call("display_session", "parse", data)


def test_touch_events_press_and_release(mp: Worker) -> None:
    stream = b"\x65\x03\x09\x01" + END + b"\x65\x03\x09\x00" + END
    assert parse(mp, stream)["events"] == [("touch", 3, 9, True), ("touch", 3, 9, False)]


def test_page_reply_error_codes_and_restart(mp: Worker) -> None:
    stream = (b"\x66\x02" + END + b"\x1a" + END + b"\x02" + END + b"\x00" + END
              + b"\x00\x00\x00" + END + b"\x88" + END + b"\x01" + END)
    assert parse(mp, stream)["events"] == [
        ("page", 2), ("error", 0x1A), ("error", 0x02), ("error", 0x00), ("startup",),
        ("ready",), ("ok",)]


def test_numeric_data_holding_ff_bytes_does_not_split_the_stream(mp: Worker) -> None:
    stream = b"\x71\xff\xff\xff\x00" + END + b"\x65\x01\x0a\x01" + END
    assert parse(mp, stream)["events"] == [("other", 0x71), ("touch", 1, 10, True)]


def test_string_data_of_any_length_is_skipped(mp: Worker) -> None:
    stream = b"\x70" + b"a long string reply from the screen" + END + b"\x66\x00" + END
    assert parse(mp, stream)["events"] == [("other", 0x70), ("page", 0)]


def test_garbled_touch_frame_is_dropped_and_the_parser_resynchronises(mp: Worker) -> None:
    stream = b"\x65\x03\x09\x01\xff\x00" + END + b"\x65\x03\x0a\x01" + END
    result = parse(mp, stream)
    assert result["events"] == [("touch", 3, 10, True)]
    assert result["garbled"] == 1
