"""COBS + CRC-32 framing: frames survive any split of the stream, noise is skipped and counted."""

import binascii
import struct

import make_vectors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onestop.protocol import framing
from onestop.protocol.errors import ProtocolError
from proto_calls import deframe

FRAMING = "onestop.protocol.framing"
# Zeros and runs longer than a COBS block (254), so every kind of code byte appears.
PAYLOAD = b"\x00settle\x00" + bytes(range(1, 256)) + b"\x00\x00" + b"\xff" * 300
NO_ERRORS = {"cobs": 0, "crc": 0, "too_large": 0, "empty": 0}

payloads = st.binary(max_size=600)


def chunked(data, cuts):
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0] + cuts + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# ---------------------------------------------------------------- encoding
@settings(max_examples=300)
@given(payloads)
def test_a_frame_has_one_zero_byte_at_its_end_and_decodes_to_its_payload(payload):
    frame = framing.encode(payload)
    assert frame.index(0) == len(frame) - 1
    assert len(frame) - 1 <= framing.max_encoded(max(len(payload), 0))
    assert framing.decode(frame[:-1]) == payload


def test_frames_carry_the_crc32_of_the_payload(runtime):
    frame = runtime.call(FRAMING, "encode", b"hello")
    crc = struct.pack("<I", binascii.crc32(b"hello"))
    assert frame == bytes([10]) + b"hello" + crc + b"\x00"  # no zero in CRC: one COBS block


def test_the_largest_payload_fits_and_one_byte_more_is_refused(runtime):
    biggest = bytes(framing.MAX_FRAME)  # all zeros: the most COBS code bytes
    frame = runtime.call(FRAMING, "encode", biggest)
    assert runtime.call(FRAMING, "decode", frame[:-1]) == biggest
    with pytest.raises(ProtocolError) as info:
        runtime.call(FRAMING, "encode", biggest + b"\x00")
    assert info.value.code == "too_large"


# ---------------------------------------------------------------- receiving
def test_a_frame_split_at_every_point_is_recovered(runtime):
    frame = framing.encode(PAYLOAD)
    for cut in range(len(frame) + 1):
        payloads_out, stats, buffered = runtime.call(
            "proto_calls", "deframe", [frame[:cut], frame[cut:]])
        assert payloads_out == [PAYLOAD], cut
        assert stats == NO_ERRORS
        assert buffered == 0


def test_a_frame_fed_byte_by_byte_is_recovered(runtime):
    frame = framing.encode(PAYLOAD)
    chunks = [frame[i:i + 1] for i in range(len(frame))]
    assert runtime.call("proto_calls", "deframe", chunks)[0] == [PAYLOAD]


def test_many_frames_in_one_read_come_out_in_order(runtime):
    sent = [b"first", b"", PAYLOAD, b"\x00"]
    stream = b"".join(framing.encode(p) for p in sent)
    assert runtime.call("proto_calls", "deframe", [stream]) == (sent, NO_ERRORS, 0)


def test_bytes_read_into_a_reused_buffer_are_taken_before_it_is_overwritten(runtime):
    frame = framing.encode(b"from the UART")
    buf = b"\xaa" * 3 + frame + b"\xaa" * 5
    assert runtime.call("proto_calls", "deframe_view", buf, 3, 3 + len(frame)) == [
        b"from the UART"]


def test_each_kind_of_bad_frame_is_counted_and_skipped(runtime):
    good = framing.encode(b"ok")
    corrupted = bytearray(framing.encode(b"corrupted"))
    corrupted[2] ^= 0x40
    stream = (b"\x00"  # empty
              + b"\x09abc\x00"  # COBS block runs past the end
              + bytes(corrupted)  # CRC mismatch
              + b"\x05" * 5000 + b"\x00"  # longer than any frame
              + good)
    assert runtime.call("proto_calls", "deframe", [stream]) == (
        [b"ok"], {"cobs": 1, "crc": 1, "too_large": 1, "empty": 1}, 0)


