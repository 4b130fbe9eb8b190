"""The card-reader frame codec and ATR check, run under the real MicroPython unix port.

Frames are cross-checked against the simulator's encoder, an independent implementation of the
same documented format (hardware/card-reader.md).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onestop.host.mpy import RemoteError, Worker
from onestop.host.sim.card import encode_frame
from onestop.host.sim.cards import BANK_ATR, GARBLED_ATR, SSSE_ATR

DRIVERS = ("apdu", "cardreader")  # precompiled by tests/firmware/conftest.py
MAX_LEN = 272

frame_data = st.binary(max_size=MAX_LEN - 1)
commands = st.integers(min_value=0, max_value=255)
noise = st.binary(max_size=40).map(lambda b: b.replace(b"\x02", b""))  # no STX in it


def parse(mp: Worker, *chunks: bytes | None) -> dict:
    return mp.call("mp_cardreader", "parse", list(chunks))


def test_status_command_frame_is_the_documented_one(mp: Worker) -> None:
    assert mp.call("mp_cardreader", "frame", 0x31, b"\x00") == bytes.fromhex("02000231003303")


def test_the_documented_read_record_reply_parses(mp: Worker) -> None:
    reply = bytes.fromhex("02000A330005042019040190009403")
    assert parse(mp, reply)["frames"] == [(0x33, bytes.fromhex("00050420190401") + b"\x90\x00")]


@settings(max_examples=60, deadline=None)
@given(cmd=commands, data=frame_data)
def test_frames_match_the_simulators_encoder_and_parse_back(mp: Worker, cmd: int,
                                                            data: bytes) -> None:
    frame = mp.call("mp_cardreader", "frame", cmd, data)
    assert frame == encode_frame(cmd, data)
    assert parse(mp, frame)["frames"] == [(cmd, data)]


@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.tuples(commands, st.binary(max_size=40)), min_size=1, max_size=4),
       cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6), lead=noise)
def test_frames_survive_any_split_and_leading_noise(mp: Worker, data: list, cuts: list,
                                                    lead: bytes) -> None:
    stream = lead + b"".join(encode_frame(cmd, body) for cmd, body in data)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    result = parse(mp, *chunks)
    assert result["frames"] == [tuple(item) for item in data]
    assert result["skipped"] == len(lead)
    assert result["rejected"] == 0


def test_a_frame_with_a_bad_bcc_is_rejected_and_the_next_one_found(mp: Worker) -> None:
    bad = bytearray(encode_frame(0x33, b"\x00\x90\x00"))
    bad[-2] ^= 0x01
    result = parse(mp, bytes(bad) + encode_frame(0x31, b"\x00\x02"))
    assert result["frames"] == [(0x31, b"\x00\x02")]
    assert result["rejected"] >= 1


@pytest.mark.parametrize("broken", [
    bytes.fromhex("02000231009903"),  # wrong ETX
    bytes.fromhex("0200000303"),  # LEN 0
    bytes.fromhex("02FFFF00"),  # LEN beyond the maximum
])
def test_broken_frames_are_rejected_without_losing_the_good_one(mp: Worker,
                                                                broken: bytes) -> None:
    good = encode_frame(0x32, b"\x00" + SSSE_ATR)
    result = parse(mp, broken + good)
    assert result["frames"] == [(0x32, b"\x00" + SSSE_ATR)]
    assert result["rejected"] >= 1


def test_a_stalled_frame_is_dropped_so_it_cannot_swallow_the_reply(mp: Worker) -> None:
    # A noise STX claiming 256 bytes would hold the real reply inside it until the line goes
    # quiet (None): the stalled candidate is then rejected and the stream rescanned.
    reply = encode_frame(0x31, b"\x00\x01")
    stalled = parse(mp, b"\x02\x01\x00" + reply)
    assert stalled["frames"] == [] and stalled["pending"]
    assert parse(mp, b"\x02\x01\x00" + reply, None)["frames"] == [(0x31, b"\x00\x01")]


def test_noise_longer_than_the_buffer_is_skipped(mp: Worker) -> None:
    result = parse(mp, b"\xff" * 1000 + encode_frame(0x34, b"\x00"))
    assert result["frames"] == [(0x34, b"\x00")]
    assert result["skipped"] == 1000


def test_frames_longer_than_the_maximum_cannot_be_built(mp: Worker) -> None:
    with pytest.raises(RemoteError) as info:
        mp.call("mp_cardreader", "frame", 0x33, bytes(MAX_LEN))
    assert info.value.kind == "ValueError"


def _t1_atr(tck_ok: bool) -> bytes:
    # T0: TD1, 3 historical bytes; TD1: TD2, T=0; TD2: TA3, T=1; TA3 (IFSC); history; TCK.
    body = bytes.fromhex("3B838011FE") + b"ABC"
    check = 0
    for byte in body[1:]:
        check ^= byte
    return body + bytes((check if tck_ok else check ^ 0xFF,))


@pytest.mark.parametrize(("atr", "ok"), [
    (SSSE_ATR, True),
    (BANK_ATR, True),
    (_t1_atr(tck_ok=True), True),
    (_t1_atr(tck_ok=False), False),
    (GARBLED_ATR, False),  # historical bytes missing
    (SSSE_ATR + b"\x00", False),  # trailing byte
    (b"\x00" + SSSE_ATR[1:], False),  # TS is neither direct nor inverse convention
    (b"\x3b", False),
])
def test_atr_structure_check(mp: Worker, atr: bytes, ok: bool) -> None:
    assert mp.call("mp_cardreader", "check_atr", atr) is ok
