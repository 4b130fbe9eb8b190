"""protocol/vectors/*.json: every vector passes (or fails with its code) on both runtimes.

The vectors come from reference implementations (cbor2, cryptography, textbook COBS; see
tests/support/make_vectors.py), so these tests hold protocol/ to independent code, and the
firmware and gateway to the same bytes.
"""

import json
from collections.abc import Mapping
from pathlib import Path

import cbor2
import make_vectors
import pycddl
import pytest
from cddl_schema import check, leaf_rules, message_map_rules
from onestop.protocol.errors import ProtocolError

VECTORS = Path(make_vectors.VECTORS)


def load(name):
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def ids(vectors):
    return [v["name"] for v in vectors]


def wire(value):
    """cbor2's decoding in the form values cross the runtime boundary (see cbor_tags.py)."""
    if isinstance(value, cbor2.CBORTag):
        return ("$tag", value.tag, wire(value.value))
    if isinstance(value, (list, tuple)):  # cbor2 gives tuples inside tags
        return [wire(v) for v in value]
    if isinstance(value, Mapping):
        return {k: wire(v) for k, v in value.items()}
    return value


CBOR_VALID = load("cbor_valid.json")["vectors"]
CBOR_INVALID = load("cbor_invalid.json")["vectors"]
FRAMING = load("framing.json")
COSE = load("cose.json")
MESSAGES_VALID = load("messages_valid.json")["vectors"]
MESSAGES_INVALID = load("messages_invalid.json")["vectors"]
PUBLIC = {k["kid"]: bytes.fromhex(k["public_hex"]) for k in COSE["keys"]}
SEED = {k["kid"]: bytes.fromhex(k["seed_hex"]) for k in COSE["keys"]}


def test_vector_files_match_their_generator():
    for name, doc in make_vectors.build().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == make_vectors.render(doc), (
            name + " is stale: run tests/support/make_vectors.py")


# ---------------------------------------------------------------- CBOR
@pytest.mark.parametrize("vector", CBOR_VALID, ids=ids(CBOR_VALID))
def test_valid_cbor_decodes_like_cbor2_and_reencodes_identically(runtime, vector):
    data = bytes.fromhex(vector["hex"])
    assert runtime.call("cbor_tags", "loads", data) == wire(cbor2.loads(data))
    assert runtime.call("cbor_tags", "roundtrip", data) == data


@pytest.mark.parametrize("vector", CBOR_INVALID, ids=ids(CBOR_INVALID))
def test_invalid_cbor_is_rejected_with_its_code(runtime, vector):
    with pytest.raises(ProtocolError) as info:
        runtime.call("onestop.protocol.cbor", "loads", bytes.fromhex(vector["hex"]))
    assert info.value.code == vector["code"]


# ---------------------------------------------------------------- framing
@pytest.mark.parametrize("vector", FRAMING["valid"], ids=ids(FRAMING["valid"]))
def test_frame_vectors_encode_and_decode(runtime, vector):
    payload = bytes.fromhex(vector["payload_hex"])
    frame = bytes.fromhex(vector["frame_hex"])
    assert runtime.call("onestop.protocol.framing", "encode", payload) == frame
    assert runtime.call("onestop.protocol.framing", "decode", frame[:-1]) == payload


@pytest.mark.parametrize("vector", FRAMING["invalid"], ids=ids(FRAMING["invalid"]))
def test_bad_frame_vectors_are_rejected_with_their_code(runtime, vector):
    with pytest.raises(ProtocolError) as info:
        runtime.call("onestop.protocol.framing", "decode", bytes.fromhex(vector["frame_hex"]))
    assert info.value.code == vector["code"]


@pytest.mark.parametrize("vector", FRAMING["streams"], ids=ids(FRAMING["streams"]))
def test_stream_vectors_yield_their_payloads_and_counts(runtime, vector):
    stream = bytes.fromhex(vector["stream_hex"])
    payloads, stats, _ = runtime.call("proto_calls", "deframe", [stream])
    assert payloads == [bytes.fromhex(p) for p in vector["payloads_hex"]]
    assert stats == vector["stats"]