def test_an_over_long_run_is_dropped_as_it_arrives_not_buffered(runtime):
    # 64-byte frames: the run is dropped once it passes 64 + CRC + COBS overhead.
    chunks = [b"\x07" * 50] * 10
    payloads_out, stats, buffered = runtime.call("proto_calls", "deframe", chunks, 64)
    assert (payloads_out, buffered) == ([], 0)
    assert stats["too_large"] == 0  # counted when its delimiter arrives
    payloads_out, stats, _ = runtime.call(
        "proto_calls", "deframe", chunks + [b"\x00" + framing.encode(b"next")], 64)
    assert payloads_out == [b"next"]
    assert stats["too_large"] == 1


def test_a_smaller_maximum_is_enforced_exactly(runtime):
    fits = framing.encode(bytes(range(1, 65)))
    too_big = framing.encode(bytes(range(1, 66)))
    assert runtime.call("proto_calls", "deframe", [too_big + fits], 64) == (
        [bytes(range(1, 65))], {"cobs": 0, "crc": 0, "too_large": 1, "empty": 0}, 0)


def test_reset_drops_an_unfinished_frame():
    deframer = framing.Deframer()
    deframer.receive_data(framing.encode(b"lost")[:4])
    assert deframer.buffered == 4
    assert deframer.reset() == 4
    deframer.receive_data(framing.encode(b"kept"))
    assert deframer.next_frame() == b"kept"
    assert deframer.next_frame() is None


# ---------------------------------------------------------------- fuzz
def check_only_real_frames(stream, payloads_out):
    for payload in payloads_out:
        assert framing.encode(payload) in b"\x00" + stream  # never a frame that was not sent


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 10**4), max_size=6))
def test_arbitrary_bytes_yield_only_frames_that_were_really_sent(stream, cuts):
    payloads_out, stats, buffered = deframe(chunked(stream, cuts))
    check_only_real_frames(stream, payloads_out)
    assert buffered <= framing.max_encoded()
    assert set(stats) == set(NO_ERRORS)


@settings(max_examples=300)
@given(st.binary(max_size=200), payloads, st.binary(max_size=200),
       st.lists(st.integers(0, 10**4), max_size=6))
def test_a_frame_embedded_in_noise_is_recovered(noise_before, payload, noise_after, cuts):
    stream = noise_before + b"\x00" + framing.encode(payload) + noise_after
    payloads_out, _, _ = deframe(chunked(stream, cuts))
    assert payload in payloads_out
    check_only_real_frames(stream, payloads_out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120), payloads, st.binary(max_size=120),
       st.lists(st.integers(0, 10**4), max_size=4))
def test_micropython_deframes_noise_exactly_like_cpython(micropython_worker, noise_before,
                                                         payload, noise_after, cuts):
    stream = noise_before + b"\x00" + framing.encode(payload) + noise_after
    chunks = chunked(stream, cuts)
    assert micropython_worker.call("proto_calls", "deframe", chunks) == deframe(chunks)


def with_crc(body):
    return body + struct.pack("<I", binascii.crc32(body))


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=80),
                 st.binary(min_size=250, max_size=520).map(with_crc).map(make_vectors.cobs)))
def test_a_run_decodes_only_if_it_is_exactly_what_encode_produces(run):
    # The second kind of run is valid COBS with a correct CRC, including ones that end in a
    # full 254-byte block, which encode would close with a final code byte.
    try:
        payload = framing.decode(run)
    except ProtocolError as exc:
        assert exc.code in ("frame_cobs", "frame_crc", "frame_empty", "too_large")
    else:
        assert framing.encode(payload) == run + b"\x00"


def test_a_run_ending_in_a_full_block_is_refused(runtime):
    payload = bytes(range(1, 251))  # with its CRC (no zero bytes in it): one full block
    assert b"\x00" not in with_crc(payload)
    canonical = runtime.call(FRAMING, "encode", payload)[:-1]
    assert canonical[-1] == 0x01 and canonical[0] == 0xFF
    with pytest.raises(ProtocolError) as info:
        runtime.call(FRAMING, "decode", canonical[:-1])
    assert info.value.code == "frame_cobs"
