"""Printing a settlement receipt end to end: firmware/drivers/escpos.py under the real MicroPython
unix port (precompiled, 64 KB heap) over a paced pseudo-terminal UART to the printer simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from onestop.host.mpy import Worker
from onestop.host.sim.link import SerialLink
from onestop.host.sim.printer import PrinterSim, QrCode
from onestop.host.sim.receipt_render import render_png

DRIVERS = ("gbk", "escpos")  # precompiled by tests/firmware/conftest.py
REFERENCE = b"OS1.K07.TXN-20260101-000123.5jT0c2lnbmVkLXNldHRsZW1lbnQtcmVmZXJlbmNl"
SETTLEMENT_RECEIPT = [
    ["init"],
    ["align", 1], ["size", 2, 2], ["bold", True], ["line", "医疗保障结算单"],
    ["size", 1, 1], ["bold", False], ["line", "Medical insurance settlement"],
    ["align", 0], ["row", "姓名 Name", "张三"], ["row", "就诊 Visit", "2026-01-01"],
    ["row", "医疗费用总额 Total", "1,234.50"],
    ["row", "统筹基金 Basic fund", "800.00"],
    ["row", "大病保险 Serious illness", "200.00"],
    ["row", "医疗救助 Assistance", "180.00"],
    ["align", 1], ["line", "个人自付 You pay"], ["size", 3, 3], ["line", "￥54.50"],
    ["size", 1, 1], ["qr", REFERENCE, 5, "M"], ["line", "TXN-20260101-000123"],
    ["feed", 1], ["cut"],
]
SETTLEMENT_LINES = 15  # lines of paper the receipt above needs before its QR code


@pytest.fixture
def link() -> Iterator[SerialLink]:
    with SerialLink("printer", baud=115200) as cable:
        yield cable


@pytest.fixture
def printer(link: SerialLink) -> Iterator[PrinterSim]:
    with PrinterSim(link.device_path) as sim:
        yield sim


def print_receipt(mp: Worker, link: SerialLink, tables: str, spec: list | None = None) -> dict:
    return mp.call("escpos_session", "print_receipt", link.host_path, tables,
                   spec or SETTLEMENT_RECEIPT)


def test_settlement_receipt_arrives_as_sent(mp: Worker, link: SerialLink, printer: PrinterSim,
                                            tables: str, tmp_path: Path) -> None:
    result = print_receipt(mp, link, tables)
    assert result["printed"]
    receipt = printer.receipts[-1]
    assert receipt.cut == "full" and not receipt.truncated
    title, subtitle, name = receipt.lines[0:3]
    assert (title.text, title.align, title.spans[0].width, title.bold) == (
        "医疗保障结算单", "center", 2, True)
    assert (subtitle.text, subtitle.align, subtitle.bold) == (
        "Medical insurance settlement", "center", False)
    assert name.text == "姓名 Name" + " " * 19 + "张三"
    big = next(line for line in receipt.lines if "54.50" in line.text)
    assert (big.text, big.spans[0].width, big.spans[0].height) == ("￥54.50", 3, 3)
    assert receipt.qr_codes == [QrCode(REFERENCE, 5, "M", "center")]
    assert "统筹基金 Basic fund" in printer.last_receipt_text()
    assert printer.unknown_commands == []
    assert render_png(receipt, tmp_path / "receipt.png").stat().st_size > 0


def test_status_of_a_ready_printer(mp: Worker, link: SerialLink, printer: PrinterSim) -> None:
    assert mp.call("escpos_session", "status", link.host_path) == {
        "online": True, "paper": "ok", "cover_open": False, "error": False}


def test_near_end_still_prints_and_is_reported(mp: Worker, link: SerialLink,
                                               printer: PrinterSim, tables: str) -> None:
    printer.paper_near_end = True
    result = print_receipt(mp, link, tables)
    assert result["printed"] and result["status"]["paper"] == "near_end"
    assert len(printer.receipts) == 1


def test_paper_out_before_printing_sends_nothing(mp: Worker, link: SerialLink,
                                                 printer: PrinterSim, tables: str) -> None:
    printer.paper_out = True
    result = print_receipt(mp, link, tables)
    assert (result["printed"], result["reason"], result["bytes"]) == (False, "paper_out", 0)
    assert result["status"]["paper"] == "out"
    assert printer.receipts == [] and printer.current.items == []


def test_paper_running_out_during_the_receipt_is_reported_for_a_reprint(
        mp: Worker, link: SerialLink, printer: PrinterSim, tables: str) -> None:
    printer.paper_left_lines = 5
    result = print_receipt(mp, link, tables)
    assert (result["printed"], result["reason"]) == (False, "paper_out_during")
    assert result["status"]["paper"] == "out"
    receipt = printer.receipts[-1]
    assert receipt.truncated and receipt.cut is None
    assert receipt.lines[0].text == "医疗保障结算单"
    assert receipt.qr_codes == []  # the settlement reference never made it onto paper
    assert "paper out: receipt incomplete" in printer.last_receipt_text()


def test_reprint_after_loading_paper_gives_a_whole_receipt(
        mp: Worker, link: SerialLink, printer: PrinterSim, tables: str) -> None:
    printer.paper_left_lines = SETTLEMENT_LINES
    assert print_receipt(mp, link, tables)["reason"] == "paper_out_during"
    printer.load_paper()
    assert print_receipt(mp, link, tables)["printed"]
    first, second = printer.receipts
    assert first.truncated and not second.truncated
    assert second.qr_codes[0].data == REFERENCE


def test_cover_open_refuses_to_print(mp: Worker, link: SerialLink, printer: PrinterSim,
                                     tables: str) -> None:
    printer.cover_open = True
    result = print_receipt(mp, link, tables)
    assert (result["printed"], result["reason"], result["bytes"]) == (False, "cover_open", 0)
    assert result["status"]["cover_open"]
    assert printer.receipts == []


def test_unplugged_printer_is_offline(mp: Worker, link: SerialLink, printer: PrinterSim,
                                      tables: str) -> None:
    link.unplug()
    assert mp.call("escpos_session", "status", link.host_path)["online"] is False
    result = print_receipt(mp, link, tables)
    assert (result["printed"], result["reason"], result["bytes"]) == (False, "offline", 0)


def test_printer_plugged_back_in_answers_again(mp: Worker, link: SerialLink,
                                               printer: PrinterSim, tables: str) -> None:
    link.unplug()
    assert mp.call("escpos_session", "status", link.host_path)["online"] is False
    link.plug()
    assert print_receipt(mp, link, tables)["printed"]


@pytest.fixture
def kept(mp: Worker, link: SerialLink) -> Iterator[Worker]:
    """The firmware with one Printer open on the link, kept across calls."""
    mp.call("escpos_session", "open_printer", link.host_path)
    yield mp
    mp.call("escpos_session", "close_printer")


def test_a_status_byte_doubled_on_the_line_does_not_shift_the_answers_after_it(
        kept: Worker, link: SerialLink, printer: PrinterSim) -> None:
    # DLE EOT 2 and DLE EOT 4 are answered with bytes told apart only by their order: one byte
    # doubled by a cheap cable shifted every later pair, and near-end paper read as a cover
    # open (0x1E has bit 2), putting the kiosk out of service for good.
    printer.paper_near_end = True
    doubled = []

    def double_the_first_byte(chunk: bytes) -> bytes:
        if doubled:
            return chunk
        doubled.append(chunk[:1])
        return chunk[:1] + chunk

    link.faults["to_host"] = double_the_first_byte
    kept.call("escpos_session", "kept_status")  # the one the doubled byte came in
    assert doubled
    for _ in range(3):
        assert kept.call("escpos_session", "kept_status") == {
            "online": True, "paper": "near_end", "cover_open": False, "error": False}


def test_a_receipt_a_confirming_printer_does_not_confirm_is_printed_again_once(
        kept: Worker, printer: PrinterSim, tables: str) -> None:
    # A printer that answered GS r before and not now: the receipt (or its GS r) was lost on
    # the line, so it is reported for a reprint, not taken as printed. Once: a printer that
    # has stopped answering GS r must not print every receipt for ever.
    assert kept.call("escpos_session", "kept_print", tables, SETTLEMENT_RECEIPT)["printed"]
    printer.answers_gs_r = False
    again = kept.call("escpos_session", "kept_print", tables, SETTLEMENT_RECEIPT)
    assert (again["printed"], again["reason"]) == (False, "unconfirmed_during")
    last = kept.call("escpos_session", "kept_print", tables, SETTLEMENT_RECEIPT)
    assert (last["printed"], last["reason"]) == (False, "unconfirmed")
    printer.answers_gs_r = True
    assert kept.call("escpos_session", "kept_print", tables, SETTLEMENT_RECEIPT)["printed"]


def test_the_first_receipt_after_a_boot_is_covered_too(
        kept: Worker, printer: PrinterSim, tables: str) -> None:
    # The printer is asked whether it answers GS r when it is first found ready, not only
    # after a receipt it confirmed: a first receipt eaten by the line was taken as printed.
    assert kept.call("escpos_session", "kept_status")["online"]
    printer.answers_gs_r = False  # this receipt's GS r is lost
    first = kept.call("escpos_session", "kept_print", tables, SETTLEMENT_RECEIPT)
    assert (first["printed"], first["reason"]) == (False, "unconfirmed_during")


def test_a_printer_that_never_answers_gs_r_has_its_receipts_taken_as_printed(
        kept: Worker, printer: PrinterSim, tables: str) -> None:
    printer.answers_gs_r = False  # some models ignore it
    for _ in range(2):
        result = kept.call("escpos_session", "kept_print", tables, SETTLEMENT_RECEIPT)
        assert (result["printed"], result["reason"]) == (False, "unconfirmed")
    assert len(printer.receipts) == 2 and not printer.receipts[-1].truncated


def test_a_printer_that_ignores_gs_r_is_given_a_receipts_time_not_the_whole_timeout(
        mp: Worker, link: SerialLink, printer: PrinterSim, tables: str) -> None:
    # Its residents waited the whole print timeout (20 s) at every visit for a confirmation
    # that never comes: once the printer is known to ignore GS r, a receipt's time will do.
    printer.answers_gs_r = False
    mp.call("escpos_session", "open_printer", link.host_path, 30_000, 1_000)
    try:
        result = mp.call("escpos_session", "kept_print", tables, SETTLEMENT_RECEIPT)
    finally:
        mp.call("escpos_session", "close_printer")
    assert (result["printed"], result["reason"]) == (False, "unconfirmed")
    assert result["took_ms"] < 10_000  # the 1 s given, not the 30 s timeout
    assert len(printer.receipts) == 1 and not printer.receipts[-1].truncated


def test_printing_one_receipt_allocates_little(mp_roomy: Worker, link: SerialLink,
                                               printer: PrinterSim, tables: str,
                                               record_property) -> None:
    result = mp_roomy.call("escpos_session", "print_receipt_measured", link.host_path, tables,
                     SETTLEMENT_RECEIPT)
    assert result["printed"]
    record_property("receipt_bytes", result["bytes"])
    record_property("heap_allocated", result["heap_allocated"])
    record_property("heap_retained", result["heap_retained"])
    assert 0 < result["bytes"] < link.bytes_to_device  # the rest: status queries
    assert result["bytes"] < 960  # under a second on the wire even at 9600 baud
    assert result["heap_allocated"] < 48_000  # everything, nothing freed: a bound on the peak
    assert result["heap_retained"] < 4_096
