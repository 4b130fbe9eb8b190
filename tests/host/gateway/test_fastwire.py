"""The host's fast path (fastwire) against the reference protocol modules: the same bytes out,
and for any input the same verdict — the same value, or a ProtocolError with the same code and
text. Inputs: the protocol's vectors, then hypothesis around them (damaged bytes, other CBOR
encodings of the same values, fields removed, added or given other values and types)."""

from __future__ import annotations

import json
import os
from importlib import resources
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onestop.host.gateway import fastwire
from onestop.host.keys import SigningKey, VerifyingKey
from onestop.protocol import cose, framing, messages
from onestop.protocol.errors import ProtocolError

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _vectors(name: str) -> dict[str, Any]:
    text = resources.files("onestop.protocol").joinpath(f"vectors/{name}").read_text("utf-8")
    return json.loads(text)


COSE = _vectors("cose.json")
KEYS = {k["kid"]: SigningKey(bytes.fromhex(k["seed_hex"])) for k in COSE["keys"]}
VERIFIERS = {kid: VerifyingKey(key.public_key) for kid, key in KEYS.items()}
VALID = {v["name"]: bytes.fromhex(v["hex"]) for v in _vectors("messages_valid.json")["vectors"]
         if v["rule"] not in ("settlement_record", "gateway_cert")}  # messages only
RECORDS = [bytes.fromhex(v["hex"]) for v in _vectors("messages_valid.json")["vectors"]
           if v["rule"] == "settlement_record"]
INVALID = [bytes.fromhex(v["hex"]) for v in _vectors("messages_invalid.json")["vectors"]]
CBOR_VALID = [bytes.fromhex(v["hex"]) for v in _vectors("cbor_valid.json")["vectors"]]
CBOR_INVALID = [bytes.fromhex(v["hex"]) for v in _vectors("cbor_invalid.json")["vectors"]]
MESSAGES = {name: cbor2.loads(data) for name, data in VALID.items()}
SETTLEMENT_RECORD = messages.open_settlement(MESSAGES["settle_reply"]["settlement"],
                                             VERIFIERS["gw-2026-01"])


def verdict(call: Any, *args: Any) -> tuple[Any, ...]:
    try:
        return ("ok", call(*args))
    except ProtocolError as exc:
        return ("refused", exc.code, exc.msg)
    except Exception as exc:  # whatever the reference raises, the fast path must too
        return ("raised", type(exc).__name__, str(exc))


def key_for(kid: str) -> VerifyingKey | None:
    return VERIFIERS.get(kid)


def sealed(payload: bytes, kid: str = "HALL-0101") -> bytes:
    """`payload` (any bytes) signed as a COSE_Sign1 by `kid`, as the reference signs it."""
    return cose.sign1(payload, kid, KEYS[kid])


def kid_of(payload: bytes) -> str:
    """Who would sign this payload: its kiosk for requests (and the error-free replies too,
    which a kiosk verifies with the gateway key in real life; here any enrolled key does)."""
    try:
        kiosk = cbor2.loads(payload).get("kiosk")
    except Exception:
        return "HALL-0101"
    return kiosk if isinstance(kiosk, str) and kiosk in KEYS else "HALL-0101"


# ---------------------------------------------------------------- the compiled spec


def test_frames_cddl_compiles_to_every_message_type_of_the_protocol() -> None:
    assert fastwire.CHECKS.requests == set(messages.REQUESTS)
    assert fastwire.CHECKS.replies == set(messages.REPLIES)


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_valid_vector_passes_the_compiled_checker(name: str) -> None:
    assert fastwire.CHECKS.message(MESSAGES[name])


@pytest.mark.parametrize("data", RECORDS)
def test_the_settlement_record_vector_passes_its_checker(data: bytes) -> None:
    assert fastwire.CHECKS.settlement(cbor2.loads(data))
    assert not fastwire.CHECKS.message(cbor2.loads(data))


@pytest.mark.parametrize("data", INVALID)
def test_no_invalid_vector_passes_the_compiled_checker(data: bytes) -> None:
    try:
        value = cbor2.loads(data)
    except Exception:
        return
    assert not fastwire.CHECKS.message(value)


# ---------------------------------------------------------------- open: vectors


