"""Ed25519 for the board: RFC 8032 vectors on both runtimes, byte-identical agreement with
`cryptography` (OpenSSL) in both directions, and every kind of bad signature refused."""

from __future__ import annotations

import json
from pathlib import Path

import onestop.protocol
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onestop.host.keys import SigningKey as HostSigningKey
from onestop.host.keys import VerifyingKey as HostVerifyingKey

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
VECTORS = json.loads(
    (Path(onestop.protocol.__file__).parent / "vectors" / "ed25519_rfc8032.json").read_text()
)["vectors"]
BOTH_RUNTIMES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SEED = bytes.fromhex(VECTORS[0]["secret_key"])


def call(runtime, function, *args):
    return runtime.call("crypto_calls", function, *args)


def openssl_signature(seed: bytes, msg: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(msg)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_rfc8032_vectors(runtime, vector):
    seed, public, msg, sig = (bytes.fromhex(vector[k]) for k in
                              ("secret_key", "public_key", "message", "signature"))
    assert call(runtime, "public_key", seed) == public
    assert call(runtime, "sign", seed, msg) == sig
    assert call(runtime, "verify", public, msg, sig) is True
    assert call(runtime, "verify", public, msg + b"\x00", sig) is False


def test_precomputed_base_table_is_correct(runtime):
    assert call(runtime, "base_table_is_the_computed_one") is True


@BOTH_RUNTIMES
@given(seed=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=400))
def test_signatures_are_byte_identical_to_openssl_and_verify_there(runtime, seed, msg):
    sig = call(runtime, "sign", seed, msg)
    assert sig == openssl_signature(seed, msg)
    host = HostSigningKey(seed)
    assert call(runtime, "public_key", seed) == host.public_key
    assert HostVerifyingKey(host.public_key).verify(msg, sig)


@BOTH_RUNTIMES
@given(seed=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=400),
       flip=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_openssl_signatures_verify_here_and_altered_ones_do_not(runtime, seed, msg, flip):
    host = HostSigningKey(seed)
    sig = host.sign(msg)
    altered = bytearray(sig)
    altered[flip // 8] ^= 1 << (flip % 8)
    pairs = [(msg, sig), (msg, bytes(altered)), (msg + b"!", sig)]
    assert call(runtime, "verify_many", host.public_key, pairs) == [True, False, False]


def test_one_key_verifies_many_messages_correctly(runtime):
    """The decoded point and its table are kept between verifies; results must not leak
    from one call to the next."""
    host = HostSigningKey(SEED)
    msgs = [b"", b"a", b"settle" * 50, bytes(range(256))]
    pairs = []
    for i, msg in enumerate(msgs):
        pairs.append((msg, host.sign(msg)))
        pairs.append((msg, host.sign(msgs[(i + 1) % len(msgs)])))
    expected = [True, False] * len(msgs)
    assert call(runtime, "verify_many", host.public_key, pairs) == expected


def test_non_canonical_s_is_refused(runtime):
    """S + L verifies the same equation but is a second encoding: a malleable signature."""
    msg = b"receipt"
    sig = openssl_signature(SEED, msg)
    public = HostSigningKey(SEED).public_key
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + L).to_bytes(32, "little")
    assert call(runtime, "verify", public, msg, sig) is True
    assert call(runtime, "verify", public, msg, malleated) is False
    assert call(runtime, "verify", public, msg, sig[:32] + L.to_bytes(32, "little")) is False


@pytest.mark.parametrize(
    "public",
    [
        (P + 1).to_bytes(32, "little"),  # y >= p: not canonical
        (P + 1 + (1 << 255)).to_bytes(32, "little"),
        (1 | 1 << 255).to_bytes(32, "little"),  # x = 0 with the sign bit set
        (2).to_bytes(32, "little"),  # no x has y = 2: not on the curve
        b"\xff" * 32,
    ],
    ids=["y-not-reduced", "y-not-reduced-sign", "negative-zero-x", "off-curve", "all-ones"],
)
def test_public_keys_that_are_not_points_verify_nothing(runtime, public):
    msg = b"pending_bills"
    sig = openssl_signature(SEED, msg)
    assert call(runtime, "verify_many", public, [(msg, sig), (msg, sig)]) == [False, False]


def test_malformed_signatures_are_false_not_errors(runtime):
    msg = b"msg"
    sig = openssl_signature(SEED, msg)
    public = HostSigningKey(SEED).public_key
    for bad in (b"", sig[:63], sig + b"\x00", bytes(64), b"\xff" * 64,
                (P + 1).to_bytes(32, "little") + sig[32:]):  # R not canonically encoded
        assert call(runtime, "verify", public, msg, bad) is False


def test_message_may_be_any_bytes_like(runtime):
    msg = b"person_info " * 30
    assert call(runtime, "sign_views", SEED, msg) == [openssl_signature(SEED, msg)] * 3


def test_generate_uses_the_random_source_for_the_seed(runtime):
    seed = bytes(range(100, 132))
    got_seed, public, asked = call(runtime, "generate_with", seed)
    assert got_seed == seed
    assert public == HostSigningKey(seed).public_key
    assert asked == [32]


def test_wrong_sizes_are_refused_with_a_clear_message(runtime):
    assert "32 bytes" in call(runtime, "value_error", "seed", bytes(31))
    assert "32 bytes" in call(runtime, "value_error", "public", bytes(33))
    assert "wrong number of bytes" in call(runtime, "value_error", "generate", bytes(16))
    assert call(runtime, "value_error", "seed", bytes(32)) is None