# ---------------------------------------------------------------- COSE
@pytest.mark.parametrize("vector", COSE["valid"], ids=ids(COSE["valid"]))
def test_cose_vectors_decode_verify_and_sign_identically(runtime, vector):
    data = bytes.fromhex(vector["hex"])
    payload = bytes.fromhex(vector["payload_hex"])
    kid = vector["kid"]
    assert runtime.call("proto_calls", "decode1", data)[0] == kid
    assert runtime.call("sig_keys", "verify1", data, PUBLIC[kid]) == payload
    assert runtime.call("sig_keys", "sign1", payload, kid, SEED[kid]) == data


@pytest.mark.parametrize("vector", COSE["invalid"], ids=ids(COSE["invalid"]))
def test_bad_cose_vectors_are_rejected_with_their_code(runtime, vector):
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "verify1", bytes.fromhex(vector["hex"]),
                     PUBLIC[make_vectors.KIOSK])
    assert info.value.code == vector["code"]


# ---------------------------------------------------------------- messages
def test_every_message_type_has_a_valid_vector():
    cddl = (VECTORS.parent / "spec" / "frames.cddl").read_text(encoding="utf-8")
    types = {v["rule"] for v in MESSAGES_VALID}
    for line in cddl.splitlines():
        if " t: \"" in line:
            t = line.split(' t: "')[1].split('"')[0]
            assert t in types, t
    assert "settlement_record" in types and "gateway_cert" in types


@pytest.mark.parametrize("vector", MESSAGES_VALID, ids=ids(MESSAGES_VALID))
def test_valid_message_vectors_satisfy_frames_cddl(vector):
    data = bytes.fromhex(vector["hex"])
    check(vector["rule"], data)
    if vector["rule"] not in make_vectors.RECORD_RULES:
        check("frame", data)


@pytest.mark.parametrize("vector", MESSAGES_VALID, ids=ids(MESSAGES_VALID))
def test_valid_message_vectors_pass_validate(runtime, vector):
    data = bytes.fromhex(vector["hex"])
    assert runtime.call("proto_calls", "validate_cbor", data, vector["rule"]) == cbor2.loads(data)


MESSAGE_MAPS = message_map_rules()


def test_every_message_map_rule_is_found():
    assert len(MESSAGE_MAPS) == 20  # 9 requests, 9 replies (one as two maps), error


@pytest.mark.parametrize("vector", MESSAGES_INVALID, ids=ids(MESSAGES_INVALID))
def test_invalid_message_vectors_fail_frames_cddl(vector):
    # "frame" vectors (unknown t, not a map) must fit no message type at all; checking each
    # type on its own avoids pycddl's leaky choice of maps (see cddl_schema.py).
    rules = MESSAGE_MAPS if vector["rule"] == "frame" else leaf_rules(vector["rule"])
    for rule in rules:
        with pytest.raises(pycddl.ValidationError):
            check(rule, bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", MESSAGES_INVALID, ids=ids(MESSAGES_INVALID))
def test_invalid_message_vectors_fail_validate_naming_the_field(runtime, vector):
    rule = vector["rule"] if vector["rule"] in make_vectors.RECORD_RULES else "frame"
    with pytest.raises(ProtocolError) as info:
        runtime.call("proto_calls", "validate_cbor", bytes.fromhex(vector["hex"]), rule)
    assert info.value.code == vector["code"]
    if vector["path"] is not None:
        assert reason(info.value).startswith(vector["path"] + ": "), reason(info.value)


def reason(exc):
    """The error's text without a leading "code: " (the MicroPython worker sends str(exc))."""
    prefix = exc.code + ": "
    return exc.msg[len(prefix):] if exc.msg.startswith(prefix) else exc.msg