@pytest.mark.parametrize("payload", [*VALID.values(), *RECORDS, *INVALID, *CBOR_VALID,
                                     *CBOR_INVALID])
def test_open_matches_the_reference_on_every_vector(payload: bytes) -> None:
    frame = sealed(payload, kid_of(payload))
    assert verdict(fastwire.open, frame, key_for) == verdict(messages.open, frame, key_for)


@pytest.mark.parametrize("vector", COSE["invalid"] if "invalid" in COSE else [])
def test_open_matches_the_reference_on_bad_cose(vector: dict[str, Any]) -> None:
    frame = bytes.fromhex(vector["hex"])
    assert verdict(fastwire.open, frame, key_for) == verdict(messages.open, frame, key_for)


# ---------------------------------------------------------------- open: around the vectors


@st.composite
def damaged(draw: st.DrawFn, source: bytes) -> bytes:
    data = bytearray(source)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "delete", "insert", "truncate", "append")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "delete" and data:
            del data[at]
        elif op == "insert":
            data.insert(at, draw(st.integers(0, 255)))
        elif op == "truncate":
            del data[at:]
        else:
            data += draw(st.binary(max_size=8))
    return bytes(data)


def _field_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.integers(-(2**64) - 1, 2**64 + 1), st.booleans(), st.none(),
        st.floats(allow_nan=False), st.text(max_size=12), st.binary(max_size=12),
        st.sampled_from(["", "X", "HALL-0101", "2026-01-01", "none", "inpatient", "T" * 8,
                         "P" * 31, "130630", "settled", "not_found", b"\x00" * 8]),
        st.sampled_from([v for m in MESSAGES.values() for v in m.values()]),
    )
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-30, 30)), inner,
                        max_size=3),
        st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 18, 24, 55799]), inner),
    ), max_leaves=6)


@st.composite
def edited(draw: st.DrawFn) -> dict[str, Any]:
    """A vector's message with fields removed, added or changed (value or type)."""
    message = dict(MESSAGES[draw(st.sampled_from(sorted(MESSAGES)))])
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(("delete", "add", "change", "nested")))
        keys = sorted(message, key=repr)
        if op == "delete" and keys:
            del message[draw(st.sampled_from(keys))]
        elif op == "add":
            message[draw(st.one_of(st.text(max_size=8), st.sampled_from(
                ["now", "settlement", "status", "psn_no", "x"])))] = draw(_field_values())
        elif op == "change" and keys:
            message[draw(st.sampled_from(keys))] = draw(_field_values())
        elif op == "nested" and keys:
            key = draw(st.sampled_from(keys))
            inner = message[key]
            if isinstance(inner, dict) and inner:
                inner = dict(inner)
                inner[draw(st.sampled_from(sorted(inner, key=repr)))] = draw(_field_values())
                message[key] = inner
    return message


@st.composite
def encodings(draw: st.DrawFn) -> bytes:
    """Other CBOR encodings of a vector's value: keys in another order, plain (unsorted)
    cbor2 output, indefinite lengths, longer heads; or a changed message."""
    message = draw(st.one_of(edited(), st.sampled_from(list(MESSAGES.values()))))
    how = draw(st.sampled_from(("shuffled", "canonical", "indefinite", "long_head")))
    try:
        if how == "shuffled":
            keys = draw(st.permutations(list(message)))
            return cbor2.dumps({key: message[key] for key in keys})
        if how == "canonical":
            return cbor2.dumps(message, canonical=True)
        data = cbor2.dumps(message, canonical=True)
    except Exception:
        return b"\xa0"
    if how == "indefinite" and data and data[0] >> 5 == 5 and data[0] & 31 < 24:
        return bytes([0xBF]) + data[1:] + b"\xff"
    if how == "long_head" and data and data[0] & 31 < 24:
        return bytes([(data[0] & 0xE0) | 24, data[0] & 31]) + data[1:]
    return data


@SETTINGS
@given(st.one_of(
    st.sampled_from(sorted(VALID.values())).flatmap(damaged),
    encodings(),
))
def test_open_matches_the_reference_around_the_vectors(payload: bytes) -> None:
    frame = sealed(payload, kid_of(payload))
    assert verdict(fastwire.open, frame, key_for) == verdict(messages.open, frame, key_for)


