"""The kiosk's journal on flash (firmware/app/journal.py) under the real MicroPython unix port:
what a power cut at any byte leaves behind is read back correctly, and nothing is lost."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from onestop.host.mpy import Worker

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = Path(__file__).parent / "support"
SETTLEMENT = bytes(range(256)) + b"\x00" * 90  # stands in for the gateway's COSE bytes


@pytest.fixture(scope="module")
def mp() -> Iterator[Worker]:
    # a large heap for the test helpers (a byte-by-byte sweep returns ~900 results); the
    # firmware's own 64 KB budget is held in test_session_boot.py
    worker = Worker(heapsize="2M", paths=[ROOT / "firmware", SUPPORT])
    yield worker
    worker.close()


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "journal.bin")


def pending(txn_id: str, cash: int = 1234) -> dict:
    return {"kind": "pending", "txn_id": txn_id, "psn_no": "P001", "bill_id": "B-1", "cash": cash,
            "name": "张秀兰", "ssn_masked": "1306**********0048", "clinic": "涞源县医院",
            "date": "2026-11-20"}


def settled(txn_id: str) -> dict:
    return {"kind": "settled", "txn_id": txn_id, "settlement": SETTLEMENT}


def step(kind: str, txn_id: str) -> dict:
    return {"kind": kind, "txn_id": txn_id}


def read_file_as_documented(path: str) -> list[dict]:
    """length (2, BE) | CBOR | CRC-32 of length+CBOR (4, BE), read with CPython's own tools."""
    data = Path(path).read_bytes()
    records, offset = [], 0
    while offset < len(data):
        (n,) = struct.unpack_from(">H", data, offset)
        body = data[offset + 2:offset + 2 + n]
        (crc,) = struct.unpack_from(">I", data, offset + 2 + n)
        assert crc == zlib.crc32(data[offset:offset + 2 + n])
        records.append(cbor2.loads(body))
        offset += 2 + n + 4
    return records


def test_records_are_stored_in_the_documented_format(mp: Worker, path: str) -> None:
    records = [pending("K1-000001-aaaa"), settled("K1-000001-aaaa")]
    mp.call("app_journal", "write", path, records)
    assert read_file_as_documented(path) == records


def test_a_txn_is_open_until_done_and_its_data_survives_a_reboot(mp: Worker, path: str) -> None:
    t = "K1-000001-aaaa"
    mp.call("app_journal", "write", path, [pending(t), settled(t)])
    state = mp.call("app_journal", "load", path)
    assert state["open"] == [(t, "settled")]
    entry = state["entries"][0]
    assert (entry["psn_no"], entry["bill_id"], entry["cash"], entry["name"]) == (
        "P001", "B-1", 1234, "张秀兰")
    assert entry["settlement"] == SETTLEMENT
    state = mp.call("app_journal", "append_then_load", path, [step("printed", t),
                                                              step("done", t)])
    assert state["open"] == []


def test_a_compaction_cut_off_on_fat_between_remove_and_rename_loses_nothing(
        mp: Worker, path: str) -> None:
    # FAT cannot rename onto a file: write_atomic removes the journal, then renames the complete
    # .tmp onto it. A power cut in between leaves only the .tmp; it held the open txns.
    t = "K1-000001-aaaa"
    mp.call("app_journal", "write", path, [pending(t), settled(t)])
    Path(path).rename(path + ".tmp")
    state = mp.call("app_journal", "load", path)
    assert state["open"] == [(t, "settled")]  # the saved receipt will still be printed
    assert Path(path).exists() and not Path(path + ".tmp").exists()


def test_an_aborted_txn_is_closed(mp: Worker, path: str) -> None:
    mp.call("app_journal", "write", path, [pending("K1-000001-aaaa"),
                                           {"kind": "aborted", "txn_id": "K1-000001-aaaa",
                                            "reason": "not_found"}])
    assert mp.call("app_journal", "load", path)["open"] == []


