"""The receipt builder and status codec of firmware/drivers/escpos.py, under the real MicroPython
unix port (precompiled by mpy-cross, 64 KB heap): the exact bytes a printer receives."""

from __future__ import annotations

import pytest
from onestop.host.mpy import RemoteError, Worker

DRIVERS = ("gbk", "escpos")  # precompiled by tests/firmware/conftest.py


def receipt_bytes(mp: Worker, tables: str, *spec: list) -> bytes:
    return mp.call("escpos_session", "receipt_bytes", tables, list(spec))


def test_layout_commands_are_the_documented_bytes(mp: Worker, tables: str) -> None:
    stream = receipt_bytes(mp, tables, ["init"], ["align", 1], ["size", 2, 3], ["bold", True],
                           ["feed", 2], ["cut"], ["cut", True, 0])
    assert stream == bytes.fromhex("1b40 1b6101 1d2112 1b4501 1b6402 1d564104 1d564200")


def test_qr_code_is_sent_with_gs_paren_k_functions_65_67_69_80_81(mp: Worker,
                                                                   tables: str) -> None:
    payload = b"OS1.TXN-20260101-0001.sig"
    stream = receipt_bytes(mp, tables, ["qr", payload, 5, "Q"])
    k = len(payload) + 3
    assert stream == (bytes.fromhex("1d286b0400314132 00")  # fn 65: model 2
                      + bytes.fromhex("1d286b0300314305")  # fn 67: 5-dot modules
                      + bytes.fromhex("1d286b0300314532")  # fn 69: level Q
                      + bytes.fromhex("1d286b") + bytes((k, 0)) + b"\x31\x50\x30" + payload
                      + bytes.fromhex("1d286b0300315130"))  # fn 81: print


def test_long_qr_payload_length_uses_both_length_bytes(mp: Worker, tables: str) -> None:
    framing = mp.call("escpos_session", "qr_framing", tables, 600)
    store = framing.index(b"\x31\x50\x30")
    assert framing[store - 2:store] == bytes(((600 + 3) & 0xFF, (600 + 3) >> 8))
    assert framing.endswith(bytes.fromhex("1d286b0300315130"))


def test_chinese_text_is_gb18030_inside_fs_and_and_the_printer_is_left_clean(
        mp: Worker, tables: str) -> None:
    stream = receipt_bytes(mp, tables, ["init"], ["line", "Total"], ["line", "统筹基金 85.20"],
                           ["line", "OK"])
    assert stream == (b"\x1b@" + b"Total\n" + b"\x1c&" + "统筹基金 85.20".encode("gb18030")
                      + b"\nOK\n" + b"\x1c.")


def test_ascii_only_receipt_never_enters_chinese_mode(mp: Worker, tables: str) -> None:
    stream = receipt_bytes(mp, tables, ["init"], ["line", "Receipt 12.34"], ["cut"])
    assert b"\x1c&" not in stream and b"\x1c." not in stream


def test_chinese_mode_is_entered_again_after_a_reinit(mp: Worker, tables: str) -> None:
    stream = receipt_bytes(mp, tables, ["init"], ["text", "医"], ["init"], ["text", "保"])
    assert stream.count(b"\x1c&") == 2


def test_row_puts_the_amount_flush_right_counting_chinese_as_double(mp: Worker,
                                                                    tables: str) -> None:
    stream = receipt_bytes(mp, tables, ["row", "个人自付", "12.34"])
    line = stream.removeprefix(b"\x1c&").removesuffix(b"\x1c.").decode("gb18030")
    assert line == "个人自付" + " " * (32 - 8 - 5) + "12.34\n"


def test_row_at_double_width_has_half_the_columns(mp: Worker, tables: str) -> None:
    stream = receipt_bytes(mp, tables, ["size", 2, 2], ["row", "Pay", "1.00"])
    assert stream.endswith(b"Pay" + b" " * (16 - 3 - 4) + b"1.00\n")


def test_row_too_long_for_one_line_goes_on_two(mp: Worker, tables: str) -> None:
    stream = receipt_bytes(mp, tables, ["row", "x" * 30, "123.45"])
    assert stream == b"x" * 30 + b"\n" + b" " * 26 + b"123.45\n"


def test_long_text_goes_out_in_small_chunks(mp: Worker, tables: str) -> None:
    sizes = mp.call("escpos_session", "chunk_sizes", tables, [["line", "医保" * 200]])
    assert sum(sizes) == 2 + 2 * 400 + 1 + 2  # FS &, the text, LF, FS .
    assert max(sizes) <= 64


@pytest.mark.parametrize("bad", [["align", 3], ["size", 0, 1], ["size", 1, 9],
                                 ["qr", b""], ["qr", b"x", 17], ["qr", b"x", 6, "X"],
                                 ["feed", 256]])
def test_out_of_range_settings_are_refused(mp: Worker, tables: str, bad: list) -> None:
    with pytest.raises(RemoteError) as info:
        receipt_bytes(mp, tables, bad)
    assert info.value.kind == "ValueError"


@pytest.mark.parametrize(("offline_cause", "paper_sensor", "expected"), [
    (0x12, 0x12, {"online": True, "paper": "ok", "cover_open": False, "error": False}),
    (0x12, 0x1E, {"online": True, "paper": "near_end", "cover_open": False, "error": False}),
    (0x12, 0x16, {"online": True, "paper": "near_end", "cover_open": False, "error": False}),
    (0x12, 0x72, {"online": True, "paper": "out", "cover_open": False, "error": False}),
    (0x32, 0x12, {"online": True, "paper": "out", "cover_open": False, "error": False}),
    (0x16, 0x12, {"online": True, "paper": "ok", "cover_open": True, "error": False}),
    (0x52, 0x12, {"online": True, "paper": "ok", "cover_open": False, "error": True}),
    (None, None, {"online": False, "paper": "unknown", "cover_open": False, "error": False}),
])
def test_status_replies_decode(mp: Worker, offline_cause: int | None, paper_sensor: int | None,
                               expected: dict) -> None:
    assert mp.call("escpos_session", "parse_replies", offline_cause, paper_sensor) == expected