@SETTINGS
@given(st.sampled_from(sorted(VALID.values())).flatmap(
    lambda payload: damaged(sealed(payload, kid_of(payload)))))
def test_open_matches_the_reference_on_damaged_frames(frame: bytes) -> None:
    assert verdict(fastwire.open, frame, key_for) == verdict(messages.open, frame, key_for)


def test_open_asks_key_for_and_passes_its_refusal_on() -> None:
    frame = sealed(VALID["sign_in"])

    def revoked(kid: str) -> VerifyingKey:
        raise ProtocolError("revoked", f"kiosk {kid} is revoked")

    assert verdict(fastwire.open, frame, revoked) == verdict(messages.open, frame, revoked)
    assert verdict(fastwire.open, frame, lambda kid: None) == verdict(
        messages.open, frame, lambda kid: None)
    other = sealed(VALID["sign_in"], "HALL-0102")  # signed by another kiosk than it names
    assert verdict(fastwire.open, other, key_for) == verdict(messages.open, other, key_for)


# ---------------------------------------------------------------- validate and seal


@SETTINGS
@given(edited())
def test_validate_and_seal_match_the_reference(message: dict[str, Any]) -> None:
    assert verdict(fastwire.validate, message) == verdict(messages.validate, message)
    key = KEYS["HALL-0101"]
    assert verdict(fastwire.seal, message, "HALL-0101", key) == verdict(
        messages.seal, message, "HALL-0101", key)


@pytest.mark.parametrize("name", sorted(VALID))
def test_seal_gives_the_references_bytes(name: str) -> None:
    message = dict(MESSAGES[name])
    message.pop("v")
    message["v"] = (1, 0)  # built messages may hold tuples: same bytes either way
    for kid in ("HALL-0101", "gw-2026-01"):
        assert fastwire.seal(MESSAGES[name], kid, KEYS[kid]) == messages.seal(
            MESSAGES[name], kid, KEYS[kid])
        assert fastwire.seal(message, kid, KEYS[kid]) == messages.seal(message, kid, KEYS[kid])


def test_text_that_is_not_utf8_is_refused_as_the_reference_refuses_it() -> None:
    message = dict(MESSAGES["sign_in"], fw="\ud800")
    key = KEYS["HALL-0101"]
    assert verdict(fastwire.seal, message, "HALL-0101", key) == verdict(
        messages.seal, message, "HALL-0101", key)


@pytest.mark.parametrize("kid", ["", "x" * 65, "\ud800"])
def test_a_bad_kid_is_refused_as_the_reference_refuses_it(kid: str) -> None:
    key = KEYS["HALL-0101"]
    assert verdict(fastwire.seal, MESSAGES["sign_in"], kid, key) == verdict(
        messages.seal, MESSAGES["sign_in"], kid, key)


# ---------------------------------------------------------------- settlements


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(SETTLEMENT_RECORD)), _field_values(),
                       max_size=3))
def test_settlements_seal_and_open_as_the_reference(changes: dict[str, Any]) -> None:
    record = {**SETTLEMENT_RECORD, **changes}
    key, verifier = KEYS["gw-2026-01"], VERIFIERS["gw-2026-01"]
    ours = verdict(fastwire.seal_settlement, record, "gw-2026-01", key)
    assert ours == verdict(messages.seal_settlement, record, "gw-2026-01", key)
    if ours[0] == "ok":
        assert fastwire.open_settlement(ours[1], verifier) == record
    payload = cbor2.dumps(record)  # in insertion order: maybe not deterministic
    frame = sealed(payload, "gw-2026-01")
    assert verdict(fastwire.open_settlement, frame, verifier) == verdict(
        messages.open_settlement, frame, verifier)


# ---------------------------------------------------------------- framing


@SETTINGS
@given(st.one_of(st.binary(max_size=600),
                 st.integers(0, framing.MAX_FRAME + 8).map(lambda n: os.urandom(n)),
                 st.integers(0, 1100).map(lambda n: b"\x00" * n),
                 st.integers(0, 1100).map(lambda n: b"\x01" * n)))
def test_frames_are_the_references_bytes(payload: bytes) -> None:
    assert verdict(fastwire.encode_frame, payload) == verdict(framing.encode, payload)