def test_recovery_plan_follows_each_txns_last_step(mp: Worker, path: str) -> None:
    records = [pending("T-1"), pending("T-2"), settled("T-2"), pending("T-3"), settled("T-3"),
               step("printed", "T-3"), pending("T-4"), settled("T-4"), step("printed", "T-4"),
               step("done", "T-4")]
    mp.call("app_journal", "write", path, records)
    assert mp.call("app_journal", "plan", path) == [
        ("T-1", "query"), ("T-2", "print"), ("T-3", "report")]


def test_a_power_cut_at_any_byte_loses_only_the_record_being_written(mp: Worker,
                                                                       path: str) -> None:
    t = "K1-000001-aaaa"
    records = [pending(t), settled(t), step("printed", t)]
    sizes = mp.call("app_journal", "write", path, records)
    states = ["", "pending", "settled", "printed"]  # the txn's state after n whole records
    results = mp.call("app_journal", "torn_tail_sweep", path, records, step("done", t))
    assert len(results) == sizes[-1] + 1
    for cut, line in enumerate(results):
        complete = sum(1 for s in sizes if s <= cut)  # records wholly on flash at this cut
        good = sizes[complete - 1] if complete else 0
        # the next append first cuts the torn bytes off, so what follows is readable again;
        # "done" closes a printed txn and is ignored after pending/settled (never skip a step)
        after = f"|{complete + 1} 0|{'' if complete == 3 else states[complete]}"
        assert line == f"{complete} {good} {cut - good}|{states[complete]}{after}", cut


def test_a_record_with_a_bad_crc_ends_the_journal(mp: Worker, path: str) -> None:
    t = "K1-000001-aaaa"
    sizes = mp.call("app_journal", "write", path, [pending(t), settled(t)])
    data = bytearray(Path(path).read_bytes())
    data[sizes[0] + 10] ^= 0x01  # one bit flipped inside the settled record
    Path(path).write_bytes(bytes(data))
    state = mp.call("app_journal", "load", path)
    assert state["open"] == [(t, "pending")]
    assert state["ignored_bytes"] == sizes[1] - sizes[0]
    data[5] ^= 0x01  # and one in the first record: nothing before it to trust
    Path(path).write_bytes(bytes(data))
    assert mp.call("app_journal", "load", path)["open"] == []


def test_compaction_keeps_open_txns_and_bounds_the_file(mp: Worker, path: str) -> None:
    records = [pending("OPEN-1"), settled("OPEN-1")]
    for i in range(12):
        t = f"T-{i:04d}"
        records += [pending(t), settled(t), step("printed", t), step("done", t)]
    sizes = mp.call("app_journal", "write", path, records, 2048)
    assert max(sizes) < 2048 + 600  # compacted each time it passed the limit
    state = mp.call("app_journal", "load", path)
    assert state["open"] == [("OPEN-1", "settled")]
    assert state["entries"][0]["settlement"] == SETTLEMENT
    assert [r["txn_id"] for r in read_file_as_documented(path)][:2] == ["OPEN-1", "OPEN-1"]


def test_a_print_that_began_is_remembered_through_reboots_and_compaction(
        mp: Worker, path: str) -> None:
    # "printing": bytes of its receipt went to the printer (then paper ran out, or the power
    # went); the receipt printed later says it is a reprint. Without it, none began.
    records = [pending("BEGAN"), settled("BEGAN"), step("printing", "BEGAN"),
               pending("NOT-YET"), settled("NOT-YET")]
    for i in range(12):  # enough closed txns to compact the file past 2 KB
        t = f"T-{i:04d}"
        records += [pending(t), settled(t), step("printing", t), step("printed", t),
                    step("done", t)]
    mp.call("app_journal", "write", path, records, 2048)
    state = mp.call("app_journal", "load", path, 2048)
    assert state["open"] == [("BEGAN", "settled"), ("NOT-YET", "settled")]
    assert [e["print_began"] for e in state["entries"]] == [True, False]
    assert mp.call("app_journal", "plan", path) == [("BEGAN", "print"), ("NOT-YET", "print")]
    kinds = [(r["txn_id"], r["kind"]) for r in read_file_as_documented(path)]
    assert ("BEGAN", "printing") in kinds and ("NOT-YET", "printing") not in kinds
