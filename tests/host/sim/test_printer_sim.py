"""The simulated ESC/POS printer: what a receipt looks like for a given byte stream, and what the
printer answers about its paper and cover (no serial port: the interpreter is fed bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from onestop.host.sim.printer import EscPosInterpreter, QrCode
from onestop.host.sim.receipt_render import missing_glyphs, render_image, render_png

INIT = b"\x1b@"
CN_ON = b"\x1c&"
CUT = b"\x1dV\x41\x03"


def gb(text: str) -> bytes:
    return text.encode("gb18030")


def qr(data: bytes, module: int = 6, ecc: int = 49) -> bytes:
    k = len(data) + 3
    return (b"\x1d(k\x04\x001A2\x00" + b"\x1d(k\x03\x001C" + bytes((module,))
            + b"\x1d(k\x03\x001E" + bytes((ecc,)) + b"\x1d(k" + bytes((k & 0xFF, k >> 8))
            + b"1P0" + data + b"\x1d(k\x03\x001Q0")


def printed(stream: bytes, **kwargs: int) -> EscPosInterpreter:
    printer = EscPosInterpreter(**kwargs)
    printer.feed(stream)
    return printer


def test_chinese_text_in_fs_and_mode_prints_as_chinese() -> None:
    printer = printed(INIT + CN_ON + gb("医疗保障结算单") + b"\n" + CUT)
    assert printer.receipts[0].lines[0].text == "医疗保障结算单"


def test_gb_bytes_without_fs_and_print_as_code_page_garbage_like_a_real_printer() -> None:
    printer = printed(INIT + gb("医") + b"\n" + CUT)
    assert printer.receipts[0].lines[0].text == gb("医").decode("cp437")


def test_four_byte_gb18030_characters_decode() -> None:
    printer = printed(INIT + CN_ON + gb("€𠀀") + b"\n" + CUT)
    assert printer.receipts[0].lines[0].text == "€𠀀"


def test_alignment_size_and_bold_are_kept_per_line() -> None:
    stream = (INIT + b"\x1ba\x01" + b"\x1d!\x11" + b"\x1bE\x01" + b"TOTAL\n"
              + b"\x1ba\x02" + b"\x1d!\x00" + b"\x1bE\x00" + b"12.34\n" + CUT)
    title, amount = printed(stream).receipts[0].lines
    assert (title.align, title.spans[0].width, title.spans[0].height, title.bold) == (
        "center", 2, 2, True)
    assert (amount.align, amount.spans[0].width, amount.bold) == ("right", 1, False)


def test_alignment_changed_mid_line_applies_from_the_next_line() -> None:
    line = printed(INIT + b"ab\x1ba\x01cd\n" + CUT).receipts[0].lines[0]
    assert (line.text, line.align) == ("abcd", "left")


def test_text_wider_than_the_head_wraps_onto_the_next_line() -> None:
    receipt = printed(INIT + b"x" * 40 + b"\n" + CUT).receipts[0]
    assert [line.text for line in receipt.lines] == ["x" * 32, "x" * 8]


def test_double_width_chinese_wraps_at_eight_characters() -> None:
    stream = INIT + CN_ON + b"\x1d!\x10" + gb("一二三四五六七八九") + b"\n" + CUT
    receipt = printed(stream).receipts[0]
    assert [line.text for line in receipt.lines] == ["一二三四五六七八", "九"]


def test_qr_code_keeps_payload_module_and_error_correction() -> None:
    stream = INIT + b"\x1ba\x01" + qr(b"OS1.TXN-1.sig", module=5, ecc=50) + CUT
    receipt = printed(stream).receipts[0]
    assert receipt.qr_codes == [QrCode(b"OS1.TXN-1.sig", 5, "Q", "center")]


def test_receipt_text_shows_alignment_and_the_cut() -> None:
    stream = INIT + b"\x1ba\x01" + b"HELLO\n" + b"\x1ba\x02" + b"9.99\n" + CUT
    text = printed(stream).receipts[0].text()
    assert text.splitlines() == [" " * 13 + "HELLO", " " * 28 + "9.99",
                                 "-" * 32 + " (full cut)"]


def test_each_cut_ends_one_receipt() -> None:
    printer = printed(INIT + b"one\n" + CUT + b"two\n" + b"\x1dV\x01")
    assert [(r.lines[0].text, r.cut) for r in printer.receipts] == [("one", "full"),
                                                                     ("two", "partial")]


def test_unknown_commands_are_skipped_and_counted_not_printed() -> None:
    printer = printed(INIT + b"\x1b\x7e" + b"\x1dZ" + b"ok\n" + CUT)
    assert printer.receipts[0].lines[0].text == "ok"
    assert printer.unknown_commands == [b"\x1b\x7e", b"\x1dZ"]


def test_commands_split_across_reads_are_put_back_together() -> None:
    printer = EscPosInterpreter()
    stream = INIT + CN_ON + gb("结算") + b"\n" + qr(b"ref") + CUT
    for byte in stream:
        printer.feed(bytes((byte,)))
    assert printer.receipts[0].lines[0].text == "结算"
    assert printer.receipts[0].qr_codes[0].data == b"ref"


@pytest.mark.parametrize(("switches", "offline_cause", "paper_sensor"), [
    ({}, 0x12, 0x12),
    ({"paper_near_end": True}, 0x12, 0x1E),
    ({"paper_out": True}, 0x32, 0x7E),
    ({"cover_open": True}, 0x16, 0x12),
])
def test_dle_eot_answers_tell_the_truth(switches: dict, offline_cause: int,
                                         paper_sensor: int) -> None:
    printer = EscPosInterpreter()
    for name, value in switches.items():
        setattr(printer, name, value)
    assert printer.feed(b"\x10\x04\x02\x10\x04\x04") == bytes((offline_cause, paper_sensor))


def test_paper_running_out_mid_receipt_truncates_it_and_loses_the_rest() -> None:
    stream = INIT + b"".join(b"line %d\n" % i for i in range(10)) + CUT + b"\x10\x04\x04"
    printer = EscPosInterpreter(paper_left_lines=4)
    reply = printer.feed(stream)
    receipt = printer.receipts[0]
    assert [line.text for line in receipt.lines] == ["line 0", "line 1", "line 2", "line 3"]
    assert receipt.truncated and receipt.cut is None
    assert printer.paper_out
    assert reply == b"\x7e"  # still answers: paper end (and near end) detected


def test_a_stopped_printer_does_not_confirm_a_job_with_gs_r() -> None:
    printer = EscPosInterpreter()
    assert printer.feed(b"\x1dr\x01") == b"\x00"
    printer.cover_open = True
    assert printer.feed(b"\x1dr\x01") == b""


def test_opening_the_cover_mid_receipt_ends_it_incomplete() -> None:
    printer = printed(INIT + b"first\n")
    printer.cover_open = True
    printer.feed(b"second\n" + CUT)
    assert [r.stopped_by for r in printer.receipts] == ["cover_open"]
    assert "cover open: receipt incomplete" in printer.receipts[0].text()


def test_loading_paper_lets_the_printer_print_again() -> None:
    printer = EscPosInterpreter(paper_left_lines=1)
    printer.feed(INIT + b"a\nb\n" + CUT)
    printer.load_paper()
    printer.feed(INIT + b"c\n" + CUT)
    assert [r.lines[0].text for r in printer.receipts] == ["a", "c"]


# ------------------------------------------------------------------ PNG
def test_png_is_head_wide_and_draws_chinese_with_real_glyphs(tmp_path: Path) -> None:
    receipt = printed(INIT + CN_ON + gb("医疗保障结算单 个人自付") + b"\n" + CUT).receipts[0]
    path = render_png(receipt, tmp_path / "receipt.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert render_image(receipt).width == 384
    assert missing_glyphs(receipt.text()) == set()


def test_png_qr_code_scans_back_to_the_payload() -> None:
    zxingcpp = pytest.importorskip("zxingcpp")
    payload = b"OS1.TXN-20260101-0001.K07.c2lnbmF0dXJlLWJ5dGVz"
    receipt = printed(INIT + b"\x1ba\x01" + qr(payload, module=4, ecc=49) + CUT).receipts[0]
    found = zxingcpp.read_barcodes(render_image(receipt).convert("L"))
    assert [code.text for code in found] == [payload.decode()]


def test_bigger_text_makes_a_taller_receipt() -> None:
    small = printed(INIT + b"12.34\n" + CUT).receipts[0]
    large = printed(INIT + b"\x1d!\x22" + b"12.34\n" + CUT).receipts[0]
    assert render_image(large).height - render_image(small).height == 2 * 30
